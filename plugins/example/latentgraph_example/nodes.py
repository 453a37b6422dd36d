"""The example plugin's nodes. Each is an ordinary latentgraph node: a NodeSpec and execute()."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from latentgraph import In, Node, NodeInputError, NodeSpec, Out

BLEND_MODES = ("normal", "multiply", "screen")


def _image(value: Any, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim != 4 or value.shape[-1] not in (1, 3, 4):
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise NodeInputError(name, f"expected an IMAGE [batch, height, width, channels], got {shape}")
    return value


def _match_batch(a: torch.Tensor, b: torch.Tensor, name_b: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Batches of one are repeated to the other's size; other mismatches are an error."""
    if a.shape[0] == b.shape[0]:
        return a, b
    if b.shape[0] == 1:
        return a, b.expand(a.shape[0], *b.shape[1:])
    if a.shape[0] == 1:
        return a.expand(b.shape[0], *a.shape[1:]), b
    raise NodeInputError(name_b, f"batch of {b.shape[0]} cannot be paired with a batch of {a.shape[0]}")


def _resize_channels_first(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


class InvertImage(Node):
    """Negative of an image; an alpha channel is kept as it is."""

    spec = NodeSpec(
        name="InvertImage",
        display_name="Invert Image",
        category="example/image",
        description="1 - image, per colour channel; alpha is unchanged.",
        inputs=(In("image", "IMAGE"),),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image):
        image = _image(image, "image")
        out = image.clone()
        colour = 3 if image.shape[-1] == 4 else image.shape[-1]
        out[..., :colour] = 1.0 - image[..., :colour]
        return (out,)


class BlendImages(Node):
    """``image2`` over ``image1``: ``image1·(1−f) + mode(image1, image2)·f``."""

    spec = NodeSpec(
        name="BlendImages",
        display_name="Blend Images",
        category="example/image",
        description="Blend two images (normal, multiply, screen); image2 is resized to image1's size.",
        inputs=(
            In("image1", "IMAGE"),
            In("image2", "IMAGE"),
            In("blend_factor", "FLOAT", default=0.5, min=0.0, max=1.0, step=0.01, tooltip="0 = image1, 1 = fully blended"),
            In("blend_mode", "COMBO", choices=BLEND_MODES, default="normal"),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image1, image2, blend_factor, blend_mode):
        a, b = _image(image1, "image1"), _image(image2, "image2")
        if blend_mode not in BLEND_MODES:
            raise NodeInputError("blend_mode", f"unknown mode {blend_mode!r}; one of {', '.join(BLEND_MODES)}")
        a, b = _match_batch(a, b, "image2")
        b = _resize_channels_first(b.movedim(-1, 1), tuple(a.shape[1:3])).movedim(1, -1)
        colour = min(3, a.shape[-1])
        ca = a[..., :colour]
        cb = b[..., :colour] if b.shape[-1] >= colour else b[..., :1].expand_as(ca)
        if blend_mode == "multiply":
            mixed = ca * cb
        elif blend_mode == "screen":
            mixed = 1.0 - (1.0 - ca) * (1.0 - cb)
        else:
            mixed = cb
        out = a.clone()
        out[..., :colour] = (ca * (1.0 - blend_factor) + mixed * blend_factor).clamp(0.0, 1.0)
        return (out,)


class BlendLatents(Node):
    """Linear mix of two latents, e.g. to interpolate between two seeds or prompts."""

    spec = NodeSpec(
        name="BlendLatents",
        display_name="Blend Latents",
        category="example/latent",
        description="samples1·(1−f) + samples2·f; samples2 is resized to samples1's size.",
        inputs=(
            In("samples1", "LATENT"),
            In("samples2", "LATENT"),
            In("blend_factor", "FLOAT", default=0.5, min=0.0, max=1.0, step=0.01, tooltip="weight of samples2"),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples1, samples2, blend_factor):
        from latentgraph.nodes.latents import plain_latent

        a, b = _latent(samples1, "samples1"), _latent(samples2, "samples2")
        if a.shape[1] != b.shape[1]:
            raise NodeInputError(
                "samples2", f"has {b.shape[1]} channels, samples1 has {a.shape[1]}: latents of different models"
            )
        a, b = _match_batch(a, b, "samples2")
        b = _resize_channels_first(b.to(a.dtype), tuple(a.shape[-2:]))
        return (plain_latent(samples1, a * (1.0 - blend_factor) + b * blend_factor),)


def _latent(value: Any, name: str) -> torch.Tensor:
    samples = value.get("samples") if isinstance(value, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
        raise NodeInputError(name, "expected a LATENT (a dict with a [batch, channels, h, w] 'samples' tensor)")
    return samples


NODES = [InvertImage, BlendImages, BlendLatents]
