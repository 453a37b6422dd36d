"""Pasting one latent into another: LatentComposite (feathered rectangle), LatentCompositeMasked
(through a mask), LatentBlend (a mix of two whole latents).

Positions are in pixels, as in ComfyUI; they become latent cells through the latent's own
downscale (8 for SD, 4 for the demo model), so a paste at (x, y) lands at pixel (x, y).
"""

from __future__ import annotations

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.image.compositing import composite
from latentgraph.nodes.latent.arithmetic import repeat_to_batch
from latentgraph.nodes.latent.base import operands, publish
from latentgraph.nodes.latent_mask import check_mask
from latentgraph.nodes.latents import MAX_RESOLUTION, resize_latents


def feather_mask(shape: tuple[int, ...], feather: int, top: bool, bottom: bool, left: bool, right: bool) -> Tensor:
    """Weights of a pasted block: 1 inside, ramping (1/feather … 1) over ``feather`` cells at the
    edges that lie inside the destination (the flagged ones)."""
    mask = torch.ones(shape)
    h, w = shape[-2], shape[-1]
    for t in range(feather):
        value = (t + 1) / feather
        if top:
            mask[..., t, :] *= value
        if bottom:
            mask[..., h - 1 - t, :] *= value
        if left:
            mask[..., :, t] *= value
        if right:
            mask[..., :, w - 1 - t] *= value
    return mask


def composite_rect(dest: Tensor, source: Tensor, x: int, y: int, feather: int = 0) -> Tensor:
    """``source`` pasted into a copy of ``dest`` with its top-left at cell (x, y), cut at the border."""
    out = dest.clone()
    h, w = max(0, min(source.shape[2], dest.shape[2] - y)), max(0, min(source.shape[3], dest.shape[3] - x))
    if h == 0 or w == 0:
        return out
    block = repeat_to_batch(source, dest.shape[0])[:, :, :h, :w]
    if feather > 0:
        weight = feather_mask(tuple(block.shape), feather, y != 0, y + h < dest.shape[2], x != 0, x + w < dest.shape[3])
        block = block * weight + out[:, :, y : y + h, x : x + w] * (1.0 - weight)
    out[:, :, y : y + h, x : x + w] = block
    return out


def _cells(name: str, value: int, f: int) -> int:
    if int(value) < 0:
        raise NodeInputError(name, f"must be 0 or more, got {value}")
    return int(value) // f


class LatentComposite(Node):
    spec = NodeSpec(
        name="LatentComposite",
        display_name="Latent Composite",
        category="latent",
        description="Pastes samples_from into samples_to at pixel (x, y); feather fades its inner edges.",
        inputs=(
            In("samples_to", "LATENT"),
            In("samples_from", "LATENT"),
            In("x", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
            In("y", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
            In("feather", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples_to, samples_from, x=0, y=0, feather=0):
        (dest, source), spec, f = operands(samples_to=samples_to, samples_from=samples_from)
        out = composite_rect(dest, source, _cells("x", x, f), _cells("y", y, f), _cells("feather", feather, f))
        return (publish(samples_to, out, spec, f),)


class LatentCompositeMasked(Node):
    spec = NodeSpec(
        name="LatentCompositeMasked",
        category="latent",
        description="Pastes source into destination at pixel (x, y) through an optional mask (1 = source).",
        inputs=(
            In("destination", "LATENT"),
            In("source", "LATENT"),
            In("x", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
            In("y", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
            In("resize_source", "BOOLEAN", default=False),
            In("mask", "MASK", required=False),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, destination, source, x=0, y=0, resize_source=False, mask=None):
        (dest, src), spec, f = operands(destination=destination, source=source)
        if mask is not None:
            mask = check_mask("mask", mask)
        out = composite(dest, src, _cells("x", x, f), _cells("y", y, f), mask, resize_source=bool(resize_source))
        return (publish(destination, out, spec, f),)


class LatentBlend(Node):
    spec = NodeSpec(
        name="LatentBlend",
        display_name="Latent Blend",
        category="_for_testing",
        description="samples1 × blend_factor + samples2 × (1 − blend_factor); samples2 is resized to samples1 if needed.",
        inputs=(
            In("samples1", "LATENT"),
            In("samples2", "LATENT"),
            In("blend_factor", "FLOAT", default=0.5, min=0, max=1, step=0.01),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples1, samples2, blend_factor=0.5):
        (s1, s2), spec, f = operands(samples1=samples1, samples2=samples2)
        if s1.shape != s2.shape:
            s2 = repeat_to_batch(resize_latents(s2, int(s1.shape[3]), int(s1.shape[2]), "bicubic", "center"), s1.shape[0])
        factor = float(blend_factor)
        return (publish(samples1, s1 * factor + s2 * (1.0 - factor), spec, f),)


NODES = [LatentComposite, LatentCompositeMasked, LatentBlend]
