"""LATENT_OPERATION values: functions on latents, applied once (LatentApplyOperation) or to the
guidance at every sampling step (LatentApplyOperationCFG).

A LATENT_OPERATION is a callable ``op(latent=tensor, **kwargs) → tensor`` (ComfyUI's calling
convention, so operations from ComfyUI custom nodes and ours are interchangeable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.image.filters import gaussian_kernel
from latentgraph.nodes.latent.base import unary
from latentgraph.registry import TypeSpec

CATEGORY = "latent/advanced/operations"
LATENT_OPERATION = "LATENT_OPERATION"
TYPES = [TypeSpec(LATENT_OPERATION, description="a function on latents: op(latent=tensor) → tensor")]

Operation = Callable[..., Tensor]


def sharpen(latent: Tensor, radius: int, sigma: float, alpha: float) -> Tensor:
    """Unsharp-mask the *directions* of the channel vectors, keeping each cell's length."""
    length = torch.linalg.vector_norm(latent, dim=1, keepdim=True) + 1e-6
    direction = latent / length
    channels = latent.shape[1]
    size = 2 * radius + 1
    kernel = gaussian_kernel(size, sigma).to(latent) * (-10.0 * alpha)
    kernel[radius, radius] += 1.0 - kernel.sum()
    # Mirror the border (repeat it when the latent is smaller than the radius).
    mode = "reflect" if radius < min(latent.shape[-2:]) else "replicate"
    padded = F.pad(direction, (radius,) * 4, mode=mode)
    sharp = F.conv2d(padded, kernel.expand(channels, 1, size, size), groups=channels)
    return length * sharp


def tonemap_reinhard(latent: Tensor, multiplier: float) -> Tensor:
    """Compress the channel-vector lengths with Reinhard's ``l / (1 + l)`` around mean + 5·std
    (times ``multiplier``) of each latent's lengths; directions are kept."""
    length = torch.linalg.vector_norm(latent, dim=1, keepdim=True) + 1e-10
    direction = latent / length
    mean = length.mean(dim=(1, 2, 3), keepdim=True)
    std = length.std(dim=(1, 2, 3), keepdim=True)
    top = (std * 5 + mean) * multiplier
    scaled = length / top
    return direction * (scaled / (scaled + 1.0)) * top


def guidance_operation(operation: Operation) -> Callable[[Sequence[Tensor], Tensor, Tensor], list[Tensor]]:
    """A pre-CFG hook: the operation applied to the guidance direction ``cond − uncond`` (or to
    ``cond`` when there is no negative), before the rule combines the sides."""

    def hook(preds: Sequence[Tensor], x: Tensor, sigma: Tensor) -> list[Tensor]:
        preds = list(preds)
        if len(preds) == 2 and preds[1] is not None:
            preds[0] = operation(latent=preds[0] - preds[1]) + preds[1]
        else:
            preds[0] = operation(latent=preds[0])
        return preds

    return hook


def _check_operation(operation: Any) -> Operation:
    if not callable(operation):
        raise NodeInputError("operation", f"expected a LATENT_OPERATION (a function on latents), got {type(operation).__name__}")
    return operation


class LatentApplyOperation(Node):
    spec = NodeSpec(
        name="LatentApplyOperation",
        category=CATEGORY,
        inputs=(In("samples", "LATENT"), In("operation", LATENT_OPERATION)),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples, operation):
        op = _check_operation(operation)
        return (unary(samples, "samples", lambda s: op(latent=s)),)


class LatentApplyOperationCFG(Node):
    """A copy of the MODEL whose guidance direction passes through the operation at every step."""

    spec = NodeSpec(
        name="LatentApplyOperationCFG",
        category=CATEGORY,
        inputs=(In("model", "MODEL"), In("operation", LATENT_OPERATION)),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, model, operation):
        from latentgraph.nodes.sampling.hooks import PRE_CFG, with_hook
        from latentgraph.nodes.sampling.run import check_model

        return (with_hook(check_model(model), PRE_CFG, guidance_operation(_check_operation(operation))),)


class LatentOperationTonemapReinhard(Node):
    spec = NodeSpec(
        name="LatentOperationTonemapReinhard",
        category=CATEGORY,
        inputs=(In("multiplier", "FLOAT", default=1.0, min=0.0, max=100.0, step=0.01),),
        outputs=(Out(LATENT_OPERATION),),
    )

    def execute(self, ctx, multiplier=1.0):
        m = float(multiplier)
        return (lambda latent, **kwargs: tonemap_reinhard(latent, m),)


class LatentOperationSharpen(Node):
    spec = NodeSpec(
        name="LatentOperationSharpen",
        category=CATEGORY,
        inputs=(
            In("sharpen_radius", "INT", default=9, min=1, max=31, step=1),
            In("sigma", "FLOAT", default=1.0, min=0.1, max=10.0, step=0.1),
            In("alpha", "FLOAT", default=0.1, min=0.0, max=5.0, step=0.01),
        ),
        outputs=(Out(LATENT_OPERATION),),
    )

    def execute(self, ctx, sharpen_radius=9, sigma=1.0, alpha=0.1):
        if float(sigma) <= 0:
            raise NodeInputError("sigma", f"must be above 0, got {sigma}")
        r, s, a = int(sharpen_radius), float(sigma), float(alpha)
        return (lambda latent, **kwargs: sharpen(latent, r, s, a),)


NODES = [LatentApplyOperation, LatentApplyOperationCFG, LatentOperationTonemapReinhard, LatentOperationSharpen]
