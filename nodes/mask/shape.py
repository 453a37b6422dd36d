"""Combining and reshaping masks: MaskComposite, FeatherMask, GrowMask.

Pure functions (tensor in, tensor out) do the work; the nodes check their inputs and call them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.images import MAX_RESOLUTION
from latentgraph.nodes.mask.convert import as_batch, check_mask

OPERATIONS = ("multiply", "add", "subtract", "and", "or", "xor")


def composite(destination: Tensor, source: Tensor, x: int, y: int, operation: str) -> Tensor:
    """``source`` combined into ``destination`` with its top-left corner at (x, y), clamped to 0..1.

    Only the overlap changes; a batch of one on either side is repeated to the other's size.
    ``and``/``or``/``xor`` work on the masks rounded to 0/1.
    """
    dst, src = as_batch(destination), as_batch(source).to(destination.device)
    if dst.shape[0] != src.shape[0]:
        if dst.shape[0] == 1:
            dst = dst.expand(src.shape[0], -1, -1)
        elif src.shape[0] != 1:
            raise ValueError(f"batch sizes {dst.shape[0]} and {src.shape[0]} do not match")
    out = dst.clone()
    h, w = dst.shape[-2:]
    right, bottom = min(x + src.shape[-1], w), min(y + src.shape[-2], h)
    if right <= x or bottom <= y:
        return out.clamp(0.0, 1.0)
    d = out[:, y:bottom, x:right]
    s = src[:, : bottom - y, : right - x]
    if operation == "multiply":
        r = d * s
    elif operation == "add":
        r = d + s
    elif operation == "subtract":
        r = d - s
    elif operation in ("and", "or", "xor"):
        fn = {"and": torch.logical_and, "or": torch.logical_or, "xor": torch.logical_xor}[operation]
        r = fn(d.round().bool(), s.round().bool()).float()
    else:
        raise ValueError(f"unknown operation {operation!r}")
    out[:, y:bottom, x:right] = r
    return out.clamp(0.0, 1.0)


def feather(mask: Tensor, left: int, top: int, right: int, bottom: int) -> Tensor:
    """Fade the mask to the edges, exactly as ComfyUI's FeatherMask does (pixel parity).

    Left/top: the outermost column/row of an ``n``-wide border is multiplied by 1/n, the next by
    2/n, …, the n-th by 1. Right/bottom are ComfyUI's off-by-one: its k-th factor (k+1)/n lands
    on index −k, so the *first* column/row gets 1/n, the last 2/n, …, the (n−1)-th from the end
    1 (checked against ComfyUI 0.8.0 in tests/test_comfyui_node_parity.py). Borders are capped at
    the mask's size."""
    out = as_batch(mask).clone()
    h, w = out.shape[-2:]
    for size, axis, from_end in ((left, 2, False), (right, 2, True), (top, 1, False), (bottom, 1, True)):
        n = min(int(size), w if axis == 2 else h)
        if n <= 0:
            continue
        length = w if axis == 2 else h
        ramp = torch.ones(length, dtype=out.dtype, device=out.device)
        steps = torch.arange(1, n + 1, dtype=out.dtype, device=out.device) / n
        index = torch.arange(n, device=out.device)
        ramp[(-index) % length if from_end else index] = steps
        out = out * (ramp.view(1, 1, -1) if axis == 2 else ramp.view(1, -1, 1))
    return out


def grow(mask: Tensor, expand: int, tapered_corners: bool = True) -> Tensor:
    """Grey dilation (``expand`` > 0) or erosion (< 0) by |expand| pixels, one pixel per pass.

    The neighbourhood is the 3×3 square, or the plus-shaped cross with ``tapered_corners`` (so
    corners round off). Pixels beyond the edge repeat the edge (scipy's ``grey_dilation``
    default, which ComfyUI uses).
    """
    out = as_batch(mask)[:, None]
    if expand == 0:
        return out[:, 0].clone()
    sign = 1.0 if expand > 0 else -1.0
    x = out * sign  # erosion = -dilation(-x)
    for _ in range(abs(int(expand))):
        p = F.pad(x, (1, 1, 1, 1), mode="replicate")
        if tapered_corners:
            x = torch.stack(
                (p[..., 1:-1, 1:-1], p[..., :-2, 1:-1], p[..., 2:, 1:-1], p[..., 1:-1, :-2], p[..., 1:-1, 2:])
            ).amax(0)
        else:
            x = F.max_pool2d(p, 3, stride=1)
    return (x * sign)[:, 0]


class MaskComposite(Node):
    spec = NodeSpec(
        name="MaskComposite",
        category="mask",
        description="Combines the source mask into the destination with its corner at (x, y).",
        inputs=(
            In("destination", "MASK"),
            In("source", "MASK"),
            In("x", "INT", default=0, min=0, max=MAX_RESOLUTION, step=1),
            In("y", "INT", default=0, min=0, max=MAX_RESOLUTION, step=1),
            In("operation", "COMBO", choices=OPERATIONS),
        ),
        outputs=(Out("MASK"),),
    )

    def execute(self, ctx, destination, source, x=0, y=0, operation="multiply"):
        destination, source = check_mask("destination", destination), check_mask("source", source)
        if operation not in OPERATIONS:
            raise NodeInputError("operation", f"must be one of {', '.join(OPERATIONS)}, got {operation!r}")
        try:
            return (composite(destination, source, int(x), int(y), operation),)
        except ValueError as exc:
            raise NodeInputError("source", str(exc)) from exc


class FeatherMask(Node):
    spec = NodeSpec(
        name="FeatherMask",
        category="mask",
        description="Fades the mask out linearly over the given number of pixels at each edge.",
        inputs=(
            In("mask", "MASK"),
            In("left", "INT", default=0, min=0, max=MAX_RESOLUTION, step=1),
            In("top", "INT", default=0, min=0, max=MAX_RESOLUTION, step=1),
            In("right", "INT", default=0, min=0, max=MAX_RESOLUTION, step=1),
            In("bottom", "INT", default=0, min=0, max=MAX_RESOLUTION, step=1),
        ),
        outputs=(Out("MASK"),),
    )

    def execute(self, ctx, mask, left=0, top=0, right=0, bottom=0):
        return (feather(check_mask("mask", mask), left, top, right, bottom),)


class GrowMask(Node):
    spec = NodeSpec(
        name="GrowMask",
        display_name="Grow Mask",
        category="mask",
        description="Grows (positive) or shrinks (negative) the mask by that many pixels.",
        inputs=(
            In("mask", "MASK"),
            In("expand", "INT", default=0, min=-MAX_RESOLUTION, max=MAX_RESOLUTION, step=1),
            In("tapered_corners", "BOOLEAN", default=True),
        ),
        outputs=(Out("MASK"),),
    )

    def execute(self, ctx, mask, expand=0, tapered_corners=True):
        out = as_batch(check_mask("mask", mask))
        steps = abs(int(expand))
        step = 1 if expand >= 0 else -1
        for i in range(steps):  # pass by pass, so a long grow reports progress and can be stopped
            out = grow(out, step, bool(tapered_corners))
            if steps > 8:
                ctx.progress(i + 1, steps)
        return (out if steps else out.clone(),)


NODES = [MaskComposite, FeatherMask, GrowMask]
