"""AddNoise is the forward process q(x_t | x0) of the model's schedule, and samplers continue it."""

from __future__ import annotations

import math

import pytest
import torch

from tiny_sd import make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.errors import NodeInputError
from latentgraph.nodes.denoise import NOISE_KEY
from latentgraph.nodes.latents import VAEEncode
from latentgraph.nodes.sampler_nodes import AddNoise, KSampler, KSamplerAdvanced

SEED = 99


def sd1_alphas_cumprod() -> torch.Tensor:
    """SD1's training schedule, computed here independently of diffusers."""
    betas = torch.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


@pytest.fixture(scope="module")
def sd():
    return tiny_sd("sd1", seed=3)


@pytest.fixture(scope="module")
def image_latent(sd):
    ctx, _ = make_ctx()
    pixels = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(5))
    return VAEEncode().execute(ctx, pixels, sd.vae)[0]


def add_noise(sd, latent, steps, sampler_name="euler", scheduler="normal", denoise=1.0, seed=SEED):
    ctx, _ = make_ctx(class_type="AddNoise")
    return AddNoise().execute(ctx, sd.model, latent, seed, steps, sampler_name, scheduler, denoise)[0]


@pytest.mark.parametrize("sampler_name", ["euler", "ddim"])
@pytest.mark.parametrize(("steps", "denoise", "start"), [(4, 1.0, 0), (3, 0.75, 1), (2, 0.5, 2), (1, 0.25, 3)])
def test_add_noise_statistics_follow_the_training_schedule(sd, sampler_name, steps, denoise, start):
    import diffusers

    cls = {"euler": diffusers.EulerDiscreteScheduler, "ddim": diffusers.DDIMScheduler}[sampler_name]
    reference = cls.from_config(sd.model.scheduler_config)
    reference.set_timesteps(4)
    t = int(reference.timesteps[start])
    alpha_bar = float(sd1_alphas_cumprod()[t])

    x0 = torch.full((16, 4, 64, 64), 0.8)
    noisy = add_noise(sd, {"samples": x0}, steps, sampler_name, denoise=denoise)["samples"]
    assert noisy.mean().item() == pytest.approx(math.sqrt(alpha_bar) * 0.8, abs=5e-3)
    assert noisy.var().item() == pytest.approx(1.0 - alpha_bar, rel=1e-2, abs=1e-3)


def test_last_step_of_sd1_schedule_leaves_almost_only_noise(sd):
    alpha_bar = float(sd1_alphas_cumprod()[999])
    assert math.sqrt(1.0 - alpha_bar) == pytest.approx(0.9977, abs=1e-4)
    x0 = torch.zeros(2, 4, 32, 32)
    noisy = add_noise(sd, {"samples": x0}, 10)["samples"]  # denoise 1: the schedule's first step, t = 999
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(SEED))
    assert torch.allclose(noisy, noise * math.sqrt(1.0 - alpha_bar), atol=1e-5)
    ones = add_noise(sd, {"samples": torch.ones(2, 4, 32, 32)}, 10)["samples"]
    assert torch.allclose(ones - noisy, torch.full_like(noisy, math.sqrt(alpha_bar)), atol=1e-5)


@pytest.mark.parametrize(("sampler_name", "scheduler"), [("euler", "normal"), ("euler_ancestral", "normal"),
                                                          ("dpmpp_2m", "karras"), ("ddim", "normal"), ("heun", "karras")])
def test_add_noise_then_sampler_equals_sampler_with_denoise(sd, image_latent, sampler_name, scheduler):
    ctx, _ = make_ctx()
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    steps, denoise = 6, 0.6
    direct = KSampler().execute(ctx, sd.model, SEED, steps, 5.0, sampler_name, scheduler, pos, neg, image_latent, denoise)[0]
    noisy = add_noise(sd, image_latent, steps, sampler_name, scheduler, denoise)
    assert NOISE_KEY in noisy
    via = KSampler().execute(ctx, sd.model, SEED, steps, 5.0, sampler_name, scheduler, pos, neg, noisy, denoise)[0]
    assert (via["samples"] - direct["samples"]).abs().max().item() <= 1e-5
    # The sampler may also be told the whole schedule: it finds the step AddNoise stopped at.
    total = int(steps / denoise)
    advanced = KSamplerAdvanced().execute(ctx, sd.model, "disable", SEED, total, 5.0, sampler_name, scheduler, pos, neg,
                                          noisy, total - steps, 10000, "disable")[0]
    assert (advanced["samples"] - direct["samples"]).abs().max().item() <= 1e-5


def test_sampler_refuses_noise_from_another_schedule(sd, image_latent):
    ctx, _ = make_ctx()
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    noisy = add_noise(sd, image_latent, 6, "euler", "karras", 0.6)
    with pytest.raises(NodeInputError) as err:
        KSampler().execute(ctx, sd.model, SEED, 6, 5.0, "euler", "normal", pos, neg, noisy, 0.6)
    assert err.value.input_name == "latent_image"
    with pytest.raises(NodeInputError) as err:
        KSamplerAdvanced().execute(ctx, sd.model, "disable", SEED, 10, 5.0, "euler", "karras", pos, neg, noisy, 2, 10000, "disable")
    assert err.value.input_name == "latent_image" and "start_at_step to 4" in str(err.value)


def test_add_noise_record_is_dropped_when_samples_change(sd, image_latent):
    ctx, _ = make_ctx()
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    noisy = add_noise(sd, image_latent, 6, "euler", "karras", 0.6)
    edited = {**noisy, "samples": noisy["samples"] * 0.5}  # a custom node copied the dict and edited it
    # Treated as a plain latent again: noise is added, no complaint about the schedule.
    out = KSampler().execute(ctx, sd.model, SEED, 6, 5.0, "euler", "normal", pos, neg, edited, 0.6)[0]
    assert NOISE_KEY not in out


def test_two_stage_advanced_sampling_equals_one_run(sd):
    """Base model to step 4 with leftover noise, then the rest: the same as one run (Euler)."""
    ctx, _ = make_ctx()
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    empty = {"samples": torch.zeros(1, 4, 8, 8)}
    run = KSamplerAdvanced().execute
    full = run(ctx, sd.model, "enable", SEED, 8, 5.0, "euler", "normal", pos, neg, empty, 0, 10000, "disable")[0]
    first = run(ctx, sd.model, "enable", SEED, 8, 5.0, "euler", "normal", pos, neg, empty, 0, 4, "enable")[0]
    assert first[NOISE_KEY].sigma > 0
    second = run(ctx, sd.model, "disable", SEED, 8, 5.0, "euler", "normal", pos, neg, first, 4, 10000, "disable")[0]
    assert NOISE_KEY not in second
    assert (second["samples"] - full["samples"]).abs().max().item() <= 1e-5


def test_ending_early_without_leftover_noise_finishes_clean(sd):
    ctx, _ = make_ctx()
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    empty = {"samples": torch.zeros(1, 4, 8, 8)}
    run = KSamplerAdvanced().execute
    leftover = run(ctx, sd.model, "enable", SEED, 8, 5.0, "euler", "normal", pos, neg, empty, 0, 4, "enable")[0]
    clean = run(ctx, sd.model, "enable", SEED, 8, 5.0, "euler", "normal", pos, neg, empty, 0, 4, "disable")[0]
    assert NOISE_KEY not in clean
    assert not torch.allclose(clean["samples"], leftover["samples"])
    # The same first three steps, then the fourth goes to σ = 0: running steps 0-3 with leftover
    # noise and then step 3 alone without must give the same latent.
    three = run(ctx, sd.model, "enable", SEED, 8, 5.0, "euler", "normal", pos, neg, empty, 0, 3, "enable")[0]
    last = run(ctx, sd.model, "disable", SEED, 8, 5.0, "euler", "normal", pos, neg, three, 3, 4, "disable")[0]
    assert (last["samples"] - clean["samples"]).abs().max().item() <= 1e-5
