"""Initial noise is ComfyUI's: the same seed (and batch_index) gives the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from latentgraph.nodes.sampling.run import NoNoise, RandomNoise, prepare_noise

DATA = Path(__file__).parent / "data" / "comfyui"
CASES = json.loads((DATA / "samplers.json").read_text())["cases"]
ARRAYS = load_file(str(DATA / "samplers.safetensors"))


def recorded_noise(key: str) -> torch.Tensor:
    return ARRAYS[CASES[key]["tensors"]["noise"]]


def test_seeded_noise_equals_comfyuis():
    case = CASES["txt2img/euler"]
    ours = prepare_noise(torch.zeros(2, 4, 6, 6), case["seed"])
    assert torch.equal(ours.double(), recorded_noise("txt2img/euler"))


def test_batch_index_picks_the_noise_of_that_index():
    case = CASES["noise_inds/euler_ancestral"]
    ours = prepare_noise(torch.zeros(2, 4, 6, 6), case["seed"], case["noise_inds"])
    assert torch.equal(ours.double(), recorded_noise("noise_inds/euler_ancestral"))
    # a latent's noise depends on its index only, not on which other latents come with it
    assert torch.equal(ours[1], prepare_noise(torch.zeros(2, 4, 6, 6), case["seed"], [0, 1])[1])
    assert not torch.equal(ours[0], ours[1])


def test_noise_values_read_the_latent_dict():
    latent = {"samples": torch.zeros(2, 4, 6, 6), "batch_index": [3, 1]}
    assert torch.equal(RandomNoise(42).generate(latent, latent["samples"]), prepare_noise(latent["samples"], 42, [3, 1]))
    assert not NoNoise().generate(latent, latent["samples"]).any()
