"""Tiny random-weight Stable Diffusion checkpoints for tests and examples (a few MB, seconds to run).

They are written exactly like real checkpoints — one ``.safetensors`` file in the original key
layout (``model.diffusion_model.…``, ``first_stage_model.…``, ``cond_stage_model.…`` /
``conditioner.embedders.…``) — so loading them exercises the same conversion path as a
downloaded model. The ``latentgraph.config`` metadata entry describes the tiny architecture, which
shapes alone cannot (attention heads), and the loader builds from it instead of the shipped
full-size configs.

Sizes follow diffusers' own tests: UNet ``block_out_channels=(32, 64)``, two layers per block,
cross-attention width 32 (SDXL: 64 = two 32-wide encoders); CLIP text encoders 32 wide, 5 layers,
4 heads, with the full 49,408-token vocabulary so the real tokenizer's ids are valid. The VAE has
four levels like the real one, so latents are 1/8 of the image size as every SD workflow
assumes (``EmptyLatentImage`` 512x512 → 64x64), at widths (8, 16, 32, 32).

    python -m latentgraph.nodes.tiny_models --arch sd1 --out tiny.safetensors --seed 0
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from latentgraph.nodes.model_configs import METADATA_KEY, ArchConfig, TextEncoderConfig, load_shipped_config
from latentgraph.nodes.original_layout import TEXT_ENCODER_PREFIXES, text_encoder_to_original, unet_to_original, vae_to_original

TINY_ARCHES = ("sd1", "sd2", "sd2_v", "sdxl")

_CLIP = {
    "vocab_size": 49408,
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 5,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "projection_dim": 32,
    "layer_norm_eps": 1e-05,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "model_type": "clip_text_model",
}
_VAE = {
    "act_fn": "silu",
    "block_out_channels": [8, 16, 32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}
_UNET = {
    "act_fn": "silu",
    "block_out_channels": [32, 64],
    "layers_per_block": 2,
    "in_channels": 4,
    "out_channels": 4,
    "sample_size": 8,
    "norm_num_groups": 32,
    "norm_eps": 1e-05,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "downsample_padding": 1,
    "center_input_sample": False,
    "mid_block_scale_factor": 1,
}


def tiny_config(arch: str = "sd1") -> ArchConfig:
    """The tiny architecture of one family (``sd2_v``: SD2 with v-prediction)."""
    if arch not in TINY_ARCHES:
        raise ValueError(f"unknown tiny arch {arch!r}; choose from {', '.join(TINY_ARCHES)}")
    shipped = load_shipped_config(arch)
    clip_l = TextEncoderConfig("CLIPTextModel", {**_CLIP, "hidden_act": "quick_gelu"}, "clip", "<|endoftext|>")
    open_clip = TextEncoderConfig("CLIPTextModel", {**_CLIP, "hidden_act": "gelu"}, "open_clip", "!")
    vae = dict(_VAE)
    if arch == "sd1":
        unet = {
            **_UNET,
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "cross_attention_dim": 32,
            "attention_head_dim": 8,
        }
        encoders = (clip_l,)
    elif arch in ("sd2", "sd2_v"):
        unet = {
            **_UNET,
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "cross_attention_dim": 32,
            "attention_head_dim": [2, 4],
            "use_linear_projection": True,
        }
        encoders = (open_clip,)
    else:
        unet = {
            **_UNET,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "cross_attention_dim": 64,
            "attention_head_dim": [2, 4],
            "transformer_layers_per_block": [1, 2],
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 32 + 6 * 8,
        }
        vae.update(scaling_factor=0.13025, force_upcast=True)
        encoders = (clip_l, TextEncoderConfig("CLIPTextModelWithProjection", open_clip.config, "open_clip", "!"))
    return ArchConfig(
        arch=shipped.arch,
        unet=unet,
        vae=vae,
        scheduler=dict(shipped.scheduler),
        text_encoders=encoders,
        source="tiny",
        extra={"tiny": True, "name": arch},
    )


def _diffusers_state_dicts(cfg: ArchConfig) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    import transformers
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = UNet2DConditionModel.from_config(cfg.unet).state_dict()
    vae = AutoencoderKL.from_config(cfg.vae).state_dict()
    encoders = []
    for enc in cfg.text_encoders:
        model = getattr(transformers, enc.class_name)(transformers.CLIPTextConfig(**enc.config))
        encoders.append(model.state_dict())
    return unet, vae, encoders


def original_state_dict(
    cfg: ArchConfig,
    unet: dict[str, torch.Tensor],
    vae: dict[str, torch.Tensor],
    encoders: list[dict[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """diffusers/transformers state dicts → one original-layout checkpoint dict."""
    out = unet_to_original(unet, cfg.unet)
    out.update(vae_to_original(vae, cfg.vae))
    for (prefix, layout), sd in zip(TEXT_ENCODER_PREFIXES[cfg.arch], encoders):
        out.update(text_encoder_to_original(sd, prefix, layout))
    return out


def make_tiny_state_dict(arch: str = "sd1", seed: int = 0) -> tuple[dict[str, torch.Tensor], ArchConfig]:
    """Random weights from ``seed`` (the global RNG is left untouched)."""
    cfg = tiny_config(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet, vae, encoders = _diffusers_state_dicts(cfg)
    return original_state_dict(cfg, unet, vae, encoders), cfg


def make_tiny_checkpoint(
    path: str | Path,
    arch: str = "sd1",
    seed: int = 0,
    *,
    dtype: torch.dtype = torch.float16,
    with_metadata: bool = True,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write a tiny checkpoint; ``with_metadata=False`` leaves only what shapes can tell."""
    from safetensors.torch import save_file

    state, cfg = make_tiny_state_dict(arch, seed)
    if arch == "sd2_v":
        state["v_pred"] = torch.zeros(0)
    metadata: dict[str, Any] = {"latentgraph.tiny": f"{arch} seed={seed}"}
    if with_metadata:
        metadata[METADATA_KEY] = cfg.to_json()
    metadata.update(extra_metadata or {})
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latentgraph.nodes.tiny_models", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=TINY_ARCHES, default="sd1")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fp32", action="store_true", help="store float32 weights (default float16)")
    parser.add_argument("--no-metadata", action="store_true", help="omit the latentgraph.config metadata entry")
    args = parser.parse_args(argv)
    path = make_tiny_checkpoint(
        args.out, args.arch, args.seed, dtype=torch.float32 if args.fp32 else torch.float16, with_metadata=not args.no_metadata
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
