"""The values that flow along MODEL, CLIP, VAE, CONDITIONING and LATENT connections.

Shapes follow ComfyUI where custom nodes depend on them: LATENT is ``{"samples": tensor[B,C,h,w]}``,
IMAGE is ``tensor[B,H,W,C]`` float in 0..1, CONDITIONING is ``[(embeddings[B,T,D], extras_dict)]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class DiffusionModel:
    """MODEL: the denoising UNet plus what sampling needs to know about how it was trained."""

    unet: Any  # diffusers.UNet2DConditionModel
    #: diffusers scheduler config of the training schedule (beta_start/end/schedule, prediction_type…)
    scheduler_config: dict[str, Any]
    #: "sd1", "sd2", "sdxl", … (used to check model/CLIP/VAE combinations and for previews)
    arch: str
    device: torch.device
    dtype: torch.dtype
    #: Free-form notes the loader knows (source file, LoRAs applied…).
    info: dict[str, Any] = field(default_factory=dict)

    #: Replaces the noise levels read from ``scheduler_config`` (ModelSampling* nodes).
    sampling_override: Any = None
    #: Sampling hooks set by model patches (ComfyUI's ``model_options``): e.g.
    #: ``pre_cfg_functions``, ``denoise_mask_function``. Patches return a copy with them added.
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def prediction_type(self) -> str:
        return self.scheduler_config.get("prediction_type", "epsilon")

    @property
    def model_sampling(self) -> Any:
        """The model's :class:`~latentgraph.nodes.sampling.model_sampling.ModelSampling`."""
        if self.sampling_override is not None:
            return self.sampling_override
        cached = self.__dict__.get("_model_sampling")
        if cached is None or cached[0] != self.scheduler_config:
            from latentgraph.nodes.sampling.model_sampling import ModelSampling

            cached = (dict(self.scheduler_config), ModelSampling.from_config(self.scheduler_config))
            self.__dict__["_model_sampling"] = cached
        return cached[1]

    @property
    def in_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def cross_attention_dim(self) -> int:
        dim = self.unet.config.cross_attention_dim
        return int(dim[0] if isinstance(dim, (list, tuple)) else dim)


@dataclass
class TextEncoder:
    """CLIP: one tokenizer/encoder pair (SD1/SD2) or two (SDXL)."""

    tokenizers: list[Any]
    encoders: list[Any]
    arch: str
    device: torch.device
    dtype: torch.dtype
    #: CLIPSetLastLayer: -1 = last layer, -2 = penultimate, …
    stop_at_layer: int = -1
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Autoencoder:
    """VAE: encodes images to latents and back; owns the latent scaling."""

    vae: Any  # diffusers.AutoencoderKL
    arch: str
    device: torch.device
    dtype: torch.dtype
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def shift_factor(self) -> float:
        shift = getattr(self.vae.config, "shift_factor", None)
        return float(shift) if shift is not None else 0.0

    @property
    def downscale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)


Conditioning = list[tuple[torch.Tensor, dict[str, Any]]]
Latent = dict[str, Any]
