"""Schedules: which noise levels a run visits. ``(model_sampling, steps) → sigmas`` (steps + 1
values, descending, the last 0).

The nine are ComfyUI's, each a published or widely used spacing. Plugins add their own
:class:`ScheduleDef` through ``register_schedulers``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from latentgraph.nodes.sampling.model_sampling import ModelSampling

ScheduleFn = Callable[[ModelSampling, int], Tensor]


@dataclass(frozen=True)
class ScheduleDef:
    name: str
    function: ScheduleFn
    description: str = ""

    def sigmas(self, model_sampling: ModelSampling, steps: int) -> Tensor:
        return self.function(model_sampling, int(steps)).float()


def _append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


# -- spacings in σ -----------------------------------------------------------------------------------
def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022, eq. 5: σ^(1/ρ) evenly spaced, dense near σ_min."""
    ramp = torch.linspace(0, 1, n)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((max_inv + ramp * (min_inv - max_inv)) ** rho)


def exponential_sigmas(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """log σ evenly spaced."""
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp())


def polyexponential_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> Tensor:
    """log σ spaced by a power ``rho`` of the ramp (rho 1 = exponential)."""
    ramp = torch.linspace(1, 0, n) ** rho
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def vp_sigmas(n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3) -> Tensor:
    """The continuous VP SDE's σ(t) at evenly spaced t (Song et al. 2021)."""
    t = torch.linspace(1, eps_s, n)
    return _append_zero(torch.sqrt(torch.exp(beta_d * t**2 / 2 + beta_min * t) - 1))


def laplace_sigmas(n: int, sigma_min: float, sigma_max: float, mu: float = 0.0, beta: float = 0.5) -> Tensor:
    """log σ at the quantiles of a Laplace distribution (Hang et al. 2024), clamped to the range."""
    eps = 1e-5  # keeps log() finite at the ends
    x = torch.linspace(0, 1, n)
    lmb = mu - beta * torch.sign(0.5 - x) * torch.log(1 - 2 * torch.abs(0.5 - x) * (1 - eps))
    return _append_zero(torch.clamp(torch.exp(lmb), min=sigma_min, max=sigma_max))


# -- the nine named schedules ------------------------------------------------------------------------
def simple(ms: ModelSampling, steps: int) -> Tensor:
    """Every (T/steps)-th trained σ from the top."""
    stride = ms.num_timesteps / steps
    sigs = [float(ms.sigmas[-(1 + int(i * stride))]) for i in range(steps)]
    return torch.FloatTensor(sigs + [0.0])


def ddim_uniform(ms: ModelSampling, steps: int) -> Tensor:
    """DDIM's strided timesteps (Song et al. 2021): every (T // steps)-th from t = 1 upward."""
    start = 1
    if math.isclose(float(ms.sigmas[start]), 0, abs_tol=0.00001):
        steps += 1
        sigs: list[float] = []
    else:
        sigs = [0.0]
    stride = max(ms.num_timesteps // steps, 1)
    sigs += [float(ms.sigmas[t]) for t in range(start, ms.num_timesteps, stride)]
    return torch.FloatTensor(sigs[::-1])


def _linear_in_t(ms: ModelSampling, steps: int, sgm: bool) -> Tensor:
    start, end = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
    append_zero = True
    if sgm:  # SGM / SDXL-Turbo style: steps + 1 points, the last (t = end) dropped
        timesteps = torch.linspace(start, end, steps + 1)[:-1]
    else:
        if math.isclose(float(ms.sigma(end)), 0, abs_tol=0.00001):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(start, end, steps)
    sigs = [float(ms.sigma(t)) for t in timesteps]
    return torch.FloatTensor(sigs + ([0.0] if append_zero else []))


def normal(ms: ModelSampling, steps: int) -> Tensor:
    """Timesteps evenly spaced from the top trained step to the bottom one, then σ = 0."""
    return _linear_in_t(ms, steps, sgm=False)


def sgm_uniform(ms: ModelSampling, steps: int) -> Tensor:
    """Timesteps evenly spaced over [top, bottom) (Stability's SGM samplers)."""
    return _linear_in_t(ms, steps, sgm=True)


def karras(ms: ModelSampling, steps: int) -> Tensor:
    return karras_sigmas(steps, float(ms.sigma_min), float(ms.sigma_max))


def exponential(ms: ModelSampling, steps: int) -> Tensor:
    return exponential_sigmas(steps, float(ms.sigma_min), float(ms.sigma_max))


def beta_sigmas(ms: ModelSampling, steps: int, alpha: float = 0.6, beta: float = 0.6) -> Tensor:
    """Timesteps at the quantiles of a Beta(α, β) distribution (Lee et al. 2024), repeats dropped."""
    import scipy.stats

    last = ms.num_timesteps - 1
    ts = 1 - np.linspace(0, 1, steps, endpoint=False)
    ts = np.rint(scipy.stats.beta.ppf(ts, alpha, beta) * last)
    sigs: list[float] = []
    previous = -1.0
    for t in ts:
        if t != previous:
            sigs.append(float(ms.sigmas[int(t)]))
        previous = t
    return torch.FloatTensor(sigs + [0.0])


def beta(ms: ModelSampling, steps: int) -> Tensor:
    return beta_sigmas(ms, steps)


def linear_quadratic(ms: ModelSampling, steps: int, threshold_noise: float = 0.025, linear_steps: int | None = None) -> Tensor:
    """Linear then quadratic in σ/σ_max (Movie Gen, Polyak et al. 2024): half the steps spend the
    first ``threshold_noise`` of the range, the rest a quadratic to the top."""
    if steps == 1:
        schedule = [1.0, 0.0]
    else:
        if linear_steps is None:
            linear_steps = steps // 2
        linear = [i * threshold_noise / linear_steps for i in range(linear_steps)]
        step_diff = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        quad_coef = step_diff / (linear_steps * quadratic_steps**2)
        lin_coef = threshold_noise / linear_steps - 2 * step_diff / (quadratic_steps**2)
        const = quad_coef * (linear_steps**2)
        quadratic = [quad_coef * (i**2) + lin_coef * i + const for i in range(linear_steps, steps)]
        schedule = [1.0 - v for v in linear + quadratic + [1.0]]
    return torch.FloatTensor(schedule) * ms.sigma_max.cpu()


def kl_optimal(ms: ModelSampling, steps: int) -> Tensor:
    """The KL-optimal spacing of Sabour et al. 2024: arctan σ evenly spaced."""
    n, sigma_min, sigma_max = steps, float(ms.sigma_min), float(ms.sigma_max)
    idx = torch.arange(n, dtype=torch.float).div_(max(n - 1, 1)) if n > 1 else torch.zeros(1)
    sigmas = idx.new_zeros(n + 1)
    sigmas[:-1] = (idx * math.atan(sigma_min) + (1 - idx) * math.atan(sigma_max)).tan_()
    return sigmas


SCHEDULES: tuple[ScheduleDef, ...] = (
    ScheduleDef("simple", simple, "every n-th trained noise level from the top"),
    ScheduleDef("sgm_uniform", sgm_uniform, "timesteps evenly spaced, the last one left out (SDXL-Turbo)"),
    ScheduleDef("karras", karras, "Karras et al.: dense near the end, good for few steps"),
    ScheduleDef("exponential", exponential, "noise levels evenly spaced in log σ"),
    ScheduleDef("ddim_uniform", ddim_uniform, "DDIM's strided timesteps"),
    ScheduleDef("beta", beta, "timesteps at Beta(0.6, 0.6) quantiles: dense at both ends"),
    ScheduleDef("normal", normal, "timesteps evenly spaced from the top to the bottom (ComfyUI's default)"),
    ScheduleDef("linear_quadratic", linear_quadratic, "linear then quadratic in σ (Movie Gen)"),
    ScheduleDef("kl_optimal", kl_optimal, "arctan σ evenly spaced (Sabour et al.)"),
)


def schedule_sigmas(schedule: ScheduleDef, ms: ModelSampling, steps: int, *, discard_penultimate: bool = False,
                    denoise: float = 1.0) -> Tensor:
    """The sigmas a KSampler runs: ``denoise`` < 1 keeps the last ``steps`` steps of a
    ``steps / denoise``-step schedule; samplers that drop the penultimate σ get one more first."""
    if denoise <= 0.0:
        return torch.FloatTensor([])
    total = steps if denoise > 0.9999 else int(steps / denoise)
    if discard_penultimate:
        sigmas = schedule.sigmas(ms, total + 1)
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    else:
        sigmas = schedule.sigmas(ms, total)
    return sigmas if denoise > 0.9999 else sigmas[-(steps + 1):]
