"""An exact denoiser for Gaussian data, the stand-in for a UNet in sampler reference tests.

Data are Gaussian with per-element mean m and std s = 0.5, so the ideal denoiser is
D_m(x, σ) = m + s²/(s²+σ²)·(x − m). The conditional mean is m_c = 0.5·sin(k), the unconditional
m_u = −0.2·cos(k) (k = element index), guided as D_u + cfg·(D_c − D_u) — the definition the
ComfyUI reference data in ``tests/data/comfyui`` were recorded with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from latentgraph.nodes.sampling.kit import Prediction
from latentgraph.nodes.sampling.model_sampling import ModelSampling

DATA_STD = 0.5

SD1_CONFIG = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000}


def sd1_model_sampling() -> ModelSampling:
    return ModelSampling.from_config(SD1_CONFIG)


def element_index(shape, dtype=torch.float64) -> torch.Tensor:
    n = 1
    for d in shape:
        n *= d
    return torch.arange(n, dtype=dtype).reshape(shape)


@dataclass
class GaussianDenoiser:
    shape: tuple[int, ...]
    cfg: float = 2.0
    dtype: torch.dtype = torch.float64
    model_sampling: ModelSampling = None  # type: ignore[assignment]
    calls: int = 0

    def __post_init__(self) -> None:
        if self.model_sampling is None:
            self.model_sampling = sd1_model_sampling()
        k = element_index(self.shape, self.dtype)
        self.cond_mean = 0.5 * torch.sin(k)
        self.uncond_mean = -0.2 * torch.cos(k)

    def _d(self, mean: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s2 = DATA_STD**2
        sig = sigma.reshape(sigma.shape[:1] + (1,) * (x.ndim - 1)).to(x.dtype)
        return mean.to(x.dtype) + s2 / (s2 + sig**2) * (x - mean.to(x.dtype))

    def predict(self, x: torch.Tensor, sigma: torch.Tensor) -> Prediction:
        self.calls += 1
        cond = self._d(self.cond_mean, x, sigma)
        uncond = self._d(self.uncond_mean, x, sigma)
        return Prediction(uncond + self.cfg * (cond - uncond), uncond)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.predict(x, sigma).denoised
