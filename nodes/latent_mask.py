"""Inpainting masks: SetLatentNoiseMask, and the two simplest MASK sources, ImageToMask and SolidMask.

A MASK is ``[B, H, W]`` (or ``[H, W]``) float in 0..1, at any resolution. ``noise_mask`` on a LATENT
says where a sampler may change it (1 = repaint); every sampler honours it (``sampling.run``):
the mask is resized to the latent, and outside it the latent is held at the input, so there the
output equals the input.
"""

from __future__ import annotations

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.latents import MAX_RESOLUTION
from latentgraph.nodes.sampling.run import NOISE_MASK_KEY

CHANNELS = ("red", "green", "blue", "alpha")


def check_mask(name: str, mask: object, max_ndim: int | None = None) -> Tensor:
    """``mask`` as a MASK tensor (at least [height, width]; at most ``max_ndim`` dimensions if given)."""
    if not isinstance(mask, Tensor) or mask.ndim < 2 or (max_ndim is not None and mask.ndim > max_ndim):
        raise NodeInputError(name, "expected a MASK tensor [batch, height, width] or [height, width]")
    return mask


class SetLatentNoiseMask(Node):
    spec = NodeSpec(
        name="SetLatentNoiseMask",
        display_name="Set Latent Noise Mask",
        category="latent/inpaint",
        description="Inpainting: the sampler repaints only where the mask is (1 = repaint, fractions blend); "
        "elsewhere the latent comes out as it went in.",
        inputs=(In("samples", "LATENT"), In("mask", "MASK")),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples, mask):
        if not isinstance(samples, dict) or not isinstance(samples.get("samples"), Tensor):
            raise NodeInputError("samples", "expected a LATENT (a dict with a 'samples' tensor)")
        mask = check_mask("mask", mask)
        out = dict(samples)
        out[NOISE_MASK_KEY] = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])
        return (out,)


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
        if not isinstance(image, Tensor) or image.ndim != 4:
            raise NodeInputError("image", "expected an IMAGE tensor [batch, height, width, channels]")
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


NODES = [SetLatentNoiseMask, ImageToMask, SolidMask]
