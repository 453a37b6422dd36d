"""Alpha channels ⇄ masks: SplitImageWithAlpha, JoinImageWithAlpha.

As everywhere in ComfyUI, a MASK is ``1 − alpha`` (1 = transparent / to be painted).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.image.common import check_image
from latentgraph.nodes.latent_mask import check_mask


def split_alpha(image: Tensor) -> tuple[Tensor, Tensor]:
    """(colour channels, mask): the mask is ``1 − alpha``, zeros (opaque) without an alpha channel."""
    colour = image[..., :3]
    if image.shape[-1] > 3:
        return colour, 1.0 - image[..., 3]
    return colour, torch.zeros_like(image[..., 0])


def join_alpha(image: Tensor, mask: Tensor) -> Tensor:
    """RGBA: the image's colour channels plus ``1 − mask`` as alpha (the mask resized bilinearly to
    the image). Pairs up to the shorter of the two batches, as ComfyUI."""
    mask = mask.reshape(-1, 1, *mask.shape[-2:]).to(image.device, image.dtype)
    alpha = 1.0 - F.interpolate(mask, size=tuple(image.shape[1:3]), mode="bilinear")[:, 0]
    n = min(image.shape[0], alpha.shape[0])
    return torch.cat((image[:n, ..., :3], alpha[:n, ..., None]), dim=-1)


class SplitImageWithAlpha(Node):
    spec = NodeSpec(
        name="SplitImageWithAlpha",
        display_name="Split Image with Alpha",
        category="mask/compositing",
        description="The colour channels, and the alpha channel as a mask (1 − alpha).",
        inputs=(In("image", "IMAGE"),),
        outputs=(Out("IMAGE"), Out("MASK")),
    )

    def execute(self, ctx, image):
        return split_alpha(check_image("image", image))


class JoinImageWithAlpha(Node):
    spec = NodeSpec(
        name="JoinImageWithAlpha",
        display_name="Join Image with Alpha",
        category="mask/compositing",
        description="Adds an alpha channel (1 − the mask) to the images.",
        inputs=(In("image", "IMAGE"), In("alpha", "MASK")),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, alpha):
        return (join_alpha(check_image("image", image), check_mask("alpha", alpha, max_ndim=3)),)


NODES: list[type[Node]] = [SplitImageWithAlpha, JoinImageWithAlpha]
