"""DPM-Solver and DPM-Solver++ in σ: the fast/adaptive singlestep solvers, the 2S/2M/3M
multistep family, their SDE variants and CFG++ forms.

All of them are exponential integrators of the diffusion ODE/SDE written in the half-log-SNR
time λ = −log σ (a noisy latent in σ form has α = 1, so σ = e^−λ). Every function follows the
contract in :mod:`latentgraph.nodes.sampling.kit`: ``x`` is ``x0 + σ₀·ε`` at ``sigmas[0]``, the
result is the latent at ``sigmas[-1]``. ComfyUI is the numeric reference: coefficients are
computed from the schedule's own tensors, in its dtype, so a seed and a schedule give its latents.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from latentgraph.nodes.sampling.kit import (
    Denoiser,
    NoiseSampler,
    StepCallback,
    ancestral_step,
    batch_sigma,
    euler_step,
    guidance_shift,
    half_log_snr,
    noise_sampler_or_brownian,
    noise_sampler_or_default,
    report,
    sigma_at,
    signal_scale,
    sqrt_one_minus_exp,
    start_step,
    x0_estimates,
)
from latentgraph.nodes.sampling.samplers import SamplerDef


# -- DPM-Solver (singlestep, noise prediction) ----------------------------------------------------
class _EpsStages:
    """ε(x, λ) = (x − D(x, σ(λ))) / σ(λ) for the stages of one DPM-Solver step, memoised by stage
    name: an adaptive step's low- and high-order estimates start from the same stages (the r₁ = 1/3
    stage of DPM-Solver-2 is the first stage of DPM-Solver-3), so each is evaluated once."""

    def __init__(self, model: Denoiser):
        self.model = model
        self.memo: dict[str, Tensor] = {}

    def __call__(self, stage: str, x: Tensor, lam: Tensor) -> Tensor:
        if stage not in self.memo:
            sigma = sigma_at(lam)
            self.memo[stage] = (x - self.model(x, batch_sigma(x, sigma))) / sigma
        return self.memo[stage]


def _dpm_solver_update(eps: _EpsStages, x: Tensor, lam: Tensor, lam_next: Tensor, order: int,
                       r1: float = 1 / 3, r2: float = 2 / 3) -> Tensor:
    """One DPM-Solver-1/2/3 step from λ to λ_next (Lu et al. 2022, "DPM-Solver: A Fast ODE Solver
    for Diffusion Probabilistic Model Sampling in Around 10 Steps", Algorithms 4-5 with α = 1).
    ``r1`` is the intermediate stage for order 2 (1/2 there unless an adaptive step asks for 1/3)."""
    h = lam_next - lam
    sigma_next = sigma_at(lam_next)
    e0 = eps("eps", x, lam)
    first = x - sigma_next * h.expm1() * e0  # DPM-Solver-1 = DDIM
    if order == 1:
        return first
    s1 = lam + r1 * h
    u1 = x - sigma_at(s1) * (r1 * h).expm1() * e0
    e1 = eps("eps_r1", u1, s1)
    if order == 2:
        return first - sigma_next / (2 * r1) * h.expm1() * (e1 - e0)
    s2 = lam + r2 * h
    u2 = (x - sigma_at(s2) * (r2 * h).expm1() * e0
          - sigma_at(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (e1 - e0))
    e2 = eps("eps_r2", u2, s2)
    return first - sigma_next / r2 * (h.expm1() / h - 1) * (e2 - e0)


def _end_sigmas(sigmas: Tensor) -> tuple[Tensor, Tensor]:
    """(σ_min, σ_max) a DPM-Solver run spans: it cannot reach σ = 0, so a final 0 is replaced by
    the σ before it (ComfyUI's rule for dpm_fast and dpm_adaptive)."""
    sigma_min = sigmas[-1] if sigmas[-1] != 0 else sigmas[-2]
    if sigma_min <= 0 or sigmas[0] <= 0:
        raise ValueError("dpm_fast/dpm_adaptive need a schedule whose first and last non-zero σ are > 0")
    return sigma_min.clone(), sigmas[0].clone()


def _noisy_target(lam: Tensor, lam_next: Tensor, lam_end: Tensor, eta: float) -> tuple[Tensor, Tensor | float]:
    """With η > 0, aim the deterministic step lower (λ further) and make up the rest with fresh
    noise of size σ_up (the ancestral split of :func:`ancestral_step`)."""
    if not eta:
        return lam_next, 0.0
    sigma_down, _ = ancestral_step(sigma_at(lam), sigma_at(lam_next), eta)
    target = torch.minimum(lam_end, half_log_snr(sigma_down))
    return target, (sigma_at(lam_next) ** 2 - sigma_at(target) ** 2) ** 0.5


@torch.no_grad()
def sample_dpm_fast(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                    callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                    eta: float = 0.0, s_noise: float = 1.0) -> Tensor:
    """DPM-Solver-fast (Lu et al. 2022, §3.4): a budget of ``len(sigmas) − 1`` model calls spent on
    third-order steps evenly spaced in λ between the schedule's σ_max and its last non-zero σ,
    finishing with a second- and/or first-order step. Only the two ends of ``sigmas`` matter."""
    sigma_min, sigma_max = _end_sigmas(sigmas)
    lam_start, lam_end = half_log_snr(sigma_max), half_log_snr(sigma_min)
    if eta and not lam_end > lam_start:
        raise ValueError("eta must be 0 when sampling towards more noise")
    noise = noise_sampler_or_default(x, seed, noise_sampler)
    budget = len(sigmas) - 1
    steps = budget // 3 + 1
    # ComfyUI spaces the grid with torch.linspace's default dtype (float32), whatever the σ dtype.
    grid = torch.linspace(lam_start, lam_end, steps + 1, dtype=torch.float32, device=x.device)
    if budget % 3 == 0:
        orders = [3] * (steps - 2) + [2, 1]
    else:
        orders = [3] * (steps - 1) + [budget % 3]
    for i, order in enumerate(orders):
        lam, lam_next = grid[i], grid[i + 1]
        target, sigma_up = _noisy_target(lam, lam_next, lam_end, eta)
        eps = _EpsStages(model)
        e0 = eps("eps", x, lam)
        report(callback, i, x, sigma_at(lam), x - sigma_at(lam) * e0)
        x = _dpm_solver_update(eps, x, lam, target, order, r1=1 / 2 if order == 2 else 1 / 3)
        if eta:  # draw whenever ComfyUI's draw can matter, so the noise sequence stays aligned
            x = x + sigma_up * s_noise * noise(sigma_at(lam), sigma_at(lam_next))
    return x


class _StepController:
    """PID step-size control on the inverse error (Söderlind 2003, "Digital filters in adaptive
    time-stepping"), with the arctan limiter that keeps each change of h between ×(1 − π/4) and
    ×(1 + π/2); a step is kept when the proposed factor is at least ``accept_safety``."""

    def __init__(self, h: float, pcoeff: float, icoeff: float, dcoeff: float, order: float, accept_safety: float):
        self.h = h
        self.weights = ((pcoeff + icoeff + dcoeff) / order, -(pcoeff + 2 * dcoeff) / order, dcoeff / order)
        self.accept_safety = accept_safety
        self.history: list[float] = []  # inverse errors: this step's, the last accepted, the one before

    def propose(self, error: float) -> bool:
        inv = 1 / (error + 1e-8)
        if not self.history:
            self.history = [inv, inv, inv]
        self.history[0] = inv
        factor = 1.0
        for value, weight in zip(self.history, self.weights):
            factor *= value**weight
        factor = 1 + math.atan(factor - 1)
        accepted = factor >= self.accept_safety
        if accepted:
            self.history[1:] = self.history[:2]
        self.h *= factor
        return accepted


@torch.no_grad()
def sample_dpm_adaptive(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                        callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                        order: int = 3, rtol: float = 0.05, atol: float = 0.0078, h_init: float = 0.05,
                        pcoeff: float = 0.0, icoeff: float = 1.0, dcoeff: float = 0.0, accept_safety: float = 0.81,
                        eta: float = 0.0, s_noise: float = 1.0) -> Tensor:
    """DPM-Solver-12 / -23 with adaptive steps (Lu et al. 2022, §3.3 and Algorithm 6): each step
    compares an order-(k−1) and an order-k estimate and lets a PID controller choose the next λ
    step. Only the two ends of ``sigmas`` matter; the number of model calls follows the error.

    The callback fires after every attempt, rejected ones included (as ComfyUI's does), with the
    latent after the attempt and the σ reached (unchanged when rejected).
    """
    if order not in (2, 3):
        raise ValueError("order should be 2 or 3")
    sigma_min, sigma_max = _end_sigmas(sigmas)
    lam, lam_end = half_log_snr(sigma_max), half_log_snr(sigma_min)
    forward = bool(lam_end > lam)
    if eta and not forward:
        raise ValueError("eta must be 0 when sampling towards more noise")
    noise = noise_sampler_or_default(x, seed, noise_sampler)
    controller = _StepController(abs(h_init) * (1 if forward else -1), pcoeff, icoeff, dcoeff,
                                 1.5 if eta else order, accept_safety)
    # ComfyUI builds the tolerances as default-dtype (float32) tensors.
    atol_t, rtol_t = torch.tensor(atol, dtype=torch.float32), torch.tensor(rtol, dtype=torch.float32)
    x_prev = x
    attempt = 0
    while (lam < lam_end - 1e-5) if forward else (lam > lam_end + 1e-5):
        lam_next = torch.minimum(lam_end, lam + controller.h) if forward else torch.maximum(lam_end, lam + controller.h)
        target, sigma_up = _noisy_target(lam, lam_next, lam_end, eta)
        eps = _EpsStages(model)
        denoised = x - sigma_at(lam) * eps("eps", x, lam)
        if order == 2:
            low = _dpm_solver_update(eps, x, lam, target, 1)
            high = _dpm_solver_update(eps, x, lam, target, 2, r1=1 / 2)
        else:
            low = _dpm_solver_update(eps, x, lam, target, 2, r1=1 / 3)
            high = _dpm_solver_update(eps, x, lam, target, 3)
        scale = torch.maximum(atol_t, rtol_t * torch.maximum(low.abs(), x_prev.abs()))
        error = torch.linalg.norm((low - high) / scale) / x.numel() ** 0.5
        if controller.propose(float(error)):
            x_prev = low
            x = high
            if eta:
                x = x + sigma_up * s_noise * noise(sigma_at(lam), sigma_at(lam_next))
            lam = lam_next
        report(callback, attempt, x, sigma_at(lam), denoised)
        attempt += 1
    return x


# -- DPM-Solver++ (data prediction) ---------------------------------------------------------------
def _dpmpp_2s_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, noise: NoiseSampler, callback: StepCallback | None,
                        eta: float, s_noise: float, cfg_pp: bool) -> Tensor:
    """Ancestral DPM-Solver++(2S) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
    Diffusion Probabilistic Models", Algorithm 1 with r = 1/2): a second-order singlestep move to
    σ_down through the λ-midpoint, then fresh Gaussian noise of size σ_up; the last step is first
    order.

    With ``cfg_pp`` (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance for
    Diffusion Models") the latent that is decayed towards the estimate is first moved by the
    guidance D − D_uncond, so the guidance enters once instead of being amplified by the step. As
    in ComfyUI, the full step's guidance term uses the *midpoint's* unconditional estimate (ComfyUI
    keeps the last model call's one) with the start's guided estimate.
    """
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, uncond = x0_estimates(model, x, sigma, cfg_pp)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        report(callback, i, x, sigma, denoised)
        if sigma_down == 0:
            x = euler_step(x, sigma, sigma_down, denoised, uncond, cfg_pp)
        else:
            lam, lam_down = half_log_snr(sigma), half_log_snr(sigma_down)
            h = lam_down - lam
            lam_mid = lam + h / 2
            x_start = guidance_shift(x, denoised, uncond) if cfg_pp else x
            x_mid = (sigma_at(lam_mid) / sigma_at(lam)) * x_start - (-h / 2).expm1() * denoised
            denoised_mid, uncond_mid = x0_estimates(model, x_mid, sigma_at(lam_mid), cfg_pp)
            x_start = guidance_shift(x, denoised, uncond_mid) if cfg_pp else x
            x = (sigma_at(lam_down) / sigma_at(lam)) * x_start - (-h).expm1() * denoised_mid
        if sigma_next > 0:
            x = x + noise(sigma, sigma_next) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                              callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                              eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """Ancestral DPM-Solver++(2S) (Lu et al. 2022, "DPM-Solver++", Algorithm 1 with r = 1/2); see
    :func:`_dpmpp_2s_ancestral`."""
    return _dpmpp_2s_ancestral(model, x, sigmas, noise_sampler_or_default(x, seed, noise_sampler), callback,
                               eta, s_noise, cfg_pp=False)


@torch.no_grad()
def sample_dpmpp_2s_ancestral_cfg_pp(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                                     callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                                     eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """Ancestral DPM-Solver++(2S) with CFG++ (Chung et al. 2024, "CFG++"; Lu et al. 2022
    DPM-Solver++ Algorithm 1); see :func:`_dpmpp_2s_ancestral`."""
    return _dpmpp_2s_ancestral(model, x, sigmas, noise_sampler_or_default(x, seed, noise_sampler), callback,
                               eta, s_noise, cfg_pp=True)


@torch.no_grad()
def sample_dpmpp_sde(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                     callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                     eta: float = 1.0, s_noise: float = 1.0, r: float = 0.5) -> Tensor:
    """Stochastic DPM-Solver++ (Lu et al. 2022, DPM-Solver++ §4 singlestep 2S, with each of its two
    sub-steps made ancestral as in Karras et al. 2022): a stage at λ + r·h, then the full step with
    the two estimates blended 1 − 1/(2r) : 1/(2r). Noise comes from one Brownian path per run, so
    a step's two noises are correlated and results converge as steps grow."""
    noise = noise_sampler_or_brownian(x, sigmas, seed, noise_sampler)
    blend = 1 / (2 * r)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next, denoised = start_step(model, x, sigmas, i, callback)
        if sigma_next == 0:
            x = denoised
            continue
        lam, lam_next = half_log_snr(sigma), half_log_snr(sigma_next)
        h = lam_next - lam
        lam_stage = lam + r * h
        sigma_stage = sigma_at(lam_stage)
        # α = σ·e^λ is 1 up to rounding in σ form; kept so the arithmetic is ComfyUI's.
        alpha, alpha_stage, alpha_next = (signal_scale(sigma, lam), signal_scale(sigma_stage, lam_stage),
                                          signal_scale(sigma_next, lam_next))

        down, up = ancestral_step(sigma_at(lam), sigma_at(lam_stage), eta)
        h_down = half_log_snr(down) - lam
        x_stage = (alpha_stage / alpha) * (-h_down).exp() * x - alpha_stage * (-h_down).expm1() * denoised
        if eta > 0 and s_noise > 0:
            x_stage = x_stage + alpha_stage * noise(sigma, sigma_stage) * s_noise * up
        denoised_stage = model(x_stage, batch_sigma(x, sigma_stage))

        down, up = ancestral_step(sigma_at(lam), sigma_at(lam_next), eta)
        h_down = half_log_snr(down) - lam
        mixed = (1 - blend) * denoised + blend * denoised_stage
        x = (alpha_next / alpha) * (-h_down).exp() * x - alpha_next * (-h_down).expm1() * mixed
        if eta > 0 and s_noise > 0:
            x = x + alpha_next * noise(sigma, sigma_next) * s_noise * up
    return x


@torch.no_grad()
def sample_dpmpp_2m(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                    callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, DPM-Solver++ Algorithm 2): second order from one model
    call per step by extrapolating the data estimate from the previous step; first order on the
    first and the last (σ = 0) step."""
    previous: Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next, denoised = start_step(model, x, sigmas, i, callback)
        lam, lam_next = half_log_snr(sigma), half_log_snr(sigma_next)
        h = lam_next - lam
        if previous is None or sigma_next == 0:
            estimate = denoised
        else:
            ratio = (lam - half_log_snr(sigmas[i - 1])) / h
            estimate = (1 + 1 / (2 * ratio)) * denoised - (1 / (2 * ratio)) * previous
        x = (sigma_at(lam_next) / sigma_at(lam)) * x - (-h).expm1() * estimate
        previous = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2m_cfg_pp(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                           callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None) -> Tensor:
    """DPM-Solver++(2M) with CFG++ (Chung et al. 2024; Lu et al. 2022 Algorithm 2): the latent is
    carried along the unconditional estimate, re-noised from the guided one, and the multistep
    correction uses the guided estimate minus the previous unconditional one."""
    previous_uncond: Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, uncond = x0_estimates(model, x, sigma, cfg_pp=True)
        report(callback, i, x, sigma, denoised)
        lam, lam_next = half_log_snr(sigma), half_log_snr(sigma_next)
        h = lam_next - lam
        decay = torch.exp(-h)
        mix = -decay * uncond
        if previous_uncond is not None and sigma_next != 0:
            ratio = (lam - half_log_snr(sigmas[i - 1])) / h
            mix = mix - torch.expm1(-h) * (1 / (2 * ratio)) * (denoised - previous_uncond)
        x = denoised + mix + decay * x
        previous_uncond = uncond
    return x


def _sde_noise_term(noise: NoiseSampler, sigma: Tensor, sigma_next: Tensor, h: Tensor, eta: float, s_noise: float) -> Tensor:
    """The Brownian increment of the data-prediction SDE over one step: σ_next·sqrt(1 − e^(−2ηh))."""
    return noise(sigma, sigma_next) * sigma_next * sqrt_one_minus_exp(-2 * h * eta) * s_noise


def _correction_2m(solver_type: str, x: Tensor, denoised: Tensor, estimates: list[Tensor], hs: list[Tensor | None],
                   h: Tensor, h_eta: Tensor, alpha_next: Tensor, gain: Tensor) -> Tensor:
    """2M: the first-order step corrected by the difference to the previous estimate, weighted by
    the midpoint rule or the Heun (φ₂) rule."""
    if not estimates:
        return x
    inv_ratio = 1 / (hs[0] / h)
    if solver_type == "heun":
        return x + alpha_next * (gain / (-h_eta) + 1) * inv_ratio * (denoised - estimates[0])
    return x + 0.5 * alpha_next * gain * inv_ratio * (denoised - estimates[0])


def _correction_3m(x: Tensor, denoised: Tensor, estimates: list[Tensor], hs: list[Tensor | None],
                   h: Tensor, h_eta: Tensor, alpha_next: Tensor) -> Tensor:
    """3M: the φ₂/φ₃ integrals of the last two differences (second order while only one exists)."""
    phi_2 = h_eta.neg().expm1() / h_eta + 1
    if len(hs) == 2 and hs[1] is not None:
        r0, r1 = hs[0] / h, hs[1] / h
        diff_0 = (denoised - estimates[0]) / r0
        diff_1 = (estimates[0] - estimates[1]) / r1
        first = diff_0 + (diff_0 - diff_1) * r0 / (r0 + r1)
        second = (diff_0 - diff_1) / (r0 + r1)
        phi_3 = phi_2 / h_eta - 0.5
        return x + (alpha_next * phi_2) * first - (alpha_next * phi_3) * second
    if hs and hs[0] is not None:
        return x + (alpha_next * phi_2) * ((denoised - estimates[0]) / (hs[0] / h))
    return x


def _dpmpp_multistep_sde(model: Denoiser, x: Tensor, sigmas: Tensor, noise: NoiseSampler, callback: StepCallback | None,
                         eta: float, s_noise: float, order: int, solver_type: str = "midpoint") -> Tensor:
    """DPM-Solver++(2M) SDE (``order`` 2) and (3M) SDE (``order`` 3): the exact linear part of the
    data-prediction SDE, a multistep correction from the last steps' estimates, and Brownian noise
    (η = 0 is the ODE). The last (σ = 0) step returns the estimate."""
    estimates: list[Tensor] = []  # the last two steps' data estimates, newest first
    hs: list[Tensor | None] = []  # their step sizes in λ
    h: Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next, denoised = start_step(model, x, sigmas, i, callback)
        if sigma_next == 0:
            x = denoised
        else:
            lam, lam_next = half_log_snr(sigma), half_log_snr(sigma_next)
            h = lam_next - lam
            h_eta = h * (eta + 1)
            alpha_next = signal_scale(sigma_next, lam_next)
            gain = (-h_eta).expm1().neg()  # 1 − e^(−(1+η)h)
            x = sigma_next / sigma * (-h * eta).exp() * x + alpha_next * gain * denoised
            if order == 2:
                x = _correction_2m(solver_type, x, denoised, estimates, hs, h, h_eta, alpha_next, gain)
            else:
                x = _correction_3m(x, denoised, estimates, hs, h, h_eta, alpha_next)
            if eta > 0 and s_noise > 0:
                x = x + _sde_noise_term(noise, sigma, sigma_next, h, eta, s_noise)
        estimates, hs = [denoised] + estimates[:1], [h] + hs[:1]
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                        callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                        eta: float = 1.0, s_noise: float = 1.0, solver_type: str = "midpoint") -> Tensor:
    """DPM-Solver++(2M) SDE (Lu et al. 2022, DPM-Solver++ §5 and Appendix; the SDE solver of
    Gonzalez et al. 2023 "SEEDS" in its first-order form): the exact linear part of the
    data-prediction SDE, a multistep correction (``midpoint`` or ``heun`` weighting), and Brownian
    noise. η = 0 is the ODE (DPM-Solver++(2M) with that correction)."""
    if solver_type not in ("heun", "midpoint"):
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    return _dpmpp_multistep_sde(model, x, sigmas, noise_sampler_or_brownian(x, sigmas, seed, noise_sampler), callback,
                                eta, s_noise, order=2, solver_type=solver_type)


@torch.no_grad()
def sample_dpmpp_2m_sde_heun(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                             callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                             eta: float = 1.0, s_noise: float = 1.0, solver_type: str = "heun") -> Tensor:
    """DPM-Solver++(2M) SDE with the Heun-weighted correction (see :func:`sample_dpmpp_2m_sde`)."""
    return sample_dpmpp_2m_sde(model, x, sigmas, seed=seed, callback=callback, noise_sampler=noise_sampler,
                               eta=eta, s_noise=s_noise, solver_type=solver_type)


@torch.no_grad()
def sample_dpmpp_3m_sde(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                        callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                        eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """DPM-Solver++(3M) SDE (Lu et al. 2022, DPM-Solver++ §4.2 multistep, third order through the
    φ₂/φ₃ integrals of the last two differences; SDE noise as in :func:`sample_dpmpp_2m_sde`).
    Orders 1, 2, 3 on the first three steps, the last (σ = 0) step returns the estimate."""
    return _dpmpp_multistep_sde(model, x, sigmas, noise_sampler_or_brownian(x, sigmas, seed, noise_sampler), callback,
                                eta, s_noise, order=3)


_SDE = {"eta": 1.0, "s_noise": 1.0}
_ADAPTIVE = {"order": 3, "rtol": 0.05, "atol": 0.0078, "h_init": 0.05, "pcoeff": 0.0, "icoeff": 1.0,
             "dcoeff": 0.0, "accept_safety": 0.81, "eta": 0.0, "s_noise": 1.0}
_GPU_NOTE = " (same as without _gpu: our noise is drawn on the CPU on every device)"

_DPMPP_SDE = "DPM++ SDE: two model calls per step with Brownian noise; detailed, converges as steps grow"
_2M_SDE = "DPM++ 2M SDE: one model call per step with Brownian noise; converges as steps grow"
_2M_SDE_HEUN = "DPM++ 2M SDE with the Heun-weighted correction"
_3M_SDE = "DPM++ 3M SDE: third-order multistep with Brownian noise; best with many steps"

SAMPLERS: tuple[SamplerDef, ...] = (
    SamplerDef("dpm_fast", sample_dpm_fast,
               description="DPM-Solver fast: third-order steps evenly spaced in log σ; uses only the schedule's ends"),
    SamplerDef("dpm_adaptive", sample_dpm_adaptive, _ADAPTIVE,
               description="DPM-Solver adaptive: picks its own steps to an error tolerance; ignores the step count"),
    SamplerDef("dpmpp_2s_ancestral", sample_dpmpp_2s_ancestral, _SDE, stochastic=True,
               description="DPM++ 2S ancestral: second-order steps plus fresh noise; two model calls per step"),
    SamplerDef("dpmpp_2s_ancestral_cfg_pp", sample_dpmpp_2s_ancestral_cfg_pp, _SDE, stochastic=True,
               description="DPM++ 2S ancestral with CFG++ guidance; use a low cfg"),
    SamplerDef("dpmpp_sde", sample_dpmpp_sde, {**_SDE, "r": 0.5}, stochastic=True, description=_DPMPP_SDE),
    SamplerDef("dpmpp_sde_gpu", sample_dpmpp_sde, {**_SDE, "r": 0.5}, stochastic=True, description=_DPMPP_SDE + _GPU_NOTE),
    SamplerDef("dpmpp_2m", sample_dpmpp_2m,
               description="DPM++ 2M: second-order multistep, one model call per step; deterministic, a good default"),
    SamplerDef("dpmpp_2m_cfg_pp", sample_dpmpp_2m_cfg_pp, description="DPM++ 2M with CFG++ guidance; use a low cfg"),
    SamplerDef("dpmpp_2m_sde", sample_dpmpp_2m_sde, {**_SDE, "solver_type": "midpoint"}, stochastic=True,
               description=_2M_SDE),
    SamplerDef("dpmpp_2m_sde_gpu", sample_dpmpp_2m_sde, {**_SDE, "solver_type": "midpoint"}, stochastic=True,
               description=_2M_SDE + _GPU_NOTE),
    SamplerDef("dpmpp_2m_sde_heun", sample_dpmpp_2m_sde_heun, {**_SDE, "solver_type": "heun"}, stochastic=True,
               description=_2M_SDE_HEUN),
    SamplerDef("dpmpp_2m_sde_heun_gpu", sample_dpmpp_2m_sde_heun, {**_SDE, "solver_type": "heun"}, stochastic=True,
               description=_2M_SDE_HEUN + _GPU_NOTE),
    SamplerDef("dpmpp_3m_sde", sample_dpmpp_3m_sde, _SDE, stochastic=True, description=_3M_SDE),
    SamplerDef("dpmpp_3m_sde_gpu", sample_dpmpp_3m_sde, _SDE, stochastic=True, description=_3M_SDE + _GPU_NOTE),
)
