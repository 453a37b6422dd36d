"""GUIDER and NOISE nodes, and the two guidance rules only custom sampling uses.

A GUIDER (:class:`~latentgraph.nodes.sampling.guidance.Guider`) is a model, named conditionings
and a rule combining their x0 estimates; a NOISE (``run.RandomNoise`` / ``run.NoNoise``) makes
the starting noise of a run. Conditionings are named after the guider node's inputs, so an
error found while sampling still says which one is at fault.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.sampling.cond_items import check_conditioning
from latentgraph.nodes.sampling.guidance import CFG, Guider, NoGuidance
from latentgraph.nodes.sampling.kit import Prediction
from latentgraph.nodes.sampling.ksampler_nodes import MAX_SEED
from latentgraph.nodes.sampling.run import NoNoise, check_model
from latentgraph.nodes.sampling.run import RandomNoise as SeededNoise

GUIDERS = "sampling/custom_sampling/guiders"
CFG_ROUND = {"round": 0.01}


def _cfg_in(name: str) -> Any:
    return In(name, "FLOAT", default=8.0, min=0.0, max=100.0, step=0.1, editor_options=CFG_ROUND)


# -- rules ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DualCFG:
    """Two guidance scales (ComfyUI's DualCFGGuider), on x0 estimates.

    regular: ``neg + cfg2·(cond2 − neg) + cfg1·(cond1 − cond2)`` — cond2 is guided away from the
    negative, cond1 pulls on top of it; cfg2 = 1 skips the negative, and cond2 too when cfg1 = 1.
    nested: ``neg + cfg2·(cond2 + cfg1·(cond1 − cond2) − neg)`` — CFG between the two conds,
    then that result guided away from the negative (all three evaluated).
    """

    cfg1: float
    cfg2: float
    nested: bool = False
    names: tuple[str, ...] = ("negative", "cond2", "cond1")
    always_uncond: bool = False

    def needed(self) -> tuple[bool, ...]:
        if self.nested or self.always_uncond:
            return (True, True, True)
        skip_negative = math.isclose(self.cfg2, 1.0)
        return (not skip_negative, not (skip_negative and math.isclose(self.cfg1, 1.0)), True)

    def combine(self, preds: Sequence[Tensor], x: Tensor, sigma: Tensor) -> Prediction:
        negative, middle, positive = preds
        if self.nested:
            text = middle + (positive - middle) * self.cfg1
            return Prediction(negative + self.cfg2 * (text - negative), middle)
        return Prediction(negative + (middle - negative) * self.cfg2 + (positive - middle) * self.cfg1, negative)


@dataclass(frozen=True)
class PerpNeg:
    """Perp-Neg (Armandpour et al. 2023), on x0 estimates: CFG against an empty prompt, minus only
    the part of (negative − empty) perpendicular to (positive − empty), scaled by ``neg_scale`` —
    so a negative that overlaps the positive does not cancel it. neg_scale 0 is plain CFG against
    the empty prompt (the negative is then skipped, and the empty one too at cfg 1)."""

    cfg: float
    neg_scale: float
    names: tuple[str, ...] = ("positive", "negative", "empty_conditioning")
    always_uncond: bool = False

    def needed(self) -> tuple[bool, ...]:
        if self.always_uncond:
            return (True, True, True)
        skip_negative = math.isclose(self.neg_scale, 0.0)
        return (True, not skip_negative, not (skip_negative and math.isclose(self.cfg, 1.0)))

    def combine(self, preds: Sequence[Tensor], x: Tensor, sigma: Tensor) -> Prediction:
        positive, negative, empty = preds
        pos = positive - empty
        neg = negative - empty
        # Projection over the whole batch, as ComfyUI takes it (one dot product, not per image).
        perp = neg - (torch.mul(neg, pos).sum() / torch.norm(pos) ** 2) * pos
        return Prediction(empty + self.cfg * (pos - perp * self.neg_scale), negative)


# -- guider nodes --------------------------------------------------------------------------------------
def _checked(model: Any, conds: dict[str, Any]) -> tuple[DiffusionModel, dict[str, Any]]:
    """The model and conditionings, checked now so errors name this node's inputs."""
    model = check_model(model)
    for name, conditioning in conds.items():
        for emb, extras in check_conditioning(name, conditioning):
            if emb.shape[-1] != model.cross_attention_dim:
                source = f" (encoded by a {extras['arch']} CLIP)" if extras.get("arch") else ""
                raise NodeInputError(
                    name, f"text embeddings have dimension {emb.shape[-1]}{source} but the model ({model.arch}) "
                    f"expects {model.cross_attention_dim}: the CLIP and the model come from different architectures",
                )
    return model, conds


class BasicGuider(Node):
    """The model's prediction for one conditioning, unguided (guidance-distilled models, Flux)."""

    spec = NodeSpec(
        name="BasicGuider",
        category=GUIDERS,
        inputs=(In("model", "MODEL"), In("conditioning", "CONDITIONING")),
        outputs=(Out("GUIDER"),),
    )

    def execute(self, ctx, model, conditioning):
        model, conds = _checked(model, {"conditioning": conditioning})
        return (Guider(model, conds, NoGuidance(names=("conditioning",)), frozenset()),)


class CFGGuider(Node):
    """Classifier-free guidance: what KSampler does with its positive, negative and cfg."""

    spec = NodeSpec(
        name="CFGGuider",
        category=GUIDERS,
        inputs=(In("model", "MODEL"), In("positive", "CONDITIONING"), In("negative", "CONDITIONING"), _cfg_in("cfg")),
        outputs=(Out("GUIDER"),),
    )

    def execute(self, ctx, model, positive, negative, cfg):
        model, conds = _checked(model, {"positive": positive, "negative": negative})
        return (Guider(model, conds, CFG(float(cfg))),)


class DualCFGGuider(Node):
    """Two conditionings and a negative, each pair with its own scale (see :class:`DualCFG`)."""

    spec = NodeSpec(
        name="DualCFGGuider",
        category=GUIDERS,
        inputs=(
            In("model", "MODEL"),
            In("cond1", "CONDITIONING"),
            In("cond2", "CONDITIONING"),
            In("negative", "CONDITIONING"),
            _cfg_in("cfg_conds"),
            _cfg_in("cfg_cond2_negative"),
            In("style", "COMBO", choices=("regular", "nested"), default="regular"),
        ),
        outputs=(Out("GUIDER"),),
    )

    def execute(self, ctx, model, cond1, cond2, negative, cfg_conds, cfg_cond2_negative, style="regular"):
        if style not in ("regular", "nested"):
            raise NodeInputError("style", f"unknown style {style!r}; known: regular, nested")
        model, conds = _checked(model, {"cond1": cond1, "cond2": cond2, "negative": negative})
        rule = DualCFG(float(cfg_conds), float(cfg_cond2_negative), nested=style == "nested")
        # cond2 plays the negative's role against cond1 (SDXL refiner: the negative aesthetic score).
        return (Guider(model, conds, rule, frozenset({"cond2", "negative"})),)


class PerpNegGuider(Node):
    """CFG that removes only the part of the negative that does not overlap the positive."""

    spec = NodeSpec(
        name="PerpNegGuider",
        category="_for_testing",
        inputs=(
            In("model", "MODEL"),
            In("positive", "CONDITIONING"),
            In("negative", "CONDITIONING"),
            In("empty_conditioning", "CONDITIONING"),
            _cfg_in("cfg"),
            In("neg_scale", "FLOAT", default=1.0, min=0.0, max=100.0, step=0.01),
        ),
        outputs=(Out("GUIDER"),),
    )

    def execute(self, ctx, model, positive, negative, empty_conditioning, cfg, neg_scale):
        model, conds = _checked(model, {"positive": positive, "negative": negative,
                                        "empty_conditioning": empty_conditioning})
        rule = PerpNeg(float(cfg), float(neg_scale))
        return (Guider(model, conds, rule, frozenset({"negative", "empty_conditioning"})),)


# -- noise nodes ---------------------------------------------------------------------------------------
class RandomNoise(Node):
    """Seeded Gaussian noise, the same KSampler draws for that seed."""

    spec = NodeSpec(
        name="RandomNoise",
        category="sampling/custom_sampling/noise",
        inputs=(In("noise_seed", "INT", default=0, min=0, max=MAX_SEED, control_after_generate=True),),
        outputs=(Out("NOISE"),),
    )

    def execute(self, ctx, noise_seed):
        return (SeededNoise(int(noise_seed)),)


class DisableNoise(Node):
    """No noise: the latent is already noisy (AddNoise, a first stage) or is to be refined as is."""

    spec = NodeSpec(name="DisableNoise", category="sampling/custom_sampling/noise", outputs=(Out("NOISE"),))

    def execute(self, ctx):
        return (NoNoise(),)


NODES = [CFGGuider, DualCFGGuider, BasicGuider, PerpNegGuider, RandomNoise, DisableNoise]
