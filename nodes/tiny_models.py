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
import json
from dataclasses import replace
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


def diffusers_state_dicts(cfg: ArchConfig) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
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
        unet, vae, encoders = diffusers_state_dicts(cfg)
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
    # One metadata entry keeps the file byte-for-byte reproducible (safetensors orders entries by hash).
    cfg = replace(cfg, extra={**cfg.extra, "seed": seed})
    metadata: dict[str, Any] = {METADATA_KEY: cfg.to_json()} if with_metadata else {"latentgraph.tiny": f"{arch} seed={seed}"}
    metadata.update(extra_metadata or {})
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


LORA_FORMATS = ("kohya", "kohya_ldm", "peft")


def make_tiny_lora(
    path: str | Path,
    arch: str = "sd1",
    seed: int = 0,
    *,
    rank: int = 4,
    alpha: float = 8.0,
    lora_format: str = "kohya",
    text_encoder: bool = True,
) -> Path:
    """A random LoRA for the tiny ``arch`` on every attention projection (UNet and text encoders).

    ``kohya`` names UNet layers by their diffusers path (sd-scripts for SD1/SD2), ``kohya_ldm`` by
    the original path (sd-scripts for SDXL), ``peft`` is the diffusers ``lora_A``/``lora_B`` format.
    """
    import transformers
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from latentgraph.nodes.original_layout import rename, unet_module_map

    if lora_format not in LORA_FORMATS:
        raise ValueError(f"lora_format must be one of {LORA_FORMATS}")
    cfg = tiny_config(arch)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(cfg.unet)
        encoders = [getattr(transformers, e.class_name)(transformers.CLIPTextConfig(**e.config)) for e in cfg.text_encoders]
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}

    def add(name: str, layer: torch.nn.Module) -> None:
        w = layer.weight
        down = torch.randn(rank, w.shape[1], generator=gen) * 0.1
        up = torch.randn(w.shape[0], rank, generator=gen) * 0.1
        if lora_format == "peft":  # alpha goes into the metadata, as diffusers saves it
            out[f"{name}.lora_A.weight"], out[f"{name}.lora_B.weight"] = down, up
        else:
            out[f"{name}.lora_down.weight"], out[f"{name}.lora_up.weight"] = down, up
            out[f"{name}.alpha"] = torch.tensor(float(alpha))

    ldm_map = unet_module_map(cfg.unet)
    for mod_path, layer in unet.named_modules():
        if isinstance(layer, torch.nn.Linear) and mod_path.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v", "0") and ".attn" in mod_path:
            if lora_format == "peft":
                add(f"unet.{mod_path}", layer)
            else:
                name = rename(mod_path, ldm_map) if lora_format == "kohya_ldm" else mod_path
                add("lora_unet_" + name.replace(".", "_"), layer)
    if text_encoder:
        for i, enc in enumerate(encoders):
            for mod_path, layer in enc.named_modules():
                if isinstance(layer, torch.nn.Linear) and mod_path.endswith(("q_proj", "k_proj", "v_proj", "out_proj")):
                    full = mod_path if mod_path.startswith("text_model.") else "text_model." + mod_path
                    if lora_format == "peft":
                        add(("text_encoder" if i == 0 else f"text_encoder_{i + 1}") + "." + full, layer)
                    else:
                        prefix = "lora_te" if len(encoders) == 1 else f"lora_te{i + 1}"
                        add(f"{prefix}_" + full.replace(".", "_"), layer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {}
    if lora_format == "peft":
        components = ["unet", "text_encoder", "text_encoder_2"][: 1 + (len(encoders) if text_encoder else 0)]
        adapter = {f"{c}.{k}": v for c in components for k, v in (("r", rank), ("lora_alpha", alpha))}
        metadata["lora_adapter_metadata"] = json.dumps(adapter, sort_keys=True)
    save_file(out, str(path), metadata=metadata)
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
