"""SIGMAS nodes: schedules as values, and the small operations ComfyUI users chain on them.

A SIGMAS value is a 1-D float32 tensor of noise levels, usually descending to 0 (one step per
pair). Scheduler nodes make one; SplitSigmas & co. cut or reshape it; SamplerCustom runs it. An
empty SIGMAS is legal, as in ComfyUI: sampling over it returns the latent unchanged (denoise 0,
a split past the end).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.sampling import schedules
from latentgraph.nodes.sampling.ksampler_nodes import lookup_schedule, schedule_names
from latentgraph.nodes.sampling.run import check_model

SCHEDULERS = "sampling/custom_sampling/schedulers"
SIGMA_OPS = "sampling/custom_sampling/sigmas"
#: ComfyUI's float widgets that keep every digit typed (no rounding to ``step``).
EXACT = {"round": False}


def check_sigmas(value: Any, name: str = "sigmas") -> Tensor:
    """A SIGMAS input as a 1-D float32 CPU tensor of finite values."""
    if not isinstance(value, Tensor):
        raise NodeInputError(name, f"expected SIGMAS (a 1-D tensor of noise levels), got {type(value).__name__}")
    if value.ndim != 1:
        raise NodeInputError(name, f"expected SIGMAS (a 1-D tensor of noise levels), got shape {tuple(value.shape)}")
    if not torch.isfinite(value).all():
        raise NodeInputError(name, "contains NaN or infinite noise levels")
    return value.detach().float().cpu()


def _steps_in(name: str = "steps", default: int = 20, max: int = 10000) -> Any:
    return In(name, "INT", default=default, min=1, max=max)


def _range_inputs() -> tuple[Any, ...]:
    """σ_max / σ_min of the SD1 family by default, as ComfyUI's scheduler nodes have them."""
    return (
        In("sigma_max", "FLOAT", default=14.614642, min=0.0, max=5000.0, step=0.01, editor_options=EXACT),
        In("sigma_min", "FLOAT", default=0.0291675, min=0.0, max=5000.0, step=0.01, editor_options=EXACT),
    )


DENOISE = In("denoise", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01)


# -- schedulers ----------------------------------------------------------------------------------------
class BasicScheduler(Node):
    """A named schedule for the model, as KSampler computes it (denoise < 1 keeps its tail)."""

    spec = NodeSpec(
        name="BasicScheduler",
        category=SCHEDULERS,
        inputs=(In("model", "MODEL"), In("scheduler", "COMBO", choices=schedule_names, default="simple"),
                _steps_in(), DENOISE),
        outputs=(Out("SIGMAS"),),
    )

    def execute(self, ctx, model, scheduler, steps, denoise):
        model = check_model(model)
        schedule = lookup_schedule(ctx, scheduler)
        return (schedules.schedule_sigmas(schedule, model.model_sampling, int(steps), denoise=float(denoise)),)


class KarrasScheduler(Node):
    """σ^(1/ρ) evenly spaced between σ_max and σ_min (Karras et al. 2022), then 0."""

    spec = NodeSpec(
        name="KarrasScheduler",
        category=SCHEDULERS,
        inputs=(_steps_in(), *_range_inputs(),
                In("rho", "FLOAT", default=7.0, min=0.0, max=100.0, step=0.01, editor_options=EXACT)),
        outputs=(Out("SIGMAS"),),
    )

    def execute(self, ctx, steps, sigma_max, sigma_min, rho):
        return (schedules.karras_sigmas(int(steps), float(sigma_min), float(sigma_max), float(rho)),)


class ExponentialScheduler(Node):
    """log σ evenly spaced between σ_max and σ_min, then 0."""

    spec = NodeSpec(name="ExponentialScheduler", category=SCHEDULERS, inputs=(_steps_in(), *_range_inputs()),
                    outputs=(Out("SIGMAS"),))

    def execute(self, ctx, steps, sigma_max, sigma_min):
        return (schedules.exponential_sigmas(int(steps), float(sigma_min), float(sigma_max)),)


class PolyexponentialScheduler(Node):
    """log σ spaced by ramp^ρ between σ_max and σ_min (ρ = 1 is exponential), then 0."""

    spec = NodeSpec(
        name="PolyexponentialScheduler",
        category=SCHEDULERS,
        inputs=(_steps_in(), *_range_inputs(),
                In("rho", "FLOAT", default=1.0, min=0.0, max=100.0, step=0.01, editor_options=EXACT)),
        outputs=(Out("SIGMAS"),),
    )

    def execute(self, ctx, steps, sigma_max, sigma_min, rho):
        return (schedules.polyexponential_sigmas(int(steps), float(sigma_min), float(sigma_max), float(rho)),)


class LaplaceScheduler(Node):
    """log σ at Laplace(μ, β) quantiles, clamped to [σ_min, σ_max] (Hang et al. 2024), then 0."""

    spec = NodeSpec(
        name="LaplaceScheduler",
        category=SCHEDULERS,
        inputs=(_steps_in(), *_range_inputs(),
                In("mu", "FLOAT", default=0.0, min=-10.0, max=10.0, step=0.1, editor_options=EXACT),
                In("beta", "FLOAT", default=0.5, min=0.0, max=10.0, step=0.1, editor_options=EXACT)),
        outputs=(Out("SIGMAS"),),
    )

    def execute(self, ctx, steps, sigma_max, sigma_min, mu, beta):
        return (schedules.laplace_sigmas(int(steps), float(sigma_min), float(sigma_max), float(mu), float(beta)),)


class VPScheduler(Node):
    """The continuous VP SDE's σ(t) at evenly spaced t ∈ [1, eps_s] (Song et al. 2021), then 0."""

    spec = NodeSpec(
        name="VPScheduler",
        category=SCHEDULERS,
        inputs=(_steps_in(),
                In("beta_d", "FLOAT", default=19.9, min=0.0, max=5000.0, step=0.01, editor_options=EXACT),
                In("beta_min", "FLOAT", default=0.1, min=0.0, max=5000.0, step=0.01, editor_options=EXACT),
                In("eps_s", "FLOAT", default=0.001, min=0.0, max=1.0, step=0.0001, editor_options=EXACT)),
        outputs=(Out("SIGMAS"),),
    )

    def execute(self, ctx, steps, beta_d, beta_min, eps_s):
        return (schedules.vp_sigmas(int(steps), float(beta_d), float(beta_min), float(eps_s)),)


class BetaSamplingScheduler(Node):
    """The model's timesteps at Beta(α, β) quantiles (Lee et al. 2024): the beta schedule, tunable."""

    spec = NodeSpec(
        name="BetaSamplingScheduler",
        category=SCHEDULERS,
        inputs=(In("model", "MODEL"), _steps_in(),
                In("alpha", "FLOAT", default=0.6, min=0.0, max=50.0, step=0.01, editor_options=EXACT),
                In("beta", "FLOAT", default=0.6, min=0.0, max=50.0, step=0.01, editor_options=EXACT)),
        outputs=(Out("SIGMAS"),),
    )

    def execute(self, ctx, model, steps, alpha, beta):
        model = check_model(model)
        return (schedules.beta_sigmas(model.model_sampling, int(steps), float(alpha), float(beta)),)


class SDTurboScheduler(Node):
    """SD-/SDXL-Turbo's 1–10 steps on the timesteps it was distilled on (999, 899, …)."""

    spec = NodeSpec(
        name="SDTurboScheduler",
        category=SCHEDULERS,
        inputs=(In("model", "MODEL"), In("steps", "INT", default=1, min=1, max=10),
                In("denoise", "FLOAT", default=1.0, min=0, max=1.0, step=0.01)),
        outputs=(Out("SIGMAS"),),
    )

    def execute(self, ctx, model, steps, denoise):
        model = check_model(model)
        return (schedules.sd_turbo(model.model_sampling, int(steps), float(denoise)),)


class AlignYourStepsScheduler(Node):
    """NVIDIA's Align Your Steps σ for SD1, SDXL or SVD (any step count, interpolated)."""

    spec = NodeSpec(
        name="AlignYourStepsScheduler",
        category=SCHEDULERS,
        inputs=(In("model_type", "COMBO", choices=tuple(schedules.AYS_NOISE_LEVELS), default="SD1"),
                _steps_in(default=10), DENOISE),
        outputs=(Out("SIGMAS"),),
    )

    def execute(self, ctx, model_type, steps, denoise):
        if model_type not in schedules.AYS_NOISE_LEVELS:
            raise NodeInputError("model_type", f"unknown model type {model_type!r}; known: SD1, SDXL, SVD")
        return (schedules.align_your_steps(model_type, int(steps), float(denoise)),)


class GITSScheduler(Node):
    """GITS σ (SD1 noise levels): searched step placements; ``coeff`` trades early for late steps."""

    spec = NodeSpec(
        name="GITSScheduler",
        category=SCHEDULERS,
        inputs=(In("coeff", "FLOAT", default=1.20, min=0.80, max=1.50, step=0.05),
                In("steps", "INT", default=10, min=2, max=1000), DENOISE),
        outputs=(Out("SIGMAS"),),
    )

    def execute(self, ctx, coeff, steps, denoise):
        known = schedules.gits_coefficients()
        if round(float(coeff), 2) not in known:
            raise NodeInputError("coeff", f"{coeff} has no GITS table; use a multiple of 0.05 from {known[0]} to {known[-1]}")
        return (schedules.gits(float(coeff), int(steps), float(denoise)),)


# -- operations on SIGMAS ------------------------------------------------------------------------------
class SplitSigmas(Node):
    """Cut a schedule at a step: high = steps before it, low = steps from it (they share σ[step])."""

    spec = NodeSpec(
        name="SplitSigmas",
        category=SIGMA_OPS,
        inputs=(In("sigmas", "SIGMAS"), In("step", "INT", default=0, min=0, max=10000)),
        outputs=(Out("SIGMAS", "high_sigmas"), Out("SIGMAS", "low_sigmas")),
    )

    def execute(self, ctx, sigmas, step):
        sigmas = check_sigmas(sigmas)
        return (sigmas[: int(step) + 1], sigmas[int(step):])


class SplitSigmasDenoise(Node):
    """Cut a schedule so that low keeps the last ``denoise`` fraction of its steps."""

    spec = NodeSpec(
        name="SplitSigmasDenoise",
        category=SIGMA_OPS,
        inputs=(In("sigmas", "SIGMAS"), DENOISE),
        outputs=(Out("SIGMAS", "high_sigmas"), Out("SIGMAS", "low_sigmas")),
    )

    def execute(self, ctx, sigmas, denoise):
        sigmas = check_sigmas(sigmas)
        low_steps = round(max(sigmas.shape[-1] - 1, 0) * float(denoise))
        # As ComfyUI slices: low_steps = 0 leaves high empty and low the last σ alone.
        return (sigmas[:-low_steps], sigmas[-(low_steps + 1):])


class FlipSigmas(Node):
    """Reverse a schedule (for unsampling: clean → noisy); a leading 0 becomes 0.0001."""

    spec = NodeSpec(name="FlipSigmas", category=SIGMA_OPS, inputs=(In("sigmas", "SIGMAS"),), outputs=(Out("SIGMAS"),))

    def execute(self, ctx, sigmas):
        sigmas = check_sigmas(sigmas)
        if sigmas.numel() == 0:
            return (sigmas,)
        flipped = sigmas.flip(0)
        if flipped[0] == 0:
            flipped[0] = 0.0001  # a run cannot start at σ = 0
        return (flipped,)


class SetFirstSigma(Node):
    """Replace the starting σ (e.g. a higher one for more variation)."""

    spec = NodeSpec(
        name="SetFirstSigma",
        category=SIGMA_OPS,
        inputs=(In("sigmas", "SIGMAS"),
                In("sigma", "FLOAT", default=136.0, min=0.0, max=20000.0, step=0.001, editor_options=EXACT)),
        outputs=(Out("SIGMAS"),),
    )

    def execute(self, ctx, sigmas, sigma):
        sigmas = check_sigmas(sigmas).clone()
        if sigmas.numel() == 0:
            raise NodeInputError("sigmas", "is empty: there is no first σ to set")
        sigmas[0] = float(sigma)
        return (sigmas,)


_SPACINGS = {
    "linear": lambda x: x,
    "cosine": lambda x: torch.sin(x * math.pi / 2),
    "sine": lambda x: 1 - torch.cos(x * math.pi / 2),
}


class ExtendIntermediateSigmas(Node):
    """Split every step whose starting σ lies in [end_at_sigma, start_at_sigma] into ``steps``
    smaller ones (start_at_sigma −1 = no upper bound); ``spacing`` places the new σ in between."""

    spec = NodeSpec(
        name="ExtendIntermediateSigmas",
        category=SIGMA_OPS,
        inputs=(
            In("sigmas", "SIGMAS"),
            In("steps", "INT", default=2, min=1, max=100),
            In("start_at_sigma", "FLOAT", default=-1.0, min=-1.0, max=20000.0, step=0.01, editor_options=EXACT),
            In("end_at_sigma", "FLOAT", default=12.0, min=0.0, max=20000.0, step=0.01, editor_options=EXACT),
            In("spacing", "COMBO", choices=tuple(_SPACINGS), default="linear"),
        ),
        outputs=(Out("SIGMAS"),),
    )

    def execute(self, ctx, sigmas, steps, start_at_sigma, end_at_sigma, spacing):
        sigmas = check_sigmas(sigmas)
        if spacing not in _SPACINGS:
            raise NodeInputError("spacing", f"unknown spacing {spacing!r}; known: {', '.join(_SPACINGS)}")
        upper = math.inf if start_at_sigma < 0 else float(start_at_sigma)
        fractions = _SPACINGS[spacing](torch.linspace(0, 1, int(steps) + 1)[1:-1])
        out: list[float] = []
        for current, following in zip(sigmas[:-1], sigmas[1:]):
            out.append(float(current))
            if float(end_at_sigma) <= float(current) <= upper:
                out.extend((fractions * (following - current) + current).tolist())
        if sigmas.numel():
            out.append(float(sigmas[-1]))
        return (torch.FloatTensor(out),)


class SamplingPercentToSigma(Node):
    """σ at a fraction of the model's run (what conditioning start/end percents compare with)."""

    spec = NodeSpec(
        name="SamplingPercentToSigma",
        category=SIGMA_OPS,
        inputs=(
            In("model", "MODEL"),
            In("sampling_percent", "FLOAT", default=0.0, min=0.0, max=1.0, step=0.0001),
            In("return_actual_sigma", "BOOLEAN", default=False,
               tooltip="Return the actual sigma value instead of the value used for interval checks.\n"
                       "This only affects results at 0.0 and 1.0."),
        ),
        outputs=(Out("FLOAT", "sigma_value"),),
    )

    def execute(self, ctx, model, sampling_percent, return_actual_sigma):
        ms = check_model(model).model_sampling
        percent = float(sampling_percent)
        value = ms.percent_to_sigma(percent)
        if return_actual_sigma:  # the interval checks use ∞-like / 0 at the ends; these are real σ
            if percent == 0.0:
                value = float(ms.sigma_max)
            elif percent == 1.0:
                value = float(ms.sigma_min)
        return (float(value),)


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


class ManualSigmas(Node):
    """A schedule typed by hand: numbers separated by commas or spaces."""

    spec = NodeSpec(
        name="ManualSigmas",
        category="_for_testing/custom_sampling",
        inputs=(In("sigmas", "STRING", default="1, 0.5"),),
        outputs=(Out("SIGMAS"),),
    )

    def execute(self, ctx, sigmas):
        values = [float(v) for v in _NUMBER.findall(str(sigmas))]
        if not values:
            raise NodeInputError("sigmas", f"no numbers in {sigmas!r}: write noise levels like '14.6, 7, 3, 0'")
        return (torch.FloatTensor(values),)


NODES = [
    BasicScheduler, KarrasScheduler, ExponentialScheduler, PolyexponentialScheduler, LaplaceScheduler, VPScheduler,
    BetaSamplingScheduler, SDTurboScheduler, AlignYourStepsScheduler, GITSScheduler,
    SplitSigmas, SplitSigmasDenoise, FlipSigmas, SetFirstSigma, ExtendIntermediateSigmas, SamplingPercentToSigma,
    ManualSigmas,
]
