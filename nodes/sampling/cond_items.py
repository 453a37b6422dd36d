"""Conditioning entries prepared for one sampling run: each CONDITIONING entry becomes a
:class:`CondItem` (embeddings on the model's device, area and mask in latent cells, σ range,
SDXL added conditions, control and UNet inputs), and the sides are completed as ComfyUI does
(same-area partners, controls and GLIGEN lent from the positive). :mod:`.guidance` evaluates them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.sampling import unet_inputs, weight_hooks

#: Cells over which an area's edges fade in (at most), where it does not touch the latent's border.
AREA_FEATHER = 8
#: ComfyUI's areas are in 1/8 pixels; a model with another latent downscale reads them as pixels.
AREA_UNIT = 8


# -- one conditioning entry, prepared for a run ----------------------------------------------------------
@dataclass
class CondItem:
    hidden: Tensor  # [1 or B, T, D] on the model's device and dtype
    added: dict[str, Tensor] | None  # SDXL: text_embeds [1 or B, P], time_ids [1 or B, n]
    area: tuple[int, int, int, int] | None = None  # (h, w, y, x) in latent cells
    mask: Tensor | None = None  # [1 or B, h, w] at the latent's size
    strength: float = 1.0
    sigma_start: float | None = None  # applies while σ ≤ sigma_start …
    sigma_end: float | None = None  # … and σ ≥ sigma_end
    timestep_cond: Tensor | None = None  # guidance-distilled (LCM) UNets
    control: Any = None  # latentgraph.nodes.control.residuals.Control
    #: ControlNetApply (old): lend this entry's control to the other sides (ComfyUI's rule).
    control_to_uncond: bool = False
    #: The entry had an ``area`` of its own (not one derived from a mask's bounds).
    area_given: bool = False
    #: Weight hooks evaluated with this entry (:mod:`latentgraph.nodes.sampling.weight_hooks`).
    hooks: Any = None
    #: PairConditioningSetDefaultCombine: fills only what the side's other entries leave uncovered.
    default: bool = False
    #: Non-text UNet inputs (extra channels, unCLIP class embedding, GLIGEN): :mod:`.unet_inputs`.
    unet_inputs: Any = None

    def active(self, sigma: float) -> bool:
        if self.sigma_start is not None and sigma > self.sigma_start:
            return False
        return not (self.sigma_end is not None and sigma < self.sigma_end)

    def region(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The crop of ``x`` this entry denoises and its weight there."""
        area = self.clipped_area(x)
        crop = x
        if area is not None:
            h, w, y, xo = area
            crop = x[:, :, y : y + h, xo : xo + w]
        if self.mask is not None:
            mask = self.mask[: crop.shape[0]]
            if area is not None:
                mask = mask[:, area[2] : area[2] + area[0], area[3] : area[3] + area[1]]
            mult = mask.unsqueeze(1).repeat(crop.shape[0] // mask.shape[0], crop.shape[1], 1, 1) * self.strength
        else:
            mult = torch.ones_like(crop) * self.strength
            if area is not None:
                _feather(mult, area, x.shape[2:])
        return crop, mult.to(crop.dtype)

    def clipped_area(self, x: Tensor) -> tuple[int, int, int, int] | None:
        """The entry's area cut to ``x``'s extent."""
        if self.area is None:
            return None
        h, w, y, xo = self.area
        return (min(x.shape[2] - y, h), min(x.shape[3] - xo, w), y, xo)


def _feather(mult: Tensor, area: tuple[int, int, int, int], full: Sequence[int]) -> None:
    """Fade an area's weight in over its first/last cells where it does not reach the border:
    over 8 cells, or a quarter of the area's size if that is less (ComfyUI's rule)."""
    sizes, offsets = area[:2], area[2:]
    for d in range(2):
        axis = d + 2
        cells = min(AREA_FEATHER, mult.shape[axis] // 4)
        if offsets[d] != 0:
            for t in range(cells):
                mult.narrow(axis, t, 1).mul_((1.0 / cells) * (t + 1))
        if sizes[d] + offsets[d] < full[d]:
            for t in range(cells):
                mult.narrow(axis, sizes[d] - 1 - t, 1).mul_((1.0 / cells) * (t + 1))


def check_conditioning(name: str, conditioning: Any) -> list[tuple[Tensor, dict[str, Any]]]:
    if not isinstance(conditioning, (list, tuple)) or not conditioning:
        raise NodeInputError(name, "expected CONDITIONING (a non-empty list of (embeddings, extras))")
    entries = []
    for item in conditioning:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], Tensor)):
            raise NodeInputError(name, "expected CONDITIONING entries of (embeddings tensor, extras dict)")
        emb, extras = item
        if emb.ndim != 3:
            raise NodeInputError(name, f"embeddings must be [batch, tokens, dim], got shape {tuple(emb.shape)}")
        extras = dict(extras or {})
        unet_inputs.check_extras(name, extras)
        control = extras.get("control")
        if control is not None:
            from latentgraph.nodes.control.residuals import Control

            if not isinstance(control, Control):
                raise NodeInputError(name, f"its 'control' is a {type(control).__name__}, not a ControlNet applied "
                                     "by ControlNetApply / ControlNetApplyAdvanced")
        entries.append((emb, extras))
    return entries


def _time_ids(extras: Mapping[str, Any], pixel_hw: tuple[int, int], n_ids: int, negative: bool) -> list[float]:
    """SDXL micro-conditioning: original size, crop top-left, then target size or aesthetic score."""
    height, width = pixel_hw
    ids = [extras.get("height", height), extras.get("width", width), extras.get("crop_h", 0), extras.get("crop_w", 0)]
    if n_ids == 6:
        ids += [extras.get("target_height", extras.get("height", height)), extras.get("target_width", extras.get("width", width))]
    else:  # the SDXL refiner conditions on an aesthetic score instead of the target size
        ids += [extras.get("aesthetic_score", 2.5 if negative else 6.0)]
    return [float(v) for v in ids]


def guidance_scale_embedding(w: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of (cfg − 1)·1000 for guidance-distilled (LCM) UNets."""
    w = w.float() * 1000.0
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    angles = w[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _resolve_area(area: Any, dims: tuple[int, int], downscale: int) -> tuple[int, int, int, int] | None:
    """(h, w, y, x) in this latent's cells. Absolute areas are stored in 1/8 pixels (ComfyUI's
    ConditioningSetArea); on a model whose latent cell is not 8 pixels they cover the same pixels."""
    if area is None:
        return None
    if area[0] == "percentage":
        h, w, y, x = (float(v) for v in area[1:5])
        return (max(1, round(h * dims[0])), max(1, round(w * dims[1])), round(y * dims[0]), round(x * dims[1]))
    cells = tuple(int(v) for v in area[:4])
    if downscale != AREA_UNIT:
        cells = tuple(round(v * AREA_UNIT / downscale) for v in cells)
    return cells  # type: ignore[return-value]


def _resolve_mask(mask: Tensor, dims: tuple[int, int], device: torch.device) -> Tensor:
    mask = mask.to(device=device, dtype=torch.float32)
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if tuple(mask.shape[1:]) != dims:
        mask = F.interpolate(mask.unsqueeze(1), size=dims, mode="bilinear", align_corners=False).squeeze(1)
    return mask


def _mask_bounds(mask: Tensor) -> tuple[int, int, int, int]:
    """(h, w, y, x) of the mask's non-zero box, at least 8 cells a side; an empty mask → 8×8 at 0."""
    bounds = mask.abs().amax(dim=0)
    ys, xs = torch.nonzero(bounds, as_tuple=True)
    if ys.numel() == 0:
        return (8, 8, 0, 0)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    return (max(8, y1 - y0 + 1), max(8, x1 - x0 + 1), y0, x0)


def prepare_items(
    model: DiffusionModel,
    name: str,
    conditioning: Any,
    latent_shape: Sequence[int],
    downscale: int,
    *,
    negative: bool = False,
    guidance_w: float | None = None,
    run: unet_inputs.RunInputs | None = None,
) -> list[CondItem]:
    """Check one input's CONDITIONING against the model and prepare it for a latent of this shape."""
    ms = model.model_sampling
    dims = (int(latent_shape[2]), int(latent_shape[3]))
    pixel_hw = (dims[0] * downscale, dims[1] * downscale)
    config = model.unet.config
    timestep_cond = None  # the same for every entry
    if guidance_w is not None:
        timestep_cond = guidance_scale_embedding(torch.tensor([guidance_w]), int(config.time_cond_proj_dim))
        timestep_cond = timestep_cond.to(model.device, model.dtype)
    items = []
    for emb, extras in check_conditioning(name, conditioning):
        if emb.shape[-1] != model.cross_attention_dim:
            source = f" (encoded by a {extras['arch']} CLIP)" if extras.get("arch") else ""
            raise NodeInputError(
                name,
                f"text embeddings have dimension {emb.shape[-1]}{source} but the model ({model.arch}) expects "
                f"{model.cross_attention_dim}: the CLIP and the model come from different architectures",
            )
        added = None
        if getattr(config, "addition_embed_type", None) == "text_time":
            added = _added_cond(model, name, extras, pixel_hw, negative, run)
        area = _resolve_area(extras.get("area"), dims, downscale)
        mask = extras.get("mask")
        if isinstance(mask, Tensor):
            mask = _resolve_mask(mask, dims, model.device)
            if extras.get("set_area_to_bounds"):
                area = _mask_bounds(mask)
            mask = mask * float(extras.get("mask_strength", 1.0))
        elif mask is not None:
            raise NodeInputError(name, "its 'mask' is not a MASK tensor")
        start = ms.percent_to_sigma(float(extras["start_percent"])) if "start_percent" in extras else None
        end = ms.percent_to_sigma(float(extras["end_percent"])) if "end_percent" in extras else None
        if "clip_start_percent" in extras:  # one keyframe range of a scheduled CLIP encoding
            start = ms.percent_to_sigma(max(float(extras["clip_start_percent"]), float(extras.get("start_percent", 0.0))))
            end = ms.percent_to_sigma(min(float(extras["clip_end_percent"]), float(extras.get("end_percent", 1.0))))
        control = extras.get("control")
        if control is not None:
            _check_control(model, name, control)
        items.append(
            CondItem(
                hidden=emb.to(model.device, model.dtype),
                added=added,
                area=area,
                mask=mask,
                strength=float(extras.get("strength", 1.0)),
                sigma_start=start,
                sigma_end=end,
                timestep_cond=timestep_cond,
                control=control,
                control_to_uncond=bool(extras.get("control_apply_to_uncond", False)),
                area_given=extras.get("area") is not None,
                unet_inputs=unet_inputs.prepare(model, name, extras, latent_shape, downscale, run),
                hooks=weight_hooks.cond_hooks(name, extras),
                default="default" in extras,
            )
        )
    return items


def _check_control(model: DiffusionModel, name: str, control: Any) -> None:
    """Every ControlNet of the chain must take the model's text width (else it is for another family)."""
    for node in control.chain():
        net = node.net
        if net.kind != "controlnet":
            continue
        dim = net.model.config.cross_attention_dim
        dim = int(dim[0] if isinstance(dim, (list, tuple)) else dim)
        if dim != model.cross_attention_dim:
            raise NodeInputError(
                name, f"its ControlNet ({net.info.get('source', net.arch)}) takes text of width {dim} but the model "
                f"({model.arch}) uses {model.cross_attention_dim}: the ControlNet is for another model family",
            )


def lend_from_positive(sides: dict[str, list[CondItem]], lendable: Callable[[CondItem], Any],
                       has: Callable[[CondItem], bool], give: Callable[[CondItem, Any], CondItem]) -> None:
    """ComfyUI's ``apply_empty_x_to_equal_area``: what the positive's area-less entries carry
    (``lendable``: a control, a GLIGEN) reaches each other side, unless an area-less entry there
    has its own (``has``); the n-th lent value goes to the (n mod count)-th area-less entry."""
    positive = sides.get("positive")
    if not positive:
        return
    lent = [value for it in positive if not it.area_given and (value := lendable(it)) is not None]
    if not lent:
        return
    for name, items in sides.items():
        if name == "positive":
            continue
        whole = [i for i, it in enumerate(items) if not it.area_given]
        if not whole or any(has(items[i]) for i in whole):
            continue
        originals = list(items)
        for n, value in enumerate(lent):
            index = whole[n % len(whole)]
            items[index] = give(originals[index], value)


def lend_controls(sides: dict[str, list[CondItem]]) -> None:
    """ControlNetApply's controls (marked ``control_to_uncond``) reach the other sides."""
    lend_from_positive(sides, lambda it: it.control if it.control_to_uncond else None,
                       lambda it: it.control is not None, lambda it, control: replace(it, control=control))


def lend_gligen(sides: dict[str, list[CondItem]]) -> None:
    """GLIGEN grounding reaches a negative without its own (the model sees the boxes on both sides)."""

    def gligen_of(item: CondItem) -> Any:
        return item.unet_inputs.gligen if item.unet_inputs is not None else None

    def give(item: CondItem, gligen: Any) -> CondItem:
        own = item.unet_inputs or unet_inputs.EntryInputs()
        return replace(item, unet_inputs=replace(own, gligen=gligen))

    lend_from_positive(sides, gligen_of, lambda it: gligen_of(it) is not None, give)


def _added_cond(model: DiffusionModel, name: str, extras: Mapping[str, Any], pixel_hw: tuple[int, int], negative: bool,
                run: unet_inputs.RunInputs | None = None) -> dict[str, Tensor]:
    config = model.unet.config
    pooled = extras.get("pooled_output")
    if isinstance(pooled, Tensor) and extras.get("unclip_conditioning"):  # Revision: image embeddings replace it
        pooled = unet_inputs.revision_pooled(name, extras, pooled.reshape(pooled.shape[0], -1).shape[-1], run)
    if not isinstance(pooled, Tensor):
        raise NodeInputError(
            name, f"the {model.arch} model needs pooled text embeddings ('pooled_output'), this "
            "conditioning has none: encode it with the model's own CLIP"
        )
    pooled = pooled.reshape(pooled.shape[0], -1)
    time_dim = int(config.addition_time_embed_dim)
    leftover = int(config.projection_class_embeddings_input_dim) - pooled.shape[-1]
    n_ids = leftover // time_dim if leftover % time_dim == 0 else 0
    if n_ids not in (5, 6):
        raise NodeInputError(
            name, f"pooled text embeddings have dimension {pooled.shape[-1]}, which does not fit the "
            f"model's added-condition size {config.projection_class_embeddings_input_dim}"
        )
    ids = torch.tensor([_time_ids(extras, pixel_hw, n_ids, negative)])
    return {"text_embeds": pooled.to(model.device, model.dtype), "time_ids": ids.to(model.device, model.dtype)}


def _area_inside(inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    return all(inner[2 + d] >= outer[2 + d] and inner[d] + inner[2 + d] <= outer[d] + outer[2 + d] for d in range(2))


def add_same_area_counterparts(sides: dict[str, list[CondItem]]) -> None:
    """Give every area entry a partner over the same area on each other side (ComfyUI's rule),
    so that, e.g., a positive prompt for the left half is guided against the negative there.

    The partner takes its conditioning from the smallest entry of that side containing the area
    (an entry without an area contains every area but any area entry is preferred), and its
    area, mask, strength and timestep range from the area entry. None is added when that
    smallest entry already has exactly this area.
    """
    for name, items in sides.items():
        for item in list(items):
            if item.area is None:
                continue
            for other, their in sides.items():
                if other == name:
                    continue
                smallest: CondItem | None = None
                for candidate in their:
                    if candidate.area is None:
                        if smallest is None:
                            smallest = candidate
                    elif _area_inside(item.area, candidate.area) and (
                        smallest is None or smallest.area is None
                        or math.prod(smallest.area[:2]) > math.prod(candidate.area[:2])
                    ):
                        smallest = candidate
                if smallest is None or smallest.area == item.area:
                    continue
                their.append(replace(item, hidden=smallest.hidden, added=smallest.added, unet_inputs=smallest.unet_inputs,
                                     timestep_cond=smallest.timestep_cond))
