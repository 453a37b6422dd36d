"""LATENT nodes beyond the basics in ``latentgraph.nodes.latents``: batch, composite, arithmetic,
transforms, operations, files, tiled VAE, and inpainting/outpainting preparation.

``TYPES`` holds the connection type these nodes add (LATENT_OPERATION); ``NODES`` every node.
"""

from latentgraph.nodes.latent import arithmetic, batch, composite, files, inpaint, operations, tiled_vae, transform

TYPES: list = [*operations.TYPES]
NODES: list = [
    *tiled_vae.NODES,
    *transform.NODES,
    *composite.NODES,
    *batch.NODES,
    *arithmetic.NODES,
    *operations.NODES,
    *files.NODES,
    *inpaint.NODES,
]
