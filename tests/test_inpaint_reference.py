"""The noise mask (run.MaskedDenoiser + run.inpaint_noise) against ComfyUI's recorded inpaint runs.

Cases ``inpaint/euler``, ``inpaint/dpmpp_2m_sde`` and ``inpaint/ddim`` of
tests/data/comfyui/samplers.json: the analytic denoiser behind our own masking wrapper must feed
the model what ComfyUI fed it at every call and end where ComfyUI ended. Bar (as the solver
tests): 1e-5 relative.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from analytic import GaussianDenoiser
from latentgraph.nodes.sampling.run import MaskedDenoiser, inpaint_noise
from latentgraph.nodes.sampling.samplers import builtin_samplers

DATA = Path(__file__).parent / "data" / "comfyui"
CASES = json.loads((DATA / "samplers.json").read_text())["cases"]
ARRAYS = load_file(str(DATA / "samplers.safetensors"))
BY_NAME = {d.name: d for d in builtin_samplers()}
REL = 1e-5


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("key", sorted(k for k in CASES if k.startswith("inpaint/")))
def test_noise_mask_matches_comfyui(key):
    case = CASES[key]
    t = {field: ARRAYS[name] for field, name in case["tensors"].items()}
    dtype = getattr(torch, case["dtype"])
    noise, latent, sigmas = t["noise"].to(dtype), t["latent_image"].to(dtype), t["sigmas"]
    seen: list[torch.Tensor] = []

    class Recording(GaussianDenoiser):
        def predict(self, x, sigma):
            seen.append(x.clone())
            return super().predict(x, sigma)

    model = Recording(tuple(noise.shape), cfg=case["cfg"], dtype=dtype)
    sampler = BY_NAME[case["sampler"]]
    masked = MaskedDenoiser(model, t["denoise_mask"].to(dtype), inpaint_noise(sampler, noise, case["seed"]), latent)
    ms = model.model_sampling
    x = ms.noise_scaling(sigmas[0], noise, latent, ms.is_max_sigma(float(sigmas[0])))
    out = sampler.sample(masked, x, sigmas, seed=case["seed"])
    assert len(seen) == len(t["model_input"])
    assert max(rel(a, b) for a, b in zip(seen, t["model_input"])) < REL
    assert rel(out, t["samples"]) < REL
