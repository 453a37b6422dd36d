"""Inpainting masks: SetLatentNoiseMask, and ``check_mask`` for every node that takes a MASK.

A MASK is ``[B, H, W]`` (or ``[H, W]``) float in 0..1, at any resolution. ``noise_mask`` on a LATENT
says where a sampler may change it (1 = repaint); every sampler honours it (``sampling.run``):
the mask is resized to the latent, and outside it the latent is held at the input, so there the
output equals the input.
"""

from __future__ import annotations

from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.sampling.run import NOISE_MASK_KEY


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


NODES = [SetLatentNoiseMask]
