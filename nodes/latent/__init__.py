"""LATENT nodes beyond the basics in ``latentgraph.nodes.latents``: batch, composite, arithmetic,
transforms, files, and inpainting/outpainting preparation."""

NODES: list = []  # the package's node classes, gathered from its modules
