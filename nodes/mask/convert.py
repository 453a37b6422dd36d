"""MASK ↔ IMAGE conversions and per-pixel mask maths: MaskToImage, ImageColorToMask, InvertMask,
ThresholdMask, CropMask, ImageToMask, SolidMask.

Pure functions (tensor in, tensor out) do the work; the nodes check their inputs and call them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.image.common import crop_dims
from latentgraph.nodes.images import MAX_RESOLUTION

# One implementation of these two: they live in nodes/latent_mask.py (registered there) with
# exactly ComfyUI's contract. Re-exported here so the mask family is found in one place.
from latentgraph.nodes.latent_mask import check_mask

CHANNELS = ("red", "green", "blue", "alpha")


def as_batch(mask: Tensor) -> Tensor:
    """A MASK ``[H, W]`` / ``[B, H, W]`` / ``[B, 1, H, W]`` as ``[B, H, W]`` float."""
    return mask.reshape(-1, mask.shape[-2], mask.shape[-1]).float()


def mask_to_image(mask: Tensor) -> Tensor:
    """``[B, H, W]`` → grey ``[B, H, W, 3]``."""
    return as_batch(mask)[..., None].repeat(1, 1, 1, 3)


def color_to_mask(image: Tensor, color: int) -> Tensor:
    """1 where the pixel's 8-bit RGB, packed as ``0xRRGGBB``, equals ``color``; else 0."""
    rgb = (image[..., :3].clamp(0.0, 1.0) * 255.0).round().to(torch.int64)
    packed = (rgb[..., 0] << 16) + (rgb[..., 1] << 8) + rgb[..., 2]
    return (packed == int(color)).float()


def invert(mask: Tensor) -> Tensor:
    return 1.0 - mask


def threshold(mask: Tensor, value: float) -> Tensor:
    """1 where the mask is above ``value`` (strictly), else 0."""
    return (mask > value).float()


def crop(mask: Tensor, x: int, y: int, width: int, height: int) -> Tensor:
    """The ``width`` × ``height`` window at (x, y), cut short at the mask's edges."""
    return crop_dims(as_batch(mask), x, y, width, height, 1, 2)


def check_image(name: str, image: object) -> Tensor:
    if not isinstance(image, Tensor) or image.ndim != 4:
        raise NodeInputError(name, "expected an IMAGE tensor [batch, height, width, channels]")
    return image


class MaskToImage(Node):
    spec = NodeSpec(
        name="MaskToImage",
        display_name="Convert Mask to Image",
        category="mask",
        description="The mask as a grey image (1 = white).",
        inputs=(In("mask", "MASK"),),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, mask):
        return (mask_to_image(check_mask("mask", mask)),)


class ImageColorToMask(Node):
    spec = NodeSpec(
        name="ImageColorToMask",
        category="mask",
        description="1 where the image has exactly this colour (0xRRGGBB, 8 bits per channel), 0 elsewhere.",
        inputs=(
            In("image", "IMAGE"),
            In("color", "INT", default=0, min=0, max=0xFFFFFF, step=1, editor_options={"display": "number"}),
        ),
        outputs=(Out("MASK"),),
    )

    def execute(self, ctx, image, color=0):
        return (color_to_mask(check_image("image", image), color),)


class InvertMask(Node):
    spec = NodeSpec(
        name="InvertMask",
        category="mask",
        description="1 − mask.",
        inputs=(In("mask", "MASK"),),
        outputs=(Out("MASK"),),
    )

    def execute(self, ctx, mask):
        return (invert(check_mask("mask", mask)),)


class ThresholdMask(Node):
    spec = NodeSpec(
        name="ThresholdMask",
        category="mask",
        description="1 where the mask is above the value, 0 elsewhere.",
        inputs=(In("mask", "MASK"), In("value", "FLOAT", default=0.5, min=0.0, max=1.0, step=0.01)),
        outputs=(Out("MASK"),),
    )

    def execute(self, ctx, mask, value=0.5):
        return (threshold(check_mask("mask", mask), float(value)),)


class CropMask(Node):
    spec = NodeSpec(
        name="CropMask",
        category="mask",
        description="A rectangle of the mask (cut short where it runs past the edge).",
        inputs=(
            In("mask", "MASK"),
            In("x", "INT", default=0, min=0, max=MAX_RESOLUTION, step=1),
            In("y", "INT", default=0, min=0, max=MAX_RESOLUTION, step=1),
            In("width", "INT", default=512, min=1, max=MAX_RESOLUTION, step=1),
            In("height", "INT", default=512, min=1, max=MAX_RESOLUTION, step=1),
        ),
        outputs=(Out("MASK"),),
    )

    def execute(self, ctx, mask, x=0, y=0, width=512, height=512):
        mask = check_mask("mask", mask)
        h, w = mask.shape[-2:]
        if x >= w or y >= h:
            # ComfyUI returns an empty mask here, which every later node fails on
            raise NodeInputError("x" if x >= w else "y", f"({x}, {y}) lies outside the {w}×{h} mask")
        return (crop(mask, int(x), int(y), int(width), int(height)),)


class ImageToMask(Node):
    spec = NodeSpec(
        name="ImageToMask",
        display_name="Convert Image to Mask",
        category="mask",
        description="One channel of an image as a mask (e.g. the red of a red shape).",
        inputs=(In("image", "IMAGE"), In("channel", "COMBO", choices=CHANNELS, default="red")),
        outputs=(Out("MASK"),),
    )

    def execute(self, ctx, image, channel="red"):
        image = check_image("image", image)
        if channel not in CHANNELS:
            raise NodeInputError("channel", f"must be one of {', '.join(CHANNELS)}, got {channel!r}")
        index = CHANNELS.index(channel)
        if index >= image.shape[-1]:
            raise NodeInputError("channel", f"the image has no {channel} channel (it has {image.shape[-1]})")
        return (image[..., index].float().clone(),)


class SolidMask(Node):
    spec = NodeSpec(
        name="SolidMask",
        category="mask",
        description="A mask of one value everywhere.",
        inputs=(
            In("value", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01),
            In("width", "INT", default=512, min=1, max=MAX_RESOLUTION, step=1),
            In("height", "INT", default=512, min=1, max=MAX_RESOLUTION, step=1),
        ),
        outputs=(Out("MASK"),),
    )

    def execute(self, ctx, value=1.0, width=512, height=512):
        return (torch.full((1, int(height), int(width)), float(value), dtype=torch.float32),)


NODES = [MaskToImage, ImageToMask, ImageColorToMask, SolidMask, InvertMask, ThresholdMask, CropMask]
