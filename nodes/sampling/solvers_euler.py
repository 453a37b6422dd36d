"""Single-step and linear-multistep ODE/SDE solvers in σ: Euler, Heun, DPM2, LMS and their
ancestral, CFG++ and exponential-integrator relatives.

Every function follows the contract in :mod:`latentgraph.nodes.sampling.kit`: ``x`` is the noisy
latent ``x0 + σ₀·ε`` at ``sigmas[0]``, the return value is the latent at ``sigmas[-1]``. The step
arithmetic follows ComfyUI's k-diffusion samplers operation for operation (ComfyUI is our numeric
reference), so a seed and a schedule give the same latents.
"""

from __future__ import annotations


import torch
from scipy import integrate
from torch import Tensor

from latentgraph.nodes.sampling.kit import (
    Denoiser,
    NoiseSampler,
    StepCallback,
    ancestral_step,
    batch_sigma,
    default_noise_sampler,
    report,
    to_d,
)
from latentgraph.nodes.sampling.samplers import SamplerDef

_SQRT2_MINUS_1 = 2**0.5 - 1


# -- shared pieces -----------------------------------------------------------------------------------
def _noise_source(x: Tensor, seed: int | None, noise_sampler: NoiseSampler | None) -> NoiseSampler:
    return default_noise_sampler(x, seed) if noise_sampler is None else noise_sampler


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
        self.noise = _noise_source(x, seed, noise_sampler) if s_churn > 0 else None

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


def _alpha(sigma: Tensor) -> Tensor:
    """Signal scale α = σ·e^λ at half-log-SNR λ = −log σ: 1 for σ-form models, up to rounding."""
    return sigma * sigma.log().neg().exp()


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
        x, sigma_hat = churn.apply(x, sigmas[i])
        denoised = model(x, batch_sigma(x, sigma_hat))
        slope = to_d(x, sigma_hat, denoised)
        report(callback, i, x, sigmas[i], denoised, sigma_hat)
        x = x + slope * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_euler_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                           callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                           eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """Ancestral Euler: an Euler step down to σ_down, then fresh noise of size σ_up back up to
    σ_next, i.e. a sample of the reverse SDE (Song et al. 2021, "Score-Based Generative Modeling
    through SDEs"; the σ_down/σ_up split is Ho et al. 2020's DDPM posterior in σ form)."""
    noise = _noise_source(x, seed, noise_sampler)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, batch_sigma(x, sigma))
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        report(callback, i, x, sigma, denoised)
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
        prediction = model.predict(x, batch_sigma(x, sigma))
        denoised = prediction.denoised
        report(callback, i, x, sigma, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        alpha, alpha_next = _alpha(sigma), _alpha(sigma_next)
        eps_uncond = to_d(x, sigma, alpha * prediction.uncond)
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
    return _euler_ancestral_cfg_pp(model, x, sigmas, _noise_source(x, seed, noise_sampler), callback, eta, s_noise)


@torch.no_grad()
def sample_euler_cfg_pp(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                        callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None) -> Tensor:
    """Deterministic Euler with CFG++ guidance (Chung et al. 2024, "CFG++"): the η = 0 case."""
    return _euler_ancestral_cfg_pp(model, x, sigmas, _noise_source(x, seed, noise_sampler), callback, 0.0, 0.0)


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
        x, sigma_hat = churn.apply(x, sigmas[i])
        sigma_next = sigmas[i + 1]
        denoised = model(x, batch_sigma(x, sigma_hat))
        slope = to_d(x, sigma_hat, denoised)
        report(callback, i, x, sigmas[i], denoised, sigma_hat)
        dt = sigma_next - sigma_hat
        if sigma_next == 0:
            x = x + slope * dt
            continue
        x_pred = x + slope * dt
        slope_pred = to_d(x_pred, sigma_next, model(x_pred, batch_sigma(x, sigma_next)))
        x = x + (slope + slope_pred) / 2 * dt
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
        x, sigma_hat = churn.apply(x, sigmas[i])
        sigma_next = sigmas[i + 1]
        denoised = model(x, batch_sigma(x, sigma_hat))
        slope = to_d(x, sigma_hat, denoised)
        report(callback, i, x, sigmas[i], denoised, sigma_hat)
        dt = sigma_next - sigma_hat
        if sigma_next == sigma_last:
            x = x + slope * dt
            continue
        x_2 = x + slope * dt
        slope_2 = to_d(x_2, sigma_next, model(x_2, batch_sigma(x, sigma_next)))
        sigma_after = sigmas[i + 2]
        if sigma_after == sigma_last:
            w2 = sigma_next / (2 * sigmas[0])
            x = x + (slope * (1 - w2) + slope_2 * w2) * dt
            continue
        x_3 = x_2 + slope_2 * (sigma_after - sigma_next)
        slope_3 = to_d(x_3, sigma_after, model(x_3, batch_sigma(x, sigma_after)))
        scale = 3 * sigmas[0]
        w2, w3 = sigma_next / scale, sigma_after / scale
        x = x + ((1 - w2 - w3) * slope + w2 * slope_2 + w3 * slope_3) * dt
    return x


def _exp_heun_2_x0(model: Denoiser, x: Tensor, sigmas: Tensor, noise: NoiseSampler, callback: StepCallback | None,
                   eta: float, s_noise: float, solver_type: str) -> Tensor:
    """Exponential Heun in data prediction and log-SNR time λ = −log σ.

    Predictor: the exact exponential-integrator step with x0 held constant (DPM-Solver++(1), i.e.
    DDIM) all the way to σ_next; corrector: x0 varying linearly in λ between the two estimates,
    integrated exactly with φ₂ (``phi_2``) or by the plain average (``phi_1``). With η > 0 the
    linear part is damped by e^(−ηh) and matching Gaussian noise is injected (SEEDS-2 with its
    intermediate point at r = 1). Lu et al. 2022, "DPM-Solver++"; Gonzalez et al. 2023, "SEEDS:
    Exponential SDE Solvers for Fast High-Quality Sampling from Diffusion Models".
    """
    if solver_type not in ("phi_1", "phi_2"):
        raise ValueError(f"solver_type must be 'phi_1' or 'phi_2', not {solver_type!r}")
    inject = eta > 0 and s_noise > 0
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, batch_sigma(x, sigma))
        report(callback, i, x, sigma, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        lam, lam_next = sigma.log().neg(), sigma_next.log().neg()
        h = lam_next - lam
        h_eta = h * (eta + 1)
        # α = σ·e^λ is 1 for σ-form models; kept as computed so the numbers round the same way.
        sigma_mid = lam_next.neg().exp()
        alpha_mid = sigma_mid * lam_next.exp()
        alpha_next = sigma_next * lam_next.exp()

        # predictor
        x_mid = sigma_mid / sigma * (-h * eta).exp() * x - alpha_mid * torch.expm1(-h_eta) * denoised
        if inject:
            sde_noise = (-2 * h * eta).expm1().neg().sqrt() * noise(sigma, sigma_mid)
            x_mid = x_mid + sde_noise * sigma_mid * s_noise
        denoised_mid = model(x_mid, batch_sigma(x, sigma_mid))

        # corrector
        damped = sigma_next / sigma * (-h * eta).exp() * x
        if solver_type == "phi_1":
            x = damped - alpha_next * torch.expm1(-h_eta) * torch.lerp(denoised, denoised_mid, 0.5)
        else:
            b2 = (torch.expm1(-h_eta) + h_eta) / -h_eta  # h·φ₂(−h)
            b1 = torch.expm1(-h_eta) - b2
            x = damped - alpha_next * (b1 * denoised + b2 * denoised_mid)
        if inject:
            # The intermediate point is σ_next itself, so the second noise segment has zero length:
            # its draw is taken and dropped only to keep the noise stream in step with ComfyUI.
            noise(sigma_mid, sigma_next)
            x = x + sde_noise * sigma_next * s_noise
    return x


@torch.no_grad()
def sample_exp_heun_2_x0(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                         callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                         solver_type: str = "phi_2") -> Tensor:
    """Deterministic exponential Heun (2nd order) in x0 prediction and log-SNR time (Lu et al.
    2022, "DPM-Solver++"; Gonzalez et al. 2023, "SEEDS", η = 0)."""
    return _exp_heun_2_x0(model, x, sigmas, _noise_source(x, seed, noise_sampler), callback, 0.0, 0.0, solver_type)


@torch.no_grad()
def sample_exp_heun_2_x0_sde(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                             callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                             eta: float = 1.0, s_noise: float = 1.0, solver_type: str = "phi_2") -> Tensor:
    """Stochastic exponential Heun (2nd order) in x0 prediction and log-SNR time (Gonzalez et al.
    2023, "SEEDS: Exponential SDE Solvers", SEEDS-2 with r = 1)."""
    return _exp_heun_2_x0(model, x, sigmas, _noise_source(x, seed, noise_sampler), callback, eta, s_noise, solver_type)


# -- DPM2 --------------------------------------------------------------------------------------------
def _log_midpoint(a: Tensor, b: Tensor) -> Tensor:
    """The geometric mean of two σ (the midpoint in log σ)."""
    return a.log().lerp(b.log(), 0.5).exp()


@torch.no_grad()
def sample_dpm_2(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                 callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                 s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0) -> Tensor:
    """DPM-Solver-2 in Karras's σ form: the slope is taken at the log-σ midpoint after a half
    Euler step (Lu et al. 2022, "DPM-Solver", Alg. 1 with r = ½; Karras et al. 2022's Algorithm 2
    churn). The final step to σ = 0 is Euler, hence ComfyUI's extra penultimate σ that is dropped."""
    churn = _Churn(x, sigmas, seed, noise_sampler, s_churn, s_tmin, s_tmax, s_noise)
    for i in range(len(sigmas) - 1):
        x, sigma_hat = churn.apply(x, sigmas[i])
        sigma_next = sigmas[i + 1]
        denoised = model(x, batch_sigma(x, sigma_hat))
        slope = to_d(x, sigma_hat, denoised)
        report(callback, i, x, sigmas[i], denoised, sigma_hat)
        if sigma_next == 0:
            x = x + slope * (sigma_next - sigma_hat)
            continue
        sigma_mid = _log_midpoint(sigma_hat, sigma_next)
        x_mid = x + slope * (sigma_mid - sigma_hat)
        slope_mid = to_d(x_mid, sigma_mid, model(x_mid, batch_sigma(x, sigma_mid)))
        x = x + slope_mid * (sigma_next - sigma_hat)
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                           callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                           eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """Ancestral DPM-Solver-2: a DPM2 step to σ_down, then noise σ_up back to σ_next (Lu et al.
    2022, "DPM-Solver"; ancestral split as in Ho et al. 2020, "DDPM")."""
    noise = _noise_source(x, seed, noise_sampler)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, batch_sigma(x, sigma))
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        report(callback, i, x, sigma, denoised)
        slope = to_d(x, sigma, denoised)
        if sigma_down == 0:
            x = x + slope * (sigma_down - sigma)
            continue
        sigma_mid = _log_midpoint(sigma, sigma_down)
        x_mid = x + slope * (sigma_mid - sigma)
        slope_mid = to_d(x_mid, sigma_mid, model(x_mid, batch_sigma(x, sigma_mid)))
        x = x + slope_mid * (sigma_down - sigma)
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


SAMPLERS: tuple[SamplerDef, ...] = (
    SamplerDef("euler", sample_euler, {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": float("inf"), "s_noise": 1.0},
               description="Euler: simple first-order steps; deterministic, a good default"),
    SamplerDef("euler_cfg_pp", sample_euler_cfg_pp,
               description="Euler with CFG++ guidance (steps along the unguided direction); use a low cfg"),
    SamplerDef("euler_ancestral", sample_euler_ancestral, {"eta": 1.0, "s_noise": 1.0}, stochastic=True,
               description="Euler ancestral: adds fresh noise each step; varied, does not converge as steps grow"),
    SamplerDef("euler_ancestral_cfg_pp", sample_euler_ancestral_cfg_pp, {"eta": 1.0, "s_noise": 1.0}, stochastic=True,
               description="Euler ancestral with CFG++ guidance; use a low cfg"),
    SamplerDef("heun", sample_heun, {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": float("inf"), "s_noise": 1.0},
               description="Heun: second-order, two model calls per step; accurate but twice as slow"),
    SamplerDef("heunpp2", sample_heunpp2, {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": float("inf"), "s_noise": 1.0},
               description="Heun++: looks up to two steps ahead (up to three model calls per step)"),
    SamplerDef("exp_heun_2_x0", sample_exp_heun_2_x0, {"solver_type": "phi_2"},
               description="Exponential Heun in log-SNR time: second-order, two model calls per step"),
    SamplerDef("exp_heun_2_x0_sde", sample_exp_heun_2_x0_sde, {"eta": 1.0, "s_noise": 1.0, "solver_type": "phi_2"},
               stochastic=True, description="Stochastic exponential Heun: adds noise each step (SEEDS-2)"),
    SamplerDef("dpm_2", sample_dpm_2, {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": float("inf"), "s_noise": 1.0},
               discard_penultimate_sigma=True,
               description="DPM2: second-order midpoint steps, two model calls per step"),
    SamplerDef("dpm_2_ancestral", sample_dpm_2_ancestral, {"eta": 1.0, "s_noise": 1.0}, stochastic=True,
               discard_penultimate_sigma=True,
               description="DPM2 ancestral: second-order steps with fresh noise each step"),
    SamplerDef("lms", sample_lms, {"order": 4},
               description="Linear multistep: reuses the last four slopes; one model call per step"),
)
