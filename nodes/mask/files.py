"""Masks from and to files: LoadImageMask (one channel of an input image), MaskPreview.

File handling is LoadImage's / PreviewImage's (nodes/images.py), reused, not repeated.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeResult, NodeSpec, Out
from latentgraph.nodes.images import (
    LoadImage,
    PreviewImage,
    _frame_to_tensors,
    list_input_images,
    resolve_image_name,
    save_images,
)
from latentgraph.nodes.mask.convert import check_mask, mask_to_image

#: ComfyUI's order (the first is the default).
MASK_CHANNELS = ("alpha", "red", "green", "blue")


def channel_mask(img: Image.Image, channel: str) -> torch.Tensor:
    """One channel of a picture as a mask ``[1, H, W]``: red/green/blue as they are, alpha as
    1 − alpha (ComfyUI's convention: transparent = masked; no alpha = nothing masked)."""
    image, inverse_alpha = _frame_to_tensors(img)
    if channel == "alpha":
        return inverse_alpha[None]
    return image[..., ("red", "green", "blue").index(channel)][None].contiguous()


def read_mask_file(path: Path, channel: str) -> torch.Tensor:
    """The first frame of an image file, upright (EXIF), as a mask of ``channel``."""
    with Image.open(path) as img:
        upright = ImageOps.exif_transpose(img) or img
        return channel_mask(upright, channel)


class LoadImageMask(Node):
    spec = NodeSpec(
        name="LoadImageMask",
        display_name="Load Image (as Mask)",
        category="mask",
        description="One channel of an image in the input folder as a mask (alpha: transparent = 1).",
        inputs=(
            In(
                "image",
                "COMBO",
                choices=list_input_images,
                tooltip="A file in the input folder.",
                strict_choices=False,  # "name.png [output]" as LoadImage
                editor_options={"image_upload": True},
            ),
            In("channel", "COMBO", choices=MASK_CHANNELS),
        ),
        outputs=(Out("MASK"),),
        deterministic=False,
    )

    def execute(self, ctx, image: str, channel: str = "alpha"):
        if channel not in MASK_CHANNELS:
            raise NodeInputError("channel", f"must be one of {', '.join(MASK_CHANNELS)}, got {channel!r}")
        path = resolve_image_name(ctx.settings, image)
        try:
            return (read_mask_file(path, channel),)
        except UnidentifiedImageError as exc:
            raise NodeInputError("image", f"'{image}' is not an image that can be read (unknown format)") from exc
        except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
            raise NodeInputError("image", f"'{image}' could not be decoded: {exc}") from exc

    @classmethod
    def fingerprint(cls, settings, inputs: Mapping[str, Any]) -> str | None:
        return LoadImage.fingerprint.__func__(cls, settings, inputs)

    @classmethod
    def check_inputs(cls, settings, inputs: Mapping[str, Any]):
        return LoadImage.check_inputs.__func__(cls, settings, inputs)


class MaskPreview(Node):
    spec = NodeSpec(
        name="MaskPreview",
        display_name="Preview Mask",
        category="mask",
        description="Shows the mask as a grey image (written to the temp folder).",
        inputs=(In("mask", "MASK"),),
        outputs=(),
        output_node=True,
    )

    def execute(self, ctx, mask) -> NodeResult:
        image = mask_to_image(check_mask("mask", mask)).clamp(0.0, 1.0)
        return save_images(ctx, image, PreviewImage.PREFIX, ctx.settings.temp_dir, "temp", compress_level=1)


NODES = [LoadImageMask, MaskPreview]
