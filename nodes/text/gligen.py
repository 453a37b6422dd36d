"""GLIGENLoader and GLIGENTextBoxApply: grounded boxes ("this phrase goes here") — contract and data.

Loading builds diffusers' own modules from a GLIGEN file in the original layout
(``position_net.…`` → ``GLIGENTextBoundingboxProjection``; each ``….fuser.…`` of
``input_blocks.N`` / ``middle_block`` / ``output_blocks.N`` → ``GatedSelfAttentionDense``, heads
as ComfyUI picks them: 8 for 768-wide phrase features, else 64-wide heads). The apply node puts
ComfyUI's data into each conditioning entry: ``gligen = ("position", GLIGEN, [(pooled phrase
embedding [1, D], height//8, width//8, y//8, x//8), …])`` (boxes append).

While sampling, the layers are attached to the UNet's transformer blocks (matched by their
original block names) for the calls of the entries that carry boxes, and fed through diffusers'
``cross_attention_kwargs["gligen"]``: see :mod:`latentgraph.nodes.sampling.unet_inputs`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.checkpoint_files import CheckpointError, open_weights
from latentgraph.nodes.latents import MAX_RESOLUTION
from latentgraph.nodes.text._cond import check_conditioning
from latentgraph import model_folders
from latentgraph.nodes.loaders import file_fingerprint_of

GLIGEN = "GLIGEN"
FOLDER = "gligen"


@dataclass
class GligenModel:
    """GLIGEN: the box projection and the gated attention layers, in UNet block order."""

    position_net: Any  # diffusers GLIGENTextBoundingboxProjection
    fusers: list[tuple[str, Any]]  # (original block name, diffusers GatedSelfAttentionDense)
    key_dim: int
    info: dict[str, Any] = field(default_factory=dict)


def load_gligen(path) -> GligenModel:
    from diffusers.models.attention import GatedSelfAttentionDense
    from diffusers.models.embeddings import GLIGENTextBoundingboxProjection

    weights = open_weights(path)
    if "position_net.null_positive_feature" not in weights:
        raise CheckpointError(f"{weights.path.name} is not a GLIGEN model (no position_net)")
    sd = weights.tensors(weights.keys)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        m = re.search(r"((?:input_blocks|output_blocks)\.\d+|middle_block)\.\d+\..*\.fuser\.(.+)$", key)
        if m:
            block = key.split(".fuser.")[0]
            groups.setdefault(block, {})[m.group(2)] = value
    order = {"input_blocks": 0, "middle_block": 1, "output_blocks": 2}

    def block_key(name: str) -> tuple:
        head = name.split(".")
        return (order[head[0]], *(int(p) for p in head[1:] if p.isdigit()))

    fusers, key_dim = [], 768
    for block in sorted(groups, key=block_key):
        params = groups[block]
        query_dim, key_dim = params["linear.weight"].shape
        heads, d_head = (8, query_dim // 8) if key_dim == 768 else (query_dim // 64, 64)
        fuser = GatedSelfAttentionDense(query_dim, key_dim, heads, d_head)
        missing, _ = fuser.load_state_dict(params, strict=False)
        if missing:
            raise CheckpointError(f"{weights.path.name}: {block} lacks {missing[:3]}")
        fusers.append((block, fuser.eval()))
    in_dim = sd["position_net.null_positive_feature"].shape[0]
    out_dim = sd["position_net.linears.4.weight"].shape[0]
    net = GLIGENTextBoundingboxProjection(in_dim, out_dim, "text-only")
    net.load_state_dict({k.removeprefix("position_net."): v for k, v in sd.items() if k.startswith("position_net.")})
    return GligenModel(net.eval(), fusers, int(key_dim), {"source": str(weights.path), "layers": len(fusers)})


_choices = model_folders.choices(FOLDER)


class GLIGENLoader(Node):
    spec = NodeSpec(
        name="GLIGENLoader",
        display_name="GLIGENLoader",
        category="loaders",
        description="Loads a GLIGEN box-grounding model from models/gligen.",
        inputs=(In("gligen_name", "COMBO", choices=_choices),),
        outputs=(Out(GLIGEN),),
    )

    def execute(self, ctx, gligen_name):
        from latentgraph.nodes.loaders import resolve_model

        path = resolve_model(ctx.settings, FOLDER, gligen_name, "gligen_name")
        try:
            return (load_gligen(path),)
        except CheckpointError as exc:
            raise NodeInputError("gligen_name", str(exc)) from None

    fingerprint = file_fingerprint_of(FOLDER, "gligen_name")


class GLIGENTextBoxApply(Node):
    spec = NodeSpec(
        name="GLIGENTextBoxApply",
        display_name="GLIGENTextBoxApply",
        category="conditioning/gligen",
        description="Places a phrase in a box (pixels) for GLIGEN; boxes accumulate.",
        inputs=(
            In("conditioning_to", "CONDITIONING"),
            In("clip", "CLIP"),
            In("gligen_textbox_model", GLIGEN),
            In("text", "STRING", multiline=True, editor_options={"dynamicPrompts": True}),
            In("width", "INT", default=64, min=8, max=MAX_RESOLUTION, step=8),
            In("height", "INT", default=64, min=8, max=MAX_RESOLUTION, step=8),
            In("x", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
            In("y", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
        ),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, conditioning_to, clip, gligen_textbox_model, text, width=64, height=64, x=0, y=0):
        from latentgraph.nodes.conditioning import check_clip, encode_text

        conditioning_to = check_conditioning(conditioning_to, "conditioning_to")
        clip = check_clip(clip)
        if not isinstance(gligen_textbox_model, GligenModel):
            raise NodeInputError("gligen_textbox_model", f"expected a GLIGEN, got {type(gligen_textbox_model).__name__}")
        _, pooled = encode_text(clip, text, embedding_dirs=ctx.settings.model_dirs("embeddings"))
        box = (pooled, int(height) // 8, int(width) // 8, int(y) // 8, int(x) // 8)
        out = []
        for emb, extras in conditioning_to:
            extras = dict(extras)
            previous = list(extras["gligen"][2]) if "gligen" in extras else []
            extras["gligen"] = ("position", gligen_textbox_model, [*previous, box])
            out.append((emb, extras))
        return (out,)


NODES = [GLIGENLoader, GLIGENTextBoxApply]
