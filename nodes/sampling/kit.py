"""What every sampler function shares: the denoiser it calls, its step callback, its noise.

A sampler is a plain function ``(model, x, sigmas, *, seed, callback, noise_sampler, **options)
→ x`` in the style of k-diffusion (Karras et al. 2022, "Elucidating the design space"): ``x``
starts as the noisy latent at ``sigmas[0]`` (σ form, ``x0 + σ·ε``) and ends at ``sigmas[-1]``.
``model(x, sigma)`` is a :class:`Denoiser`: it returns the guided x0 estimate D(x, σ).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from latentgraph.nodes.sampling.model_sampling import ModelSampling


@dataclass(frozen=True)
class Prediction:
    """One guided model evaluation. ``uncond`` is the unconditional x0 estimate (CFG++ samplers
    step along it); without guidance it equals ``denoised``."""

    denoised: Tensor
    uncond: Tensor


class Denoiser(Protocol):
    """The model as a denoiser D(x, σ), guidance included."""

    model_sampling: ModelSampling

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        """x0 estimate for the batch ``x`` at noise levels ``sigma`` (shape ``[batch]``)."""
        ...

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        """Like ``__call__``, also returning the unconditional estimate."""
        ...


@dataclass(frozen=True)
class Step:
    """What a sampler reports after each step: ``x`` before the step, the x0 estimate it used."""

    i: int
    x: Tensor
    sigma: Tensor
    sigma_hat: Tensor
    denoised: Tensor


StepCallback = Callable[[Step], None]
#: ``noise(sigma, sigma_next)`` → standard normal noise shaped like the latent.
NoiseSampler = Callable[[Tensor, Tensor], Tensor]


def report(callback: StepCallback | None, i: int, x: Tensor, sigma: Tensor, denoised: Tensor, sigma_hat: Tensor | None = None) -> None:
    if callback is not None:
        callback(Step(i, x, sigma, sigma if sigma_hat is None else sigma_hat, denoised))


def batch_sigma(x: Tensor, sigma: Tensor | float) -> Tensor:
    """σ repeated for every latent of the batch, as the denoiser takes it."""
    return torch.as_tensor(sigma, dtype=x.dtype, device=x.device) * x.new_ones([x.shape[0]])


def start_step(model: Denoiser, x: Tensor, sigmas: Tensor, i: int,
               callback: StepCallback | None) -> tuple[Tensor, Tensor, Tensor]:
    """How most steps begin: (σ_i, σ_i+1, the model's x0 estimate D(x, σ_i)), the estimate reported."""
    sigma, sigma_next = sigmas[i], sigmas[i + 1]
    denoised = model(x, batch_sigma(x, sigma))
    report(callback, i, x, sigma, denoised)
    return sigma, sigma_next, denoised


def append_dims(v: Tensor, ndim: int) -> Tensor:
    return v[(...,) + (None,) * (ndim - v.ndim)]


def to_d(x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
    """The probability-flow ODE's derivative dx/dσ = (x − D(x, σ)) / σ."""
    return (x - denoised) / append_dims(sigma, x.ndim)


def ancestral_step(sigma_from: Tensor, sigma_to: Tensor, eta: float = 1.0) -> tuple[Tensor, Tensor]:
    """Split a step to ``sigma_to`` into a deterministic step to ``sigma_down`` and fresh noise of
    size ``sigma_up`` (σ_down² + σ_up² = σ_to²); ``eta`` 0 is the deterministic ODE step."""
    if not eta:
        return sigma_to, torch.zeros_like(torch.as_tensor(sigma_to))
    sigma_up = torch.minimum(
        torch.as_tensor(sigma_to),
        eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5,
    )
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


# -- half-log-SNR time λ ------------------------------------------------------------------------------
# The exponential-integrator solvers step in λ = log(α/σ), in which the linear part of the diffusion
# ODE/SDE integrates exactly. For the discrete (SD-style) models this project runs, latents are in σ
# form (α = 1), so λ = −log σ; these two functions are the only place that would change for
# flow-matching models (λ = logit(1 − σ)).
def half_log_snr(sigma: Tensor) -> Tensor:
    """λ = log(α/σ) = −log σ for a σ-form latent (σ = 0 gives +∞)."""
    return sigma.log().neg()


def sigma_at(lam: Tensor) -> Tensor:
    """The inverse of :func:`half_log_snr`: σ = e^−λ."""
    return lam.neg().exp()


def signal_scale(sigma: Tensor, lam: Tensor | None = None) -> Tensor:
    """The signal scale α = σ·e^λ at (σ, λ), λ = :func:`half_log_snr` (σ) unless given: 1 for
    σ-form latents up to rounding, kept as computed (rather than a literal 1) so the numbers round
    as ComfyUI's do."""
    return sigma * (half_log_snr(sigma) if lam is None else lam).exp()


def sqrt_one_minus_exp(z: Tensor) -> Tensor:
    """√(1 − e^z), z ≤ 0: the standard deviation of the fresh noise that tops a unit-variance state
    back up to one after its old part decayed by e^(z/2); with z = −2ηh, an SDE step's noise."""
    return z.expm1().neg().sqrt()


# -- CFG++ -------------------------------------------------------------------------------------------
# CFG++ (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance for Diffusion
# Models") lands each step on the guided x0 estimate but moves along the *unconditional* one.
def x0_estimates(model: Denoiser, x: Tensor, sigma: Tensor, cfg_pp: bool) -> tuple[Tensor, Tensor]:
    """(the guided x0 estimate, the estimate a step moves along): the unconditional one under
    CFG++, else the guided one again."""
    if cfg_pp:
        prediction = model.predict(x, batch_sigma(x, sigma))
        return prediction.denoised, prediction.uncond
    denoised = model(x, batch_sigma(x, sigma))
    return denoised, denoised


def euler_step(x: Tensor, sigma: Tensor, sigma_to: Tensor, denoised: Tensor, along: Tensor, cfg_pp: bool) -> Tensor:
    """A first-order step from σ to ``sigma_to``: Euler, x + (x − D)/σ·(σ_to − σ); under CFG++ the
    guided estimate re-noised along the unconditional direction, D + (x − D_uncond)/σ·σ_to."""
    if cfg_pp:
        return denoised + to_d(x, sigma, along) * sigma_to
    return x + to_d(x, sigma, denoised) * (sigma_to - sigma)


def guidance_shift(x: Tensor, denoised: Tensor, uncond: Tensor) -> Tensor:
    """x moved by the guidance D − D_uncond: a CFG++ exponential step decays this (instead of x)
    towards the unconditional estimate, so the guidance enters once instead of being amplified."""
    return x + (denoised - uncond)


# -- noise -------------------------------------------------------------------------------------------
def default_noise_sampler(x: Tensor, seed: int | None = None) -> NoiseSampler:
    """Independent Gaussian noise per step, from its own generator seeded with seed + 1 (so it
    is not a replay of the initial noise, which was drawn from ``seed``).

    Drawn on the CPU and moved to the latent's device, so a seed gives the same picture on every
    device. ComfyUI seeds the same way on the CPU but draws on the latent's device (and with the
    plain seed on a GPU), so there its GPU pictures differ from its CPU ones and ours.
    """
    generator = torch.Generator("cpu")
    if seed is not None:
        generator.manual_seed(int(seed) + 1)
    else:
        generator.seed()

    def draw(sigma: Tensor, sigma_next: Tensor) -> Tensor:
        return torch.randn(x.size(), dtype=x.dtype, layout=x.layout, generator=generator, device="cpu").to(x.device)

    return draw


class BrownianTreeNoiseSampler:
    """Noise from one Brownian path W(σ) per run (torchsde's BrownianTree, seeded by the run's seed):
    the increment over [σ_next, σ] scaled to unit variance. Steps that share an interval see
    correlated noise, so SDE samplers converge as steps grow (Kidger et al. 2021).
    """

    def __init__(self, x: Tensor, sigma_min: Tensor | float, sigma_max: Tensor | float, seed: int | None = None,
                 transform: Callable[[Tensor], Tensor] = lambda t: t):
        import torchsde

        self.transform = transform
        t0 = transform(torch.as_tensor(sigma_min))
        t1 = transform(torch.as_tensor(sigma_max))
        t0, t1, self.sign = _sorted(t0, t1)
        if seed is None:
            seed = int(torch.randint(0, 2**63 - 1, ()).item())
        w0 = torch.zeros_like(x).detach().cpu()
        self.tree = torchsde.BrownianTree(t0.detach().cpu(), w0, t1.detach().cpu(), entropy=int(seed))

    def __call__(self, sigma: Tensor, sigma_next: Tensor) -> Tensor:
        t0 = self.transform(torch.as_tensor(sigma))
        t1 = self.transform(torch.as_tensor(sigma_next))
        a, b, sign = _sorted(t0, t1)
        device, dtype = a.device, a.dtype
        w = self.tree(a.detach().cpu().float(), b.detach().cpu().float()).to(device=device, dtype=dtype)
        return w * (self.sign * sign) / (t1 - t0).abs().sqrt()


def _sorted(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, int]:
    return (a, b, 1) if a < b else (b, a, -1)


def brownian_noise_sampler(x: Tensor, sigmas: Tensor, seed: int | None) -> BrownianTreeNoiseSampler:
    """The Brownian-tree noise over the run's σ range (its smallest non-zero σ to its largest)."""
    positive = sigmas[sigmas > 0]
    return BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=seed)


def noise_sampler_or_default(x: Tensor, seed: int | None, noise_sampler: NoiseSampler | None) -> NoiseSampler:
    """The run's per-step noise: ``noise_sampler`` when the caller gives one, else independent
    Gaussian noise (:func:`default_noise_sampler`)."""
    return default_noise_sampler(x, seed) if noise_sampler is None else noise_sampler


def noise_sampler_or_brownian(x: Tensor, sigmas: Tensor, seed: int | None,
                              noise_sampler: NoiseSampler | None) -> NoiseSampler:
    """Like :func:`noise_sampler_or_default`, with Brownian-tree noise (:func:`brownian_noise_sampler`)
    as the default: for the SDE samplers whose results should converge as steps grow."""
    return brownian_noise_sampler(x, sigmas, seed) if noise_sampler is None else noise_sampler
