"""IMAGE nodes beyond loading and saving (``latentgraph.nodes.images``): resizing, cropping,
transforms, batches, blending, filters and compositing, as small pure functions plus nodes.

Modules: ``resize`` (scale by / to pixels / to max side, resize-and-pad), ``transform`` (crop,
flip, rotate, stitch), ``batch``, ``blend`` (blend modes, invert, noise), ``filters`` (blur,
sharpen, quantize, morphology), ``compositing`` (masked paste, Porter-Duff), ``alpha`` (split/join
alpha), ``misc`` (empty image, size, load from outputs); ``common`` holds their shared checks.
"""

from latentgraph.nodes.image import alpha, batch, blend, compositing, filters, misc, resize, transform

NODES: list = [
    *resize.NODES,
    *transform.NODES,
    *batch.NODES,
    *blend.NODES,
    *filters.NODES,
    *compositing.NODES,
    *alpha.NODES,
    *misc.NODES,
]

# upscale models (spandrel): Engineer M's module
from latentgraph.nodes.image import upscale_model  # noqa: E402

NODES.extend(upscale_model.NODES)
