"""Every registered sampler with every registered schedule runs through KSampler.

44 samplers × 9 schedules (ComfyUI's) on the tiny random SD1 model, 3 steps, 32×32 pixels: each
pair gives a finite latent of the input's shape that differs from the input. The trajectories
themselves are checked against ComfyUI in ``test_solvers_*.py``; this is the "nothing in the
menu is broken" test a user clicking through the choices would run. cfg 1 keeps it at one UNet
row per call (CFG++ samplers still evaluate the negative: they step along it).
"""

from __future__ import annotations

import pytest
import torch

from tiny_sd import make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.nodes.sampling.ksampler_nodes import KSampler

REGISTRY = make_ctx()[0].registry
SAMPLERS = list(REGISTRY.samplers)
SCHEDULES = list(REGISTRY.schedulers)
PIXELS = 32


@pytest.fixture(scope="module")
def sd():
    return tiny_sd("sd1", seed=0)  # one model load for the whole matrix


@pytest.fixture(scope="module")
def inputs(sd):
    downscale = sd.vae.downscale_factor
    latent = torch.randn(1, 4, PIXELS // downscale, PIXELS // downscale, generator=torch.Generator().manual_seed(0))
    return {"samples": latent}, random_conditioning(seed=1), random_conditioning(seed=2)


def test_the_matrix_is_the_whole_registry():
    """What the menus offer is what is tested: ComfyUI's 44 samplers and 9 schedules (a name
    missing from the registry would be missing from the matrix too, so count them)."""
    print(f"sampler matrix: {len(SAMPLERS)} samplers × {len(SCHEDULES)} schedules = {len(SAMPLERS) * len(SCHEDULES)}")
    assert len(SCHEDULES) == 9 and len(SAMPLERS) == 44
    assert {"euler", "dpmpp_2m", "normal", "karras"} <= set(SAMPLERS) | set(SCHEDULES)


@pytest.mark.parametrize("scheduler", SCHEDULES)
@pytest.mark.parametrize("sampler_name", SAMPLERS)
def test_sampler_with_schedule(sd, inputs, sampler_name, scheduler):
    latent, positive, negative = inputs
    ctx, events = make_ctx()
    out = KSampler().execute(ctx, sd.model, 7, 3, 1.0, sampler_name, scheduler, positive, negative, latent, 1.0)[0]
    samples = out["samples"]
    assert samples.shape == latent["samples"].shape
    assert torch.isfinite(samples).all()
    assert not torch.allclose(samples, latent["samples"], atol=1e-3)
    # progress is reported, counting steps not model calls (dpm_fast spends its 3-call budget in
    # fewer, higher-order steps, so its bar may stop short of 3)
    assert events and all(1 <= e.value <= e.max == 3 for e in events)
