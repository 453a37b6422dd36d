"""Noise levels and schedules equal ComfyUI's, number for number (tests/data/comfyui/schedules.json).

Bar, fixed before comparing: ≤ 1e-6 relative (max |ours − theirs| / max |theirs|) for every
schedule × steps 1–50, every KSampler denoise case, and the model-sampling maps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from latentgraph.nodes.sampling.model_sampling import ModelSampling
from latentgraph.nodes.sampling.schedules import SCHEDULES, schedule_sigmas

DATA = json.loads((Path(__file__).parent / "data" / "comfyui" / "schedules.json").read_text())
BY_NAME = {s.name: s for s in SCHEDULES}
SD1 = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000}
REL = 1e-6


def comfy_nan(theirs) -> bool:
    """ComfyUI's kl_optimal divides 0 by 0 for one step and returns σ = NaN; ours returns the top
    σ (one step from pure noise), a documented deviation checked in test_kl_optimal_one_step."""
    return any(v != v for v in theirs)


def close(ours, theirs, rel=REL) -> bool:
    ours = torch.as_tensor(ours, dtype=torch.float64).flatten()
    theirs = torch.as_tensor(theirs, dtype=torch.float64).flatten()
    if ours.shape != theirs.shape:
        return False
    if theirs.numel() == 0:
        return True
    return float((ours - theirs).abs().max()) <= rel * max(float(theirs.abs().max()), 1e-12)


@pytest.fixture(scope="module")
def sd1() -> ModelSampling:
    return ModelSampling.from_config(SD1)


def test_the_nine_schedules_are_comfyuis():
    assert sorted(BY_NAME) == sorted(DATA["scheduler_names"])


@pytest.mark.parametrize("name", sorted(DATA["calculate_sigmas"]))
def test_schedule_sigmas_for_1_to_50_steps(sd1, name):
    wrong = [
        steps for steps, theirs in DATA["calculate_sigmas"][name].items()
        if not comfy_nan(theirs) and not close(BY_NAME[name].sigmas(sd1, int(steps)), theirs)
    ]
    assert not wrong, f"{name}: steps {wrong} differ from ComfyUI"


def test_ksampler_denoise_and_discarded_penultimate_sigma(sd1):
    wrong = []
    for case in DATA["ksampler_sigmas"]:
        ours = schedule_sigmas(
            BY_NAME[case["scheduler"]], sd1, case["steps"],
            discard_penultimate=case["sampler"] in ("dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"),
            denoise=case["denoise"],
        )
        if not comfy_nan(case["sigmas"]) and not close(ours, case["sigmas"]):
            wrong.append((case["sampler"], case["scheduler"], case["steps"], case["denoise"]))
    assert not wrong, f"{len(wrong)} of {len(DATA['ksampler_sigmas'])} KSampler cases differ, e.g. {wrong[:5]}"


@pytest.mark.parametrize("kind", ["eps", "zsnr"])
def test_model_sampling_maps(kind):
    ref = DATA["model_sampling"][kind]
    ms = ModelSampling.from_config({**SD1, "rescale_betas_zero_snr": kind == "zsnr"})
    assert close(ms.sigmas, ref["sigmas"])
    assert close(ms.log_sigmas, ref["log_sigmas"])
    assert close(ms.sigma_min, ref["sigma_min"]) and close(ms.sigma_max, ref["sigma_max"])
    probes = torch.tensor(ref["timestep_probe_sigmas"], dtype=torch.float32)
    assert ms.timestep(probes).tolist() == [int(t) for t in ref["timestep"]]
    assert close(ms.sigma(torch.tensor(ref["sigma_probe_t"], dtype=torch.float32)), ref["sigma"])
    assert close([ms.percent_to_sigma(p) for p in ref["percent"]], ref["percent_to_sigma"])


def test_zero_terminal_snr_schedules():
    ms = ModelSampling.from_config({**SD1, "rescale_betas_zero_snr": True})
    for name, by_steps in DATA["model_sampling"]["zsnr_calculate_sigmas"].items():
        for steps, theirs in by_steps.items():
            if not comfy_nan(theirs):
                assert close(BY_NAME[name].sigmas(ms, int(steps)), theirs), (name, steps)


def test_kl_optimal_one_step(sd1):
    assert comfy_nan(DATA["calculate_sigmas"]["kl_optimal"]["1"])  # what we deviate from
    sigmas = BY_NAME["kl_optimal"].sigmas(sd1, 1)
    assert torch.isfinite(sigmas).all()
    assert close(sigmas, [float(sd1.sigma_max), 0.0], rel=1e-5)
