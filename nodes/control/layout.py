"""ControlNet and T2I-Adapter files in their original layouts, read into diffusers models offline.

ControlNet (lllyasviel's layout, what ComfyUI and A1111 read): the UNet encoder's names
(``input_blocks.N…``, ``middle_block…``, ``time_embed…``, SDXL ``label_emb…``) plus
``zero_convs.N.0`` (→ diffusers ``controlnet_down_blocks.N``), ``middle_block_out.0``
(→ ``controlnet_mid_block``) and ``input_hint_block.{0,2,4,…}`` (the hint encoder's convolutions:
``conv_in``, ``blocks.*``, ``conv_out``), either bare or under ``control_model.``. The "diff" form
(a ``difference`` key; ``control_model.*`` are differences to the base UNet's weights) needs the
MODEL: DiffControlNetLoader adds the UNet's weights first.

T2I-Adapter (TencentARC's layout): full adapters ``conv_in`` + ``body.{level·2 + j}.block1/2``
(+ ``in_conv`` where the width changes; unshuffle 8, or 16 for SDXL when ``conv_in`` takes 256 or
768 channels, as ComfyUI decides), light adapters ``body.L.in_conv / body.L.body.j.block1/2 /
body.L.out_conv``; diffusers-named adapters (``adapter.…``) load as they are.

The architecture is read from the file: a ``latentgraph.config`` metadata entry (written by
:func:`save_controlnet`; our tiny and demo ControlNets carry one) describes it exactly; otherwise
the shapes give widths, depths and attention layout, and the head count follows ComfyUI's rule
(8 heads with convolutional attention projections (SD1), 64 channels a head with linear ones).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from latentgraph.nodes.arch_detection import _heads, _indices, _norm_groups, read_input_blocks
from latentgraph.nodes.checkpoint_files import CheckpointError, WeightFile
from latentgraph.nodes.model_configs import METADATA_KEY
from latentgraph.nodes.original_layout import rename, unet_module_map

PTH_PREFIX = "control_model."
#: SDXL's time-embedding width per size number (diffusers' addition_time_embed_dim).
SDXL_TIME_EMBED = 256


# -- ControlNet names --------------------------------------------------------------------------------
def controlnet_module_map(config: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, str]]]:
    """diffusers ControlNetModel module path → (original path, renames of its children)."""
    down = list(config["down_block_types"])
    up = ["CrossAttnUpBlock2D" if "CrossAttn" in t else "UpBlock2D" for t in reversed(down)]
    base = unet_module_map({**config, "up_block_types": up})
    m = {k: v for k, v in base.items() if not k.startswith(("up_blocks.", "conv_norm_out", "conv_out"))}
    levels = len(config["block_out_channels"])
    lpb = int(config["layers_per_block"])
    for i in range(1 + levels * lpb + levels - 1):
        m[f"controlnet_down_blocks.{i}"] = (f"zero_convs.{i}.0", {})
    m["controlnet_mid_block"] = ("middle_block_out.0", {})
    stages = len(config.get("conditioning_embedding_out_channels") or (16, 32, 96, 256))
    m["controlnet_cond_embedding.conv_in"] = ("input_hint_block.0", {})
    for j in range(2 * (stages - 1)):
        m[f"controlnet_cond_embedding.blocks.{j}"] = (f"input_hint_block.{2 * (j + 1)}", {})
    m["controlnet_cond_embedding.conv_out"] = (f"input_hint_block.{2 * (2 * stages - 1)}", {})
    return m


def controlnet_to_original(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    module_map = controlnet_module_map(config)
    return {PTH_PREFIX + rename(k, module_map): v for k, v in state_dict.items()}


def original_to_diffusers(tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any], expected: list[str], source: str) -> dict[str, torch.Tensor]:
    """The file's tensors under the diffusers names ``expected`` (a model's state-dict keys)."""
    module_map = controlnet_module_map(config)
    out, missing = {}, []
    for key in expected:
        original = rename(key, module_map)
        if original in tensors:
            out[key] = tensors[original]
        else:
            missing.append(original)
    if missing:
        raise CheckpointError(
            f"{source}: not a ControlNet of the architecture its shapes suggest: {len(missing)} of "
            f"{len(expected)} weights missing (e.g. {', '.join(missing[:3])})"
        )
    return out


# -- reading the architecture -----------------------------------------------------------------------
def controlnet_prefix(weights: WeightFile) -> str | None:
    """``control_model.`` or ``""`` for an original-layout ControlNet, None for anything else."""
    for prefix in (PTH_PREFIX, ""):
        if prefix + "zero_convs.0.0.weight" in weights and prefix + "input_hint_block.0.weight" in weights:
            return prefix
    return None


def is_t2i_adapter(weights: WeightFile) -> bool:
    keys = set(weights.keys)
    return bool(keys & {"conv_in.weight", "body.0.in_conv.weight", "adapter.conv_in.weight",
                        "adapter.body.0.in_conv.weight"})


def metadata_config(weights: WeightFile) -> dict[str, Any] | None:
    text = weights.metadata.get(METADATA_KEY)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data.get("config") if isinstance(data, dict) and data.get("kind") in ("controlnet", "t2i_adapter") else None


def fit_controlnet_config(weights: WeightFile, prefix: str) -> dict[str, Any]:
    """diffusers ControlNetModel config implied by an original-layout file's shapes."""
    p = prefix
    name = weights.path.name
    keys = weights.with_prefix(p)
    conv_in = weights.shape(p + "input_blocks.0.0.weight")
    hint = weights.shape(p + "input_hint_block.0.weight")
    if conv_in is None or hint is None:
        raise CheckpointError(f"{name}: the ControlNet has no input convolution")
    blocks = read_input_blocks(weights, keys, p, "ControlNet")
    lpb, channels, attention, depth, linear = blocks.layers_per_block, blocks.channels, blocks.attention, blocks.depth, blocks.linear
    mid_depth = len(_indices(keys, p + "middle_block.1.transformer_blocks."))
    if mid_depth and not attention[-1]:  # diffusers gives the mid block the last level's depth
        depth[-1] = mid_depth
    to_k = next((weights.shape(k) for k in keys if k.endswith("attn2.to_k.weight")), None)
    hint_layers = sorted(i for i in _indices(keys, p + "input_hint_block.") if p + f"input_hint_block.{i}.weight" in weights)
    # conv_in, then pairs (same width, stride 2 to the next width), then conv_out
    widths = [int(hint[0])] + [int(weights.shape(p + f"input_hint_block.{i}.weight")[0]) for i in hint_layers[2:-1:2]]
    heads = _heads(channels, linear)
    config: dict[str, Any] = {
        "in_channels": int(conv_in[1]),
        "conditioning_channels": int(hint[1]),
        "block_out_channels": channels,
        "layers_per_block": lpb,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "mid_block_type": "UNetMidBlock2DCrossAttn" if p + "middle_block.1.proj_in.weight" in weights else "UNetMidBlock2D",
        "cross_attention_dim": int(to_k[1]) if to_k else 768,
        "attention_head_dim": heads if linear or len(set(heads)) > 1 else heads[0],
        "use_linear_projection": linear,
        "transformer_layers_per_block": depth if any(d != 1 for d in depth) else 1,
        "norm_num_groups": _norm_groups(channels),
        "conditioning_embedding_out_channels": widths,
    }
    label = weights.shape(p + "label_emb.0.0.weight")
    if label is not None:
        config.update(addition_embed_type="text_time", projection_class_embeddings_input_dim=int(label[1]),
                      addition_time_embed_dim=SDXL_TIME_EMBED)
    return config


def arch_of(config: Mapping[str, Any]) -> str:
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return "sd2" if int(config.get("cross_attention_dim", 768)) == 1024 else "sd1"


# -- T2I-Adapter names ------------------------------------------------------------------------------
def fit_adapter_config(weights: WeightFile) -> dict[str, Any]:
    """diffusers T2IAdapter config implied by an original-layout (or diffusers-named) adapter."""
    name = weights.path.name
    keys = weights.keys
    pre = "adapter." if any(k.startswith("adapter.") for k in keys) else ""
    if pre + "body.0.in_conv.weight" in weights and pre + "conv_in.weight" not in weights:  # light
        levels = len(_indices(keys, pre + "body."))
        rb_prefix = pre + ("body.0.resnets." if pre else "body.0.body.")
        cin = int(weights.shape(pre + "body.0.in_conv.weight")[1])
        outs = [int(weights.shape(pre + f"body.{i}.out_conv.weight")[0]) for i in range(levels)]
        return {"adapter_type": "light_adapter", "in_channels": cin // 64, "channels": outs[:-1],
                "num_res_blocks": len(_indices(keys, rb_prefix)), "downscale_factor": 8}
    conv_in = weights.shape(pre + "conv_in.weight")
    if conv_in is None:
        raise CheckpointError(f"{name}: not a T2I-Adapter this version can read")
    cin = int(conv_in[1])
    if pre:  # diffusers names: levels and blocks are explicit
        levels = len(_indices(keys, "adapter.body."))
        rb = len(_indices(keys, "adapter.body.0.resnets."))
        channels = [int(weights.shape(f"adapter.body.{i}.resnets.0.block1.weight")[0]) for i in range(levels)]
        xl = levels > 1 and "adapter.body.1.in_conv.weight" in weights and channels[0] != channels[1] and cin in (256, 768)
    else:
        blocks = len(_indices(keys, "body."))
        rb = 2  # ComfyUI's assumption for this layout
        if blocks % rb:
            raise CheckpointError(f"{name}: T2I-Adapter with {blocks} body blocks, expected pairs")
        if any(k.endswith("down_opt.op.weight") for k in keys) or any(".skep." in k for k in keys):
            raise CheckpointError(f"{name}: this T2I-Adapter variant (convolutional downsampling or skip convs) "
                                  "has no diffusers equivalent")
        k = weights.shape("body.0.block2.weight")
        if k is not None and k[-1] != 1:
            raise CheckpointError(f"{name}: T2I-Adapter with {k[-1]}×{k[-1]} kernels has no diffusers equivalent")
        channels = [int(weights.shape(f"body.{i * rb}.block1.weight")[0]) for i in range(blocks // rb)]
        xl = cin in (256, 768)
    ds = 16 if xl else 8
    if cin % (ds * ds):
        raise CheckpointError(f"{name}: T2I-Adapter input of {cin} channels is not a pixel-unshuffled image")
    return {"adapter_type": "full_adapter_xl" if xl else "full_adapter", "in_channels": cin // (ds * ds),
            "channels": channels, "num_res_blocks": rb, "downscale_factor": ds}


def adapter_to_original(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """diffusers T2IAdapter names → TencentARC's."""
    rb = int(config["num_res_blocks"])
    light = config["adapter_type"] == "light_adapter"
    out = {}
    for key, value in state_dict.items():
        parts = key.removeprefix("adapter.").split(".")
        if parts[0] == "body":
            level = int(parts[1])
            if light:
                rest = ".".join(parts[2:]).replace("resnets.", "body.", 1)
                name = f"body.{level}.{rest}"
            elif parts[2] == "resnets":
                name = f"body.{level * rb + int(parts[3])}.{'.'.join(parts[4:])}"
            else:  # in_conv belongs to the level's first block
                name = f"body.{level * rb}.{'.'.join(parts[2:])}"
        else:
            name = ".".join(parts)
        out[name] = value
    return out


def adapter_from_file(tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any], expected: list[str], source: str) -> dict[str, torch.Tensor]:
    if any(k.startswith("adapter.") for k in tensors):
        named = dict(tensors)
    else:
        forward = adapter_to_original({k: k for k in expected}, config)  # original name → diffusers name
        named = {diff: tensors[orig] for orig, diff in forward.items() if orig in tensors}
    missing = [k for k in expected if k not in named]
    if missing:
        raise CheckpointError(f"{source}: the T2I-Adapter is incomplete: {len(missing)} of {len(expected)} weights missing "
                              f"(e.g. {', '.join(missing[:3])})")
    return {k: named[k] for k in expected}


# -- writing ----------------------------------------------------------------------------------------
def save_controlnet(path: str | Path, state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any], *,
                    kind: str = "controlnet", half: bool = True, extra: Mapping[str, Any] | None = None) -> Path:
    """One original-layout safetensors file (fp16 unless ``half=False``) describing its architecture."""
    from safetensors.torch import save_file

    public = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items() if not k.startswith("_")}
    if kind == "controlnet":
        tensors = controlnet_to_original(state_dict, public)
    else:
        tensors = adapter_to_original(state_dict, public)
    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().contiguous() for k, v in tensors.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"kind": kind, "config": public, **(dict(extra) if extra else {})}
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    return path
