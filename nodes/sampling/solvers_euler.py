"""Single-step and linear-multistep ODE/SDE solvers in σ: Euler, Heun, DPM2, LMS and their
ancestral, CFG++ and exponential-integrator relatives.

Every function follows the contract in :mod:`latentgraph.nodes.sampling.kit`: ``x`` is the noisy
latent ``x0 + σ₀·ε`` at ``sigmas[0]``, the return value is the latent at ``sigmas[-1]``. The step
arithmetic follows ComfyUI's k-diffusion samplers operation for operation (ComfyUI is our numeric
reference), so a seed and a schedule give the same latents.
"""

from __future__ import annotations


import torch
from torch import Tensor

from latentgraph.nodes.sampling.kit import (
    Denoiser,
    NoiseSampler,
    StepCallback,
    ancestral_step,
    batch_sigma,
    noise_sampler_or_default,
    report,
    signal_scale,
    start_step,
    to_d,
    x0_estimates,
)
from latentgraph.nodes.sampling.samplers import SamplerDef
from latentgraph.nodes.sampling.solvers_recent import seeds_solver

_SQRT2_MINUS_1 = 2**0.5 - 1


# -- shared pieces -----------------------------------------------------------------------------------
class _Churn:
    """Karras et al. 2022 (Alg. 2) "churn": before a step, raise σ to σ̂ = σ·(1+γ) by adding
    fresh noise, which lets a deterministic solver forget early errors.

    ComfyUI draws this noise from torch's global RNG; we draw it from the run's noise sampler so a
    seed fixes it (no recorded reference uses churn, which no ComfyUI node exposes).
    """

    def __init__(self, x: Tensor, sigmas: Tensor, seed: int | None, noise_sampler: NoiseSampler | None,
                 s_churn: float, s_tmin: float, s_tmax: float, s_noise: float):
        self.steps = len(sigmas) - 1
        self.s_churn, self.s_tmin, self.s_tmax, self.s_noise = s_churn, s_tmin, s_tmax, s_noise
        self.noise = noise_sampler_or_default(x, seed, noise_sampler) if s_churn > 0 else None

    def gamma(self, sigma: Tensor) -> float:
        if self.s_churn <= 0 or not (self.s_tmin <= sigma <= self.s_tmax):
            return 0.0
        return min(self.s_churn / self.steps, _SQRT2_MINUS_1)

    def apply(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(x raised to σ̂, σ̂)."""
        gamma = self.gamma(sigma)
        if gamma <= 0:
            return x, sigma
        sigma_hat = sigma * (gamma + 1)
        assert self.noise is not None
        eps = self.noise(sigma, sigma_hat) * self.s_noise
        return x + eps * (sigma_hat**2 - sigma**2) ** 0.5, sigma_hat

    def start_step(self, model: Denoiser, x: Tensor, sigmas: Tensor, i: int,
                   callback: StepCallback | None) -> tuple[Tensor, Tensor, Tensor]:
        """The start of step ``i`` for the churned solvers: (x raised to σ̂, σ̂, the ODE slope there),
        the model's estimate reported."""
        x, sigma_hat = self.apply(x, sigmas[i])
        denoised = model(x, batch_sigma(x, sigma_hat))
        slope = to_d(x, sigma_hat, denoised)
        report(callback, i, x, sigmas[i], denoised, sigma_hat)
        return x, sigma_hat, slope


def _slope_at(model: Denoiser, x: Tensor, sigma: Tensor) -> Tensor:
    """The ODE slope dx/dσ at an intermediate point (x, σ) of a step: one more model call."""
    return to_d(x, sigma, model(x, batch_sigma(x, sigma)))


# -- Euler family ------------------------------------------------------------------------------------
@torch.no_grad()
def sample_euler(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                 callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                 s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0) -> Tensor:
    """First-order Euler steps of the probability-flow ODE dx/dσ = (x − D(x, σ))/σ, with optional
    churn (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models",
    Algorithm 2 without the Heun correction)."""
    churn = _Churn(x, sigmas, seed, noise_sampler, s_churn, s_tmin, s_tmax, s_noise)
    for i in range(len(sigmas) - 1):
        x, sigma_hat, slope = churn.start_step(model, x, sigmas, i, callback)
        x = x + slope * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_euler_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                           callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                           eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """Ancestral Euler: an Euler step down to σ_down, then fresh noise of size σ_up back up to
    σ_next, i.e. a sample of the reverse SDE (Song et al. 2021, "Score-Based Generative Modeling
    through SDEs"; the σ_down/σ_up split is Ho et al. 2020's DDPM posterior in σ form)."""
    noise = noise_sampler_or_default(x, seed, noise_sampler)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next, denoised = start_step(model, x, sigmas, i, callback)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        if sigma_down == 0:
            x = denoised  # the last step lands exactly on the x0 estimate
            continue
        slope = to_d(x, sigma, denoised)
        x = x + slope * (sigma_down - sigma) + noise(sigma, sigma_next) * s_noise * sigma_up
    return x


def _euler_ancestral_cfg_pp(model: Denoiser, x: Tensor, sigmas: Tensor, noise: NoiseSampler,
                            callback: StepCallback | None, eta: float, s_noise: float) -> Tensor:
    """CFG++ (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance for
    Diffusion Models"): land on the guided x0 estimate, but re-noise along the *unconditional*
    noise direction, which keeps the sample on the data manifold at low guidance scales.

    The update is DDIM's, x_next = α'·(x0_guided + σ_down·ε_uncond); σ-form (VP/ε) models have
    α = 1, computed as σ·e^(−log σ) so the numbers round as ComfyUI's do.
    """
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, uncond = x0_estimates(model, x, sigma, cfg_pp=True)
        report(callback, i, x, sigma, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        alpha, alpha_next = signal_scale(sigma), signal_scale(sigma_next)
        eps_uncond = to_d(x, sigma, alpha * uncond)
        sigma_down, sigma_up = ancestral_step(sigma / alpha, sigma_next / alpha_next, eta)
        x = alpha_next * denoised + alpha_next * sigma_down * eps_uncond
        if eta > 0 and s_noise > 0:
            x = x + alpha_next * noise(sigma, sigma_next) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_euler_ancestral_cfg_pp(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                                  callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                                  eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """Ancestral Euler with CFG++ guidance (Chung et al. 2024, "CFG++"); use a low cfg (≈1–2)."""
    return _euler_ancestral_cfg_pp(model, x, sigmas, noise_sampler_or_default(x, seed, noise_sampler), callback,
                                   eta, s_noise)


@torch.no_grad()
def sample_euler_cfg_pp(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                        callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None) -> Tensor:
    """Deterministic Euler with CFG++ guidance (Chung et al. 2024, "CFG++"): the η = 0 case."""
    return _euler_ancestral_cfg_pp(model, x, sigmas, noise_sampler_or_default(x, seed, noise_sampler), callback,
                                   0.0, 0.0)


# -- Heun family -------------------------------------------------------------------------------------
@torch.no_grad()
def sample_heun(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0) -> Tensor:
    """Heun's second-order method (Karras et al. 2022, "Elucidating the Design Space", Algorithm 2):
    an Euler predictor, then the trapezoid of the two slopes; the last step to σ = 0 stays Euler
    because the slope is undefined there."""
    churn = _Churn(x, sigmas, seed, noise_sampler, s_churn, s_tmin, s_tmax, s_noise)
    for i in range(len(sigmas) - 1):
        x, sigma_hat, slope = churn.start_step(model, x, sigmas, i, callback)
        sigma_next = sigmas[i + 1]
        dt = sigma_next - sigma_hat
        if sigma_next == 0:
            x = x + slope * dt
            continue
        x_pred = x + slope * dt
        x = x + (slope + _slope_at(model, x_pred, sigma_next)) / 2 * dt
    return x


@torch.no_grad()
def sample_heunpp2(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                   callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                   s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0) -> Tensor:
    """Heun++ (the "heunpp2" of Carzit's sd-webui-samplers-scheduler, after Karras et al. 2022's
    Heun): look up to two σ steps ahead with Euler predictors and average the slopes with weights
    that grow with σ/σ₀, so early (noisy) steps lean on the look-ahead and late ones on the current
    slope. Steps ending at the schedule's last σ fall back to Heun, then to Euler."""
    churn = _Churn(x, sigmas, seed, noise_sampler, s_churn, s_tmin, s_tmax, s_noise)
    sigma_last = sigmas[-1]
    for i in range(len(sigmas) - 1):
        x, sigma_hat, slope = churn.start_step(model, x, sigmas, i, callback)
        sigma_next = sigmas[i + 1]
        dt = sigma_next - sigma_hat
        if sigma_next == sigma_last:
            x = x + slope * dt
            continue
        x_2 = x + slope * dt
        slope_2 = _slope_at(model, x_2, sigma_next)
        sigma_after = sigmas[i + 2]
        if sigma_after == sigma_last:
            w2 = sigma_next / (2 * sigmas[0])
            x = x + (slope * (1 - w2) + slope_2 * w2) * dt
            continue
        x_3 = x_2 + slope_2 * (sigma_after - sigma_next)
        slope_3 = _slope_at(model, x_3, sigma_after)
        scale = 3 * sigmas[0]
        w2, w3 = sigma_next / scale, sigma_after / scale
        x = x + ((1 - w2 - w3) * slope + w2 * slope_2 + w3 * slope_3) * dt
    return x


@torch.no_grad()
def sample_exp_heun_2_x0(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                         callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                         solver_type: str = "phi_2") -> Tensor:
    """Deterministic exponential Heun (2nd order) in x0 prediction and log-SNR time λ = −log σ (Lu
    et al. 2022, "DPM-Solver++"; Gonzalez et al. 2023, "SEEDS", η = 0).

    Predictor: the exact exponential-integrator step with x0 held constant (DPM-Solver++(1), i.e.
    DDIM) all the way to σ_next; corrector: x0 varying linearly in λ between the two estimates,
    integrated exactly with φ₂ (``phi_2``) or by the plain average (``phi_1``). This is SEEDS-2 with
    its intermediate point at r = 1 (:func:`~latentgraph.nodes.sampling.solvers_recent.seeds_solver`).
    """
    return seeds_solver(model, x, sigmas, noise=noise_sampler_or_default(x, seed, noise_sampler), callback=callback,
                        eta=0.0, s_noise=0.0, stages=(1.0,), solver_type=solver_type)


@torch.no_grad()
def sample_exp_heun_2_x0_sde(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                             callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                             eta: float = 1.0, s_noise: float = 1.0, solver_type: str = "phi_2") -> Tensor:
    """Stochastic exponential Heun (2nd order) in x0 prediction and log-SNR time (Gonzalez et al.
    2023, "SEEDS: Exponential SDE Solvers for Fast High-Quality Sampling from Diffusion Models",
    SEEDS-2 with r = 1): the linear part is damped by e^(−ηh) and matching Gaussian noise injected.
    The intermediate point is σ_next itself, so the second noise segment has zero length: its draw
    is taken (and contributes nothing) only to keep the noise stream in step with ComfyUI."""
    return seeds_solver(model, x, sigmas, noise=noise_sampler_or_default(x, seed, noise_sampler), callback=callback,
                        eta=eta, s_noise=s_noise, stages=(1.0,), solver_type=solver_type)


# -- DPM2 --------------------------------------------------------------------------------------------
def _dpm_2_step(model: Denoiser, x: Tensor, slope: Tensor, sigma: Tensor, sigma_to: Tensor) -> Tensor:
    """One DPM-Solver-2 step from σ to ``sigma_to`` given the slope at σ: a half Euler step to the
    log-σ midpoint (the geometric mean), the whole step with the slope there; Euler into σ = 0."""
    if sigma_to == 0:
        return x + slope * (sigma_to - sigma)
    sigma_mid = sigma.log().lerp(sigma_to.log(), 0.5).exp()
    x_mid = x + slope * (sigma_mid - sigma)
    return x + _slope_at(model, x_mid, sigma_mid) * (sigma_to - sigma)


@torch.no_grad()
def sample_dpm_2(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                 callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                 s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0) -> Tensor:
    """DPM-Solver-2 in Karras's σ form: the slope is taken at the log-σ midpoint after a half
    Euler step (Lu et al. 2022, "DPM-Solver", Alg. 1 with r = ½; Karras et al. 2022's Algorithm 2
    churn). The final step to σ = 0 is Euler, hence ComfyUI's extra penultimate σ that is dropped."""
    churn = _Churn(x, sigmas, seed, noise_sampler, s_churn, s_tmin, s_tmax, s_noise)
    for i in range(len(sigmas) - 1):
        x, sigma_hat, slope = churn.start_step(model, x, sigmas, i, callback)
        x = _dpm_2_step(model, x, slope, sigma_hat, sigmas[i + 1])
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                           callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                           eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """Ancestral DPM-Solver-2: a DPM2 step to σ_down, then noise σ_up back to σ_next (Lu et al.
    2022, "DPM-Solver"; ancestral split as in Ho et al. 2020, "DDPM")."""
    noise = noise_sampler_or_default(x, seed, noise_sampler)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next, denoised = start_step(model, x, sigmas, i, callback)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        x = _dpm_2_step(model, x, to_d(x, sigma, denoised), sigma, sigma_down)
        if sigma_down != 0:
            x = x + noise(sigma, sigma_next) * s_noise * sigma_up
    return x


# -- linear multistep --------------------------------------------------------------------------------
def lms_coefficient(order: int, ts, i: int, j: int) -> float:
    """Weight of the slope from ``j`` steps back in the Adams–Bashforth-type step ``ts[i] → ts[i+1]``:
    the integral over the step of the Lagrange basis polynomial through the last ``order`` nodes
    (numerically, with scipy's ``quad`` at epsrel 1e-4, as ComfyUI/k-diffusion do)."""
    if order - 1 > i:
        raise ValueError(f"LMS order {order} is too high for step {i}")
    others = [k for k in range(order) if k != j]

    def basis(tau: float) -> float:
        value = 1.0
        for k in others:
            value *= (tau - ts[i - k]) / (ts[i - j] - ts[i - k])
        return value

    from scipy import integrate  # only the lms sampler needs scipy: not imported at start-up

    return integrate.quad(basis, ts[i], ts[i + 1], epsrel=1e-4)[0]


@torch.no_grad()
def sample_lms(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
               callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
               order: int = 4) -> Tensor:
    """Linear multistep (Adams–Bashforth on a non-uniform σ grid): reuse the last ``order`` slopes
    so each step costs one model call (Karras et al. 2022 / Crowson's k-diffusion; the PLMS idea of
    Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds")."""
    ts = sigmas.detach().cpu().numpy()
    slopes: list[Tensor] = []
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i]
        denoised = model(x, batch_sigma(x, sigma))
        slopes.append(to_d(x, sigma, denoised))
        del slopes[:-order]
        report(callback, i, x, sigma, denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        used = min(i + 1, order)
        coefficients = [lms_coefficient(used, ts, i, j) for j in range(used)]
        x = x + sum(c * d for c, d in zip(coefficients, reversed(slopes)))
    return x


_CHURN = {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": float("inf"), "s_noise": 1.0}
_ANCESTRAL = {"eta": 1.0, "s_noise": 1.0}

SAMPLERS: tuple[SamplerDef, ...] = (
    SamplerDef("euler", sample_euler, _CHURN,
               description="Euler: simple first-order steps; deterministic, a good default"),
    SamplerDef("euler_cfg_pp", sample_euler_cfg_pp,
               description="Euler with CFG++ guidance (steps along the unguided direction); use a low cfg"),
    SamplerDef("euler_ancestral", sample_euler_ancestral, _ANCESTRAL, stochastic=True,
               description="Euler ancestral: adds fresh noise each step; varied, does not converge as steps grow"),
    SamplerDef("euler_ancestral_cfg_pp", sample_euler_ancestral_cfg_pp, _ANCESTRAL, stochastic=True,
               description="Euler ancestral with CFG++ guidance; use a low cfg"),
    SamplerDef("heun", sample_heun, _CHURN,
               description="Heun: second-order, two model calls per step; accurate but twice as slow"),
    SamplerDef("heunpp2", sample_heunpp2, _CHURN,
               description="Heun++: looks up to two steps ahead (up to three model calls per step)"),
    SamplerDef("exp_heun_2_x0", sample_exp_heun_2_x0, {"solver_type": "phi_2"},
               description="Exponential Heun in log-SNR time: second-order, two model calls per step"),
    SamplerDef("exp_heun_2_x0_sde", sample_exp_heun_2_x0_sde, {**_ANCESTRAL, "solver_type": "phi_2"},
               stochastic=True, description="Stochastic exponential Heun: adds noise each step (SEEDS-2)"),
    SamplerDef("dpm_2", sample_dpm_2, _CHURN,
               discard_penultimate_sigma=True,
               description="DPM2: second-order midpoint steps, two model calls per step"),
    SamplerDef("dpm_2_ancestral", sample_dpm_2_ancestral, _ANCESTRAL, stochastic=True,
               discard_penultimate_sigma=True,
               description="DPM2 ancestral: second-order steps with fresh noise each step"),
    SamplerDef("lms", sample_lms, {"order": 4},
               description="Linear multistep: reuses the last four slopes; one model call per step"),
)
