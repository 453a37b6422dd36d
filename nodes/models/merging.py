"""Model and CLIP merging with ComfyUI's arithmetic.

Every merge is ``model1·s₁ + model2·s₂`` per weight (ComfyUI's ``add_patches(patch, s₂, s₁)``),
with the weight's ratio chosen by the longest matching prefix of its *original-layout* name
(``input_blocks.4.1…``), so ModelMergeSD1/SD2/SDXL sliders mean what they mean in ComfyUI. The
result is a new MODEL/CLIP: model1's modules cloned with new tensors, the inputs untouched; it
keeps model1's patches and sampling settings. Weights only in one model, or of another shape,
keep model1's values (as ComfyUI skips them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.components import DiffusionModel, TextEncoder
from latentgraph.nodes.lora import clone_sharing
from latentgraph.nodes.original_layout import rename, unet_module_map

log = logging.getLogger("latentgraph.models.merging")

#: ``(name, value1, value2) -> (s1, s2)`` or None to keep model1's value.
Rule = Callable[[str, torch.Tensor, torch.Tensor], "tuple[float, float] | None"]


def original_unet_names(unet) -> dict[str, str]:
    """diffusers parameter name → original-layout name (without ``model.diffusion_model.``)."""
    try:
        module_map = unet_module_map(dict(unet.config))
    except (KeyError, ValueError):
        module_map = {}
    return {k: rename(k, module_map) if module_map else k for k, _ in unet.named_parameters()}


def merge_modules(m1: torch.nn.Module, m2: torch.nn.Module, rule: Callable[[str], "tuple[float, float] | None"],
                  names: Mapping[str, str] | None = None) -> torch.nn.Module:
    """A clone of ``m1`` whose parameters are ``s1·p1 + s2·p2`` (computed in float32)."""
    other = dict(m2.named_parameters())
    new: dict[str, torch.Tensor] = {}
    skipped = 0
    with torch.no_grad():
        for name, p1 in m1.named_parameters():
            p2 = other.get(name)
            if p2 is None or p2.shape != p1.shape:
                skipped += 1
                continue
            strengths = rule((names or {}).get(name, name))
            if strengths is None:
                continue
            s1, s2 = strengths
            if s1 == 1.0 and s2 == 0.0:
                continue
            merged = p1.float() * s1 + p2.to(p1.device).float() * s2
            new[name] = merged.to(p1.dtype)
    if skipped:
        log.warning("merge: %d weights of the first model have no counterpart of the same shape in the second; kept", skipped)
    return clone_sharing(m1, new)


def prefix_ratio(ratios: Mapping[str, float]) -> Callable[[str], float]:
    """ComfyUI's rule: the ratio of the longest argument name the weight name starts with;
    otherwise the first argument's."""
    default = next(iter(ratios.values()))

    def pick(name: str) -> float:
        best, size = default, 0
        for prefix, value in ratios.items():
            if name.startswith(prefix) and len(prefix) > size:
                best, size = value, len(prefix)
        return best

    return pick


def merge_models(model1: DiffusionModel, model2: DiffusionModel, rule: Callable[[str], "tuple[float, float] | None"],
                 what: str) -> DiffusionModel:
    if not isinstance(model1, DiffusionModel) or not isinstance(model2, DiffusionModel):
        raise NodeInputError("model2", "both inputs must be MODELs")
    if model1.arch != model2.arch:
        log.warning("merging a %s model with a %s model: only weights of the same name and shape mix", model1.arch, model2.arch)
    unet = merge_modules(model1.unet, model2.unet, rule, original_unet_names(model1.unet))
    record = {"merge": what, "with": model2.info.get("source", "?")}
    return replace(model1, unet=unet, info={**model1.info, "merges": [*model1.info.get("merges", []), record]})


def _clip_rule(s1: float, s2: float):
    return lambda name: None if name.endswith(("position_ids", "logit_scale")) else (s1, s2)


def merge_clips(clip1: TextEncoder, clip2: TextEncoder, s1: float, s2: float) -> TextEncoder:
    if len(clip1.encoders) != len(clip2.encoders):
        raise NodeInputError("clip2", f"clip1 has {len(clip1.encoders)} text encoders, clip2 {len(clip2.encoders)}")
    encoders = [merge_modules(a, b, _clip_rule(s1, s2)) for a, b in zip(clip1.encoders, clip2.encoders)]
    return replace(clip1, encoders=encoders)


# -- nodes ----------------------------------------------------------------------------------------------
def _ratio(name: str, default: float = 1.0):
    return In(name, "FLOAT", default=default, min=0.0, max=1.0, step=0.01)


def _multiplier():
    return In("multiplier", "FLOAT", default=1.0, min=-10.0, max=10.0, step=0.01)


_CAT = "advanced/model_merging"


class ModelMergeSimple(Node):
    spec = NodeSpec(name="ModelMergeSimple", display_name="ModelMergeSimple", category=_CAT,
                    description="ratio·model1 + (1 − ratio)·model2 for every UNet weight.",
                    inputs=(In("model1", "MODEL"), In("model2", "MODEL"), _ratio("ratio")), outputs=(Out("MODEL"),))

    def execute(self, ctx, model1, model2, ratio=1.0):
        return (merge_models(model1, model2, lambda n: (ratio, 1.0 - ratio), f"simple {ratio}"),)


class ModelMergeSubtract(Node):
    spec = NodeSpec(name="ModelMergeSubtract", display_name="ModelMergeSubtract", category=_CAT,
                    description="multiplier·(model1 − model2): a difference to add elsewhere or extract as a LoRA.",
                    inputs=(In("model1", "MODEL"), In("model2", "MODEL"), _multiplier()), outputs=(Out("MODEL"),))

    def execute(self, ctx, model1, model2, multiplier=1.0):
        return (merge_models(model1, model2, lambda n: (multiplier, -multiplier), f"subtract {multiplier}"),)


class ModelMergeAdd(Node):
    spec = NodeSpec(name="ModelMergeAdd", display_name="ModelMergeAdd", category=_CAT,
                    description="model1 + model2 (e.g. a base plus a ModelMergeSubtract difference).",
                    inputs=(In("model1", "MODEL"), In("model2", "MODEL")), outputs=(Out("MODEL"),))

    def execute(self, ctx, model1, model2):
        return (merge_models(model1, model2, lambda n: (1.0, 1.0), "add"),)


def _blocks_execute(self, ctx, model1, model2, **ratios):
    names = [i.name for i in self.spec.inputs[2:]]
    ordered = {n: float(ratios.get(n, 1.0)) for n in names}
    pick = prefix_ratio(ordered)

    def rule(name):
        r = pick(name)
        return (r, 1.0 - r)

    return (merge_models(model1, model2, rule, "blocks"),)


def _blocks_node(name: str, blocks: Sequence[str], category: str, description: str):
    spec = NodeSpec(name=name, display_name=name, category=category, description=description,
                    inputs=(In("model1", "MODEL"), In("model2", "MODEL"), *(_ratio(b) for b in blocks)),
                    outputs=(Out("MODEL"),))
    return type(name, (Node,), {"spec": spec, "execute": _blocks_execute})


ModelMergeBlocks = _blocks_node("ModelMergeBlocks", ("input", "middle", "out"), _CAT,
                                "Per-part ratios of model1 (input blocks, middle block, output blocks).")


def _sd_blocks(n_in: int, n_out: int, dot: str) -> list[str]:
    return (["time_embed.", "label_emb."] + [f"input_blocks.{i}{dot}" for i in range(n_in)]
            + [f"middle_block.{i}{dot}" for i in range(3)] + [f"output_blocks.{i}{dot}" for i in range(n_out)] + ["out."])


_SPECIFIC = _CAT + "/model_specific"
ModelMergeSD1 = _blocks_node("ModelMergeSD1", _sd_blocks(12, 12, "."), _SPECIFIC, "Per-block ratios of model1 for SD1 UNets.")
ModelMergeSD2 = _blocks_node("ModelMergeSD2", _sd_blocks(12, 12, "."), _SPECIFIC, "Per-block ratios of model1 for SD2 UNets.")
ModelMergeSDXL = _blocks_node("ModelMergeSDXL", _sd_blocks(9, 9, ""), _SPECIFIC, "Per-block ratios of model1 for SDXL UNets.")


class CLIPMergeSimple(Node):
    spec = NodeSpec(name="CLIPMergeSimple", display_name="CLIPMergeSimple", category=_CAT,
                    description="ratio·clip1 + (1 − ratio)·clip2 for every text-encoder weight.",
                    inputs=(In("clip1", "CLIP"), In("clip2", "CLIP"), _ratio("ratio")), outputs=(Out("CLIP"),))

    def execute(self, ctx, clip1, clip2, ratio=1.0):
        return (merge_clips(clip1, clip2, ratio, 1.0 - ratio),)


class CLIPMergeSubtract(Node):
    spec = NodeSpec(name="CLIPMergeSubtract", display_name="CLIPMergeSubtract", category=_CAT,
                    description="multiplier·(clip1 − clip2).",
                    inputs=(In("clip1", "CLIP"), In("clip2", "CLIP"), _multiplier()), outputs=(Out("CLIP"),))

    def execute(self, ctx, clip1, clip2, multiplier=1.0):
        return (merge_clips(clip1, clip2, multiplier, -multiplier),)


class CLIPMergeAdd(Node):
    spec = NodeSpec(name="CLIPMergeAdd", display_name="CLIPMergeAdd", category=_CAT, description="clip1 + clip2.",
                    inputs=(In("clip1", "CLIP"), In("clip2", "CLIP")), outputs=(Out("CLIP"),))

    def execute(self, ctx, clip1, clip2):
        return (merge_clips(clip1, clip2, 1.0, 1.0),)


NODES = [ModelMergeSimple, ModelMergeBlocks, ModelMergeSubtract, ModelMergeAdd, ModelMergeSD1, ModelMergeSD2,
         ModelMergeSDXL, CLIPMergeSimple, CLIPMergeSubtract, CLIPMergeAdd]
