"""IMAGE nodes beyond loading and saving (``latentgraph.nodes.images``): resizing, cropping,
transforms, batches, blending, filters and compositing, as small pure functions plus nodes."""

NODES: list = []  # the package's node classes, gathered from its modules
