"""Latent arithmetic (ComfyUI's ``latent/advanced``): add, subtract, multiply, interpolate.

A second operand of another size is resized to the first (bilinear, centre-cropped to its aspect)
and its batch repeated or cut to the first's, as ComfyUI does.
"""

from __future__ import annotations

import torch
from torch import Tensor

from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.image.common import repeat_to_batch  # re-exported: latent.batch/transform use it
from latentgraph.nodes.latent.base import operands, publish, unary
from latentgraph.nodes.latents import resize_latents

CATEGORY = "latent/advanced"


def reshape_like(target: Tensor, t: Tensor, repeat_batch: bool = True) -> Tensor:
    """``t`` resized (bilinear, centre crop) to ``target``'s cells, batch matched if asked."""
    if t.shape[1:] != target.shape[1:]:
        t = resize_latents(t, int(target.shape[-1]), int(target.shape[-2]), "bilinear", "center")
    return repeat_to_batch(t, int(target.shape[0])) if repeat_batch else t


def interpolate(s1: Tensor, s2: Tensor, ratio: float) -> Tensor:
    """Blend directions per cell (channel vectors normalised) and magnitudes separately:
    ``ratio`` 1 gives ``s1``, 0 gives ``s2``; zero vectors stay zero instead of NaN."""
    m1 = torch.linalg.vector_norm(s1, dim=1, keepdim=True)
    m2 = torch.linalg.vector_norm(s2, dim=1, keepdim=True)
    t = torch.nan_to_num(s1 / m1) * ratio + torch.nan_to_num(s2 / m2) * (1.0 - ratio)
    direction = torch.nan_to_num(t / torch.linalg.vector_norm(t, dim=1, keepdim=True))
    return direction * (m1 * ratio + m2 * (1.0 - ratio))


class _Binary(Node):
    op = staticmethod(lambda a, b: a)

    def execute(self, ctx, samples1, samples2):
        (s1, s2), spec, f = operands(samples1=samples1, samples2=samples2)
        return (publish(samples1, type(self).op(s1, reshape_like(s1, s2)), spec, f),)


def _binary_spec(name: str) -> NodeSpec:
    return NodeSpec(name=name, category=CATEGORY, inputs=(In("samples1", "LATENT"), In("samples2", "LATENT")),
                    outputs=(Out("LATENT"),))


class LatentAdd(_Binary):
    """``samples1 + samples2``."""

    spec = _binary_spec("LatentAdd")
    op = staticmethod(torch.add)


class LatentSubtract(_Binary):
    """``samples1 − samples2``."""

    spec = _binary_spec("LatentSubtract")
    op = staticmethod(torch.sub)


class LatentMultiply(Node):
    spec = NodeSpec(
        name="LatentMultiply",
        category=CATEGORY,
        inputs=(In("samples", "LATENT"), In("multiplier", "FLOAT", default=1.0, min=-10.0, max=10.0, step=0.01)),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples, multiplier=1.0):
        return (unary(samples, "samples", lambda s: s * float(multiplier)),)


class LatentInterpolate(Node):
    spec = NodeSpec(
        name="LatentInterpolate",
        category=CATEGORY,
        description="Interpolates two latents cell by cell: directions and lengths of the channel vectors separately.",
        inputs=(
            In("samples1", "LATENT"),
            In("samples2", "LATENT"),
            In("ratio", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples1, samples2, ratio=1.0):
        (s1, s2), spec, f = operands(samples1=samples1, samples2=samples2)
        return (publish(samples1, interpolate(s1, reshape_like(s1, s2), float(ratio)), spec, f),)


NODES = [LatentAdd, LatentSubtract, LatentMultiply, LatentInterpolate]
