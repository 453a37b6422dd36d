"""One guided sampling step, worked out by hand, through the real KSampler path.

The UNet is a stand-in whose ε we choose: ε = A·x_in + mean(embedding of the row), where x_in is
what the UNet is given (the noisy latent scaled by 1/sqrt(σ² + 1)). Everything else is the real
code: ``KSamplerAdvanced.execute`` → schedule → guider (``calc_cond_batch``, CFG) → Euler in σ
space → LATENT out. The sampler diffusion tests compare against diffusers, where a wrong guidance
formula shows only as "a different picture"; here it shows as a wrong number.

Worked example (SD1 noise levels, ``normal`` schedule, 2 steps, stop after the first with the
leftover noise, no added noise, latent z = 2 everywhere, latent scaling 1):

* σ0 = σ(t=999) = sqrt((1 − ᾱ999)/ᾱ999) ≈ 14.6146, σ1 = σ(t=0) = sqrt(β0/(1 − β0)) ≈ 0.029167
  with β = linspace(sqrt(0.00085), sqrt(0.012), 1000)² and ᾱ the running product of 1 − β;
* x_in = 2/sqrt(σ0² + 1) ≈ 0.13653;
* positive embedding filled with 0.3, negative with −0.1, A = 0.5, cfg 4:
  ε_c = 0.5·0.13653 + 0.3, ε_u = 0.5·0.13653 − 0.1,
  ε = ε_u + cfg·(ε_c − ε_u) = 0.06827 − 0.1 + 1.6 = 1.56827;
* the denoised estimate is D = x − σ0·ε (ε-prediction), the Euler step
  x1 = x + (σ1 − σ0)·(x − D)/σ0 = x + (σ1 − σ0)·ε = 2 − 14.58547·1.56827 ≈ −20.874.

Conditioning strength (ComfyUI's rule: the x0 estimates of entries on one side are averaged
weighted by their strength; one entry alone is divided by its own weight, so strength alone changes
nothing): two positive entries with embeddings c1, c2 and strengths a, b give the conditional
ε = A·x_in + (a·c1 + b·c2)/(a + b).

Tolerance: float32 arithmetic on numbers of size ~20, so 1e-4 relative; every wrong formula the
test guards against (cond + cfg·(cond − uncond), cfg·cond, unweighted averages, strength
multiplying the estimate) moves the result by more than 0.1.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.conditioning import ConditioningCombine
from latentgraph.nodes.conditioning_nodes import ConditioningSetAreaStrength
from latentgraph.nodes.sampling.ksampler_nodes import KSamplerAdvanced

from tiny_sd import make_ctx

A = 0.5
Z = 2.0
SD1 = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000}


def sd1_sigmas_by_hand() -> tuple[float, float]:
    """(σ at t=999, σ at t=0) from SD1's scaled-linear betas, in plain Python floats."""
    lo, hi = math.sqrt(0.00085), math.sqrt(0.012)
    betas = [(lo + (hi - lo) * i / 999) ** 2 for i in range(1000)]
    alpha_bar = 1.0
    for beta in betas:
        alpha_bar *= 1.0 - beta
    return math.sqrt((1 - alpha_bar) / alpha_bar), math.sqrt(betas[0] / (1 - betas[0]))


class StandInUNet:
    """The UNet2DConditionModel call contract; ε = A·x_in + mean(encoder_hidden_states[row])."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(cross_attention_dim=8, in_channels=4, addition_embed_type=None,
                                      time_cond_proj_dim=None)
        self.timesteps: list[float] = []

    def __call__(self, x, t, encoder_hidden_states=None, added_cond_kwargs=None, timestep_cond=None, return_dict=True):
        self.timesteps += [float(v) for v in t.flatten()]
        mean = encoder_hidden_states.float().mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
        return (A * x.float() + mean,)


def stand_in_model() -> DiffusionModel:
    return DiffusionModel(unet=StandInUNet(), scheduler_config=dict(SD1), arch="sd1", device=torch.device("cpu"),
                          dtype=torch.float32, info={"scaling_factor": 1.0, "latent_downscale": 8, "latent_channels": 4})


def conditioning(value: float) -> list:
    return [[torch.full((1, 77, 8), value), {}]]


def one_step(model: DiffusionModel, positive, negative, cfg: float) -> torch.Tensor:
    ctx, _ = make_ctx(class_type="KSamplerAdvanced")
    latent = {"samples": torch.full((1, 4, 8, 8), Z)}
    (out,) = KSamplerAdvanced().execute(
        ctx, model, "disable", 0, 2, cfg, "euler", "normal", positive, negative, latent,
        start_at_step=0, end_at_step=1, return_with_leftover_noise="enable",
    )
    return out["samples"]


def expected_step(eps: float) -> float:
    sigma0, sigma1 = sd1_sigmas_by_hand()
    return Z + (sigma1 - sigma0) * eps


def x_in() -> float:
    sigma0, _ = sd1_sigmas_by_hand()
    return Z / math.sqrt(sigma0**2 + 1)


def test_the_hand_worked_sigmas():
    sigma0, sigma1 = sd1_sigmas_by_hand()
    assert sigma0 == pytest.approx(14.6146, abs=1e-4) and sigma1 == pytest.approx(0.029167, abs=1e-6)


def test_one_cfg_step_is_uncond_plus_cfg_times_the_difference():
    model = stand_in_model()
    out = one_step(model, conditioning(0.3), conditioning(-0.1), cfg=4.0)
    eps_c, eps_u = A * x_in() + 0.3, A * x_in() - 0.1
    want = expected_step(eps_u + 4.0 * (eps_c - eps_u))
    assert want == pytest.approx(-20.874, abs=1e-3)  # the worked example of the docstring
    assert torch.allclose(out, torch.full_like(out, want), rtol=1e-4), f"got {float(out.flatten()[0])}, want {want}"
    # The UNet ran once per side at the first step only, at the timestep of σ0 (999).
    assert model.unet.timesteps == [pytest.approx(999.0, abs=1e-3)] * 2


def test_cfg_1_follows_the_positive_alone_and_skips_the_negative():
    model = stand_in_model()
    out = one_step(model, conditioning(0.3), conditioning(-0.1), cfg=1.0)
    want = expected_step(A * x_in() + 0.3)
    assert torch.allclose(out, torch.full_like(out, want), rtol=1e-4)
    assert len(model.unet.timesteps) == 1  # no unconditional pass at cfg 1


@pytest.mark.parametrize("a, b", [(3.0, 1.0), (1.0, 3.0), (0.5, 2.0)])
def test_strengths_weight_the_average_of_two_entries(a, b):
    ctx, _ = make_ctx()
    (first,) = ConditioningSetAreaStrength().execute(ctx, conditioning(0.3), strength=a)
    (second,) = ConditioningSetAreaStrength().execute(ctx, conditioning(-0.5), strength=b)
    (positive,) = ConditioningCombine().execute(ctx, first, second)
    out = one_step(stand_in_model(), positive, conditioning(0.0), cfg=1.0)
    want = expected_step(A * x_in() + (a * 0.3 + b * -0.5) / (a + b))
    assert torch.allclose(out, torch.full_like(out, want), rtol=1e-4), f"got {float(out.flatten()[0])}, want {want}"


def test_strength_of_a_lone_entry_changes_nothing():
    """ComfyUI divides by the summed weights, so one entry's strength cancels (a user who sets
    strength on a single prompt sees no change — as in ComfyUI)."""
    ctx, _ = make_ctx()
    (weak,) = ConditioningSetAreaStrength().execute(ctx, conditioning(0.3), strength=0.25)
    out = one_step(stand_in_model(), weak, conditioning(0.0), cfg=1.0)
    want = expected_step(A * x_in() + 0.3)
    assert torch.allclose(out, torch.full_like(out, want), rtol=1e-4)
