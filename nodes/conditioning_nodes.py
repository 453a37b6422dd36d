"""ComfyUI's conditioning editors: areas, masks, strength, timestep ranges, average, concat, zero out,
and the SDXL text encoders with size conditioning.

Each node returns a new CONDITIONING whose entries carry copies of the input extras plus the keys
ComfyUI's node of the same name sets (the sampler reads them; see ``sampling.guidance``), so
workflows and custom nodes that inspect or produce these keys mean the same thing:

* ``area``: ``(h, w, y, x)`` in latent cells, ComfyUI's ``pixels // 8``, or ``("percentage", h, w,
  y, x)`` as fractions of the latent; ``strength`` weighs the entry against the others;
* ``mask`` ``[B, H, W]`` (any size, resized to the latent) with ``mask_strength`` and
  ``set_area_to_bounds`` (evaluate only the mask's bounding box);
* ``start_percent`` / ``end_percent``: the part of the run (0 = first step) the entry applies to.

Embeddings are never modified in place: the input CONDITIONING stays valid for other nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.conditioning import check_clip, encode_prompt, with_warnings
from latentgraph.nodes.latent_mask import check_mask
from latentgraph.nodes.latents import MAX_RESOLUTION
from latentgraph.nodes.sampling.weight_hooks import clip_entries

log = logging.getLogger("latentgraph.conditioning")

Entry = tuple[Tensor, dict[str, Any]]


def entries(name: str, conditioning: Any) -> list[Entry]:
    """The ``(embeddings, extras)`` pairs of a CONDITIONING input, extras copied (shallow)."""
    if not isinstance(conditioning, (list, tuple)):
        raise NodeInputError(name, f"expected CONDITIONING, got {type(conditioning).__name__}")
    out = []
    for item in conditioning:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], Tensor)):
            raise NodeInputError(name, "expected CONDITIONING entries of (embeddings tensor, extras dict)")
        extras = item[1] if isinstance(item[1], Mapping) else {}
        out.append((item[0], dict(extras)))
    return out


def set_values(name: str, conditioning: Any, values: Mapping[str, Any]) -> list[Entry]:
    """ComfyUI's ``conditioning_set_values``: every entry gets these extras (replacing old ones)."""
    return [(emb, {**extras, **values}) for emb, extras in entries(name, conditioning)]


def _combine_with_first(node: str, conditioning_to: Any, conditioning_from: Any,
                        combine: Callable[[Tensor, dict[str, Any], Tensor, dict[str, Any]], Entry]) -> list[Entry]:
    """ComfyUI's two-input editors: ``combine(emb, extras, source, source_extras)`` every
    ``conditioning_to`` entry with the first ``conditioning_from`` entry (the rest are ignored, with a
    warning), after checking both come from the same text encoder (equal embedding width)."""
    found = entries("conditioning_from", conditioning_from)
    if not found:
        raise NodeInputError("conditioning_from", "is an empty CONDITIONING")
    if len(found) > 1:
        log.warning("%s: conditioning_from has %d entries, only the first is used (as in ComfyUI)", node, len(found))
    source, source_extras = found[0]
    out = []
    for emb, extras in entries("conditioning_to", conditioning_to):
        if source.shape[-1] != emb.shape[-1]:
            raise NodeInputError(
                "conditioning_from", f"embeddings are {source.shape[-1]} wide but conditioning_to's are "
                f"{emb.shape[-1]}: they come from different text encoders"
            )
        out.append(combine(emb, extras, source, source_extras))
    return out


def _strength() -> Any:
    return In("strength", "FLOAT", default=1.0, min=0.0, max=10.0, step=0.01)


def _area_values(area: tuple, strength: float) -> dict[str, Any]:
    """The extras of the two Set Area nodes: a rectangle evaluated on its own, weighed by strength."""
    return {"area": area, "strength": float(strength), "set_area_to_bounds": False}


class ConditioningSetArea(Node):
    spec = NodeSpec(
        name="ConditioningSetArea",
        display_name="Conditioning (Set Area)",
        category="conditioning",
        description="The conditioning applies to a rectangle only (in pixels, whole latent cells of 8).",
        inputs=(
            In("conditioning", "CONDITIONING"),
            In("width", "INT", default=64, min=64, max=MAX_RESOLUTION, step=8),
            In("height", "INT", default=64, min=64, max=MAX_RESOLUTION, step=8),
            In("x", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
            In("y", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
            _strength(),
        ),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, conditioning, width=64, height=64, x=0, y=0, strength=1.0):
        area = (int(height) // 8, int(width) // 8, int(y) // 8, int(x) // 8)
        return (set_values("conditioning", conditioning, _area_values(area, strength)),)


class ConditioningSetAreaPercentage(Node):
    spec = NodeSpec(
        name="ConditioningSetAreaPercentage",
        display_name="Conditioning (Set Area with Percentage)",
        category="conditioning",
        description="The conditioning applies to a rectangle given as fractions of the image (any size).",
        inputs=(
            In("conditioning", "CONDITIONING"),
            In("width", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01),
            In("height", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01),
            In("x", "FLOAT", default=0.0, min=0.0, max=1.0, step=0.01),
            In("y", "FLOAT", default=0.0, min=0.0, max=1.0, step=0.01),
            _strength(),
        ),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, conditioning, width=1.0, height=1.0, x=0.0, y=0.0, strength=1.0):
        area = ("percentage", float(height), float(width), float(y), float(x))
        return (set_values("conditioning", conditioning, _area_values(area, strength)),)


class ConditioningSetAreaStrength(Node):
    spec = NodeSpec(
        name="ConditioningSetAreaStrength",
        display_name="ConditioningSetAreaStrength",
        category="conditioning",
        description="How much this conditioning weighs against the others where they overlap.",
        inputs=(In("conditioning", "CONDITIONING"), _strength()),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, conditioning, strength=1.0):
        return (set_values("conditioning", conditioning, {"strength": float(strength)}),)


class ConditioningSetMask(Node):
    spec = NodeSpec(
        name="ConditioningSetMask",
        display_name="Conditioning (Set Mask)",
        category="conditioning",
        description="The conditioning applies where the mask is, weighted by it; 'mask bounds' evaluates "
        "only the mask's bounding box (faster, and the model sees that region at full size).",
        inputs=(
            In("conditioning", "CONDITIONING"),
            In("mask", "MASK"),
            _strength(),
            In("set_cond_area", "COMBO", choices=("default", "mask bounds"), default="default"),
        ),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, conditioning, mask, strength=1.0, set_cond_area="default"):
        mask = check_mask("mask", mask, max_ndim=3)
        if set_cond_area not in ("default", "mask bounds"):
            raise NodeInputError("set_cond_area", f"must be 'default' or 'mask bounds', got {set_cond_area!r}")
        values = {
            "mask": mask if mask.ndim == 3 else mask.unsqueeze(0),
            "set_area_to_bounds": set_cond_area != "default",
            "mask_strength": float(strength),
        }
        return (set_values("conditioning", conditioning, values),)


class ConditioningSetTimestepRange(Node):
    spec = NodeSpec(
        name="ConditioningSetTimestepRange",
        display_name="ConditioningSetTimestepRange",
        category="advanced/conditioning",
        description="The conditioning applies only between these fractions of the run (0 = first step).",
        inputs=(
            In("conditioning", "CONDITIONING"),
            In("start", "FLOAT", default=0.0, min=0.0, max=1.0, step=0.001),
            In("end", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.001),
        ),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, conditioning, start=0.0, end=1.0):
        values = {"start_percent": float(start), "end_percent": float(end)}
        return (set_values("conditioning", conditioning, values),)


class ConditioningAverage(Node):
    spec = NodeSpec(
        name="ConditioningAverage",
        display_name="ConditioningAverage",
        category="conditioning",
        description="Blends two prompts' embeddings: strength 1 is all 'to', 0 all 'from' (token by token; "
        "'from' is cut or zero-padded to 'to''s length). Only the first 'from' entry is used.",
        inputs=(
            In("conditioning_to", "CONDITIONING"),
            In("conditioning_from", "CONDITIONING"),
            In("conditioning_to_strength", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01),
        ),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, conditioning_to, conditioning_from, conditioning_to_strength=1.0):
        weight = float(conditioning_to_strength)

        def blend(emb: Tensor, extras: dict[str, Any], source: Tensor, source_extras: dict[str, Any]) -> Entry:
            other = source[:, : emb.shape[1]].to(emb)
            if other.shape[1] < emb.shape[1]:
                pad = other.new_zeros(other.shape[0], emb.shape[1] - other.shape[1], other.shape[2])
                other = torch.cat([other, pad], dim=1)
            pooled_from = source_extras.get("pooled_output")
            pooled_to = extras.get("pooled_output", pooled_from)
            if pooled_from is not None and pooled_to is not None:
                extras["pooled_output"] = pooled_to * weight + pooled_from * (1.0 - weight)
            elif pooled_from is not None:
                extras["pooled_output"] = pooled_from
            return emb * weight + other * (1.0 - weight), extras

        return (_combine_with_first("ConditioningAverage", conditioning_to, conditioning_from, blend),)


class ConditioningConcat(Node):
    spec = NodeSpec(
        name="ConditioningConcat",
        display_name="Conditioning (Concat)",
        category="conditioning",
        description="Appends 'from''s tokens to each 'to' entry (the model attends to both prompts); "
        "extras, pooled output included, stay 'to''s. Only the first 'from' entry is used.",
        inputs=(In("conditioning_to", "CONDITIONING"), In("conditioning_from", "CONDITIONING")),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, conditioning_to, conditioning_from):
        def concat(emb: Tensor, extras: dict[str, Any], source: Tensor, _: dict[str, Any]) -> Entry:
            return torch.cat([emb, source.to(emb)], dim=1), extras

        return (_combine_with_first("ConditioningConcat", conditioning_to, conditioning_from, concat),)


class ConditioningZeroOut(Node):
    spec = NodeSpec(
        name="ConditioningZeroOut",
        display_name="ConditioningZeroOut",
        category="advanced/conditioning",
        description="Zeros in place of the embeddings and pooled output, extras kept (an exact 'nothing' "
        "negative, unlike the encoded empty prompt).",
        inputs=(In("conditioning", "CONDITIONING"),),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, conditioning):
        out = []
        for emb, extras in entries("conditioning", conditioning):
            for key in ("pooled_output", "conditioning_lyrics"):
                if isinstance(extras.get(key), Tensor):
                    extras[key] = torch.zeros_like(extras[key])
            out.append((torch.zeros_like(emb), extras))
        return (out,)


def _size(name: str, default: int = 1024) -> Any:
    return In(name, "INT", default=default, min=0, max=MAX_RESOLUTION)


class CLIPTextEncodeSDXL(Node):
    spec = NodeSpec(
        name="CLIPTextEncodeSDXL",
        category="advanced/conditioning",
        description="SDXL prompt with one text per encoder (text_g: OpenCLIP bigG, text_l: CLIP-L) and the "
        "size micro-conditioning: the original size and crop the picture should look like it came from, "
        "and the target size.",
        inputs=(
            In("clip", "CLIP"),
            _size("width"),
            _size("height"),
            _size("crop_w", 0),
            _size("crop_h", 0),
            _size("target_width"),
            _size("target_height"),
            In("text_g", "STRING", multiline=True, default=""),
            In("text_l", "STRING", multiline=True, default=""),
        ),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, clip, width=1024, height=1024, crop_w=0, crop_h=0, target_width=1024,
                target_height=1024, text_g="", text_l=""):
        clip = check_clip(clip)
        for name, value in (("text_g", text_g), ("text_l", text_l)):
            if not isinstance(value, str):
                raise NodeInputError(name, f"expected text, got {type(value).__name__}")
        warnings: list[str] = []

        def encode(c):
            if len(c.encoders) == 2:  # CLIP-L first, OpenCLIP bigG second (their widths concatenate)
                return encode_prompt(ctx, c, text_g, [text_l, text_g], warnings=warnings)
            # ComfyUI: an SD1 CLIP reads text_l, an SD2 (OpenCLIP) one text_g
            return encode_prompt(ctx, c, text_l if c.arch == "sd1" else text_g, warnings=warnings)

        extras = {
            "arch": clip.arch,
            "width": int(width), "height": int(height), "crop_w": int(crop_w), "crop_h": int(crop_h),
            "target_width": int(target_width), "target_height": int(target_height),
        }
        return with_warnings((clip_entries(clip, encode, extras),), warnings)


class CLIPTextEncodeSDXLRefiner(Node):
    spec = NodeSpec(
        name="CLIPTextEncodeSDXLRefiner",
        category="advanced/conditioning",
        description="Prompt for the SDXL refiner, which is conditioned on an aesthetic score (6 positive, "
        "2.5 negative are the usual values) and the original size.",
        inputs=(
            In("ascore", "FLOAT", default=6.0, min=0.0, max=1000.0, step=0.01),
            _size("width"),
            _size("height"),
            In("text", "STRING", multiline=True, default=""),
            In("clip", "CLIP"),
        ),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, clip, ascore=6.0, width=1024, height=1024, text=""):
        clip = check_clip(clip)
        if not isinstance(text, str):
            raise NodeInputError("text", f"expected text, got {type(text).__name__}")
        warnings: list[str] = []
        extras = {"arch": clip.arch, "aesthetic_score": float(ascore), "width": int(width), "height": int(height)}
        entries = clip_entries(clip, lambda c: encode_prompt(ctx, c, text, warnings=warnings), extras)
        return with_warnings((entries,), warnings)


NODES = [
    ConditioningSetArea,
    ConditioningSetAreaPercentage,
    ConditioningSetAreaStrength,
    ConditioningSetMask,
    ConditioningSetTimestepRange,
    ConditioningAverage,
    ConditioningConcat,
    ConditioningZeroOut,
    CLIPTextEncodeSDXL,
    CLIPTextEncodeSDXLRefiner,
]
