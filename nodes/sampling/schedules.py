"""Schedules: which noise levels a run visits. ``(model_sampling, steps) → sigmas`` (steps + 1
values, descending, the last 0).

The nine are ComfyUI's, each a published or widely used spacing. Plugins add their own
:class:`ScheduleDef` through ``register_schedulers``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
    return _append_zero(torch.sqrt(torch.special.expm1(beta_d * t**2 / 2 + beta_min * t)))


def laplace_sigmas(n: int, sigma_min: float, sigma_max: float, mu: float = 0.0, beta: float = 0.5) -> Tensor:
    """log σ at the quantiles of a Laplace distribution (Hang et al. 2024), clamped to the range.

    As ComfyUI's LaplaceScheduler: ``n`` values ending at σ_min, no 0 appended."""
    eps = 1e-5  # keeps log() finite at the ends
    x = torch.linspace(0, 1, n)
    lmb = mu - beta * torch.sign(0.5 - x) * torch.log(1 - 2 * torch.abs(0.5 - x) + eps)
    return torch.clamp(torch.exp(lmb), min=sigma_min, max=sigma_max)


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


# -- fixed, published schedules (the custom-sampling scheduler nodes) ------------------------------------
def loglinear_interp(sigmas: Sequence[float], n: int) -> np.ndarray:
    """``n`` values through a descending σ table, linear in log σ over evenly spaced positions
    (how Align Your Steps and GITS stretch their tables to other step counts)."""
    xs = np.linspace(0, 1, len(sigmas))
    ys = np.log(np.asarray(sigmas, dtype=np.float64)[::-1])
    return np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1].copy()


def _from_table(table: Sequence[float], steps: int, denoise: float, *, stretch: bool = True) -> Tensor:
    """``steps`` steps from a published σ table, stretched to steps + 1 values in log σ when it has
    another length (unless ``stretch`` is off); ``denoise`` < 1 keeps the last round(steps·denoise)
    of them (rounded, where BasicScheduler lengthens the schedule instead). Ends at σ = 0 instead
    of the table's smallest σ."""
    if denoise <= 0.0:
        return torch.FloatTensor([])
    total = steps if denoise >= 1.0 else round(steps * denoise)
    sigmas = loglinear_interp(table, steps + 1) if stretch and len(table) != steps + 1 else table
    tail = [float(s) for s in sigmas][-(total + 1):]
    tail[-1] = 0.0
    return torch.FloatTensor(tail)


#: Align Your Steps (Sabour et al. 2024, NVIDIA): 10-step σ optimised per model family, as NVIDIA
#: published them; other step counts interpolate in log σ.
AYS_NOISE_LEVELS: dict[str, tuple[float, ...]] = {
    "SD1": (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582),
    "SDXL": (14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
             0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582),
    "SVD": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}


def align_your_steps(model_type: str, steps: int, denoise: float = 1.0) -> Tensor:
    """AYS σ for ``steps`` steps; ``denoise`` < 1 keeps the last round(steps·denoise) of them."""
    return _from_table(AYS_NOISE_LEVELS[model_type], steps, denoise)


def gits_coefficients() -> tuple[float, ...]:
    return tuple(_GITS_ROWS)


def gits(coeff: float, steps: int, denoise: float = 1.0) -> Tensor:
    """GITS σ (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion Sampling"):
    steps searched on SD1's 100-step uniform-timestep grid for 2–20 steps, per coefficient;
    more than 20 steps interpolate the 20-step row in log σ. ``denoise`` as in AYS."""
    rows = _GITS_ROWS[round(coeff, 2)]
    if steps <= len(rows) + 1:  # as ComfyUI indexes: 1 step reads the 20-step row's tail
        return _from_table([_GITS_GRID[i] for i in rows[steps - 2]], steps, denoise, stretch=False)
    return _from_table([_GITS_GRID[i] for i in rows[-1]], steps, denoise)


def sd_turbo(ms: ModelSampling, steps: int, denoise: float = 1.0) -> Tensor:
    """SD-/SDXL-Turbo's schedule: distilled on timesteps 999, 899, …, 99; ``denoise`` d starts
    10·(1 − d) of them in, then ``steps`` of them and σ = 0."""
    start = 10 - int(10 * denoise)
    timesteps = torch.arange(999, 0, -100)[start:start + steps]
    return _append_zero(ms.sigma(timesteps).float())


#: GITS's chosen σ are points of one grid (SD1's σ at 100 evenly spaced timesteps, as the GITS
#: authors published them); a row lists grid indices, one row per step count 2..20.
_GITS_GRID = (
    14.61464119, 13.76078796, 12.96784878, 12.2308979, 11.54541874, 10.90732002, 10.31284904, 9.75859547,
    9.24142551, 8.75849152, 8.30717278, 7.88507891, 7.49001646, 7.11996698, 6.77309084, 6.44769001, 6.14220476,
    5.85520077, 5.58536053, 5.09240818, 4.86714602, 4.65472794, 4.45427561, 4.26497746, 3.91689563, 3.75677586,
    3.60512662, 3.46139455, 3.32507086, 3.1956799, 3.07277966, 2.95596409, 2.84484982, 2.6383388, 2.54230714,
    2.45070267, 2.36326075, 2.27973175, 2.19988537, 2.12350607, 2.05039096, 1.98035145, 1.91321158, 1.84880662,
    1.78698075, 1.72759056, 1.67050016, 1.61558151, 1.56271636, 1.51179266, 1.46270394, 1.41535246, 1.36964464,
    1.32549286, 1.28281462, 1.24153244, 1.20157266, 1.162866, 1.12534678, 1.08895338, 1.05362725, 1.01931262,
    0.98595673, 0.95350921, 0.92192322, 0.89115214, 0.86115354, 0.83188516, 0.803307, 0.77538133, 0.74807048,
    0.72133851, 0.69515091, 0.66947293, 0.64427125, 0.61951244, 0.59516323, 0.57119018, 0.54755926, 0.52423614,
    0.50118381, 0.4783645, 0.45573691, 0.43325692, 0.41087446, 0.38853383, 0.36617002, 0.34370604, 0.32104823,
    0.29807833, 0.27464288, 0.25053367, 0.22545385, 0.19894916, 0.17026083, 0.13792117, 0.09824532, 0.02916753,
)
_GITS_ROWS: dict[float, tuple[tuple[int, ...], ...]] = {
    0.80: (
        (0, 12, 97), (0, 4, 14, 97), (0, 4, 12, 30, 97), (0, 4, 12, 17, 40, 97), (0, 3, 9, 12, 17, 40, 97),
        (0, 3, 9, 12, 17, 30, 48, 97), (0, 2, 4, 9, 12, 17, 30, 48, 97), (0, 1, 3, 5, 9, 12, 17, 30, 48, 97),
        (0, 1, 2, 3, 5, 9, 12, 17, 30, 48, 97), (0, 1, 2, 3, 5, 8, 10, 12, 17, 30, 48, 97),
        (0, 1, 2, 3, 5, 8, 10, 12, 16, 20, 30, 48, 97), (0, 1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 30, 48, 97),
        (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 30, 48, 97),
        (0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 16, 20, 30, 48, 97),
        (0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 16, 20, 29, 41, 66, 97),
        (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16, 20, 29, 41, 66, 97),
        (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 17, 21, 30, 43, 67, 97),
        (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 17, 21, 30, 43, 67, 97),
        (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 17, 20, 25, 32, 44, 68, 97),
    ),
    0.85: (
        (0, 12, 97), (0, 12, 43, 97), (0, 4, 14, 48, 97), (0, 4, 13, 30, 55, 97), (0, 4, 12, 19, 32, 63, 97),
        (0, 3, 9, 12, 19, 32, 63, 97), (0, 3, 9, 12, 18, 29, 43, 68, 97), (0, 2, 4, 9, 12, 18, 29, 43, 68, 97),
        (0, 2, 4, 9, 12, 16, 21, 30, 43, 68, 97), (0, 1, 3, 5, 9, 12, 16, 21, 30, 43, 68, 97),
        (0, 1, 3, 5, 8, 10, 12, 16, 21, 30, 43, 68, 97), (0, 1, 2, 3, 5, 8, 10, 12, 16, 21, 30, 43, 68, 97),
        (0, 1, 2, 3, 4, 6, 8, 10, 12, 16, 21, 30, 43, 68, 97),
        (0, 1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 26, 33, 48, 71, 97),
        (0, 1, 2, 3, 4, 6, 8, 10, 12, 14, 17, 21, 27, 35, 48, 71, 97),
        (0, 1, 2, 3, 4, 6, 8, 9, 10, 12, 14, 17, 21, 27, 35, 48, 71, 97),
        (0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 14, 17, 21, 27, 35, 48, 71, 97),
        (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 17, 21, 27, 35, 48, 71, 97),
        (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 17, 21, 27, 35, 48, 71, 97),
    ),
    0.90: (
        (0, 14, 97), (0, 12, 48, 97), (0, 12, 30, 63, 97), (0, 12, 20, 34, 65, 97), (0, 4, 12, 20, 34, 65, 97),
        (0, 4, 12, 19, 30, 47, 72, 97), (0, 3, 9, 13, 20, 30, 47, 72, 97),
        (0, 3, 9, 12, 17, 22, 31, 47, 72, 97), (0, 3, 9, 12, 17, 22, 29, 38, 55, 77, 97),
        (0, 2, 5, 9, 12, 17, 22, 29, 38, 55, 77, 97), (0, 2, 4, 8, 10, 12, 17, 22, 29, 38, 55, 77, 97),
        (0, 2, 4, 8, 10, 12, 16, 20, 25, 32, 43, 59, 79, 97),
        (0, 1, 3, 5, 8, 10, 12, 16, 20, 25, 32, 43, 59, 79, 97),
        (0, 1, 3, 5, 8, 10, 12, 15, 18, 22, 28, 35, 47, 63, 82, 97),
        (0, 1, 2, 3, 5, 8, 10, 12, 15, 18, 22, 28, 35, 47, 63, 82, 97),
        (0, 1, 2, 3, 5, 8, 10, 12, 14, 17, 20, 24, 30, 37, 48, 63, 82, 97),
        (0, 1, 2, 3, 4, 6, 8, 10, 12, 14, 17, 20, 24, 30, 37, 48, 63, 82, 97),
        (0, 1, 2, 3, 4, 6, 8, 9, 10, 12, 14, 17, 20, 24, 30, 37, 48, 63, 82, 97),
        (0, 1, 2, 3, 4, 6, 8, 9, 10, 12, 14, 17, 19, 22, 26, 31, 38, 49, 65, 83, 97),
    ),
    0.95: (
        (0, 14, 97), (0, 14, 48, 97), (0, 12, 32, 65, 97), (0, 12, 20, 36, 68, 97),
        (0, 12, 20, 31, 48, 74, 97), (0, 4, 12, 20, 31, 48, 74, 97), (0, 4, 12, 20, 30, 42, 59, 80, 97),
        (0, 4, 12, 17, 22, 30, 42, 59, 80, 97), (0, 3, 9, 12, 17, 22, 30, 42, 59, 80, 97),
        (0, 3, 9, 12, 17, 22, 29, 38, 51, 68, 85, 97), (0, 3, 9, 12, 17, 21, 27, 33, 43, 55, 71, 87, 97),
        (0, 2, 5, 9, 12, 17, 21, 27, 33, 43, 55, 71, 87, 97),
        (0, 2, 5, 9, 12, 16, 20, 25, 31, 38, 48, 60, 74, 88, 97),
        (0, 2, 5, 9, 12, 15, 18, 21, 26, 31, 38, 48, 60, 74, 88, 97),
        (0, 2, 4, 8, 10, 12, 15, 18, 21, 26, 31, 38, 48, 60, 74, 88, 97),
        (0, 2, 4, 8, 10, 12, 15, 18, 21, 25, 30, 35, 44, 55, 67, 80, 92, 97),
        (0, 2, 4, 8, 10, 12, 14, 17, 19, 22, 26, 31, 36, 45, 55, 67, 80, 92, 97),
        (0, 1, 3, 5, 8, 10, 12, 14, 17, 19, 22, 26, 31, 36, 45, 55, 67, 80, 92, 97),
        (0, 1, 3, 5, 8, 10, 12, 14, 17, 19, 22, 25, 30, 35, 42, 50, 60, 71, 83, 93, 97),
    ),
    1.00: (
        (0, 48, 97), (0, 14, 63, 97), (0, 14, 36, 68, 97), (0, 13, 30, 48, 76, 97),
        (0, 12, 20, 32, 51, 77, 97), (0, 12, 20, 32, 47, 66, 85, 97), (0, 4, 12, 20, 32, 47, 66, 85, 97),
        (0, 4, 12, 20, 30, 41, 55, 71, 87, 97), (0, 4, 12, 17, 22, 30, 41, 55, 71, 87, 97),
        (0, 4, 12, 17, 22, 29, 37, 49, 63, 78, 91, 97), (0, 4, 12, 17, 22, 29, 36, 47, 59, 71, 84, 94, 97),
        (0, 4, 9, 12, 17, 22, 29, 36, 47, 59, 71, 84, 94, 97),
        (0, 4, 9, 12, 17, 21, 26, 32, 39, 48, 59, 71, 84, 94, 97),
        (0, 4, 9, 12, 17, 21, 26, 32, 38, 47, 57, 68, 80, 90, 96, 97),
        (0, 4, 9, 12, 17, 21, 25, 30, 35, 43, 52, 61, 71, 82, 91, 96, 97),
        (0, 4, 9, 12, 16, 19, 23, 27, 32, 38, 46, 55, 64, 74, 83, 91, 96, 97),
        (0, 4, 9, 12, 16, 19, 23, 26, 31, 35, 42, 49, 58, 67, 76, 85, 92, 96, 97),
        (0, 3, 8, 10, 12, 16, 19, 23, 26, 31, 35, 42, 49, 58, 67, 76, 85, 92, 96, 97),
        (0, 3, 8, 10, 12, 14, 17, 19, 23, 26, 31, 35, 42, 49, 58, 67, 76, 85, 92, 96, 97),
    ),
    1.05: (
        (0, 63, 97), (0, 14, 65, 97), (0, 14, 40, 71, 97), (0, 14, 32, 54, 79, 97),
        (0, 14, 30, 47, 68, 87, 97), (0, 12, 20, 32, 48, 68, 87, 97), (0, 12, 20, 32, 47, 63, 79, 92, 97),
        (0, 12, 20, 30, 41, 55, 70, 84, 94, 97), (0, 12, 20, 29, 37, 49, 63, 76, 87, 95, 97),
        (0, 12, 19, 27, 35, 47, 59, 71, 82, 91, 96, 97), (0, 4, 12, 19, 27, 35, 47, 59, 71, 82, 91, 96, 97),
        (0, 4, 12, 17, 22, 29, 36, 47, 59, 71, 82, 91, 96, 97),
        (0, 4, 12, 17, 22, 29, 35, 45, 55, 66, 76, 85, 92, 96, 97),
        (0, 4, 12, 17, 21, 26, 32, 38, 47, 57, 67, 76, 85, 92, 96, 97),
        (0, 4, 12, 17, 21, 26, 32, 38, 46, 54, 63, 71, 79, 87, 93, 96, 97),
        (0, 4, 12, 17, 21, 26, 31, 36, 43, 51, 59, 67, 75, 82, 88, 93, 96, 97),
        (0, 4, 12, 17, 21, 26, 31, 35, 42, 49, 56, 63, 70, 77, 83, 89, 93, 96, 97),
        (0, 4, 10, 13, 17, 21, 26, 31, 35, 42, 49, 56, 63, 70, 77, 83, 89, 93, 96, 97),
        (0, 4, 10, 13, 17, 21, 26, 31, 35, 41, 47, 53, 59, 66, 72, 78, 84, 89, 93, 96, 97),
    ),
    1.10: (
        (0, 65, 97), (0, 36, 71, 97), (0, 17, 47, 77, 97), (0, 14, 35, 59, 82, 97),
        (0, 14, 31, 48, 68, 87, 97), (0, 14, 30, 47, 65, 81, 93, 97), (0, 14, 30, 43, 59, 74, 87, 95, 97),
        (0, 12, 20, 32, 47, 63, 78, 90, 96, 97), (0, 12, 20, 31, 42, 55, 68, 81, 91, 96, 97),
        (0, 12, 20, 30, 40, 51, 63, 74, 84, 92, 96, 97), (0, 12, 20, 29, 37, 47, 58, 68, 78, 86, 92, 96, 97),
        (0, 12, 20, 28, 35, 45, 55, 65, 74, 82, 88, 93, 96, 97),
        (0, 12, 19, 26, 32, 40, 49, 59, 68, 76, 83, 89, 93, 96, 97),
        (0, 12, 19, 26, 32, 39, 47, 55, 63, 71, 78, 84, 89, 93, 96, 97),
        (0, 12, 17, 22, 29, 35, 43, 51, 59, 67, 74, 80, 86, 91, 94, 96, 97),
        (0, 12, 17, 22, 29, 35, 42, 49, 56, 63, 70, 76, 82, 87, 91, 94, 96, 97),
        (0, 12, 17, 22, 27, 32, 38, 45, 52, 59, 66, 72, 78, 83, 87, 91, 94, 96, 97),
        (0, 4, 12, 17, 22, 27, 32, 38, 45, 52, 59, 66, 72, 78, 83, 87, 91, 94, 96, 97),
        (0, 4, 12, 17, 22, 27, 32, 38, 45, 52, 59, 65, 71, 76, 81, 85, 89, 92, 94, 96, 97),
    ),
    1.15: (
        (0, 67, 97), (0, 43, 76, 97), (0, 17, 48, 79, 97), (0, 17, 42, 67, 87, 97),
        (0, 17, 35, 55, 76, 91, 97), (0, 17, 32, 49, 68, 84, 94, 97), (0, 17, 32, 48, 65, 80, 91, 96, 97),
        (0, 14, 30, 43, 58, 71, 83, 92, 96, 97), (0, 14, 30, 42, 55, 68, 79, 87, 93, 96, 97),
        (0, 12, 20, 31, 42, 55, 68, 79, 87, 93, 96, 97), (0, 12, 20, 30, 40, 52, 63, 72, 81, 88, 93, 96, 97),
        (0, 12, 20, 30, 39, 49, 59, 68, 76, 83, 89, 93, 96, 97),
        (0, 12, 20, 30, 39, 49, 59, 68, 76, 82, 87, 91, 94, 96, 97),
        (0, 12, 20, 30, 38, 47, 55, 63, 70, 76, 82, 87, 91, 94, 96, 97),
        (0, 12, 20, 29, 35, 44, 53, 61, 68, 74, 80, 85, 89, 92, 94, 96, 97),
        (0, 12, 20, 29, 35, 44, 53, 61, 68, 74, 79, 84, 88, 91, 93, 95, 96, 97),
        (0, 12, 20, 29, 35, 43, 51, 58, 65, 71, 76, 81, 85, 88, 91, 93, 95, 96, 97),
        (0, 12, 20, 29, 35, 43, 51, 58, 65, 71, 76, 80, 84, 87, 90, 92, 94, 95, 96, 97),
        (0, 12, 20, 29, 35, 43, 51, 58, 65, 71, 76, 80, 84, 87, 89, 91, 93, 94, 95, 96, 97),
    ),
    1.20: (
        (0, 68, 97), (0, 48, 79, 97), (0, 36, 64, 86, 97), (0, 32, 55, 76, 91, 97),
        (0, 17, 40, 63, 82, 94, 97), (0, 17, 35, 55, 74, 89, 96, 97), (0, 17, 35, 52, 68, 82, 91, 96, 97),
        (0, 17, 32, 47, 63, 76, 86, 93, 96, 97), (0, 17, 32, 46, 59, 70, 80, 88, 93, 96, 97),
        (0, 17, 31, 43, 55, 67, 76, 84, 90, 94, 96, 97), (0, 17, 30, 41, 52, 63, 72, 80, 86, 91, 94, 96, 97),
        (0, 14, 27, 36, 48, 59, 68, 76, 82, 87, 91, 94, 96, 97),
        (0, 14, 27, 35, 47, 57, 66, 74, 80, 85, 89, 92, 94, 96, 97),
        (0, 12, 21, 30, 39, 49, 59, 67, 74, 80, 85, 89, 92, 94, 96, 97),
        (0, 12, 21, 30, 39, 49, 59, 67, 74, 80, 84, 88, 91, 93, 95, 96, 97),
        (0, 12, 21, 30, 39, 49, 59, 67, 74, 80, 84, 87, 90, 92, 94, 95, 96, 97),
        (0, 12, 21, 30, 38, 47, 56, 64, 71, 77, 82, 86, 89, 91, 93, 94, 95, 96, 97),
        (0, 12, 21, 30, 38, 47, 55, 63, 70, 76, 81, 85, 88, 90, 92, 93, 94, 95, 96, 97),
        (0, 12, 21, 30, 38, 47, 55, 63, 70, 76, 80, 84, 87, 89, 91, 92, 93, 94, 95, 96, 97),
    ),
    1.25: (
        (0, 71, 97), (0, 48, 80, 97), (0, 40, 68, 88, 97), (0, 36, 63, 83, 94, 97),
        (0, 32, 55, 76, 90, 96, 97), (0, 30, 49, 68, 83, 92, 96, 97), (0, 17, 36, 55, 71, 84, 92, 96, 97),
        (0, 17, 35, 52, 67, 79, 87, 93, 96, 97), (0, 17, 32, 47, 62, 74, 83, 90, 94, 96, 97),
        (0, 17, 32, 46, 59, 70, 79, 86, 91, 94, 96, 97), (0, 17, 32, 45, 57, 68, 76, 82, 87, 91, 94, 96, 97),
        (0, 17, 31, 43, 55, 66, 74, 81, 86, 90, 93, 95, 96, 97),
        (0, 17, 31, 43, 54, 64, 72, 79, 84, 88, 91, 93, 95, 96, 97),
        (0, 17, 31, 42, 53, 63, 71, 78, 83, 87, 90, 92, 94, 95, 96, 97),
        (0, 17, 31, 42, 53, 63, 71, 77, 82, 86, 89, 91, 93, 94, 95, 96, 97),
        (0, 17, 31, 42, 53, 63, 70, 76, 81, 85, 88, 90, 92, 93, 94, 95, 96, 97),
        (0, 17, 30, 40, 51, 60, 68, 75, 80, 84, 87, 89, 91, 92, 93, 94, 95, 96, 97),
        (0, 17, 30, 40, 51, 60, 68, 74, 79, 83, 86, 88, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 17, 30, 40, 50, 59, 67, 73, 78, 82, 85, 87, 89, 90, 91, 92, 93, 94, 95, 96, 97),
    ),
    1.30: (
        (0, 71, 97), (0, 55, 83, 97), (0, 48, 76, 92, 97), (0, 43, 68, 86, 95, 97),
        (0, 36, 61, 79, 91, 96, 97), (0, 32, 52, 70, 84, 92, 96, 97), (0, 30, 48, 65, 78, 87, 93, 96, 97),
        (0, 30, 47, 63, 75, 84, 90, 94, 96, 97), (0, 17, 35, 52, 67, 78, 86, 91, 94, 96, 97),
        (0, 17, 35, 51, 64, 74, 82, 87, 91, 94, 96, 97), (0, 17, 33, 48, 61, 71, 80, 86, 90, 93, 95, 96, 97),
        (0, 17, 32, 47, 60, 70, 78, 84, 88, 91, 93, 95, 96, 97),
        (0, 17, 32, 47, 59, 69, 77, 83, 87, 90, 92, 94, 95, 96, 97),
        (0, 17, 32, 47, 59, 68, 76, 82, 86, 89, 91, 93, 94, 95, 96, 97),
        (0, 17, 32, 47, 59, 68, 76, 81, 85, 88, 90, 92, 93, 94, 95, 96, 97),
        (0, 17, 32, 45, 57, 67, 74, 80, 84, 87, 89, 91, 92, 93, 94, 95, 96, 97),
        (0, 17, 32, 45, 57, 67, 74, 79, 83, 86, 88, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 17, 32, 44, 55, 64, 71, 77, 82, 85, 87, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 17, 32, 44, 55, 64, 71, 77, 81, 84, 86, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
    ),
    1.35: (
        (0, 72, 97), (0, 63, 87, 97), (0, 48, 77, 93, 97), (0, 47, 72, 89, 96, 97),
        (0, 43, 67, 83, 92, 96, 97), (0, 35, 57, 74, 86, 93, 96, 97), (0, 32, 52, 68, 80, 88, 93, 96, 97),
        (0, 32, 51, 67, 78, 86, 91, 94, 96, 97), (0, 32, 48, 63, 74, 82, 88, 92, 94, 96, 97),
        (0, 32, 48, 63, 74, 82, 87, 91, 93, 95, 96, 97), (0, 30, 47, 61, 71, 79, 85, 89, 92, 94, 95, 96, 97),
        (0, 30, 47, 61, 71, 79, 84, 88, 91, 93, 94, 95, 96, 97),
        (0, 30, 47, 60, 70, 78, 83, 87, 90, 92, 93, 94, 95, 96, 97),
        (0, 30, 45, 58, 68, 76, 82, 86, 89, 91, 92, 93, 94, 95, 96, 97),
        (0, 30, 45, 58, 68, 76, 81, 85, 88, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 17, 35, 49, 61, 70, 77, 82, 86, 88, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 17, 33, 47, 59, 68, 75, 80, 84, 87, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 17, 33, 47, 59, 68, 74, 79, 83, 86, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 17, 33, 47, 59, 68, 74, 79, 82, 85, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
    ),
    1.40: (
        (0, 76, 97), (0, 63, 87, 97), (0, 59, 83, 95, 97), (0, 48, 74, 90, 96, 97),
        (0, 47, 68, 83, 92, 96, 97), (0, 40, 63, 78, 87, 93, 96, 97), (0, 35, 55, 71, 83, 90, 94, 96, 97),
        (0, 35, 55, 70, 80, 87, 91, 94, 96, 97), (0, 35, 54, 68, 79, 86, 90, 93, 95, 96, 97),
        (0, 35, 54, 68, 78, 85, 89, 92, 94, 95, 96, 97), (0, 32, 51, 66, 76, 83, 88, 91, 93, 94, 95, 96, 97),
        (0, 32, 49, 63, 74, 82, 87, 90, 92, 93, 94, 95, 96, 97),
        (0, 32, 49, 63, 74, 81, 86, 89, 91, 92, 93, 94, 95, 96, 97),
        (0, 32, 48, 62, 72, 79, 84, 87, 89, 91, 92, 93, 94, 95, 96, 97),
        (0, 32, 48, 61, 71, 78, 83, 86, 88, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 32, 47, 60, 70, 77, 82, 85, 87, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 32, 47, 59, 68, 75, 80, 84, 86, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 32, 47, 59, 68, 75, 80, 83, 85, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 32, 47, 59, 68, 74, 79, 82, 84, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
    ),
    1.45: (
        (0, 76, 97), (0, 68, 91, 97), (0, 63, 87, 96, 97), (0, 55, 78, 91, 96, 97),
        (0, 48, 71, 86, 93, 96, 97), (0, 47, 68, 82, 90, 94, 96, 97), (0, 42, 63, 77, 86, 91, 94, 96, 97),
        (0, 38, 59, 74, 84, 90, 93, 95, 96, 97), (0, 35, 55, 70, 80, 87, 91, 93, 95, 96, 97),
        (0, 35, 55, 70, 80, 86, 90, 92, 94, 95, 96, 97), (0, 35, 54, 68, 78, 84, 88, 91, 93, 94, 95, 96, 97),
        (0, 35, 54, 68, 77, 83, 87, 90, 92, 93, 94, 95, 96, 97),
        (0, 35, 54, 67, 76, 82, 86, 89, 91, 92, 93, 94, 95, 96, 97),
        (0, 35, 54, 67, 76, 82, 86, 88, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 32, 49, 63, 72, 79, 84, 87, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 32, 49, 63, 72, 79, 83, 86, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 32, 48, 62, 71, 78, 82, 85, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 32, 48, 61, 70, 77, 81, 84, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 32, 48, 61, 70, 76, 80, 83, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
    ),
    1.50: (
        (0, 78, 97), (0, 68, 91, 97), (0, 66, 88, 96, 97), (0, 55, 78, 91, 96, 97),
        (0, 48, 71, 86, 93, 96, 97), (0, 47, 68, 82, 90, 94, 96, 97), (0, 47, 67, 79, 87, 91, 94, 96, 97),
        (0, 43, 63, 76, 85, 90, 93, 95, 96, 97), (0, 43, 63, 76, 84, 89, 92, 94, 95, 96, 97),
        (0, 43, 63, 75, 83, 88, 91, 93, 94, 95, 96, 97), (0, 38, 58, 71, 80, 86, 90, 92, 93, 94, 95, 96, 97),
        (0, 38, 58, 71, 80, 86, 89, 91, 92, 93, 94, 95, 96, 97),
        (0, 36, 55, 68, 77, 83, 87, 89, 91, 92, 93, 94, 95, 96, 97),
        (0, 36, 55, 68, 77, 83, 87, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 36, 55, 68, 76, 82, 86, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 36, 55, 68, 76, 82, 85, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 35, 53, 66, 74, 80, 84, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 35, 52, 64, 72, 78, 82, 84, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
        (0, 35, 51, 63, 71, 77, 81, 83, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97),
    ),
}
