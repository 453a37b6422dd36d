"""Model-side nodes: loaders, patches (UNet, guidance, sampling), merging and saving.

The patching mechanism for code that changes the UNet's inside is :mod:`.unet_patching`.
"""

from __future__ import annotations


def _nodes():
    from latentgraph.nodes.models import (deep_shrink, loaders, merging, patches_guidance, patches_sampling, patches_unet,
                                         saving, self_attention)

    return [*loaders.NODES, *patches_unet.NODES, *patches_guidance.NODES, *patches_sampling.NODES,
            *merging.NODES, *saving.NODES, *self_attention.NODES, *deep_shrink.NODES]


NODES = _nodes()
