"""ControlNet and T2I-Adapter (``latentgraph.nodes.control``).

Modules: ``layout`` (the original single-file layouts ↔ diffusers names, architecture from the
file), ``loading`` (file → CONTROL_NET), ``residuals`` (the CONTROL_NET value, a control applied
to a conditioning, and the residuals the guider passes to the UNet), ``nodes`` (loaders, apply
nodes, SetUnionControlNetType), ``canny`` (the Canny preprocessor). How the demo model's canny
ControlNet was made: ``demo_model/train_controlnet.py`` in the checkout (not shipped).
"""

from latentgraph.nodes.control import canny, nodes

TYPES: list = [*nodes.TYPES]
NODES: list = [*nodes.NODES, *canny.NODES]
