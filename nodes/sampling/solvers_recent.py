"""The newer solvers in ComfyUI's list: RES multistep, gradient estimation, ER-SDE, SEEDS, SA-Solver.

Most of them are exponential integrators: they step in the half-log-SNR time λ = log(α/σ_VP), in
which the linear part of the diffusion ODE/SDE integrates exactly and only the x0 predictions
are interpolated. For the discrete (SD-style, variance-exploding σ form) models this project
runs, λ = −log σ and α = 1; the conversion helpers in :mod:`~latentgraph.nodes.sampling.kit`
(``half_log_snr``, ``sigma_at``) are the only place that would change for flow-matching models
(λ = logit(1 − σ), where the first σ = 1 must also be nudged).
"""

from __future__ import annotations

from collections.abc import Callable

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
    noise_sampler_or_default,
    report,
    sigma_at,
    signal_scale,
    sqrt_one_minus_exp,
    start_step,
    to_d,
    x0_estimates,
)
from latentgraph.nodes.sampling.samplers import SamplerDef


# -- exponential-integrator weights ---------------------------------------------------------------
def _h_phi_1(z: Tensor) -> Tensor:
    """z·φ₁(z) = e^z − 1, the weight of a constant x0 over an exponential-integrator step."""
    return torch.expm1(z)


def _h_phi_2(z: Tensor) -> Tensor:
    """z·φ₂(z) = (e^z − 1 − z)/z, the weight of the x0 slope over an exponential-integrator step."""
    return (torch.expm1(z) - z) / z


# -- RES multistep ---------------------------------------------------------------------------------
def _res_multistep(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None, callback: StepCallback | None,
                   noise_sampler: NoiseSampler | None, eta: float, s_noise: float, cfg_pp: bool) -> Tensor:
    """Second-order RES multistep (Zhang et al. 2023, "Improving the Diffusion-Based Sampling with
    Refined Exponential Solvers", arXiv:2308.02157), optionally ancestral and/or CFG++.

    Each step integrates exactly in λ = −log σ with the x0 prediction linearly interpolated between
    this step's estimate and the last one; the first step (and a step to σ_down = 0) is Euler.
    With ``eta`` > 0 the step lands on σ_down and fresh noise of size σ_up is added (ancestral).
    CFG++ (Chung et al. 2024, arXiv:2406.08070) renoises along the unconditional estimate.
    """
    noise = noise_sampler_or_default(x, seed, noise_sampler)
    previous: Tensor | None = None  # last step's x0 estimate (the unconditional one for CFG++)
    previous_sigma_down: Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        # CFG++ steps along the unconditional estimate; plain RES along the guided one.
        denoised, along = x0_estimates(model, x, sigma, cfg_pp)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        report(callback, i, x, sigma, denoised)
        if previous is None or sigma_down == 0:
            x = euler_step(x, sigma, sigma_down, denoised, along, cfg_pp)
        else:
            lam, lam_down = half_log_snr(sigma), half_log_snr(sigma_down)
            h = lam_down - lam
            # where the previous estimate sits on this step, in units of h (negative: behind us)
            c2 = (half_log_snr(sigmas[i - 1]) - half_log_snr(previous_sigma_down)) / h
            phi1 = torch.expm1(-h) / -h
            phi2 = (phi1 - 1.0) / -h
            w_old = torch.nan_to_num(phi2 / c2, nan=0.0)
            w_now = torch.nan_to_num(phi1 - phi2 / c2, nan=0.0)
            if cfg_pp:
                x = guidance_shift(x, denoised, along)
            x = torch.exp(-h) * x + h * (w_now * along + w_old * previous)
        if sigma_next > 0 and eta > 0:
            x = x + noise(sigma, sigma_next) * s_noise * sigma_up
        previous, previous_sigma_down = along, sigma_down
    return x


def sample_res_multistep(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                         callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                         s_noise: float = 1.0) -> Tensor:
    """Deterministic RES 2nd-order multistep (Zhang et al. 2023, arXiv:2308.02157)."""
    return _res_multistep(model, x, sigmas, seed=seed, callback=callback, noise_sampler=noise_sampler,
                          eta=0.0, s_noise=s_noise, cfg_pp=False)


def sample_res_multistep_cfg_pp(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                                callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                                s_noise: float = 1.0) -> Tensor:
    """RES multistep (arXiv:2308.02157) with CFG++ renoising (Chung et al. 2024, arXiv:2406.08070)."""
    return _res_multistep(model, x, sigmas, seed=seed, callback=callback, noise_sampler=noise_sampler,
                          eta=0.0, s_noise=s_noise, cfg_pp=True)


def sample_res_multistep_ancestral(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                                   callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                                   eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """Ancestral RES multistep (arXiv:2308.02157): RES steps to σ_down plus fresh noise σ_up."""
    return _res_multistep(model, x, sigmas, seed=seed, callback=callback, noise_sampler=noise_sampler,
                          eta=eta, s_noise=s_noise, cfg_pp=False)


def sample_res_multistep_ancestral_cfg_pp(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                                          callback: StepCallback | None = None,
                                          noise_sampler: NoiseSampler | None = None,
                                          eta: float = 1.0, s_noise: float = 1.0) -> Tensor:
    """Ancestral RES multistep (arXiv:2308.02157) with CFG++ (arXiv:2406.08070)."""
    return _res_multistep(model, x, sigmas, seed=seed, callback=callback, noise_sampler=noise_sampler,
                          eta=eta, s_noise=s_noise, cfg_pp=True)


# -- gradient estimation ------------------------------------------------------------------------------
def _gradient_estimation(model: Denoiser, x: Tensor, sigmas: Tensor, *, callback: StepCallback | None,
                         ge_gamma: float, cfg_pp: bool) -> Tensor:
    """Euler with the slope extrapolated from the last two, d + (γ − 1)(d − d_prev) (Permenter &
    Yuan 2024, "Interpreting and Improving Diffusion Models from an Optimization Perspective",
    arXiv:2306.04848); the last step to σ = 0 returns the x0 estimate."""
    previous_d: Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, along = x0_estimates(model, x, sigma, cfg_pp)
        d = to_d(x, sigma, along)
        report(callback, i, x, sigma, denoised)
        dt = sigma_next - sigma
        if sigma_next == 0:
            x = denoised
        else:
            # CFG++ renoises the guided estimate along the unconditional direction
            x = denoised + d * sigma_next if cfg_pp else x + d * dt
            if i >= 1:
                x = x + (ge_gamma - 1) * (d - previous_d) * dt
        previous_d = d
    return x


def sample_gradient_estimation(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                               callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                               ge_gamma: float = 2.0) -> Tensor:
    """Gradient-estimation sampler (Permenter & Yuan 2024, arXiv:2306.04848). Deterministic."""
    return _gradient_estimation(model, x, sigmas, callback=callback, ge_gamma=ge_gamma, cfg_pp=False)


def sample_gradient_estimation_cfg_pp(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                                      callback: StepCallback | None = None,
                                      noise_sampler: NoiseSampler | None = None, ge_gamma: float = 2.0) -> Tensor:
    """Gradient estimation (arXiv:2306.04848) with CFG++ (arXiv:2406.08070). Deterministic."""
    return _gradient_estimation(model, x, sigmas, callback=callback, ge_gamma=ge_gamma, cfg_pp=True)


# -- ER-SDE ----------------------------------------------------------------------------------------------
#: quadrature points for ER-SDE's 2nd/3rd-stage integrals (ComfyUI: 200, on a float32 grid)
_ER_SDE_POINTS = 200


def er_sde_noise_scaler(lam: Tensor) -> Tensor:
    """The paper's ER-SDE-5 noise scale function, x·(e^{x^0.3} + 10) (Cui et al. 2023)."""
    return lam * ((lam**0.3).exp() + 10.0)


def reverse_time_sde_noise_scaler(eta: float) -> Callable[[Tensor], Tensor]:
    """x^(η+1): the reverse-time SDE of stochasticity η (η = 0 is the probability-flow ODE)."""
    return lambda lam: lam ** (eta + 1)


ER_SDE_SOLVER_TYPES = ("ER-SDE", "Reverse-time SDE", "ODE")


def sample_er_sde(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                  callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                  s_noise: float = 1.0, max_stage: int = 3, solver_type: str = "ER-SDE", eta: float = 1.0,
                  noise_scaler: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Extended reverse-time SDE solver, VP form, up to 3 stages (Cui et al. 2023, "Elucidating the
    solution space of extended reverse-time SDE for diffusion models", arXiv:2309.06169).

    In ER time ℓ = σ_VP/α (= σ here) the solution is x_t = (α_t/α_s)·(f(ℓ_t)/f(ℓ_s))·x_s + α_t·∫…x0,
    with the x0 integral expanded to first, second and third order in ℓ; the noise scale function f
    picks the SDE: ``solver_type`` "ER-SDE" uses the paper's f, "Reverse-time SDE" uses ℓ^(η+1),
    "ODE" (or η = 0) is deterministic — ComfyUI's SamplerER_SDE choices. ``noise_scaler`` overrides f.
    """
    if solver_type not in ER_SDE_SOLVER_TYPES:
        raise ValueError(f"solver_type must be one of {', '.join(ER_SDE_SOLVER_TYPES)}, not {solver_type!r}")
    if solver_type == "ODE" or (solver_type == "Reverse-time SDE" and eta == 0):
        eta, s_noise = 0.0, 0.0
    if noise_scaler is None:
        noise_scaler = er_sde_noise_scaler if solver_type == "ER-SDE" else reverse_time_sde_noise_scaler(eta)
    noise = noise_sampler_or_default(x, seed, noise_sampler)
    er_lambdas = half_log_snr(sigmas).neg().exp()  # ℓ = σ_VP/α
    # ComfyUI integrates on a float32 grid whatever the latent's dtype; keep that for equal numbers
    grid = torch.arange(0, float(_ER_SDE_POINTS), dtype=torch.float32, device=x.device)
    previous: Tensor | None = None
    previous_slope: Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next, denoised = start_step(model, x, sigmas, i, callback)
        stage = min(max_stage, i + 1)
        if sigma_next == 0:
            x = denoised
        else:
            l_s, l_t = er_lambdas[i], er_lambdas[i + 1]
            alpha_s, alpha_t = sigma / l_s, sigma_next / l_t
            ratio = noise_scaler(l_t) / noise_scaler(l_s)
            x = (alpha_t / alpha_s) * ratio * x + alpha_t * (1 - ratio) * denoised
            if stage >= 2:
                dl = l_t - l_s
                step = -dl / _ER_SDE_POINTS
                points = l_t + grid * step  # left Riemann sum from ℓ_t up towards ℓ_s
                f_points = noise_scaler(points)
                slope = (denoised - previous) / (l_s - er_lambdas[i - 1])
                integral_1 = torch.sum(1 / f_points) * step
                x = x + alpha_t * (dl + integral_1 * noise_scaler(l_t)) * slope
                if stage >= 3:
                    curvature = (slope - previous_slope) / ((l_s - er_lambdas[i - 2]) / 2)
                    integral_2 = torch.sum((points - l_s) / f_points) * step
                    x = x + alpha_t * (dl**2 / 2 + integral_2 * noise_scaler(l_t)) * curvature
                previous_slope = slope
            if s_noise > 0:
                spread = (l_t**2 - l_s**2 * ratio**2).sqrt().nan_to_num(nan=0.0)
                x = x + alpha_t * noise(sigma, sigma_next) * s_noise * spread
        previous = denoised
    return x


# -- SEEDS ----------------------------------------------------------------------------------------------
def _continue_path(path: Tensor, log_decay: Tensor, fresh: Tensor) -> Tensor:
    """An Ornstein-Uhlenbeck-style path carried to the next sub-step: the old increment decays by
    e^{log_decay} and fresh noise tops the variance back up to one."""
    return path * log_decay.exp() + sqrt_one_minus_exp(log_decay.mul(2)) * fresh


def seeds_solver(model: Denoiser, x: Tensor, sigmas: Tensor, *, noise: NoiseSampler, callback: StepCallback | None,
                 eta: float, s_noise: float, stages: tuple[float, ...], solver_type: str = "phi_2") -> Tensor:
    """SEEDS, the stochastic exponential derivative-free solvers in data prediction (Gonzalez et al.
    2023, "SEEDS: Exponential SDE Solvers for Fast High-Quality Sampling from Diffusion Models",
    arXiv:2305.14267), with two (``stages`` = (r,)) or three (``stages`` = (r₁, r₂)) stages.

    Stage 1 at λ_s + r₁h is the exact exponential step with x0 held; stage 2 at λ_s + r₂h adds the
    φ₂ correction from stage 1; the full step combines the first and the last stage's estimates by
    φ₂ (``solver_type`` "phi_2") or, for two stages, mixes them with weight 1/(2r) ("phi_1").
    ``eta`` scales the SDE (0 = exponential ODE solver); the noise of all sub-steps is one Brownian
    path, each increment decayed and reused in the next. With one stage at r = 1 and η = 0 this is
    the exponential Heun method.
    """
    if solver_type not in ("phi_1", "phi_2"):
        raise ValueError(f"solver_type must be 'phi_1' or 'phi_2', not {solver_type!r}")
    with_noise = eta > 0 and s_noise > 0
    for i in range(len(sigmas) - 1):
        sigma, sigma_next, denoised = start_step(model, x, sigmas, i, callback)
        if sigma_next == 0:
            x = denoised
            continue
        lam_s, lam_t = half_log_snr(sigma), half_log_snr(sigma_next)
        h = lam_t - lam_s
        h_eta = h * (eta + 1)
        alpha_t = signal_scale(sigma_next, lam_t)

        r_1 = stages[0]
        lam_1 = torch.lerp(lam_s, lam_t, r_1)
        sigma_1 = sigma_at(lam_1)
        x_1 = sigma_1 / sigma * (-r_1 * h * eta).exp() * x - signal_scale(sigma_1, lam_1) * _h_phi_1(-r_1 * h_eta) * denoised
        if with_noise:
            path = sqrt_one_minus_exp(-2 * r_1 * h * eta) * noise(sigma, sigma_1)
            x_1 = x_1 + path * sigma_1 * s_noise
        denoised_1 = model(x_1, batch_sigma(x, sigma_1))
        r_last, sigma_last, denoised_last = r_1, sigma_1, denoised_1

        if len(stages) > 1:
            r_2 = stages[1]
            lam_2 = torch.lerp(lam_s, lam_t, r_2)
            sigma_2 = sigma_at(lam_2)
            w_21 = r_2 / r_1 * _h_phi_2(-r_2 * h_eta)
            w_20 = _h_phi_1(-r_2 * h_eta) - w_21
            x_2 = (sigma_2 / sigma * (-r_2 * h * eta).exp() * x
                   - signal_scale(sigma_2, lam_2) * (w_20 * denoised + w_21 * denoised_1))
            if with_noise:
                path = _continue_path(path, (r_1 - r_2) * h * eta, noise(sigma_1, sigma_2))
                x_2 = x_2 + path * sigma_2 * s_noise
            denoised_2 = model(x_2, batch_sigma(x, sigma_2))
            r_last, sigma_last, denoised_last = r_2, sigma_2, denoised_2

        decay = sigma_next / sigma * (-h * eta).exp() * x
        if solver_type == "phi_1":
            x = decay - alpha_t * _h_phi_1(-h_eta) * torch.lerp(denoised, denoised_last, 1 / (2 * r_last))
        else:
            w_last = _h_phi_2(-h_eta) / r_last
            w_0 = _h_phi_1(-h_eta) - w_last
            x = decay - alpha_t * (w_0 * denoised + w_last * denoised_last)
        if with_noise:
            path = _continue_path(path, (r_last - 1) * h * eta, noise(sigma_last, sigma_next))
            x = x + path * sigma_next * s_noise
    return x


def sample_seeds_2(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                   callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                   eta: float = 1.0, s_noise: float = 1.0, r: float = 0.5, solver_type: str = "phi_1") -> Tensor:
    """SEEDS-2, two-stage stochastic exponential derivative-free solver in data prediction
    (Gonzalez et al. 2023, "SEEDS: Exponential SDE Solvers for Fast High-Quality Sampling from
    Diffusion Models", arXiv:2305.14267): the intermediate stage sits at λ_s + r·h; see
    :func:`seeds_solver`."""
    return seeds_solver(model, x, sigmas, noise=noise_sampler_or_default(x, seed, noise_sampler), callback=callback,
                        eta=eta, s_noise=s_noise, stages=(r,), solver_type=solver_type)


def sample_seeds_3(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                   callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                   eta: float = 1.0, s_noise: float = 1.0, r_1: float = 1.0 / 3, r_2: float = 2.0 / 3) -> Tensor:
    """SEEDS-3, three-stage stochastic exponential solver in data prediction (Gonzalez et al. 2023,
    arXiv:2305.14267): stages at λ_s + r₁h and λ_s + r₂h, φ₂-corrected, one Brownian path."""
    return seeds_solver(model, x, sigmas, noise=noise_sampler_or_default(x, seed, noise_sampler), callback=callback,
                        eta=eta, s_noise=s_noise, stages=(r_1, r_2), solver_type="phi_2")


# -- SA-Solver --------------------------------------------------------------------------------------------
def sa_tau_interval(start_sigma: float, end_sigma: float, eta: float = 1.0) -> Callable[[Tensor | float], float]:
    """τ(σ) = η inside [end_sigma, start_sigma], 0 outside: SA-Solver's stochasticity is switched
    on only in the middle of the run (the SA-Solver README's recommendation, here in σ)."""

    def tau(sigma: Tensor | float) -> float:
        if eta <= 0:
            return 0.0
        s = float(sigma)
        return eta if start_sigma >= s >= end_sigma else 0.0

    return tau


def _exponential_moments(lam_s: Tensor, lam_t: Tensor, order: int, tau: float) -> Tensor:
    """m_p = k·e^{−kλ_t}·∫_{λ_s}^{λ_t} e^{kλ}·λ^p dλ for p < order, k = 1 + τ².

    Integration by parts gives m_p = (λ_t^p − λ_s^p·e^{−kh}) − (p/k)·m_{p−1}.
    """
    k = 1 + tau**2
    decay = (-k * (lam_t - lam_s)).exp()
    moments = []
    for p in range(order):
        boundary = lam_t**p - lam_s**p * decay
        moments.append(boundary if p == 0 else boundary - (p / k) * moments[-1])
    return torch.stack(moments)


def sa_adams_weights(sigma_next: Tensor, nodes: Tensor, lam_s: Tensor, lam_t: Tensor, tau: float,
                     simple_order_2: bool = False, corrector: bool = False) -> Tensor:
    """Weights b_j of the stochastic Adams step over [λ_s, λ_t] for x0 estimates at λ = ``nodes``
    (oldest first): α_t·∫ e^{−(1+τ²)(λ_t−λ)}·(1+τ²)·ℓ_j(λ) dλ with ℓ_j the Lagrange basis
    (Xue et al. 2023, "SA-Solver", arXiv:2309.05019, eqs. 15 and 18). ``simple_order_2`` uses the
    paper's simplified two-point weights (Appendix D).
    """
    k = 1 + tau**2
    h = lam_t - lam_s
    alpha_t = signal_scale(sigma_next, lam_t)
    if simple_order_2 and nodes.shape[0] == 2:
        whole = alpha_t * (-h * k).expm1().neg()
        if corrector:  # trapezoid-like: half of k·h on the new point
            newer = alpha_t * (0.5 * k * h)
            return torch.stack([whole - newer, newer])
        older = alpha_t * (0.5 * k * h**2) / (nodes[-2] - lam_s)
        return torch.stack([older, whole - older])
    n = nodes.shape[0]
    moments = _exponential_moments(lam_s, lam_t, n, tau)
    # Σ_j b_j·λ_j^p = m_p for every p < n: the Lagrange weights reproduce every monomial's integral
    vandermonde_t = torch.vander(nodes, n, increasing=True).T
    return alpha_t * torch.linalg.solve(vandermonde_t, moments)


def _combine(estimates: list[Tensor], weights: Tensor) -> Tensor:
    """Σ_j weights[j]·estimates[j] (weights cast to the latent's dtype when the σ's differ)."""
    stacked = torch.stack(estimates, dim=1)
    return torch.tensordot(stacked, weights.to(stacked.dtype), dims=([1], [0]))


def sample_sa_solver(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                     callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                     eta: float = 1.0, sde_start_percent: float = 0.2, sde_end_percent: float = 0.8,
                     s_noise: float = 1.0, predictor_order: int = 3, corrector_order: int = 4,
                     use_pece: bool = False, simple_order_2: bool = False,
                     tau_func: Callable[[Tensor | float], float] | None = None) -> Tensor:
    """Stochastic Adams predictor-corrector (Xue et al. 2023, "SA-Solver: Stochastic Adams Solver
    for Fast Sampling of Diffusion Models", arXiv:2309.05019, NeurIPS 2023).

    Each step predicts x at the next σ from the last ``predictor_order`` x0 estimates (explicit
    Adams), evaluates the model there, then corrects the *same* step with ``corrector_order``
    estimates including the new one (implicit Adams), reusing the predictor's noise; with
    ``use_pece`` the corrected state is evaluated again (PECE). The SDE strength τ is ``eta``
    between the σ at ``sde_start_percent`` and at ``sde_end_percent`` of the run, 0 elsewhere
    (ComfyUI's SamplerSASolver inputs); ``tau_func`` overrides that. Orders drop near σ = 0.
    """
    noise = noise_sampler_or_default(x, seed, noise_sampler)
    ms = model.model_sampling
    if tau_func is None:
        tau_func = sa_tau_interval(ms.percent_to_sigma(sde_start_percent), ms.percent_to_sigma(sde_end_percent), eta)
    lambdas = half_log_snr(sigmas)
    keep = max(predictor_order, corrector_order)
    steps = len(sigmas) - 1
    ends_at_zero = sigmas[-1].item() == 0

    x_pred = x  # the predicted state at sigmas[i]; x is the corrected one
    h: Tensor | float = 0.0
    tau = 0.0
    step_noise: Tensor | float = 0.0
    estimates: list[Tensor] = []
    for i in range(steps):
        denoised = model(x_pred, batch_sigma(x, sigmas[i]))
        report(callback, i, x_pred, sigmas[i], denoised)
        estimates = (estimates + [denoised])[-keep:]

        p_order = min(predictor_order, len(estimates))
        no_corrector = i == 0 or (sigmas[i + 1] == 0 and not use_pece)
        c_order = 0 if no_corrector else min(corrector_order, len(estimates))
        if ends_at_zero:  # lower orders for the last steps, for stability
            p_order = min(p_order, steps - 1 - i)
            c_order = min(c_order, steps - i)

        # correct the step just taken, σ_{i−1} → σ_i, now that D(x_pred, σ_i) is known
        if c_order == 0:
            x = x_pred
        else:
            weights = sa_adams_weights(sigmas[i], lambdas[i - c_order + 1:i + 1], lambdas[i - 1], lambdas[i],
                                       tau, simple_order_2, corrector=True)
            x = sigmas[i] / sigmas[i - 1] * (-(tau**2) * h).exp() * x + _combine(estimates[-c_order:], weights)
            if tau > 0 and s_noise > 0:
                x = x + step_noise
            if use_pece:
                denoised = model(x, batch_sigma(x, sigmas[i]))
                estimates[-1] = denoised

        # predict the next state
        if sigmas[i + 1] == 0:
            x_pred = denoised
        else:
            tau = tau_func(sigmas[i + 1])
            weights = sa_adams_weights(sigmas[i + 1], lambdas[i - p_order + 1:i + 1], lambdas[i], lambdas[i + 1],
                                       tau, simple_order_2, corrector=False)
            h = lambdas[i + 1] - lambdas[i]
            x_pred = sigmas[i + 1] / sigmas[i] * (-(tau**2) * h).exp() * x + _combine(estimates[-p_order:], weights)
            if tau > 0 and s_noise > 0:
                spread = sqrt_one_minus_exp(-2 * tau**2 * h)
                step_noise = noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * spread * s_noise
                x_pred = x_pred + step_noise
    return x_pred


_SA_DEFAULTS = {"eta": 1.0, "sde_start_percent": 0.2, "sde_end_percent": 0.8, "s_noise": 1.0,
                "predictor_order": 3, "corrector_order": 4, "simple_order_2": False}

SAMPLERS: tuple[SamplerDef, ...] = (
    SamplerDef("res_multistep", sample_res_multistep, {"s_noise": 1.0},
               description="RES multistep: a 2nd-order exponential solver, one model call per step"),
    SamplerDef("res_multistep_cfg_pp", sample_res_multistep_cfg_pp, {"s_noise": 1.0},
               description="RES multistep with CFG++ (use a low CFG, about 1-2)"),
    SamplerDef("res_multistep_ancestral", sample_res_multistep_ancestral, {"eta": 1.0, "s_noise": 1.0},
               stochastic=True, description="RES multistep that adds fresh noise every step (ancestral)"),
    SamplerDef("res_multistep_ancestral_cfg_pp", sample_res_multistep_ancestral_cfg_pp, {"eta": 1.0, "s_noise": 1.0},
               stochastic=True, description="Ancestral RES multistep with CFG++ (use a low CFG, about 1-2)"),
    SamplerDef("gradient_estimation", sample_gradient_estimation, {"ge_gamma": 2.0},
               description="Euler with the step direction extrapolated from the previous step"),
    SamplerDef("gradient_estimation_cfg_pp", sample_gradient_estimation_cfg_pp, {"ge_gamma": 2.0},
               description="Gradient estimation with CFG++ (use a low CFG, about 1-2)"),
    SamplerDef("er_sde", sample_er_sde, {"s_noise": 1.0, "max_stage": 3, "solver_type": "ER-SDE", "eta": 1.0},
               stochastic=True, description="ER-SDE: a 3-stage stochastic solver that keeps detail in few steps"),
    SamplerDef("seeds_2", sample_seeds_2, {"eta": 1.0, "s_noise": 1.0, "r": 0.5, "solver_type": "phi_1"},
               stochastic=True, description="SEEDS-2: stochastic exponential solver, two model calls per step"),
    SamplerDef("seeds_3", sample_seeds_3, {"eta": 1.0, "s_noise": 1.0, "r_1": 1.0 / 3, "r_2": 2.0 / 3},
               stochastic=True, description="SEEDS-3: stochastic exponential solver, three model calls per step"),
    SamplerDef("sa_solver", sample_sa_solver, {**_SA_DEFAULTS, "use_pece": False},
               stochastic=True, description="SA-Solver: stochastic Adams predictor-corrector, one model call per step"),
    SamplerDef("sa_solver_pece", sample_sa_solver, {**_SA_DEFAULTS, "use_pece": True},
               stochastic=True, description="SA-Solver re-evaluating each corrected step (two model calls per step)"),
)
