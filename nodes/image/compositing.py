"""Putting images together: ImageCompositeMasked (paste at (x, y) through a mask) and
PorterDuffImageComposite (the 18 Porter-Duff / blend operators on images with MASK alphas).

MASK alphas follow ComfyUI: a mask is ``1 − alpha`` (1 = transparent), so the Porter-Duff node
takes and returns masks, and computes on alphas inside.
"""

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
    match_channels,
    repeat_to_batch,
    resize_bchw,
)
from latentgraph.nodes.latent_mask import check_mask

PORTER_DUFF_MODES = (
    "ADD", "CLEAR", "DARKEN", "DST", "DST_ATOP", "DST_IN", "DST_OUT", "DST_OVER", "LIGHTEN",
    "MULTIPLY", "OVERLAY", "SCREEN", "SRC", "SRC_ATOP", "SRC_IN", "SRC_OUT", "SRC_OVER", "XOR",
)  # fmt: skip


# -- masked paste -------------------------------------------------------------------------------


def composite(
    destination: Tensor,
    source: Tensor,
    x: int,
    y: int,
    mask: Tensor | None = None,
    multiplier: int = 1,
    resize_source: bool = False,
) -> Tensor:
    """``source`` blended into a copy of ``destination`` (both ``[B, C, H, W]``) with its top-left
    corner at ``(x, y) // multiplier``, through ``mask`` (1 = source, resized bilinearly to the
    source; none = everywhere), cut at the border. ComfyUI's ``composite`` rule, with multiplier 1
    for images and 8 for SD latents: ``resize_source`` first resizes the source to the
    destination; the source (and the mask) cycle to the destination's batch.

    Negative offsets cut the source's left/top part off (ComfyUI's inputs stop at 0)."""
    out = destination.clone()
    source = source.to(out.device, out.dtype)
    if resize_source:
        source = F.interpolate(source, size=tuple(out.shape[-2:]), mode="bilinear")
    source = repeat_to_batch(source, out.shape[0])
    sh, sw = source.shape[-2:]
    dh, dw = out.shape[-2:]
    x = max(-sw * multiplier, min(int(x), dw * multiplier))
    y = max(-sh * multiplier, min(int(y), dh * multiplier))
    left, top = x // multiplier, y // multiplier
    # the part of the source that lands inside the destination
    sx0, sy0 = max(0, -left), max(0, -top)
    dx0, dy0 = max(0, left), max(0, top)
    w = min(sw - sx0, dw - dx0)
    h = min(sh - sy0, dh - dy0)
    if w <= 0 or h <= 0:
        return out
    if mask is None:
        weight = torch.ones_like(source[:, :1])
    else:
        # resized in float32 (as ComfyUI's masks are), then cast: fp16 latents get the same weights
        weight = mask.to(out.device, torch.float32).reshape(-1, 1, mask.shape[-2], mask.shape[-1])
        weight = F.interpolate(weight, size=(sh, sw), mode="bilinear").to(out.dtype)
        weight = repeat_to_batch(weight, source.shape[0])
    weight = weight[..., sy0 : sy0 + h, sx0 : sx0 + w]
    region = out[..., dy0 : dy0 + h, dx0 : dx0 + w]
    out[..., dy0 : dy0 + h, dx0 : dx0 + w] = weight * source[..., sy0 : sy0 + h, sx0 : sx0 + w] + (1 - weight) * region
    return out


# -- Porter-Duff --------------------------------------------------------------------------------


def porter_duff(src: Tensor, src_alpha: Tensor, dst: Tensor, dst_alpha: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """The ``mode`` operator on straight (not premultiplied) colours and alphas (1 = opaque);
    returns straight colour (0 where the result is transparent) and alpha, clamped to 0..1.

    With premultiplied ``s = src·αs``, ``d = dst·αd``: SRC_OVER is ``s + (1−αs)d`` with
    ``αs + (1−αs)αd``, and so on (Porter & Duff 1984; DARKEN/LIGHTEN/MULTIPLY/SCREEN/OVERLAY/ADD
    are the usual separable extensions, as ComfyUI has them)."""
    a_s, a_d = src_alpha, dst_alpha
    s, d = src * a_s, dst * a_d
    union = a_s + a_d - a_s * a_d
    if mode == "ADD":
        alpha, colour = torch.clamp(a_s + a_d, 0, 1), torch.clamp(s + d, 0, 1)
    elif mode == "CLEAR":
        alpha, colour = torch.zeros_like(a_d), torch.zeros_like(d)
    elif mode == "DARKEN":
        alpha, colour = union, (1 - a_d) * s + (1 - a_s) * d + torch.minimum(s, d)
    elif mode == "LIGHTEN":
        alpha, colour = union, (1 - a_d) * s + (1 - a_s) * d + torch.maximum(s, d)
    elif mode == "DST":
        alpha, colour = a_d, d
    elif mode == "DST_ATOP":
        alpha, colour = a_s, a_s * d + (1 - a_d) * s
    elif mode == "DST_IN":
        alpha, colour = a_s * a_d, d * a_s
    elif mode == "DST_OUT":
        alpha, colour = (1 - a_s) * a_d, (1 - a_s) * d
    elif mode == "DST_OVER":
        alpha, colour = a_d + (1 - a_d) * a_s, d + (1 - a_d) * s
    elif mode == "MULTIPLY":
        alpha, colour = a_s * a_d, s * d
    elif mode == "OVERLAY":
        alpha = union
        colour = torch.where(2 * d < a_d, 2 * s * d, a_s * a_d - 2 * (a_d - s) * (a_s - d))
    elif mode == "SCREEN":
        alpha, colour = union, s + d - s * d
    elif mode == "SRC":
        alpha, colour = a_s, s
    elif mode == "SRC_ATOP":
        alpha, colour = a_d, a_d * s + (1 - a_s) * d
    elif mode == "SRC_IN":
        alpha, colour = a_s * a_d, s * a_d
    elif mode == "SRC_OUT":
        alpha, colour = (1 - a_d) * a_s, (1 - a_d) * s
    elif mode == "SRC_OVER":
        alpha, colour = a_s + (1 - a_s) * a_d, s + (1 - a_s) * d
    elif mode == "XOR":
        alpha, colour = (1 - a_d) * a_s + (1 - a_s) * a_d, (1 - a_d) * s + (1 - a_s) * d
    else:
        raise NodeInputError("mode", f"{mode!r} is not one of {', '.join(PORTER_DUFF_MODES)}")
    straight = torch.where(alpha > 1e-5, colour / alpha, torch.zeros_like(colour))
    return torch.clamp(straight, 0, 1), alpha


def porter_duff_images(source: Tensor, source_mask: Tensor, destination: Tensor, destination_mask: Tensor,
                       mode: str) -> tuple[Tensor, Tensor]:
    """PorterDuffImageComposite on IMAGE/MASK batches: pairs up to the shortest of the four batches;
    the destination mask, the source and the source mask are resized (bicubic, centre-cropped to
    the aspect) to the destination's size. Returns (IMAGE, MASK)."""
    if source.shape[-1] != destination.shape[-1]:
        raise NodeInputError("source", f"has {source.shape[-1]} channels, the destination {destination.shape[-1]}")
    source_mask = source_mask.reshape(-1, *source_mask.shape[-2:])
    destination_mask = destination_mask.reshape(-1, *destination_mask.shape[-2:])
    n = min(source.shape[0], source_mask.shape[0], destination.shape[0], destination_mask.shape[0])
    h, w = destination.shape[1:3]
    dst = destination[:n]
    src = resize_bchw(source[:n].movedim(-1, 1), w, h, "bicubic", crop=True).movedim(1, -1).to(dst)
    a_d = resize_bchw(destination_mask[:n, None], w, h, "bicubic", crop=True)[:, 0].to(dst)
    a_s = resize_bchw(source_mask[:n, None], w, h, "bicubic", crop=True)[:, 0].to(dst)
    colour, alpha = porter_duff(src, 1 - a_s[..., None], dst, 1 - a_d[..., None], mode)
    return colour, 1 - alpha[..., 0]


# -- nodes --------------------------------------------------------------------------------------


class ImageCompositeMasked(Node):
    spec = NodeSpec(
        name="ImageCompositeMasked",
        category="image",
        description="Pastes source into destination with its top-left corner at (x, y), through the mask "
        "if given (1 = source); resize_source stretches the source to the destination first.",
        inputs=(
            In("destination", "IMAGE"),
            In("source", "IMAGE"),
            In("x", "INT", default=0, min=0, max=MAX_RESOLUTION, step=1),
            In("y", "INT", default=0, min=0, max=MAX_RESOLUTION, step=1),
            In("resize_source", "BOOLEAN", default=False),
            In("mask", "MASK", required=False),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, destination, source, x=0, y=0, resize_source=False, mask=None):
        destination, source = check_image("destination", destination), check_image("source", source)
        if mask is not None:
            mask = check_mask("mask", mask)
        destination, source = match_channels(destination, source)
        out = composite(destination.movedim(-1, 1), source.movedim(-1, 1), int(x), int(y), mask, 1, bool(resize_source))
        return (out.movedim(1, -1),)


class PorterDuffImageComposite(Node):
    spec = NodeSpec(
        name="PorterDuffImageComposite",
        display_name="Porter-Duff Image Composite",
        category="mask/compositing",
        description="Combines a source and a destination image with their alphas (as masks: 1 = transparent) "
        "by a Porter-Duff operator; returns the image and its mask.",
        inputs=(
            In("source", "IMAGE"),
            In("source_alpha", "MASK"),
            In("destination", "IMAGE"),
            In("destination_alpha", "MASK"),
            In("mode", "COMBO", choices=PORTER_DUFF_MODES, default="DST"),
        ),
        outputs=(Out("IMAGE"), Out("MASK")),
    )

    def execute(self, ctx, source, source_alpha, destination, destination_alpha, mode="DST"):
        source, destination = check_image("source", source), check_image("destination", destination)
        source_alpha = check_mask("source_alpha", source_alpha, max_ndim=3)
        destination_alpha = check_mask("destination_alpha", destination_alpha, max_ndim=3)
        check_choice("mode", mode, PORTER_DUFF_MODES)
        return porter_duff_images(source, source_alpha, destination, destination_alpha, mode)


NODES: list[type[Node]] = [ImageCompositeMasked, PorterDuffImageComposite]
