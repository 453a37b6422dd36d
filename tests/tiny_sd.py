"""Tiny random SD1 / SDXL components built straight from diffusers configs (no checkpoint files).

Sizes follow diffusers' own tests: UNet (32, 64) blocks, 2 layers per block, cross-attention 32
(SDXL 64); a 2-level VAE (so the latent scale is 2, not 8 — on purpose: nothing may assume 8);
CLIP text encoders 32 wide. Used by the sampling, parity, forward-process and latent tests and by
``bench/overhead.py``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

from latentgraph.context import ExecutionContext, InterruptFlag
from latentgraph.nodes.components import Autoencoder, DiffusionModel
from latentgraph.settings import Settings

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "nodes" / "data" / "clip_tokenizer"

#: SD1's training schedule (as in its scheduler_config.json).
SD1_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "skip_prk_steps": True,
    "trained_betas": None,
}
SDXL_SCHEDULER = {**SD1_SCHEDULER, "_class_name": "EulerDiscreteScheduler", "timestep_spacing": "leading",
                  "use_karras_sigmas": False, "interpolation_type": "linear"}

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models run ~10x faster on one thread than on two contended ones (2 shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class TinySD:
    model: DiffusionModel
    vae: Autoencoder
    text_encoders: list[Any]


def _unet(sdxl: bool):
    from diffusers import UNet2DConditionModel

    if sdxl:
        return UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=32 + 6 * 8, cross_attention_dim=64,
        )
    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )


def _vae(scaling_factor: float):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4, scaling_factor=scaling_factor,
    )


def _clip(projection: bool = False):
    import transformers

    config = transformers.CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05,
        num_attention_heads=4, num_hidden_layers=5, pad_token_id=1, vocab_size=49408, projection_dim=32,
        hidden_act="gelu",
    )
    cls = transformers.CLIPTextModelWithProjection if projection else transformers.CLIPTextModel
    return cls(config).eval()


def tiny_sd(arch: str = "sd1", seed: int = 0, prediction_type: str = "epsilon") -> TinySD:
    """Random tiny components wrapped in latentgraph's component classes (CPU, float32)."""
    sdxl = arch == "sdxl"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _unet(sdxl).eval()
        vae = _vae(0.13025 if sdxl else 0.18215).eval()
        encoders = [_clip(), _clip(projection=True)] if sdxl else [_clip()]
    config = {**(SDXL_SCHEDULER if sdxl else SD1_SCHEDULER), "prediction_type": prediction_type}
    autoencoder = Autoencoder(vae=vae, arch=arch, device=CPU, dtype=torch.float32)
    info = {
        "latent_downscale": autoencoder.downscale_factor,
        "latent_channels": autoencoder.latent_channels,
        "scaling_factor": autoencoder.scaling_factor,
    }
    model = DiffusionModel(unet=unet, scheduler_config=config, arch=arch, device=CPU, dtype=torch.float32, info=info)
    return TinySD(model, autoencoder, encoders)


def random_conditioning(arch: str = "sd1", seed: int = 1, tokens: int = 77, batch: int = 1) -> list:
    """A CONDITIONING value with random embeddings of the right widths."""
    g = torch.Generator().manual_seed(seed)
    if arch == "sdxl":
        emb = torch.randn(batch, tokens, 64, generator=g)
        return [(emb, {"pooled_output": torch.randn(batch, 32, generator=g)})]
    return [(torch.randn(batch, tokens, 32, generator=g), {})]


def make_ctx(sink=None, interrupt: InterruptFlag | None = None, node_id: str = "1", class_type: str = "KSampler"):
    """An ExecutionContext with the built-in plugins' registry (samplers and schedulers)."""
    events: list = [] if sink is None else sink
    ctx = ExecutionContext(
        prompt_id="test",
        node_id=node_id,
        class_type=class_type,
        settings=Settings.from_env(Path(tempfile.mkdtemp(prefix="lg-ctx-")), environ={}, device="cpu"),
        registry=_registry(),
        sink=events.append if isinstance(events, list) else events,
        interrupt=interrupt or InterruptFlag(),
        extra={},
    )
    return ctx, events


@functools.lru_cache(maxsize=1)
def _registry():
    """Building the registry imports every node module; once per test session is plenty."""
    from latentgraph.plugins import load_plugins

    return load_plugins(entry_points=False).registry
