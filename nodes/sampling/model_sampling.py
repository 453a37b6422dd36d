"""How a discrete-time diffusion model sees noise: its training sigmas and the σ ↔ t maps.

A model trained on T timesteps with betas β_t has ᾱ_t = ∏(1 − β) and the noise level
σ_t = sqrt((1 − ᾱ_t) / ᾱ_t). Samplers work in σ (k-diffusion, Karras et al. 2022): a noisy
latent is ``x0 + σ·ε``; the UNet is asked at the *nearest trained* timestep (nearest in log σ)
with its input scaled to unit variance, ``x / sqrt(σ² + 1)``; its ε (or v) output becomes an x0
estimate. This module is that arithmetic, on float32 tables built in float64 as ComfyUI builds
them, so schedules and model calls land on the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

#: diffusers' beta-schedule names → how the betas are spaced.
_BETA_SCHEDULES = ("scaled_linear", "linear", "squaredcos_cap_v2", "sqrt")
#: ᾱ of the last step after a zero-terminal-SNR rescale (σ_max ≈ 4518, not infinity).
ZSNR_LAST_ALPHA_BAR = 4.8973451890853435e-08


def make_betas(schedule: str, steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Training betas in float64, by diffusers' schedule names."""
    if schedule == "scaled_linear":  # SD1/SD2/SDXL: linear in sqrt(β)
        return torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    if schedule == "sqrt":
        return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64) ** 0.5
    if schedule == "squaredcos_cap_v2":  # Nichol & Dhariwal's cosine schedule
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return torch.tensor(
            [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999) for i in range(steps)],
            dtype=torch.float64,
        )
    raise ValueError(f"unknown beta schedule {schedule!r}; known: {', '.join(_BETA_SCHEDULES)}")


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023: shift and scale sqrt(ᾱ) so the last step has (almost) zero SNR."""
    root = alphas_cumprod.sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    out = root**2
    out[-1] = ZSNR_LAST_ALPHA_BAR
    return out


@dataclass(frozen=True, eq=False)
class ModelSampling:
    """A model's discrete noise levels and parameterisation (``eps`` or ``v``)."""

    #: σ of every trained timestep, ascending (index = timestep), float32.
    sigmas: torch.Tensor
    log_sigmas: torch.Tensor
    prediction: str = "eps"
    sigma_data: float = 1.0

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: torch.Tensor, prediction: str = "eps") -> ModelSampling:
        sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        return cls(sigmas.float(), sigmas.log().float(), prediction)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelSampling:
        """From a diffusers scheduler config (the model's training schedule)."""
        steps = int(config.get("num_train_timesteps", 1000))
        trained = config.get("trained_betas")
        if trained is not None:
            betas = torch.tensor(trained, dtype=torch.float64)
        else:
            betas = make_betas(
                str(config.get("beta_schedule", "scaled_linear")),
                steps,
                float(config.get("beta_start", 0.00085)),
                float(config.get("beta_end", 0.012)),
            )
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        if config.get("rescale_betas_zero_snr"):
            alphas_cumprod = rescale_zero_terminal_snr(alphas_cumprod)
        kind = str(config.get("prediction_type", "epsilon"))
        prediction = {"epsilon": "eps", "v_prediction": "v"}.get(kind)
        if prediction is None:
            raise ValueError(f"prediction_type {kind!r} is not supported (epsilon or v_prediction)")
        return cls.from_alphas_cumprod(alphas_cumprod, prediction)

    # -- the σ ↔ t maps ----------------------------------------------------------------------------
    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    @property
    def num_timesteps(self) -> int:
        return int(self.sigmas.shape[0])

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The trained timestep whose log σ is nearest (an integer-valued tensor, σ's shape)."""
        log_sigma = sigma.log()
        dists = log_sigma.to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """σ at a (fractional) timestep: log σ interpolated linearly between trained steps."""
        t = torch.clamp(timestep.float().to(self.log_sigmas.device), min=0, max=self.num_timesteps - 1)
        low, high = t.floor().long(), t.ceil().long()
        w = t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]
        return log_sigma.exp().to(timestep.device)

    def percent_to_sigma(self, percent: float) -> float:
        """σ at a fraction of the sampling run (0 = start, pure noise; 1 = end, clean)."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * 999.0)))

    # -- the model call's parameterisation -----------------------------------------------------------
    def _shaped(self, sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return sigma.reshape(sigma.shape[:1] + (1,) * (like.ndim - 1))

    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The UNet's input: the noisy latent scaled to unit variance."""
        sigma = self._shaped(sigma, x)
        return x / (sigma**2 + self.sigma_data**2) ** 0.5

    def calculate_denoised(self, sigma: torch.Tensor, model_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x0 from the UNet's ε or v output for the noisy latent ``x`` (σ form)."""
        sigma = self._shaped(sigma, model_output)
        if self.prediction == "v":
            sd2 = self.sigma_data**2
            return x * sd2 / (sigma**2 + sd2) - model_output * sigma * self.sigma_data / (sigma**2 + sd2) ** 0.5
        return x - model_output * sigma

    def noise_scaling(self, sigma: torch.Tensor, noise: torch.Tensor, latent: torch.Tensor, max_denoise: bool = False) -> torch.Tensor:
        """A latent noised to σ: ``x0 + σ·ε``; at the model's top σ the noise is scaled by
        sqrt(1 + σ²) instead, which is what the UNet saw in training at that step."""
        sigma = sigma.reshape(sigma.shape[:1] + (1,) * (noise.ndim - 1)) if sigma.ndim else sigma
        scale = torch.sqrt(1.0 + sigma**2.0) if max_denoise else sigma
        return noise * scale + latent

    def inverse_noise_scaling(self, sigma: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        return latent

    def is_max_sigma(self, sigma: float) -> bool:
        """Whether a run starting at σ starts from pure noise (σ at or above the model's top)."""
        top = float(self.sigma_max)
        return math.isclose(top, float(sigma), rel_tol=1e-05) or float(sigma) > top
