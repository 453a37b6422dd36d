"""Text-side model nodes: textual-inversion embeddings (used by CLIPTextEncode, see
``embeddings``), CLIP vision, unCLIP and instruct-pix2pix conditioning, style models, GLIGEN.

``TYPES`` holds the connection types these nodes add; ``NODES`` every node.
"""

from latentgraph.nodes.text import clip_vision, gligen, image_conditioning, style_model
from latentgraph.registry import TypeSpec

TYPES: list = [
    TypeSpec(clip_vision.CLIP_VISION, description="a CLIP image encoder (CLIPVisionLoader)"),
    TypeSpec(clip_vision.CLIP_VISION_OUTPUT, description="CLIP image features: last_hidden_state, image_embeds, …"),
    TypeSpec(style_model.STYLE_MODEL, description="a T2I-Adapter style model"),
    TypeSpec(gligen.GLIGEN, description="a GLIGEN box-grounding model"),
]

NODES: list = [*clip_vision.NODES, *image_conditioning.NODES, *style_model.NODES, *gligen.NODES]
