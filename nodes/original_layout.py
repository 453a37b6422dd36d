"""Names of weights in the original Stable Diffusion ("LDM") checkpoint layout, from diffusers names.

Loading goes the other way through diffusers' own converters; this direction exists so that our
tiny test checkpoints and LoRA name matching use exactly the layout real checkpoints have:
``model.diffusion_model.input_blocks.1.1…`` for the UNet, ``first_stage_model.encoder.down.0…`` for
the VAE, ``cond_stage_model.transformer.text_model…`` (OpenAI CLIP, HF names) and
``cond_stage_model.model.transformer.resblocks…`` (OpenCLIP, fused q/k/v) for text encoders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
#: Where each arch keeps its text encoders in an original checkpoint, with their key layout.
TEXT_ENCODER_PREFIXES: dict[str, tuple[tuple[str, str], ...]] = {
    "sd1": (("cond_stage_model.transformer.", "clip"),),
    "sd2": (("cond_stage_model.model.", "open_clip"),),
    "sdxl": (("conditioner.embedders.0.transformer.", "clip"), ("conditioner.embedders.1.model.", "open_clip")),
}

_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
    # names of diffusers < 0.14, still found in VAE files on the hub
    "query": "q",
    "key": "k",
    "value": "v",
    "proj_attn": "proj_out",
}


def _layers_per_block(config: Mapping[str, Any]) -> int:
    lpb = config.get("layers_per_block", 2)
    if isinstance(lpb, (list, tuple)):
        if len(set(lpb)) != 1:
            raise ValueError("per-block layers_per_block has no original-layout equivalent")
        lpb = lpb[0]
    return int(lpb)


def unet_module_map(config: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    """diffusers UNet module path → (original path, renames of its direct children)."""
    lpb = _layers_per_block(config)
    levels = len(config["block_out_channels"])
    up_types = list(config["up_block_types"])
    label = "class_embedding" if config.get("class_embed_type") == "projection" else "add_embedding"  # unCLIP / SDXL
    m: dict[str, tuple[str, dict[str, str]]] = {
        "time_embedding.linear_1": ("time_embed.0", {}),
        "time_embedding.linear_2": ("time_embed.2", {}),
        f"{label}.linear_1": ("label_emb.0.0", {}),
        f"{label}.linear_2": ("label_emb.0.2", {}),
        "conv_in": ("input_blocks.0.0", {}),
        "conv_norm_out": ("out.0", {}),
        "conv_out": ("out.2", {}),
        "mid_block.resnets.0": ("middle_block.0", _UNET_RESNET),
        "mid_block.attentions.0": ("middle_block.1", {}),
        "mid_block.resnets.1": ("middle_block.2", _UNET_RESNET),
    }
    for b in range(levels):
        for j in range(lpb):
            i = 1 + b * (lpb + 1) + j
            m[f"down_blocks.{b}.resnets.{j}"] = (f"input_blocks.{i}.0", _UNET_RESNET)
            m[f"down_blocks.{b}.attentions.{j}"] = (f"input_blocks.{i}.1", {})
        if b < levels - 1:
            m[f"down_blocks.{b}.downsamplers.0.conv"] = (f"input_blocks.{(b + 1) * (lpb + 1)}.0.op", {})
        for j in range(lpb + 1):
            i = b * (lpb + 1) + j
            m[f"up_blocks.{b}.resnets.{j}"] = (f"output_blocks.{i}.0", _UNET_RESNET)
            m[f"up_blocks.{b}.attentions.{j}"] = (f"output_blocks.{i}.1", {})
        if b < levels - 1:
            slot = 2 if "CrossAttn" in up_types[b] else 1
            m[f"up_blocks.{b}.upsamplers.0.conv"] = (f"output_blocks.{b * (lpb + 1) + lpb}.{slot}.conv", {})
    return m


def vae_module_map(config: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    levels = len(config["block_out_channels"])
    lpb = _layers_per_block(config)
    m: dict[str, tuple[str, dict[str, str]]] = {
        "encoder.conv_norm_out": ("encoder.norm_out", {}),
        "decoder.conv_norm_out": ("decoder.norm_out", {}),
    }
    for part in ("encoder", "decoder"):
        m[f"{part}.mid_block.resnets.0"] = (f"{part}.mid.block_1", _VAE_RESNET)
        m[f"{part}.mid_block.resnets.1"] = (f"{part}.mid.block_2", _VAE_RESNET)
        m[f"{part}.mid_block.attentions.0"] = (f"{part}.mid.attn_1", _VAE_ATTENTION)
    for i in range(levels):
        for j in range(lpb):
            m[f"encoder.down_blocks.{i}.resnets.{j}"] = (f"encoder.down.{i}.block.{j}", _VAE_RESNET)
        if i < levels - 1:
            m[f"encoder.down_blocks.{i}.downsamplers.0.conv"] = (f"encoder.down.{i}.downsample.conv", {})
        up = levels - 1 - i
        for j in range(lpb + 1):
            m[f"decoder.up_blocks.{i}.resnets.{j}"] = (f"decoder.up.{up}.block.{j}", _VAE_RESNET)
        if i < levels - 1:
            m[f"decoder.up_blocks.{i}.upsamplers.0.conv"] = (f"decoder.up.{up}.upsample.conv", {})
    return m


def rename(key: str, module_map: Mapping[str, tuple[str, dict[str, str]]]) -> str:
    """Original name of a diffusers parameter or module path (unchanged if not in the map)."""
    parts = key.split(".")
    for cut in range(len(parts), 0, -1):
        head = ".".join(parts[:cut])
        if head in module_map:
            new_head, children = module_map[head]
            rest = ".".join(parts[cut:])
            for old, new in children.items():
                if rest == old or rest.startswith(old + "."):
                    rest = new + rest[len(old) :]
                    break
            return f"{new_head}.{rest}" if rest else new_head
    return key


def unet_to_original(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    module_map = unet_module_map(config)
    return {UNET_PREFIX + rename(k, module_map): v for k, v in state_dict.items()}


def vae_to_original(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    module_map = vae_module_map(config)
    out = {}
    for key, value in state_dict.items():
        new = rename(key, module_map)
        if ".mid.attn_1." in new and new.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # the original attention uses 1x1 convolutions
        out[VAE_PREFIX + new] = value
    return out


def clip_to_original(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """OpenAI CLIP keeps Hugging Face names under ``<prefix>text_model.``."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("text_projection"):
            continue  # SD checkpoints store the bare text model
        name = key if key.startswith("text_model.") else "text_model." + key
        out[prefix + name] = value
    return out


_OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def open_clip_to_original(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """OpenCLIP names: ``transformer.resblocks.N`` with fused ``in_proj`` q/k/v, transposed projection."""
    sd = {k.removeprefix("text_model."): v for k, v in state_dict.items()}
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if key == "embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = value
        elif key == "embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = value
        elif key.startswith("final_layer_norm."):
            out[prefix + "ln_final." + key.split(".")[-1]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key.startswith("encoder.layers."):
            _, _, index, rest = key.split(".", 3)
            block = f"{prefix}transformer.resblocks.{index}."
            for qkv in ("q_proj", "k_proj", "v_proj"):
                if rest.startswith(f"self_attn.{qkv}."):
                    kind = rest.rsplit(".", 1)[1]
                    fused.setdefault(f"{block}attn.in_proj_{kind}", {})[qkv] = value
                    break
            else:
                for old, new in _OPEN_CLIP_LAYER.items():
                    if rest.startswith(old + "."):
                        out[block + new + rest[len(old) :]] = value
                        break
                else:
                    raise KeyError(f"no OpenCLIP name for text encoder weight {key!r}")
    for name, parts in fused.items():
        out[name] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]], dim=0)
    return out


def open_clip_from_original(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The inverse of :func:`open_clip_to_original`: Hugging Face CLIP names (under ``text_model.``
    except ``text_projection.weight``) for the OpenCLIP tensors under ``prefix``.

    The fused q/k/v projection is split into views, not copies, so an fp16 model keeps pointing at
    the mapped file and a cast copies each weight once. Keys the HF model has no place for
    (``logit_scale``, ``attn_mask``) are left out.
    """
    renames = {new: old for old, new in _OPEN_CLIP_LAYER.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name == "token_embedding.weight":
            out["text_model.embeddings.token_embedding.weight"] = value
        elif name == "positional_embedding":
            out["text_model.embeddings.position_embedding.weight"] = value
        elif name.startswith("ln_final."):
            out["text_model.final_layer_norm." + name.rsplit(".", 1)[1]] = value
        elif name == "text_projection":
            out["text_projection.weight"] = value.T
        elif name.startswith("transformer.resblocks."):
            _, _, index, rest = name.split(".", 3)
            layer = f"text_model.encoder.layers.{index}."
            if rest.startswith("attn.in_proj_"):
                kind = rest.rsplit("_", 1)[1]
                for qkv, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                    out[f"{layer}self_attn.{qkv}.{kind}"] = part
            else:
                for old, new in renames.items():
                    if rest.startswith(old + "."):
                        out[layer + new + rest[len(old):]] = value
                        break
    return out


def text_encoder_to_original(state_dict: Mapping[str, torch.Tensor], prefix: str, layout: str) -> dict[str, torch.Tensor]:
    if layout == "open_clip":
        return open_clip_to_original(state_dict, prefix)
    return clip_to_original(state_dict, prefix)
