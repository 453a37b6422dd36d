"""Geometric image transforms: ImageCrop, ImageFlip, ImageRotate, ImageStitch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.image.common import (
    MAX_RESOLUTION,
    check_choice,
    check_image,
    crop_dims,
    flip_dims,
    resize_bchw,
    rotate_dims,
)

FLIP_METHODS = ("x-axis: vertically", "y-axis: horizontally")
ROTATIONS = ("none", "90 degrees", "180 degrees", "270 degrees")
DIRECTIONS = ("right", "down", "left", "up")
SPACING_COLOURS = {
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
}


def crop(image: Tensor, width: int, height: int, x: int, y: int) -> Tensor:
    """The ``width × height`` region at (x, y), cut at the border; x and y are kept inside the image
    (at most its last column/row), so the result has at least one pixel."""
    x = max(0, min(int(x), image.shape[2] - 1))
    y = max(0, min(int(y), image.shape[1] - 1))
    return crop_dims(image, x, y, int(width), int(height), 1, 2)


def flip(image: Tensor, method: str) -> Tensor:
    """``"x-axis: vertically"`` mirrors top↔bottom, ``"y-axis: horizontally"`` left↔right."""
    return flip_dims(image, method, 1, 2)


def rotate(image: Tensor, quarter_turns: int) -> Tensor:
    """Clockwise by ``90° · quarter_turns``."""
    return rotate_dims(image, quarter_turns, 1, 2)


def _pad_to(image: Tensor, dim: int, size: int, value: float) -> Tensor:
    """Pad ``image`` along ``dim`` (1 = rows, 2 = columns) to ``size``, centred (extra on the far side)."""
    missing = size - image.shape[dim]
    if missing <= 0:
        return image
    before, after = missing // 2, missing - missing // 2
    pad = (0, 0, before, after) if dim == 2 else (0, 0, 0, 0, before, after)
    return F.pad(image, pad, mode="constant", value=value)


def _with_channels(image: Tensor, channels: int) -> Tensor:
    """Extra channels appended as 1 (opaque alpha)."""
    if image.shape[-1] >= channels:
        return image
    fill = torch.ones(*image.shape[:-1], channels - image.shape[-1], dtype=image.dtype, device=image.device)
    return torch.cat((image, fill), dim=-1)


def stitch(
    image1: Tensor,
    image2: Tensor,
    direction: str = "right",
    match_image_size: bool = True,
    spacing_width: int = 0,
    spacing_color: str = "white",
) -> Tensor:
    """``image2`` placed next to ``image1`` (on its ``direction`` side), as ComfyUI's ImageStitch.

    The shorter batch repeats its last image. With ``match_image_size`` image2 is resized (lanczos)
    to image1's height (left/right) or width (up/down) keeping its aspect; otherwise the smaller one
    is padded, centred, with the spacing colour's grey level (0 for red/green/blue). A spacing
    strip (width rounded up to even) goes between them."""
    if image1.shape[0] != image2.shape[0]:
        batch = max(image1.shape[0], image2.shape[0])

        def fill(img: Tensor) -> Tensor:
            return torch.cat([img, img[-1:].repeat(batch - img.shape[0], 1, 1, 1)]) if img.shape[0] < batch else img

        image1, image2 = fill(image1), fill(image2)
    image2 = image2.to(image1.device, image1.dtype)
    horizontal = direction in ("left", "right")
    colour = SPACING_COLOURS[spacing_color]
    if match_image_size:
        h1, w1 = image1.shape[1:3]
        h2, w2 = image2.shape[1:3]
        if horizontal:
            size = (max(1, int(h1 * (w2 / h2))), h1)
        else:
            size = (w1, max(1, int(w1 / (w2 / h2))))
        image2 = resize_bchw(image2.movedim(-1, 1), size[0], size[1], "lanczos").movedim(1, -1)
    else:
        grey = colour[0] if colour[0] == colour[1] == colour[2] else 0.0
        dim = 1 if horizontal else 2
        size = max(image1.shape[dim], image2.shape[dim])
        image1, image2 = _pad_to(image1, dim, size, grey), _pad_to(image2, dim, size, grey)
    channels = max(image1.shape[-1], image2.shape[-1])
    image1, image2 = _with_channels(image1, channels), _with_channels(image2, channels)
    parts = [image2, image1] if direction in ("left", "up") else [image1, image2]
    if spacing_width > 0:
        spacing_width += spacing_width % 2
        if horizontal:
            shape = (image1.shape[0], max(image1.shape[1], image2.shape[1]), spacing_width, channels)
        else:
            shape = (image1.shape[0], spacing_width, max(image1.shape[2], image2.shape[2]), channels)
        strip = torch.zeros(shape, dtype=image1.dtype, device=image1.device)
        for c in range(min(3, channels)):
            strip[..., c] = colour[c] if channels >= 3 else colour[0]
        if channels == 4:
            strip[..., 3] = 1.0
        parts.insert(1, strip)
    return torch.cat(parts, dim=2 if horizontal else 1)


class ImageCrop(Node):
    spec = NodeSpec(
        name="ImageCrop",
        display_name="Image Crop",
        category="image/transform",
        description="The width × height region whose top-left corner is at (x, y); cut at the image border.",
        inputs=(
            In("image", "IMAGE"),
            In("width", "INT", default=512, min=1, max=MAX_RESOLUTION, step=1),
            In("height", "INT", default=512, min=1, max=MAX_RESOLUTION, step=1),
            In("x", "INT", default=0, min=0, max=MAX_RESOLUTION, step=1),
            In("y", "INT", default=0, min=0, max=MAX_RESOLUTION, step=1),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, width=512, height=512, x=0, y=0):
        image = check_image("image", image)
        for name, value in (("width", width), ("height", height)):
            if int(value) < 1:
                raise NodeInputError(name, f"must be at least 1, got {value}")
        return (crop(image, int(width), int(height), int(x), int(y)),)


class ImageFlip(Node):
    spec = NodeSpec(
        name="ImageFlip",
        category="image/transform",
        description="Mirrors images: about the x axis (upside down) or the y axis (left to right).",
        inputs=(In("image", "IMAGE"), In("flip_method", "COMBO", choices=FLIP_METHODS)),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, flip_method):
        image = check_image("image", image)
        return (flip(image, check_choice("flip_method", flip_method, FLIP_METHODS)),)


class ImageRotate(Node):
    spec = NodeSpec(
        name="ImageRotate",
        category="image/transform",
        description="Rotates images clockwise by a multiple of 90 degrees.",
        inputs=(In("image", "IMAGE"), In("rotation", "COMBO", choices=ROTATIONS)),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, rotation):
        image = check_image("image", image)
        return (rotate(image, ROTATIONS.index(check_choice("rotation", rotation, ROTATIONS))),)


class ImageStitch(Node):
    spec = NodeSpec(
        name="ImageStitch",
        display_name="Image Stitch",
        category="image/transform",
        description="Puts image2 next to image1 (right, below, left or above), optionally resized to "
        "match and with a spacing strip; without image2, image1 comes out unchanged.",
        inputs=(
            In("image1", "IMAGE"),
            In("direction", "COMBO", choices=DIRECTIONS, default="right"),
            In("match_image_size", "BOOLEAN", default=True),
            In("spacing_width", "INT", default=0, min=0, max=1024, step=2),
            In("spacing_color", "COMBO", choices=tuple(SPACING_COLOURS), default="white"),
            In("image2", "IMAGE", required=False),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image1, direction="right", match_image_size=True, spacing_width=0,
                spacing_color="white", image2=None):
        image1 = check_image("image1", image1)
        check_choice("direction", direction, DIRECTIONS)
        check_choice("spacing_color", spacing_color, tuple(SPACING_COLOURS))
        if int(spacing_width) < 0:
            raise NodeInputError("spacing_width", f"must be 0 or more, got {spacing_width}")
        if image2 is None:
            return (image1,)
        image2 = check_image("image2", image2)
        return (stitch(image1, image2, direction, bool(match_image_size), int(spacing_width), spacing_color),)


NODES: list[type[Node]] = [ImageCrop, ImageFlip, ImageRotate, ImageStitch]
