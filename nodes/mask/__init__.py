"""MASK nodes: making, converting, combining and shaping masks (``[B, H, W]`` floats 0..1)."""

from latentgraph.nodes.mask import convert, files, shape

# ImageToMask and SolidMask are registered by nodes/latent_mask.py (one implementation);
# convert.py re-exports them.
NODES: list = [*convert.NODES, *shape.NODES, *files.NODES]
