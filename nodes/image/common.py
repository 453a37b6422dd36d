"""Helpers the image node modules share: input checks, ComfyUI's resize rule, channel matching.

IMAGE is ``[B, H, W, C]`` float 0..1 (C = 1, 3 or 4); the resize helpers work on ``[B, C, H, W]``
as torch's interpolation does. Resizing itself is ``latentgraph.nodes.images.resize`` (the one
ImageScale uses: nearest-exact, bilinear, area, bicubic, and lanczos through Pillow in float).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.nodes.images import MAX_RESOLUTION, UPSCALE_METHODS, center_crop_to_aspect, resize

__all__ = [
    "MAX_RESOLUTION",
    "UPSCALE_METHODS",
    "check_choice",
    "check_image",
    "center_crop_to_aspect",
    "crop_dims",
    "flip_dims",
    "match_channels",
    "repeat_to_batch",
    "resize_bchw",
    "rotate_dims",
]


def check_image(name: str, value: Any) -> Tensor:
    """``value`` as an IMAGE ``[B, H, W, C]`` (a single ``[H, W, C]`` image gets a batch of one)."""
    if isinstance(value, Tensor) and value.ndim == 3 and value.shape[-1] in (1, 3, 4):
        value = value[None]
    if not isinstance(value, Tensor) or value.ndim != 4 or value.shape[0] == 0:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise NodeInputError(name, f"expected an IMAGE [batch, height, width, channels], got {shape}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    if value not in choices:
        raise NodeInputError(name, f"{value!r} is not one of {', '.join(dict.fromkeys(choices))}")
    return value


def crop_dims(t: Tensor, x: int, y: int, width: int, height: int, h_dim: int, w_dim: int) -> Tensor:
    """Rows ``[y, y + height)`` and columns ``[x, x + width)`` of ``t`` (rows on ``h_dim``, columns on
    ``w_dim``: IMAGE 1/2, LATENT 2/3, MASK -2/-1), cut short at the edges; no clamping of x/y."""
    index = [slice(None)] * t.ndim
    index[h_dim], index[w_dim] = slice(y, y + height), slice(x, x + width)
    return t[tuple(index)]


def flip_dims(t: Tensor, method: str, h_dim: int, w_dim: int) -> Tensor:
    """``"x-axis: vertically"`` mirrors top↔bottom (``h_dim``), ``"y-axis: horizontally"`` left↔right."""
    return torch.flip(t, dims=[h_dim] if method.startswith("x") else [w_dim])


def rotate_dims(t: Tensor, quarter_turns: int, h_dim: int, w_dim: int) -> Tensor:
    """Clockwise by ``90° · quarter_turns`` in the (``h_dim``, ``w_dim``) plane."""
    return torch.rot90(t, k=int(quarter_turns) % 4, dims=[w_dim, h_dim])


def resize_bchw(samples: Tensor, width: int, height: int, method: str, crop: bool = False) -> Tensor:
    """``[B, C, H, W]`` resized to ``width × height`` (optionally centre-cropped to the aspect
    first, ComfyUI's way); results are clamped to 0..1. Same size and no crop: returned as is."""
    if crop:
        samples = center_crop_to_aspect(samples, width, height)
    if tuple(samples.shape[-2:]) == (height, width):
        return samples
    return resize(samples, int(width), int(height), method)


def repeat_to_batch(tensor: Tensor, batch: int) -> Tensor:
    """The first ``batch`` items, cycling through ``tensor`` when it has fewer (ComfyUI's rule)."""
    have = tensor.shape[0]
    if have == batch:
        return tensor
    if have > batch:
        return tensor[:batch]
    reps = -(-batch // have)
    return tensor.repeat(reps, *([1] * (tensor.ndim - 1)))[:batch]


def match_channels(destination: Tensor, source: Tensor) -> tuple[Tensor, Tensor]:
    """Make ``source`` [..., C] fit ``destination``'s channel count: extra source channels (alpha)
    are dropped; grey is repeated into the colour channels and a missing alpha added as 1 (opaque).

    ComfyUI (``node_helpers.image_alpha_fix``) drops extra source channels the same way; when the
    destination has the alpha and the source not, it pads the *destination* instead and then fails
    on the channel mismatch. Here the source gets an opaque alpha, so that case works."""
    dc, sc = destination.shape[-1], source.shape[-1]
    if sc > dc:
        source = source[..., :dc]
    elif sc < dc:
        if sc == 1:  # grey: the same value in every colour channel
            source = source.expand(*source.shape[:-1], min(3, dc))
            sc = source.shape[-1]
        if sc == dc:
            return destination, source
        fill = torch.ones(*source.shape[:-1], dc - sc, dtype=source.dtype, device=source.device)
        source = torch.cat((source, fill), dim=-1)
    return destination, source
