"""Which Stable Diffusion family a checkpoint is, and the exact component configs its shapes imply.

Rules, in order (each reason is recorded so a user can see why a file was read the way it was):

* a ``latentgraph.config`` entry in the safetensors metadata describes the architecture fully;
* text encoder keys name the family: ``cond_stage_model.transformer.`` (OpenAI CLIP) → sd1,
  ``cond_stage_model.model.`` (OpenCLIP) → sd2, ``conditioner.embedders.`` → sdxl;
* without text encoder keys, the UNet decides: ``label_emb`` (size conditioning) → sdxl, else the
  cross-attention width of ``attn2.to_k``: 768 → sd1, 1024 → sd2;
* prediction type: a ``v_pred`` key (ComfyUI convention) or ``modelspec.prediction_type`` /
  ``ss_v_parameterization`` metadata say v-prediction; for SD2 UNets without either, the spread of
  ``output_blocks.11.1.transformer_blocks.0.norm1.bias`` tells trained 768-v models (std > 0.09)
  from 512 epsilon ones — the heuristic ComfyUI relies on; otherwise epsilon. A ``ztsnr`` key
  asks for a zero-terminal-SNR schedule.

Shapes then refine the shipped config of that family (widths, depths, layer counts), so
checkpoints with non-standard sizes load without a config file. Head counts are not visible in
shapes: they stay those of the shipped config when widths match, else one head per 64 channels
(8 heads for SD1-style convolutional attention).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from latentgraph.nodes.checkpoint_files import CheckpointError, WeightFile
from latentgraph.nodes.model_configs import ARCHES, METADATA_KEY, ArchConfig, TextEncoderConfig, load_shipped_config
from latentgraph.nodes.original_layout import TEXT_ENCODER_PREFIXES, UNET_PREFIX, VAE_PREFIX

V_NORM_KEY = UNET_PREFIX + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
#: ComfyUI's observed threshold separating SD2 768-v from SD2 512-base checkpoints.
V_NORM_STD_THRESHOLD = 0.09


@dataclass
class Detection:
    arch: str
    prediction_type: str = "epsilon"
    #: "", "inpaint" (9 input channels), …
    variant: str = ""
    zero_terminal_snr: bool = False
    reasons: list[str] = field(default_factory=list)


def _first_shape(weights: WeightFile, pattern: str) -> tuple[int, ...] | None:
    rx = re.compile(pattern)
    for key in weights.keys:
        if rx.search(key):
            return weights.shape(key)
    return None


def context_dim(weights: WeightFile) -> int | None:
    shape = _first_shape(weights, r"^model\.diffusion_model\..*attn2\.to_k\.weight$")
    return int(shape[1]) if shape else None


def detect(weights: WeightFile) -> Detection:
    """Family and prediction type of an original-layout checkpoint; raises if unrecognised."""
    meta_cfg = metadata_config(weights)
    if meta_cfg is not None:
        det = Detection(meta_cfg.arch, meta_cfg.prediction_type, reasons=[f"{METADATA_KEY} metadata"])
    else:
        det = Detection(_detect_family(weights))
    if not weights.has_prefix(UNET_PREFIX):
        raise CheckpointError(_not_a_checkpoint(weights))
    in_shape = weights.shape(UNET_PREFIX + "input_blocks.0.0.weight")
    if in_shape is not None and in_shape[1] == 9:
        det.variant = "inpaint"
    if meta_cfg is None:
        det.reasons.append(f"text encoder / UNet keys look like {det.arch}")
        det.prediction_type, why = _detect_prediction(weights, det)
        det.reasons.append(f"prediction type {det.prediction_type}: {why}")
    if "ztsnr" in weights:
        det.zero_terminal_snr = True
        det.reasons.append("ztsnr key: zero terminal SNR schedule")
    return det


def _detect_family(weights: WeightFile) -> str:
    has = weights.has_prefix
    if has("conditioner.embedders."):
        if not has("conditioner.embedders.1.") and has("conditioner.embedders.0.model."):
            raise CheckpointError(f"{weights.path.name} is an SDXL refiner; refiner checkpoints are not supported yet")
        return "sdxl"
    if has("cond_stage_model.model."):
        return "sd2"
    if has("cond_stage_model.transformer."):
        return "sd1"
    if UNET_PREFIX + "label_emb.0.0.weight" in weights:
        return "sdxl"
    dim = context_dim(weights)
    if dim == 768:
        return "sd1"
    if dim == 1024:
        return "sd2"
    if dim == 2048:
        return "sdxl"
    raise CheckpointError(_not_a_checkpoint(weights, dim))


def _not_a_checkpoint(weights: WeightFile, dim: int | None = None) -> str:
    name = weights.path.name
    keys = weights.keys
    if any(k.startswith(("lora_unet_", "lora_te")) or ".lora_" in k or "lora_A" in k for k in keys):
        return f"{name} is a LoRA, not a checkpoint: put it in models/loras and use LoraLoader"
    if any(k.startswith(("encoder.down.", "decoder.up.", "encoder.down_blocks.")) for k in keys):
        return f"{name} is a VAE, not a checkpoint: put it in models/vae and use VAELoader"
    prefixes = sorted({k.split(".")[0] for k in keys})[:6]
    detail = f" (cross-attention width {dim})" if dim else ""
    return (
        f"unknown model architecture in {name}{detail}: expected a Stable Diffusion 1.x, 2.x or SDXL checkpoint "
        f"({', '.join(ARCHES)}); its weights start with {', '.join(prefixes) or 'nothing'}"
    )


def _detect_prediction(weights: WeightFile, det: Detection) -> tuple[str, str]:
    if "v_pred" in weights:
        return "v_prediction", "v_pred key"
    meta = weights.metadata
    spec = meta.get("modelspec.prediction_type", "").lower()
    if spec in ("v", "v_prediction", "v-prediction"):
        return "v_prediction", "modelspec.prediction_type metadata"
    if spec in ("epsilon", "eps"):
        return "epsilon", "modelspec.prediction_type metadata"
    if meta.get("ss_v_parameterization", "").lower() == "true":
        return "v_prediction", "ss_v_parameterization metadata"
    if det.arch == "sd2" and det.variant != "inpaint" and V_NORM_KEY in weights:
        bias = weights.get(V_NORM_KEY).float()
        std = float(bias.std(unbiased=False))
        if std > V_NORM_STD_THRESHOLD:
            return "v_prediction", f"SD2 norm heuristic (std {std:.3f} > {V_NORM_STD_THRESHOLD})"
        return "epsilon", f"SD2 norm heuristic (std {std:.3f} <= {V_NORM_STD_THRESHOLD})"
    return "epsilon", "default"


def metadata_config(weights: WeightFile) -> ArchConfig | None:
    text = weights.metadata.get(METADATA_KEY)
    if not text:
        return None
    try:
        return ArchConfig.from_json(text, source="metadata")
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{weights.path.name}: unreadable {METADATA_KEY} metadata: {exc}") from exc


def resolve_config(weights: WeightFile, det: Detection) -> ArchConfig:
    """The component configs to build: from metadata, else the shipped family config fitted to shapes."""
    cfg = metadata_config(weights)
    if cfg is None:
        shipped = "sd2_v" if det.arch == "sd2" and det.prediction_type == "v_prediction" else det.arch
        base = load_shipped_config(shipped)
        encoders = []
        for (prefix, layout), enc in zip(TEXT_ENCODER_PREFIXES[det.arch], base.text_encoders):
            if weights.has_prefix(prefix):
                encoders.append(fit_text_encoder_config(weights, prefix, layout, enc, det.arch))
            else:
                encoders.append(enc)
        pooled = encoders[-1].config.get("projection_dim") if det.arch == "sdxl" else None
        unet = fit_unet_config(weights, base.unet, pooled_dim=pooled)
        vae = fit_vae_config(weights, VAE_PREFIX, base.vae) if weights.has_prefix(VAE_PREFIX) else base.vae
        cfg = replace(base, unet=unet, vae=vae, text_encoders=tuple(encoders), source=f"shipped {shipped}")
    scheduler = dict(cfg.scheduler)
    scheduler["prediction_type"] = det.prediction_type
    if det.zero_terminal_snr:
        scheduler.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    return replace(cfg, scheduler=scheduler)


# -- shapes → configs ------------------------------------------------------------------------


def _indices(keys: list[str], prefix: str) -> list[int]:
    found = set()
    for k in keys:
        if k.startswith(prefix):
            head = k[len(prefix) :].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)


def _heads(channels: list[int], linear: bool) -> list[int]:
    if linear:
        return [max(1, c // 64) for c in channels]
    return [8 if c % 8 == 0 else 1 for c in channels]


def _norm_groups(channels: list[int], preferred: int = 32) -> int:
    g = 0
    for c in channels:
        g = math.gcd(g, c)
    for groups in (preferred, 32, 16, 8, 4, 2, 1):
        if g % groups == 0:
            return groups
    return 1


@dataclass(frozen=True)
class InputBlocks:
    """What an original-layout UNet's (or ControlNet's) ``input_blocks`` say about its levels."""

    layers_per_block: int
    channels: list[int]  # output width of each level
    attention: list[bool]  # whether each level has a transformer
    depth: list[int]  # transformer blocks per level (1 where there is none)
    linear: bool  # the transformers project with linear layers rather than 1×1 convolutions


def read_input_blocks(weights: WeightFile, keys: list[str], p: str, label: str) -> InputBlocks:
    """The level structure of the ``input_blocks`` under prefix ``p``; ``label`` names the model in errors."""
    inputs = _indices(keys, p + "input_blocks.")
    downs = [i for i in inputs if p + f"input_blocks.{i}.0.op.weight" in weights]
    levels = len(downs) + 1
    lpb = (len(inputs) - 1 - len(downs)) // levels
    if lpb < 1 or 1 + levels * lpb + len(downs) != len(inputs):
        raise CheckpointError(f"{weights.path.name}: unexpected {label} block structure ({len(inputs)} input blocks)")
    channels, attention, depth = [], [], []
    linear = False
    for b in range(levels):
        i = 1 + b * (lpb + 1)
        out = weights.shape(p + f"input_blocks.{i}.0.out_layers.3.weight")
        if out is None:
            raise CheckpointError(f"{weights.path.name}: {label} input block {i} has no resnet")
        channels.append(int(out[0]))
        proj = weights.shape(p + f"input_blocks.{i}.1.proj_in.weight")
        attention.append(proj is not None)
        if proj is not None:
            linear = len(proj) == 2
            depth.append(len(_indices(keys, p + f"input_blocks.{i}.1.transformer_blocks.")))
        else:
            depth.append(1)
    return InputBlocks(lpb, channels, attention, depth, linear)


def fit_unet_config(weights: WeightFile, base: dict[str, Any], pooled_dim: int | None = None) -> dict[str, Any]:
    p = UNET_PREFIX
    keys = weights.with_prefix(p)
    conv_in = weights.shape(p + "input_blocks.0.0.weight")
    conv_out = weights.shape(p + "out.2.weight")
    if conv_in is None or conv_out is None:
        raise CheckpointError(f"{weights.path.name}: the UNet is incomplete (no input or output convolution)")
    blocks = read_input_blocks(weights, keys, p, "UNet")
    lpb, channels, attention, depth, linear = blocks.layers_per_block, blocks.channels, blocks.attention, blocks.depth, blocks.linear
    cfg = dict(base)
    same_widths = list(base.get("block_out_channels", [])) == channels
    cfg.update(
        in_channels=int(conv_in[1]),
        out_channels=int(conv_out[0]),
        block_out_channels=channels,
        layers_per_block=lpb,
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        use_linear_projection=linear,
        norm_num_groups=_norm_groups(channels, base.get("norm_num_groups", 32)),
    )
    dim = context_dim(weights)
    if dim is not None:
        cfg["cross_attention_dim"] = dim
    cfg["transformer_layers_per_block"] = depth if any(d != 1 for d in depth) else 1
    if not same_widths:
        heads = _heads(channels, linear)
        cfg["attention_head_dim"] = heads if len(set(heads)) > 1 or linear else heads[0]
    if p + "middle_block.1.proj_in.weight" not in weights:
        cfg["mid_block_type"] = "UNetMidBlock2D" if p + "middle_block.0.in_layers.0.weight" in weights else None
    label = weights.shape(p + "label_emb.0.0.weight")
    if label is not None and pooled_dim is None and base.get("addition_embed_type") != "text_time":
        # SD2.1 unCLIP: the label embedding takes a CLIP image embedding + its noise level
        cfg["class_embed_type"] = "projection"
        cfg["projection_class_embeddings_input_dim"] = int(label[1])
    elif label is not None:
        cfg["addition_embed_type"] = "text_time"
        cfg["projection_class_embeddings_input_dim"] = int(label[1])
        if int(label[1]) != base.get("projection_class_embeddings_input_dim") and pooled_dim:
            cfg["addition_time_embed_dim"] = (int(label[1]) - int(pooled_dim)) // 6
    return cfg


def fit_vae_config(weights: WeightFile, prefix: str, base: dict[str, Any]) -> dict[str, Any]:
    keys = weights.with_prefix(prefix)
    conv_in = weights.shape(prefix + "encoder.conv_in.weight")
    dec_in = weights.shape(prefix + "decoder.conv_in.weight")
    dec_out = weights.shape(prefix + "decoder.conv_out.weight")
    if conv_in is None or dec_in is None or dec_out is None:
        raise CheckpointError(f"{weights.path.name}: the VAE is incomplete (no encoder/decoder convolutions)")
    levels = _indices(keys, prefix + "encoder.down.")
    lpb = len(_indices(keys, prefix + "encoder.down.0.block."))
    channels = []
    for i in levels:
        shape = weights.shape(prefix + f"encoder.down.{i}.block.0.conv2.weight")
        if shape is None:
            raise CheckpointError(f"{weights.path.name}: VAE encoder level {i} has no resnet")
        channels.append(int(shape[0]))
    cfg = dict(base)
    cfg.update(
        in_channels=int(conv_in[1]),
        out_channels=int(dec_out[0]),
        latent_channels=int(dec_in[1]),
        block_out_channels=channels,
        layers_per_block=lpb,
        down_block_types=["DownEncoderBlock2D"] * len(channels),
        up_block_types=["UpDecoderBlock2D"] * len(channels),
        norm_num_groups=_norm_groups(channels, base.get("norm_num_groups", 32)),
    )
    return cfg


def fit_text_encoder_config(
    weights: WeightFile, prefix: str, layout: str, base: TextEncoderConfig, arch: str
) -> TextEncoderConfig:
    cfg = dict(base.config)
    keys = weights.with_prefix(prefix)
    if layout == "open_clip":
        token = weights.shape(prefix + "token_embedding.weight")
        pos = weights.shape(prefix + "positional_embedding")
        layers = len(_indices(keys, prefix + "transformer.resblocks."))
        fc1 = weights.shape(prefix + "transformer.resblocks.0.mlp.c_fc.weight")
        proj = weights.shape(prefix + "text_projection")
        if arch == "sd2" and layers == 24:
            layers = 23  # SD2 conditions on the penultimate layer; diffusers drops the last one
    else:
        tm = prefix + "text_model." if weights.has_prefix(prefix + "text_model.") else prefix
        token = weights.shape(tm + "embeddings.token_embedding.weight")
        pos = weights.shape(tm + "embeddings.position_embedding.weight")
        layers = len(_indices(keys, tm + "encoder.layers."))
        fc1 = weights.shape(tm + "encoder.layers.0.mlp.fc1.weight")
        proj = None
    if token is None or pos is None or fc1 is None or layers == 0:
        raise CheckpointError(f"{weights.path.name}: the text encoder under {prefix!r} is incomplete")
    hidden = int(token[1])
    if hidden != cfg.get("hidden_size"):
        cfg["num_attention_heads"] = max(1, hidden // 64)
    cfg.update(
        vocab_size=int(token[0]),
        hidden_size=hidden,
        max_position_embeddings=int(pos[0]),
        num_hidden_layers=layers,
        intermediate_size=int(fc1[0]),
    )
    if proj is not None and base.class_name == "CLIPTextModelWithProjection":
        cfg["projection_dim"] = int(proj[1])
    return replace(base, config=cfg)
