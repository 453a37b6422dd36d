"""ControlNet nodes with ComfyUI's contracts: loaders, apply (old and advanced), union type."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.control.loading import CheckpointError, load_control_file
from latentgraph.nodes.control.residuals import Control, ControlNet
from latentgraph.nodes.loaders import file_fingerprint_of, resolve_model
from latentgraph.registry import TypeSpec
from latentgraph import model_folders

FOLDER = "controlnet"
#: ComfyUI's union ControlNet task numbers (comfy/cldm/control_types.py).
UNION_CONTROLNET_TYPES = {
    "openpose": 0, "depth": 1, "hed/pidi/scribble/ted": 2, "canny/lineart/anime_lineart/mlsd": 3,
    "normal": 4, "segment": 5, "tile": 6, "repaint": 7,
}

TYPES = [TypeSpec("CONTROL_NET", description="a ControlNet or T2I-Adapter (ControlNetLoader), applied with ControlNetApply*")]


_choices = model_folders.choices(FOLDER)


def _load(ctx, name: str, model: DiffusionModel | None = None) -> ControlNet:
    path = resolve_model(ctx.settings, FOLDER, name, "control_net_name")
    try:
        return load_control_file(path, ctx.settings, model)
    except CheckpointError as exc:
        raise NodeInputError("control_net_name", str(exc)) from None


class ControlNetLoader(Node):
    spec = NodeSpec(
        name="ControlNetLoader",
        display_name="Load ControlNet Model",
        category="loaders",
        description="Loads a ControlNet or T2I-Adapter (original single-file layout, SD1/SD2/SDXL) from models/controlnet.",
        inputs=(In("control_net_name", "COMBO", choices=_choices),),
        outputs=(Out("CONTROL_NET"),),
    )

    def execute(self, ctx, control_net_name):
        return (_load(ctx, control_net_name),)

    fingerprint = file_fingerprint_of(FOLDER, "control_net_name")


class DiffControlNetLoader(Node):
    spec = NodeSpec(
        name="DiffControlNetLoader",
        display_name="Load ControlNet Model (diff)",
        category="loaders",
        description="Loads a ControlNet; a \"diff\" ControlNet (differences to its base UNet) gets the model's weights added.",
        inputs=(In("model", "MODEL"), In("control_net_name", "COMBO", choices=_choices)),
        outputs=(Out("CONTROL_NET"),),
    )

    def execute(self, ctx, model, control_net_name):
        if not isinstance(model, DiffusionModel):
            raise NodeInputError("model", "expected a MODEL")
        return (_load(ctx, control_net_name, model),)

    fingerprint = file_fingerprint_of(FOLDER, "control_net_name")


def _check(control_net: Any, image: Any) -> Tensor:
    if not isinstance(control_net, ControlNet):
        raise NodeInputError("control_net", "expected a CONTROL_NET (from ControlNetLoader)")
    if not isinstance(image, Tensor) or image.ndim != 4:
        raise NodeInputError("image", "expected an IMAGE [batch, height, width, channels]")
    hint = image.movedim(-1, 1)
    if hint.shape[1] != control_net.hint_channels and not (control_net.kind == "t2i_adapter" and control_net.hint_channels == 1):
        if hint.shape[1] == 1:
            hint = hint.repeat(1, control_net.hint_channels, 1, 1)
        elif hint.shape[1] == 4 and control_net.hint_channels == 3:
            hint = hint[:, :3]
        else:
            raise NodeInputError("image", f"has {hint.shape[1]} channels; this ControlNet takes {control_net.hint_channels}")
    return hint


def _entries(name: str, conditioning: Any) -> list:
    if not isinstance(conditioning, (list, tuple)):
        raise NodeInputError(name, "expected CONDITIONING")
    return list(conditioning)


class ControlNetApply(Node):
    spec = NodeSpec(
        name="ControlNetApply",
        display_name="Apply ControlNet (OLD)",
        category="conditioning/controlnet",
        description="Adds a ControlNet with its hint image to every entry; the sampler lends it to the "
                    "negative too (ComfyUI's rule for this node). Prefer Apply ControlNet.",
        inputs=(
            In("conditioning", "CONDITIONING"),
            In("control_net", "CONTROL_NET"),
            In("image", "IMAGE"),
            In("strength", "FLOAT", default=1.0, min=0.0, max=10.0, step=0.01),
        ),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, conditioning, control_net, image, strength):
        entries = _entries("conditioning", conditioning)
        if strength == 0:
            return (conditioning,)
        hint = _check(control_net, image)
        out = []
        for emb, extras in entries:
            extras = dict(extras)
            extras["control"] = Control(control_net, hint, float(strength), previous=extras.get("control"))
            extras["control_apply_to_uncond"] = True
            out.append((emb, extras))
        return (out,)


class ControlNetApplyAdvanced(Node):
    spec = NodeSpec(
        name="ControlNetApplyAdvanced",
        display_name="Apply ControlNet",
        category="conditioning/controlnet",
        description="Adds a ControlNet with its hint image to positive and negative, at a strength and "
                    "for a part of the run (start/end percent). Stacks on ControlNets already applied.",
        inputs=(
            In("positive", "CONDITIONING"),
            In("negative", "CONDITIONING"),
            In("control_net", "CONTROL_NET"),
            In("image", "IMAGE"),
            In("strength", "FLOAT", default=1.0, min=0.0, max=10.0, step=0.01),
            In("start_percent", "FLOAT", default=0.0, min=0.0, max=1.0, step=0.001),
            In("end_percent", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.001),
            In("vae", "VAE", required=False,
               tooltip="only latent-space ControlNets (SD3/Flux) need it; SD1/SD2/SDXL ones ignore it, as in ComfyUI"),
        ),
        outputs=(Out("CONDITIONING", "positive"), Out("CONDITIONING", "negative")),
    )

    def execute(self, ctx, positive, negative, control_net, image, strength, start_percent, end_percent, vae=None):
        sides = (_entries("positive", positive), _entries("negative", negative))
        if strength == 0:
            return (positive, negative)
        hint = _check(control_net, image)
        made: dict[int, Control] = {}  # one new Control per previous chain, shared by both sides
        out = []
        for entries in sides:
            side = []
            for emb, extras in entries:
                extras = dict(extras)
                previous = extras.get("control")
                key = id(previous)
                if key not in made:
                    made[key] = Control(control_net, hint, float(strength), float(start_percent), float(end_percent),
                                        previous=previous, vae=vae)
                extras["control"] = made[key]
                extras["control_apply_to_uncond"] = False
                side.append((emb, extras))
            out.append(side)
        return (out[0], out[1])


class SetUnionControlNetType(Node):
    spec = NodeSpec(
        name="SetUnionControlNetType",
        category="conditioning/controlnet",
        description="Chooses the task of a union ControlNet (ignored by single-task ControlNets).",
        inputs=(In("control_net", "CONTROL_NET"), In("type", "COMBO", choices=("auto", *UNION_CONTROLNET_TYPES))),
        outputs=(Out("CONTROL_NET"),),
    )

    def execute(self, ctx, control_net, type):  # noqa: A002 - ComfyUI's input name
        if not isinstance(control_net, ControlNet):
            raise NodeInputError("control_net", "expected a CONTROL_NET")
        number = UNION_CONTROLNET_TYPES.get(type, -1)
        args = {**control_net.extra_args, "control_type": [number] if number >= 0 else []}
        return (replace(control_net, extra_args=args),)


NODES = [ControlNetLoader, DiffControlNetLoader, ControlNetApply, ControlNetApplyAdvanced, SetUnionControlNetType]
