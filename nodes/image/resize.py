"""Resizing images: ImageScaleBy, ImageScaleToTotalPixels, ImageScaleToMaxDimension, ResizeAndPadImage.

(ImageScale, to a given size, lives in ``latentgraph.nodes.images``.) The size rules are ComfyUI's
and are pure functions of the source size; the resampling is ``images.resize``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.image.common import MAX_RESOLUTION, UPSCALE_METHODS, check_choice, check_image, resize_bchw

#: ImageScaleToMaxDimension's list, as ComfyUI has it (with "bilinear" twice).
MAX_DIMENSION_METHODS = ("area", "lanczos", "bilinear", "nearest-exact", "bilinear", "bicubic")
PAD_METHODS = ("area", "bicubic", "nearest-exact", "bilinear", "lanczos")
PAD_COLOURS = ("white", "black")


# -- sizes --------------------------------------------------------------------------------------


def scale_by_size(width: int, height: int, scale_by: float) -> tuple[int, int]:
    """``round(side · scale_by)`` (at least 1)."""
    return max(1, round(width * scale_by)), max(1, round(height * scale_by))


def total_pixels_size(width: int, height: int, megapixels: float, resolution_steps: int = 1) -> tuple[int, int]:
    """The size with the same aspect whose area is ``megapixels · 1024²``, each side rounded to a
    multiple of ``resolution_steps`` (at least one step)."""
    scale = math.sqrt(megapixels * 1024 * 1024 / (width * height))
    step = max(1, int(resolution_steps))
    new_w = round(width * scale / step) * step
    new_h = round(height * scale / step) * step
    return max(step, int(new_w)), max(step, int(new_h))


def max_dimension_size(width: int, height: int, largest_size: int) -> tuple[int, int]:
    """The longer side becomes ``largest_size``; the other keeps the aspect (rounded)."""
    if height > width:
        return max(1, round(width / height * largest_size)), largest_size
    if width > height:
        return largest_size, max(1, round(height / width * largest_size))
    return largest_size, largest_size


def fit_size(width: int, height: int, target_width: int, target_height: int) -> tuple[int, int]:
    """The largest size with the source's aspect inside the target (sides truncated, as ComfyUI)."""
    scale = min(target_width / width, target_height / height)
    return max(1, int(width * scale)), max(1, int(height * scale))


# -- operations ---------------------------------------------------------------------------------


def scale_image(image: Tensor, width: int, height: int, method: str) -> Tensor:
    """IMAGE ``[B, H, W, C]`` resized to ``width × height`` (no crop)."""
    return resize_bchw(image.movedim(-1, 1), width, height, method).movedim(1, -1)


def resize_and_pad(image: Tensor, target_width: int, target_height: int, pad_value: float, method: str) -> Tensor:
    """Fit ``image`` inside the target keeping its aspect, centred on a ``pad_value`` canvas."""
    batch, height, width, channels = image.shape
    new_w, new_h = fit_size(width, height, target_width, target_height)
    resized = scale_image(image, new_w, new_h, method)
    out = torch.full((batch, target_height, target_width, channels), float(pad_value), dtype=image.dtype, device=image.device)
    y, x = (target_height - new_h) // 2, (target_width - new_w) // 2
    out[:, y : y + new_h, x : x + new_w, :] = resized
    return out


# -- nodes --------------------------------------------------------------------------------------


class ImageScaleBy(Node):
    spec = NodeSpec(
        name="ImageScaleBy",
        display_name="Upscale Image By",
        category="image/upscaling",
        description="Resizes images by a factor (each side rounded to whole pixels).",
        inputs=(
            In("image", "IMAGE"),
            In("upscale_method", "COMBO", choices=UPSCALE_METHODS),
            In("scale_by", "FLOAT", default=1.0, min=0.01, max=8.0, step=0.01),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, upscale_method, scale_by=1.0):
        image = check_image("image", image)
        check_choice("upscale_method", upscale_method, UPSCALE_METHODS)
        if not float(scale_by) > 0:
            raise NodeInputError("scale_by", f"must be more than 0, got {scale_by}")
        width, height = scale_by_size(image.shape[2], image.shape[1], float(scale_by))
        return (scale_image(image, width, height, upscale_method),)


class ImageScaleToTotalPixels(Node):
    spec = NodeSpec(
        name="ImageScaleToTotalPixels",
        category="image/upscaling",
        description="Resizes images to about this many megapixels (×1024²), keeping the aspect ratio; "
        "each side a multiple of resolution_steps.",
        inputs=(
            In("image", "IMAGE"),
            In("upscale_method", "COMBO", choices=UPSCALE_METHODS),
            In("megapixels", "FLOAT", default=1.0, min=0.01, max=16.0, step=0.01),
            In("resolution_steps", "INT", default=1, min=1, max=256),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, upscale_method, megapixels=1.0, resolution_steps=1):
        image = check_image("image", image)
        check_choice("upscale_method", upscale_method, UPSCALE_METHODS)
        if not float(megapixels) > 0:
            raise NodeInputError("megapixels", f"must be more than 0, got {megapixels}")
        width, height = total_pixels_size(image.shape[2], image.shape[1], float(megapixels), int(resolution_steps))
        return (scale_image(image, width, height, upscale_method),)


class ImageScaleToMaxDimension(Node):
    spec = NodeSpec(
        name="ImageScaleToMaxDimension",
        category="image/upscaling",
        description="Resizes images so that the longer side is largest_size, keeping the aspect ratio.",
        inputs=(
            In("image", "IMAGE"),
            In("upscale_method", "COMBO", choices=MAX_DIMENSION_METHODS),
            In("largest_size", "INT", default=512, min=0, max=MAX_RESOLUTION, step=1),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, upscale_method, largest_size=512):
        image = check_image("image", image)
        check_choice("upscale_method", upscale_method, MAX_DIMENSION_METHODS)
        if int(largest_size) < 1:
            raise NodeInputError("largest_size", f"must be at least 1, got {largest_size}")
        width, height = max_dimension_size(image.shape[2], image.shape[1], int(largest_size))
        return (scale_image(image, width, height, upscale_method),)


class ResizeAndPadImage(Node):
    spec = NodeSpec(
        name="ResizeAndPadImage",
        category="image/transform",
        description="Fits images inside the target size keeping their aspect ratio, centred on a "
        "white or black background.",
        inputs=(
            In("image", "IMAGE"),
            In("target_width", "INT", default=512, min=1, max=MAX_RESOLUTION, step=1),
            In("target_height", "INT", default=512, min=1, max=MAX_RESOLUTION, step=1),
            In("padding_color", "COMBO", choices=PAD_COLOURS),
            In("interpolation", "COMBO", choices=PAD_METHODS),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, target_width=512, target_height=512, padding_color="white", interpolation="area"):
        image = check_image("image", image)
        check_choice("padding_color", padding_color, PAD_COLOURS)
        check_choice("interpolation", interpolation, PAD_METHODS)
        for name, value in (("target_width", target_width), ("target_height", target_height)):
            if not 1 <= int(value) <= MAX_RESOLUTION:
                raise NodeInputError(name, f"{value} is outside 1..{MAX_RESOLUTION}")
        pad = 0.0 if padding_color == "black" else 1.0
        return (resize_and_pad(image, int(target_width), int(target_height), pad, interpolation),)


NODES: list[type[Node]] = [ImageScaleBy, ImageScaleToTotalPixels, ImageScaleToMaxDimension, ResizeAndPadImage]
