"""Continuous-time noise levels (ModelSamplingContinuousEDM / ModelSamplingContinuousV).

Kept beside the nodes that use it rather than in nodes/sampling/model_sampling.py: it is a
subclass of that module's :class:`ModelSampling`, which schedules and samplers use unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from latentgraph.nodes.sampling.model_sampling import ModelSampling

#: How a continuous-time model is told its noise level: EDM's c_noise = ¼·log σ, or the
#: v-diffusion angle t = atan(σ)·2/π (continuous v-prediction fine-tunes).
CONTINUOUS_TIME_MAPS = ("edm", "v")
#: Parameterisations a continuous model may use (``edm`` is Karras' F_θ with the + sign).
CONTINUOUS_PREDICTIONS = ("eps", "v", "edm")


@dataclass(frozen=True, eq=False)
class ContinuousModelSampling(ModelSampling):
    """A model trained on a continuum of σ in [σ_min, σ_max] rather than on 1000 timesteps.

    ``sigmas`` is a 1000-entry log-uniform table (what the table-based schedules read, as in
    ComfyUI); ``timestep``/``sigma`` are exact maps, not nearest-table lookups.
    """

    time_map: str = "edm"

    @classmethod
    def create(cls, sigma_min: float, sigma_max: float, prediction: str = "eps", time_map: str = "edm",
               sigma_data: float = 1.0) -> ContinuousModelSampling:
        if time_map not in CONTINUOUS_TIME_MAPS:
            raise ValueError(f"unknown time map {time_map!r}; known: {', '.join(CONTINUOUS_TIME_MAPS)}")
        if prediction not in CONTINUOUS_PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; known: {', '.join(CONTINUOUS_PREDICTIONS)}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        sigmas = torch.linspace(math.log(sigma_min), math.log(sigma_max), 1000).exp()
        return cls(sigmas.float(), sigmas.log().float(), prediction, float(sigma_data), time_map)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        if self.time_map == "v":
            return sigma.atan() / math.pi * 2
        return 0.25 * sigma.log()

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        if self.time_map == "v":
            return (timestep * math.pi / 2).tan()
        return (timestep / 0.25).exp()

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        lo = math.log(float(self.sigma_min))
        return math.exp((math.log(float(self.sigma_max)) - lo) * (1.0 - percent) + lo)

    def calculate_denoised(self, sigma: torch.Tensor, model_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.prediction == "edm":
            s = self._shaped(sigma, model_output)
            sd2 = self.sigma_data**2
            return x * sd2 / (s**2 + sd2) + model_output * s * self.sigma_data / (s**2 + sd2) ** 0.5
        return super().calculate_denoised(sigma, model_output, x)
