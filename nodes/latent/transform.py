"""Latent geometry: scale by a factor, crop, flip, rotate, concatenate side by side, cut.

Pixel inputs (crop size and position) become cells through the latent's own downscale.
"""

from __future__ import annotations

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.image.common import crop_dims, flip_dims, rotate_dims
from latentgraph.nodes.latent.arithmetic import repeat_to_batch
from latentgraph.nodes.latent.base import check_latent, downscale_of, operands, publish, unary
from latentgraph.nodes.latents import MAX_RESOLUTION, UPSCALE_METHODS, resize_latents

FLIPS = ("x-axis: vertically", "y-axis: horizontally")
ROTATIONS = ("none", "90 degrees", "180 degrees", "270 degrees")
CONCAT_DIMS = ("x", "-x", "y", "-y", "t", "-t")
CUT_DIMS = ("x", "y", "t")
#: LatentCrop keeps at least this many pixels from x/y to the right/bottom edge (ComfyUI's rule).
MIN_CROP_PIXELS = 64


def upscale(samples: Tensor, method: str, factor: float) -> Tensor:
    width, height = round(samples.shape[-1] * factor), round(samples.shape[-2] * factor)
    return resize_latents(samples, max(1, width), max(1, height), method, "disabled")


def crop(samples: Tensor, width: int, height: int, x: int, y: int, f: int) -> Tensor:
    """Cells ``[y, y + height) × [x, x + width)`` in pixels/``f``; x and y are pulled back so at
    least 64 pixels remain after them."""
    keep = max(1, MIN_CROP_PIXELS // f)
    x = max(0, min(x // f, samples.shape[3] - keep))
    y = max(0, min(y // f, samples.shape[2] - keep))
    return crop_dims(samples, x, y, width // f, height // f, 2, 3)


def flip(samples: Tensor, method: str) -> Tensor:
    """x-axis: top↔bottom (rows reversed); y-axis: left↔right (columns reversed)."""
    return flip_dims(samples, method, 2, 3)


def rotate(samples: Tensor, rotation: str) -> Tensor:
    """Clockwise by 90/180/270 degrees."""
    return rotate_dims(samples, ROTATIONS.index(rotation), 2, 3)


def _axis(name: str, dim: str) -> int:
    if "t" in dim:
        raise NodeInputError(name, "'t' is the frame axis of video latents; image latents [B, C, H, W] have none")
    return -1 if "x" in dim else -2


class LatentUpscaleBy(Node):
    spec = NodeSpec(
        name="LatentUpscaleBy",
        display_name="Upscale Latent By",
        category="latent",
        description="Resizes a latent by a factor (the cell counts are rounded).",
        inputs=(
            In("samples", "LATENT"),
            In("upscale_method", "COMBO", choices=UPSCALE_METHODS),
            In("scale_by", "FLOAT", default=1.5, min=0.01, max=8.0, step=0.01),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples, upscale_method, scale_by=1.5):
        if upscale_method not in UPSCALE_METHODS:
            raise NodeInputError("upscale_method", f"unknown method {upscale_method!r}; use one of {', '.join(UPSCALE_METHODS)}")
        if not float(scale_by) > 0:
            raise NodeInputError("scale_by", f"must be above 0, got {scale_by}")
        return (unary(samples, "samples", lambda s: upscale(s, upscale_method, float(scale_by))),)


class LatentCrop(Node):
    spec = NodeSpec(
        name="LatentCrop",
        display_name="Crop Latent",
        category="latent/transform",
        inputs=(
            In("samples", "LATENT"),
            In("width", "INT", default=512, min=64, max=MAX_RESOLUTION, step=8),
            In("height", "INT", default=512, min=64, max=MAX_RESOLUTION, step=8),
            In("x", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
            In("y", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples, width=512, height=512, x=0, y=0):
        latent = check_latent(samples, "samples")
        f = downscale_of(latent)
        for name, value in (("width", width), ("height", height)):
            if int(value) < f:
                raise NodeInputError(name, f"{value} is smaller than one latent cell ({f} pixels)")
        return (unary(latent, "samples", lambda s: crop(s, int(width), int(height), int(x), int(y), f)),)


class LatentFlip(Node):
    spec = NodeSpec(
        name="LatentFlip",
        display_name="Flip Latent",
        category="latent/transform",
        inputs=(In("samples", "LATENT"), In("flip_method", "COMBO", choices=FLIPS)),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples, flip_method):
        if flip_method not in FLIPS:
            raise NodeInputError("flip_method", f"must be one of {', '.join(FLIPS)}, got {flip_method!r}")
        return (unary(samples, "samples", lambda s: flip(s, flip_method)),)


class LatentRotate(Node):
    spec = NodeSpec(
        name="LatentRotate",
        display_name="Rotate Latent",
        category="latent/transform",
        inputs=(In("samples", "LATENT"), In("rotation", "COMBO", choices=ROTATIONS)),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples, rotation):
        if rotation not in ROTATIONS:
            raise NodeInputError("rotation", f"must be one of {', '.join(ROTATIONS)}, got {rotation!r}")
        return (unary(samples, "samples", lambda s: rotate(s, rotation)),)


class LatentConcat(Node):
    spec = NodeSpec(
        name="LatentConcat",
        category="latent/advanced",
        description="Joins samples2 to the right (x), below (y), or, with '-', to the left / above of samples1.",
        inputs=(In("samples1", "LATENT"), In("samples2", "LATENT"), In("dim", "COMBO", choices=CONCAT_DIMS)),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples1, samples2, dim):
        if dim not in CONCAT_DIMS:
            raise NodeInputError("dim", f"must be one of {', '.join(CONCAT_DIMS)}, got {dim!r}")
        axis = _axis("dim", dim)
        (s1, s2), spec, f = operands(samples1=samples1, samples2=samples2)
        s2 = repeat_to_batch(s2, s1.shape[0])
        other = -2 if axis == -1 else -1
        if s1.shape[1] != s2.shape[1] or s1.shape[other] != s2.shape[other]:
            side = "height" if axis == -1 else "width"
            raise NodeInputError("samples2", f"must have samples1's channels and {side} to join along {dim}: "
                                 f"{tuple(s2.shape[1:])} vs {tuple(s1.shape[1:])}")
        pair = (s2, s1) if dim.startswith("-") else (s1, s2)
        return (publish(samples1, torch.cat(pair, dim=axis), spec, f),)


class LatentCut(Node):
    spec = NodeSpec(
        name="LatentCut",
        category="latent/advanced",
        description="Keeps `amount` cells along x or y from `index` (negative counts from the end).",
        inputs=(
            In("samples", "LATENT"),
            In("dim", "COMBO", choices=CUT_DIMS),
            In("index", "INT", default=0, min=-MAX_RESOLUTION, max=MAX_RESOLUTION, step=1),
            In("amount", "INT", default=1, min=1, max=MAX_RESOLUTION, step=1),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples, dim, index=0, amount=1):
        if dim not in CUT_DIMS:
            raise NodeInputError("dim", f"must be one of {', '.join(CUT_DIMS)}, got {dim!r}")
        axis = _axis("dim", dim)

        def cut(s: Tensor) -> Tensor:
            size = s.shape[axis]
            i, n = int(index), int(amount)
            if i >= 0:
                i = min(i, size - 1)
                n = min(size - i, n)
            else:
                i = max(i, -size)
                n = min(-i, n)
                i += size
            return torch.narrow(s, s.ndim + axis, i, n)

        return (unary(samples, "samples", cut),)


NODES = [LatentUpscaleBy, LatentCrop, LatentFlip, LatentRotate, LatentConcat, LatentCut]
