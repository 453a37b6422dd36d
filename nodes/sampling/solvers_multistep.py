"""Samplers that step in the model's own discrete (VP) view or reuse earlier model outputs:
DDPM, LCM, DDIM, the iPNDM / DEIS linear-multistep family and UniPC.

Every function follows the contract in :mod:`latentgraph.nodes.sampling.kit`: ``x`` is the noisy
latent ``x0 + σ₀·ε`` at ``sigmas[0]``, the return value is the latent at ``sigmas[-1]``. ComfyUI is
the numeric reference: scalar step coefficients are computed from ``sigmas`` in *their* dtype, as
ComfyUI does, because for small σ a float32 ``1 − ᾱ`` differs from the exact value far above any
test tolerance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from latentgraph.nodes.sampling.kit import (
    Denoiser,
    NoiseSampler,
    StepCallback,
    batch_sigma,
    noise_sampler_or_default,
    report,
    start_step,
    to_d,
)
from latentgraph.nodes.sampling.samplers import SamplerDef


# -- one-step samplers in the discrete-time view ---------------------------------------------------------
@torch.no_grad()
def sample_ddpm(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None) -> Tensor:
    """Ancestral DDPM steps (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", eq. 11
    and σ_t² = β̃_t), generalised to any pair of noise levels.

    The step happens in the variance-preserving view x_vp = x / sqrt(1 + σ²) with ᾱ = 1/(1 + σ²);
    the "β" of a step is 1 − ᾱ_from/ᾱ_to. The last step to σ = 0 adds no noise.
    """
    noise = noise_sampler_or_default(x, seed, noise_sampler)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next, denoised = start_step(model, x, sigmas, i, callback)
        eps = (x - denoised) / sigma
        abar = 1 / (sigma * sigma + 1)
        abar_next = 1 / (sigma_next * sigma_next + 1)
        alpha = abar / abar_next  # 1 − β of this step
        x_vp = x / torch.sqrt(1.0 + sigma**2.0)
        mean = (1.0 / alpha).sqrt() * (x_vp - (1 - alpha) * eps / (1 - abar).sqrt())
        if sigma_next > 0:
            posterior_std = ((1 - alpha) * (1.0 - abar_next) / (1.0 - abar)).sqrt()
            mean = mean + posterior_std * noise(sigma, sigma_next)
            x = mean * torch.sqrt(1.0 + sigma_next**2.0)
        else:
            x = mean
    return x


@torch.no_grad()
def sample_lcm(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
               callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None) -> Tensor:
    """Latent Consistency Model sampling (Luo et al. 2023, "Latent Consistency Models", Alg. 1):
    jump to the model's x0 estimate, then re-noise it with fresh noise to the next σ."""
    noise = noise_sampler_or_default(x, seed, noise_sampler)
    for i in range(len(sigmas) - 1):
        denoised = model(x, batch_sigma(x, sigmas[i]))
        report(callback, i, x, sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = model.model_sampling.noise_scaling(sigmas[i + 1], noise(sigmas[i], sigmas[i + 1]), x)
    return x


@torch.no_grad()
def sample_ddim(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None) -> Tensor:
    """Deterministic DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", η = 0).

    In σ-form DDIM's update is exactly an Euler step of the probability-flow ODE
    dx/dσ = (x − D)/σ (Karras et al. 2022, §3), which is what ComfyUI runs under this name.
    """
    for i in range(len(sigmas) - 1):
        denoised = model(x, batch_sigma(x, sigmas[i]))
        report(callback, i, x, sigmas[i], denoised)
        x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


# -- linear multistep in σ (iPNDM, iPNDM-v, DEIS) -------------------------------------------------------
# Adams–Bashforth weights for equal steps, newest derivative first (Zhang & Chen 2023, "Fast
# Sampling of Diffusion Models with Exponential Integrator", §4 "iPNDM").
_AB_WEIGHTS = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)


def _ipndm_v_weights(sigmas: Tensor, i: int, order: int) -> tuple[Tensor, ...]:
    """Variable-step iPNDM weights (Zhou et al. 2024, "Fast ODE-based Sampling for Diffusion Models
    in Around 5 Steps", released diff-sampler code), newest derivative first.

    Exact Adams–Bashforth for order 2; the published order 3/4 corrections are approximations
    (order 4 does not even reduce to AB4 on equal steps). We keep them as published because that
    is what users of this sampler name get elsewhere.
    """
    h0 = sigmas[i + 1] - sigmas[i]
    h1 = sigmas[i] - sigmas[i - 1]
    r = h0 / h1
    if order == 2:
        return (2 + r) / 2, -r / 2
    h2 = sigmas[i - 1] - sigmas[i - 2]
    a = (1 - h0 / (3 * (h0 + h1)) * (h0 * (h0 + h1)) / (h1 * (h1 + h2))) / 2
    u = h1 / h2
    if order == 3:
        return (2 + r) / 2 + a, -r / 2 - (1 + u) * a, a * u
    h3 = sigmas[i - 2] - sigmas[i - 3]
    s1, s2 = h0 + h1, h0 + h1 + h2
    b = ((1 - h0 / (3 * s1)) / 2 + (1 - h0 / (2 * s1)) * h0 / (6 * s2)) \
        * (h0 * s1 * s2) / (h1 * (h1 + h2) * (h1 + h2 + h3))
    q = h1 * (h1 + h2) / (h2 * (h2 + h3))
    return (
        (2 + r) / 2 + a + b,
        -r / 2 - (1 + u) * a - (1 + u + q) * b,
        a * u + (u + q * (1 + h2 / h3)) * b,
        -b * q * u,  # as published: the last factor is h_{n-1}/h_{n-2}
    )


def _vp_edm_constants() -> tuple[Tensor, Tensor]:
    """β_min and β_d of the VP-SDE whose σ(t) runs from 0.002 at t = 1e-3 to 80 at t = 1 (EDM's
    VP settings, Karras et al. 2022, Table 1), rounded as the reference rounds them: log(1 + σ_min²)
    in float32 (where 1 + 4e-6 loses 1% of the 4e-6), the rest in float64."""
    eps_s = 1e-3
    log_min = torch.log(torch.tensor(0.002, dtype=torch.float32) ** 2 + 1)
    log_max = torch.log(torch.tensor(80.0**2 + 1, dtype=torch.float64))
    beta_d = 2 * (log_min / eps_s - log_max) / (eps_s - 1)
    beta_min = log_max - 0.5 * beta_d
    return beta_min, beta_d


def _deis_tab_weights(sigmas: Tensor, max_order: int, points: int = 10000) -> list[tuple[Tensor, ...]]:
    """DEIS "tAB" weights (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential
    Integrator", eq. 15) for the ε-form ODE dx/dσ = ε in σ-space.

    The history of ε is interpolated by a Lagrange polynomial in the VP time t(σ) of EDM's VP
    schedule, and ∫ ℓ_j(t) dσ/dt dt over each step is a Riemann sum over ``points`` equally spaced
    t (float32, as the reference does it: the sum's O(1/points) error is part of the numbers).
    Entry i holds the weights for step i (newest ε first); empty where the step is first order.
    """
    beta_min, beta_d = _vp_edm_constants()
    beta_1 = beta_d + beta_min
    slope = beta_1 - beta_min
    s = sigmas.detach().cpu()
    t = ((beta_min**2 + 2 * beta_d * (s**2 + 1).log()).sqrt() - beta_min) / beta_d
    weights: list[tuple[Tensor, ...]] = []
    for i in range(len(s) - 1):
        order = min(i + 1, max_order)
        if order == 1 or s[i + 1] <= 0:  # the step into σ = 0 is always Euler
            weights.append(())
            continue
        taus = torch.linspace(t[i], t[i + 1], points)
        dtau = (t[i + 1] - t[i]) / points
        alpha_bar = torch.exp(-0.5 * taus**2 * slope - taus * beta_min)
        # dσ/dt for σ = sqrt(1/ᾱ − 1): −½ (d log ᾱ/dt) / sqrt(ᾱ(1 − ᾱ))
        dsigma_dt = 0.5 * (taus * slope + beta_min) / torch.sqrt(alpha_bar * (1 - alpha_bar))
        nodes = t[[i - k for k in range(order)]]
        row = []
        for j in range(order):
            basis = 1
            for k in range(order):
                if k != j:
                    basis = basis * (taus - nodes[k]) / (nodes[j] - nodes[k])
            row.append(torch.sum(dsigma_dt * basis) * dtau)
        weights.append(tuple(w.to(sigmas.device) for w in row))
    return weights


def _multistep(model: Denoiser, x: Tensor, sigmas: Tensor, callback: StepCallback | None, max_order: int,
               step: Callable[[int, int, Tensor, Tensor, list[Tensor]], Tensor]) -> Tensor:
    """The loop the linear-multistep samplers share: evaluate D, keep the last ``max_order − 1``
    derivatives d = (x − D)/σ, and let ``step(i, order, x, denoised, ds)`` (``ds`` newest first)
    return the next x."""
    history: list[Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, batch_sigma(x, sigmas[i]))
        # ComfyUI reports the *initial* x at every step here (a quirk of its code); we report the
        # current one, which is what the Step contract means.
        report(callback, i, x, sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        order = min(max_order, i + 1)
        x = step(i, order, x, denoised, [d] + history[::-1][: order - 1])
        if max_order > 1:
            history = (history + [d])[-(max_order - 1):]
    return x


@torch.no_grad()
def sample_ipndm(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                 callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                 max_order: int = 4) -> Tensor:
    """Improved PNDM (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential
    Integrator", §4; Liu et al. 2022, PNDM): Adams–Bashforth on dx/dσ with fixed equal-step
    weights, warming up from Euler; the final step to σ = 0 returns D directly."""

    def step(i: int, order: int, x: Tensor, denoised: Tensor, ds: list[Tensor]) -> Tensor:
        if sigmas[i + 1] == 0:
            return denoised
        w = _AB_WEIGHTS[order - 1]
        return x + (sigmas[i + 1] - sigmas[i]) * sum(wj * dj for wj, dj in zip(w, ds))

    return _multistep(model, x, sigmas, callback, max_order, step)


@torch.no_grad()
def sample_ipndm_v(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                   callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                   max_order: int = 4) -> Tensor:
    """iPNDM with weights for unequal steps (Zhou et al. 2024, "Fast ODE-based Sampling for
    Diffusion Models in Around 5 Steps"); the final step to σ = 0 returns D directly."""

    def step(i: int, order: int, x: Tensor, denoised: Tensor, ds: list[Tensor]) -> Tensor:
        if sigmas[i + 1] == 0:
            return denoised
        w = (1.0,) if order == 1 else _ipndm_v_weights(sigmas, i, order)
        return x + (sigmas[i + 1] - sigmas[i]) * sum(wj * dj for wj, dj in zip(w, ds))

    return _multistep(model, x, sigmas, callback, max_order, step)


@torch.no_grad()
def sample_deis(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                max_order: int = 3, deis_mode: str = "tab") -> Tensor:
    """Diffusion Exponential Integrator Sampler, tAB variant (Zhang & Chen 2023, "Fast Sampling of
    Diffusion Models with Exponential Integrator"): multistep with weights that integrate the
    polynomial-extrapolated ε exactly in the VP time; Euler for the first and the final step."""
    if deis_mode != "tab":
        raise ValueError(f"deis_mode {deis_mode!r} is not supported (only 'tab')")
    weights = _deis_tab_weights(sigmas, max_order)

    def step(i: int, order: int, x: Tensor, denoised: Tensor, ds: list[Tensor]) -> Tensor:
        if order == 1 or sigmas[i + 1] <= 0:
            return x + (sigmas[i + 1] - sigmas[i]) * ds[0]
        out = x
        for wj, dj in zip(weights[i], ds):
            out = out + wj * dj
        return out

    return _multistep(model, x, sigmas, callback, max_order, step)


# -- UniPC ---------------------------------------------------------------------------------------------
class _VP:
    """α, std and half-log-SNR λ of the VP view of a σ-form model (ᾱ = 1/(1 + σ²)), written the
    way the reference evaluates them (the float32 rounding near σ = 0 is part of its numbers)."""

    @staticmethod
    def log_alpha(s: Tensor) -> Tensor:
        return 0.5 * torch.log(1 / ((s * s) + 1))

    @classmethod
    def alpha(cls, s: Tensor) -> Tensor:
        return torch.exp(cls.log_alpha(s))

    @classmethod
    def std(cls, s: Tensor) -> Tensor:
        return torch.sqrt(1.0 - torch.exp(2.0 * cls.log_alpha(s)))

    @classmethod
    def lam(cls, s: Tensor) -> Tensor:
        la = cls.log_alpha(s)
        return la - 0.5 * torch.log(1.0 - torch.exp(2.0 * la))


def _unipc_rhos(rs: list[Tensor], hh: Tensor, b_h: Tensor, order: int, *, predictor: bool) -> list[Tensor]:
    """Weights ρ of the B(h) UniP / UniC updates (Zhao et al. 2023, "UniPC", Alg. 2 and eq. 8):
    solve Σ_k ρ_k r_k^(i−1) = i!·φ_{i+1}(h)·h / B(h) for i = 1..p. The order-2 predictor and the
    order-1 corrector use ρ = ½ (the paper's simplification)."""
    if predictor and order == 2 or not predictor and order == 1:
        return [torch.tensor(0.5, dtype=hh.dtype)]
    nodes = torch.stack([r.to(hh.dtype) for r in rs] + [torch.ones((), dtype=hh.dtype)])
    rhs = []
    g = torch.expm1(hh) / hh - 1  # g_i = hh·φ_{i+1}(hh), φ_1(z) = (e^z − 1)/z, φ_{k+1} = (φ_k − 1/k!)/z
    fact = 1
    for i in range(1, order + 1):
        rhs.append(g * fact / b_h)
        fact *= i + 1
        g = g / hh - 1 / fact
    n = order - 1 if predictor else order
    mat = torch.stack([nodes**p for p in range(order)])
    rho = torch.linalg.solve(mat[:n, :n], torch.stack(rhs)[:n])
    return list(rho)


@torch.no_grad()
def sample_uni_pc(model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
                  callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None,
                  variant: str = "bh1") -> Tensor:
    """UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
    of Diffusion Models"): multistep data-prediction predictor UniP-p plus the UniC corrector that
    reuses the next step's model call, order up to 3, lowering the order over the last steps.

    As ComfyUI does: the run works on the VP latent x/sqrt(1 + σ²); a final σ of 0 becomes 0.001
    (λ must stay finite) and the result is that latent in σ-form; the first iteration only
    evaluates the model; the callback sees the VP latent *after* each step with the newest x0
    estimate; with a single step (two sigmas) nothing is solved and the input comes back rescaled.
    ``variant`` is B(h) = h ("bh1") or e^h − 1 ("bh2").
    """
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"UniPC variant {variant!r} is not supported (bh1 or bh2)")
    if len(sigmas) < 2:
        return x
    ts = sigmas.clone()
    if ts[-1] == 0:
        ts[-1] = 0.001
    steps = len(ts) - 1
    order = min(3, len(ts) - 2)

    def data_pred(x_vp: Tensor, s: Tensor) -> Tensor:
        """x0 for a VP latent, through the ε round trip the reference takes."""
        sb = s.expand(x_vp.shape[0])
        shaped = sb.view(sb.shape[:1] + (1,) * (x_vp.ndim - 1))
        x_sigma = x_vp * ((shaped**2 + 1.0) ** 0.5)
        eps = (x_sigma - model(x_sigma, batch_sigma(x_sigma, s))) / shaped
        return (x_vp - _VP.std(s) * eps) / _VP.alpha(s)

    def update(x_vp: Tensor, hist_t: list[Tensor], hist_m: list[Tensor], s: Tensor, k: int,
               corrector: bool) -> tuple[Tensor, Tensor | None]:
        t0, m0 = hist_t[-1], hist_m[-1]
        lam0 = _VP.lam(t0)
        h = _VP.lam(s) - lam0
        rs = [(_VP.lam(hist_t[-(j + 1)]) - lam0) / h for j in range(1, k)]
        diffs = [(hist_m[-(j + 1)] - m0) / r for j, r in zip(range(1, k), rs)]
        hh = -h
        b_h = hh if variant == "bh1" else torch.expm1(hh)
        alpha_t = _VP.alpha(s)
        x_lin = (_VP.std(s) / _VP.std(t0)) * x_vp - (alpha_t * torch.expm1(hh)) * m0
        x_new = x_lin
        if diffs:
            rho_p = _unipc_rhos(rs, hh, b_h, k, predictor=True)
            x_new = x_lin - (alpha_t * b_h) * _combine(rho_p, diffs)
        if not corrector:
            return x_new, None
        m_new = data_pred(x_new, s)
        rho_c = _unipc_rhos(rs, hh, b_h, k, predictor=False)
        corr = rho_c[-1] * (m_new - m0)
        if diffs:
            corr = _combine(rho_c[:-1], diffs) + corr
        return x_lin - (alpha_t * b_h) * corr, m_new

    x_vp = x / torch.sqrt(1.0 + ts[0] ** 2.0)
    hist_t = [ts[0]]
    hist_m = [data_pred(x_vp, ts[0])]
    report(callback, 0, x_vp, ts[0], hist_m[-1])
    for i in range(1, steps):
        k = i if i < order else min(order, steps + 1 - i)
        x_vp, m = update(x_vp, hist_t, hist_m, ts[i], k, corrector=True)
        hist_t, hist_m = (hist_t + [ts[i]])[-order:], (hist_m + [m])[-order:]
        if i == steps - 1:  # the last iteration also takes the final, corrector-free step
            x_vp, _ = update(x_vp, hist_t, hist_m, ts[steps], min(order, 1), corrector=False)
        report(callback, i, x_vp, ts[i], hist_m[-1])
    return x_vp / _VP.alpha(ts[-1])


def _combine(weights: list[Tensor], tensors: list[Tensor]) -> Tensor:
    out = weights[0] * tensors[0]
    for w, t in zip(weights[1:], tensors[1:]):
        out = out + w * t
    return out


SAMPLERS: tuple[SamplerDef, ...] = (
    SamplerDef("ddpm", sample_ddpm, stochastic=True,
               description="DDPM ancestral sampling: the original diffusion sampler, adds fresh noise every step."),
    SamplerDef("lcm", sample_lcm, stochastic=True,
               description="Latent Consistency Model sampling: for LCM-distilled models and LoRAs, 2-8 steps."),
    SamplerDef("ipndm", sample_ipndm, {"max_order": 4},
               description="Improved PNDM: 4th-order multistep, one model call per step, good at 10-20 steps."),
    SamplerDef("ipndm_v", sample_ipndm_v, {"max_order": 4},
               description="Improved PNDM with weights for uneven step sizes (e.g. karras schedules)."),
    SamplerDef("deis", sample_deis, {"max_order": 3, "deis_mode": "tab"},
               description="DEIS: 3rd-order exponential-integrator multistep, one model call per step."),
    SamplerDef("ddim", sample_ddim, fresh_inpaint_noise=True,
               description="Deterministic DDIM (the same steps as Euler in sigma space)."),
    SamplerDef("uni_pc", sample_uni_pc, {"variant": "bh1"}, discard_penultimate_sigma=True,
               description="UniPC predictor-corrector (B(h)=h): fast, good results in 5-15 steps."),
    SamplerDef("uni_pc_bh2", sample_uni_pc, {"variant": "bh2"}, discard_penultimate_sigma=True,
               description="UniPC with B(h)=e^h-1: often better than uni_pc at very few steps with guidance."),
)
