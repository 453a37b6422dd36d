"""Sampler and noise-schedule definitions: the names a user picks, mapped onto diffusers schedulers.

A sampler (``euler``, ``dpmpp_2m`` …) is a diffusers scheduler class plus options; a schedule
(``normal``, ``karras`` …) is a set of config overrides that spaces the steps. Both are plain
frozen records registered through the ``register_samplers`` / ``register_schedulers`` hooks, so a
plugin can add its own. :func:`build_schedule` makes a FRESH scheduler for every run: diffusers
schedulers keep step state (step index, multistep history) and must never be shared.

Noise levels are expressed as k-diffusion sigmas, σ = sqrt((1 − ᾱ) / ᾱ), whatever the scheduler:
that one number lets latents move between samplers (see ``latentgraph.nodes.denoise``).
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

#: Keys of a checkpoint's scheduler config that describe how the model was TRAINED. Everything
#: else in such a config (solver choice, karras flags, interpolation) is a sampling choice that
#: must not leak from, say, a DPM++ karras config into an "euler normal" run.
TRAINING_KEYS = frozenset(
    {
        "num_train_timesteps",
        "beta_start",
        "beta_end",
        "beta_schedule",
        "trained_betas",
        "prediction_type",
        "steps_offset",
        "timestep_spacing",
        "rescale_betas_zero_snr",
        "clip_sample",
        "clip_sample_range",
        "set_alpha_to_one",
        "sample_max_value",
        "thresholding",
        "dynamic_thresholding_ratio",
    }
)


def _frozen(**options: Any) -> Mapping[str, Any]:
    return MappingProxyType(dict(options))


@dataclass(frozen=True)
class SamplerDef:
    """A sampling algorithm: which diffusers scheduler runs it and with which options."""

    name: str
    #: ``"EulerDiscreteScheduler"`` (looked up in ``diffusers``) or ``"package.module:Class"``.
    scheduler_class: str
    options: Mapping[str, Any] = field(default_factory=_frozen)
    #: True when the scheduler's sample is ``x0 + σ·ε`` (k-diffusion style, ``init_noise_sigma``
    #: > 1); False when it is the variance-preserving ``sqrt(ᾱ)·x0 + sqrt(1 − ᾱ)·ε``.
    sigma_space: bool = True
    #: Draws fresh noise at every step (ancestral / SDE); seeded from the run's generator.
    stochastic: bool = False
    #: Config key that takes the seed, for schedulers that seed their own noise (DPMSolverSDE).
    seed_option: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _frozen(**self.options))

    def scheduler_type(self) -> type:
        module_name, _, class_name = self.scheduler_class.rpartition(":")
        module = importlib.import_module(module_name or "diffusers")
        return getattr(module, class_name)

    def config_options(self) -> frozenset[str]:
        """Config keys the scheduler class accepts (read from its constructor)."""
        return frozenset(inspect.signature(self.scheduler_type().__init__).parameters)


@dataclass(frozen=True)
class ScheduleDef:
    """How the steps are spaced: config overrides applied on top of the sampler's."""

    name: str
    options: Mapping[str, Any] = field(default_factory=_frozen)
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _frozen(**self.options))


class ScheduleUnsupported(ValueError):
    """The sampler's scheduler class has no such option (e.g. karras sigmas for DDIM)."""


def _sampler(name: str, cls: str, *, vp: bool = False, stochastic: bool = False, seed_option: str | None = None,
             description: str = "", **options: Any) -> SamplerDef:
    return SamplerDef(name, cls, _frozen(**options), sigma_space=not vp, stochastic=stochastic,
                      seed_option=seed_option, description=description)


SAMPLERS: tuple[SamplerDef, ...] = (
    _sampler("euler", "EulerDiscreteScheduler", description="Euler (first order), deterministic"),
    _sampler("euler_ancestral", "EulerAncestralDiscreteScheduler", stochastic=True,
             description="Euler with fresh noise each step"),
    _sampler("heun", "HeunDiscreteScheduler", description="Heun (second order, two model calls per step)"),
    _sampler("dpm_2", "KDPM2DiscreteScheduler", description="DPM-Solver-2 (two model calls per step)"),
    _sampler("dpm_2_ancestral", "KDPM2AncestralDiscreteScheduler", stochastic=True,
             description="DPM-Solver-2 with fresh noise each step"),
    _sampler("lms", "LMSDiscreteScheduler", description="linear multistep"),
    _sampler("dpmpp_2m", "DPMSolverMultistepScheduler", vp=True, algorithm_type="dpmsolver++", solver_order=2,
             description="DPM-Solver++(2M)"),
    _sampler("dpmpp_2m_sde", "DPMSolverMultistepScheduler", vp=True, stochastic=True,
             algorithm_type="sde-dpmsolver++", solver_order=2, description="DPM-Solver++(2M) SDE"),
    _sampler("dpmpp_sde", "DPMSolverSDEScheduler", stochastic=True, seed_option="noise_sampler_seed",
             description="DPM-Solver++ SDE (Brownian-tree noise seeded from the seed; needs torchsde)"),
    _sampler("ddim", "DDIMScheduler", vp=True, description="DDIM, eta 0"),
    _sampler("ddpm", "DDPMScheduler", vp=True, stochastic=True, description="DDPM ancestral sampling"),
    _sampler("uni_pc", "UniPCMultistepScheduler", vp=True, description="UniPC multistep"),
    _sampler("lcm", "LCMScheduler", vp=True, stochastic=True,
             description="latent consistency (for LCM-distilled models, few steps, cfg ≈ 1)"),
)

SCHEDULES: tuple[ScheduleDef, ...] = (
    ScheduleDef("normal", _frozen(), "the model's own spacing (as diffusers' pipelines use it)"),
    ScheduleDef("karras", _frozen(use_karras_sigmas=True), "Karras et al. sigmas (denser near the end)"),
    ScheduleDef("exponential", _frozen(use_exponential_sigmas=True), "sigmas evenly spaced in log σ"),
    ScheduleDef("sgm_uniform", _frozen(timestep_spacing="trailing"), "uniform timesteps ending before 0"),
    ScheduleDef("simple", _frozen(timestep_spacing="trailing"), "every n-th training timestep from the top"),
    ScheduleDef("ddim_uniform", _frozen(timestep_spacing="leading", steps_offset=1),
                "DDIM's strided timesteps starting at 1"),
    ScheduleDef("beta", _frozen(use_beta_sigmas=True), "beta-distribution sigmas (needs scipy)"),
)


def sampler_names(settings: Any, registry: Any) -> list[str]:
    """COMBO choices of ``sampler_name``: every registered sampler."""
    return list(registry.samplers) or [s.name for s in SAMPLERS]


def schedule_names(settings: Any, registry: Any) -> list[str]:
    return list(registry.schedulers) or [s.name for s in SCHEDULES]


def supported_schedules(sampler: SamplerDef, schedules: Mapping[str, ScheduleDef]) -> list[str]:
    accepted = sampler.config_options()
    return [name for name, s in schedules.items() if set(s.options) <= accepted]


def make_scheduler(sampler: SamplerDef, schedule: ScheduleDef, model_config: Mapping[str, Any], seed: int) -> Any:
    """A fresh diffusers scheduler for one run: training config + sampler + schedule options."""
    cls = sampler.scheduler_type()
    accepted = sampler.config_options()
    missing = sorted(set(schedule.options) - accepted)
    if missing:
        raise ScheduleUnsupported(
            f"schedule '{schedule.name}' needs {', '.join(missing)}, which diffusers' {cls.__name__} "
            f"(sampler '{sampler.name}') does not have"
        )
    config = {k: v for k, v in model_config.items() if k in TRAINING_KEYS and k in accepted}
    config.update(sampler.options)
    config.update(schedule.options)
    if sampler.seed_option:
        config[sampler.seed_option] = int(seed)
    return cls.from_config(config)


@dataclass
class Schedule:
    """A scheduler with its timesteps set for ``total_steps``, and the noise level at each step.

    A *step* is what a user counts (``steps``, ``start_at_step``); second-order schedulers run
    ``order`` model calls per step, so step ``k`` starts at timestep index ``k * order``.
    """

    scheduler: Any
    sampler: SamplerDef
    schedule: ScheduleDef
    total_steps: int

    @property
    def order(self) -> int:
        return int(getattr(self.scheduler, "order", 1))

    @property
    def timesteps(self) -> torch.Tensor:
        return self.scheduler.timesteps

    def index_of_step(self, step: int) -> int:
        return min(step * self.order, len(self.timesteps))

    def sigma_at_index(self, index: int) -> float:
        """k-diffusion σ of the sample at timestep index ``index`` (0 past the end).

        Exact where a step starts (``index % order == 0``); the midpoint evaluations of
        second-order schedulers use internal sigmas this does not report.
        """
        if index >= len(self.timesteps):
            return 0.0
        sigmas = getattr(self.scheduler, "sigmas", None)
        if sigmas is not None and len(sigmas) > index:
            return float(sigmas[index])
        alpha_bar = float(self.scheduler.alphas_cumprod[int(self.timesteps[index])])
        return math.sqrt((1.0 - alpha_bar) / alpha_bar)

    def sigma_at_step(self, step: int) -> float:
        """Noise level at the start of step ``step``; 0 at ``total_steps`` (a clean latent)."""
        return 0.0 if step >= self.total_steps else self.sigma_at_index(self.index_of_step(step))

    def find_step(self, sigma: float) -> int | None:
        """The step whose starting noise level is ``sigma`` (relative tolerance 1e-4), if any."""
        for step in range(self.total_steps + 1):
            if math.isclose(self.sigma_at_step(step), sigma, rel_tol=1e-4, abs_tol=1e-6):
                return step
        return None


def build_schedule(
    sampler: SamplerDef,
    schedule: ScheduleDef,
    model_config: Mapping[str, Any],
    total_steps: int,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Schedule:
    scheduler = make_scheduler(sampler, schedule, model_config, seed)
    scheduler.set_timesteps(int(total_steps), device=device)
    return Schedule(scheduler, sampler, schedule, int(total_steps))
