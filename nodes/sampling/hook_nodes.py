"""The Hooks family (ComfyUI 0.8.0's ``advanced/hooks`` nodes): create weight hooks from a LoRA or a
checkpoint, schedule them with keyframes, combine them, attach them to conditionings (with mask,
strength and timestep range) or to a CLIP. What the sampler does with them is in
:mod:`latentgraph.nodes.sampling.weight_hooks`.

As in ComfyUI, ``strength`` on the Set Props nodes is the *mask's* strength: without a mask it
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.sampling.weight_hooks import (
    CLIP_INFO_KEY,
    FLOATS,
    HOOK_KEYFRAMES,
    HOOKS,
    INTERPOLATIONS,
    TIMESTEPS_RANGE,
    CheckpointWeights,
    ClipHooks,
    HookGroup,
    HookKeyframe,
    HookKeyframes,
    LoraWeights,
    TimestepsRange,
    WeightHook,
    check_hooks,
    check_keyframes,
    check_percent,
    hook_uid,
    interpolated,
)
from latentgraph.registry import TypeSpec
from latentgraph import model_folders
from latentgraph.nodes.loaders import file_fingerprint_of

log = logging.getLogger("latentgraph.hooks")

TYPES = [
    TypeSpec(HOOKS, description="weight hooks (LoRA / checkpoint differences) with their keyframes"),
    TypeSpec(HOOK_KEYFRAMES, description="strength keyframes over the run for weight hooks"),
    TypeSpec(TIMESTEPS_RANGE, description="a (start, end) fraction of the run"),
    TypeSpec(FLOATS, description="a list of numbers"),
]

CREATE = "advanced/hooks/create"
SCHEDULING = "advanced/hooks/scheduling"
COMBINE = "advanced/hooks/combine"
COND_SINGLE = "advanced/hooks/cond single"
COND_PAIR = "advanced/hooks/cond pair"


def _strength_in(name: str) -> Any:
    return In(name, "FLOAT", default=1.0, min=-20.0, max=20.0, step=0.01)


def _prev_hooks() -> Any:
    return In("prev_hooks", HOOKS, required=False)


def _prev_kf() -> Any:
    return In("prev_hook_kf", HOOK_KEYFRAMES, required=False)


def _percent_in(name: str, default: float) -> Any:
    return In(name, "FLOAT", default=default, min=0.0, max=1.0, step=0.001)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NodeInputError(name, f"expected a number, got {type(value).__name__}")
    return float(value)


# -- create ---------------------------------------------------------------------------------------------
def _with_new_hook(prev_hooks: Any, hook: WeightHook | None) -> tuple[HookGroup]:
    prev = check_hooks("prev_hooks", prev_hooks) or HookGroup()
    return (prev if hook is None else prev.combined(HookGroup((hook,))),)


class CreateHookLora(Node):
    spec = NodeSpec(
        name="CreateHookLora",
        display_name="Create Hook LoRA",
        category=CREATE,
        description="A LoRA applied only to the conditionings (or CLIP) the hook is attached to, "
        "at a strength that keyframes can change over the run.",
        inputs=(
            In("lora_name", "COMBO", choices=model_folders.choices("loras")),
            _strength_in("strength_model"),
            _strength_in("strength_clip"),
            _prev_hooks(),
        ),
        outputs=(Out(HOOKS),),
    )

    def execute(self, ctx, lora_name, strength_model=1.0, strength_clip=1.0, prev_hooks=None):
        from latentgraph.nodes.loaders import file_fingerprint
        from latentgraph.nodes.lora import lora_from_input

        sm, sc = _number("strength_model", strength_model), _number("strength_clip", strength_clip)
        if sm == 0 and sc == 0:
            return _with_new_hook(prev_hooks, None)
        lora = lora_from_input(ctx, lora_name)
        fingerprint = f"{lora_name}:{file_fingerprint(ctx.settings, 'loras', lora_name)}"
        hook = WeightHook(LoraWeights(lora, fingerprint), sm, sc, hook_uid("lora", ctx.node_id, fingerprint, sm, sc))
        return _with_new_hook(prev_hooks, hook)

    fingerprint = file_fingerprint_of("loras", "lora_name")


class CreateHookLoraModelOnly(CreateHookLora):
    spec = NodeSpec(
        name="CreateHookLoraModelOnly",
        display_name="Create Hook LoRA (MO)",
        category=CREATE,
        description="Create Hook LoRA for the model only.",
        inputs=(CreateHookLora.spec.inputs[0], CreateHookLora.spec.inputs[1], _prev_hooks()),
        outputs=(Out(HOOKS),),
    )

    def execute(self, ctx, lora_name, strength_model=1.0, prev_hooks=None):
        return super().execute(ctx, lora_name, strength_model, 0.0, prev_hooks)


class CreateHookModelAsLora(Node):
    spec = NodeSpec(
        name="CreateHookModelAsLora",
        display_name="Create Hook Model as LoRA",
        category=CREATE,
        description="Another checkpoint as a hook: its difference to the sampled model, so at strength 1 "
        "the hooked conditionings are evaluated with that checkpoint's weights.",
        inputs=(
            In("ckpt_name", "COMBO", choices=model_folders.choices("checkpoints")),
            _strength_in("strength_model"),
            _strength_in("strength_clip"),
            _prev_hooks(),
        ),
        outputs=(Out(HOOKS),),
    )

    def execute(self, ctx, ckpt_name, strength_model=1.0, strength_clip=1.0, prev_hooks=None):
        from latentgraph.nodes.loaders import LoadCheckpoint, file_fingerprint

        sm, sc = _number("strength_model", strength_model), _number("strength_clip", strength_clip)
        model, clip, _vae = LoadCheckpoint().execute(ctx, ckpt_name)
        fingerprint = f"{ckpt_name}:{file_fingerprint(ctx.settings, 'checkpoints', ckpt_name)}"
        source = CheckpointWeights(str(ckpt_name), fingerprint, model, clip if sc != 0 else None)
        hook = WeightHook(source, sm, sc, hook_uid("checkpoint", ctx.node_id, fingerprint, sm, sc))
        return _with_new_hook(prev_hooks, hook)

    fingerprint = file_fingerprint_of("checkpoints", "ckpt_name")


class CreateHookModelAsLoraModelOnly(CreateHookModelAsLora):
    spec = NodeSpec(
        name="CreateHookModelAsLoraModelOnly",
        display_name="Create Hook Model as LoRA (MO)",
        category=CREATE,
        description="Create Hook Model as LoRA for the model only.",
        inputs=(CreateHookModelAsLora.spec.inputs[0], CreateHookModelAsLora.spec.inputs[1], _prev_hooks()),
        outputs=(Out(HOOKS),),
    )

    def execute(self, ctx, ckpt_name, strength_model=1.0, prev_hooks=None):
        return super().execute(ctx, ckpt_name, strength_model, 0.0, prev_hooks)


# -- schedule -------------------------------------------------------------------------------------------
class SetHookKeyframes(Node):
    spec = NodeSpec(
        name="SetHookKeyframes",
        display_name="Set Hook Keyframes",
        category=SCHEDULING,
        description="Every hook of the group follows these keyframes (replacing any it had).",
        inputs=(In("hooks", HOOKS), In("hook_kf", HOOK_KEYFRAMES, required=False)),
        outputs=(Out(HOOKS),),
    )

    def execute(self, ctx, hooks, hook_kf=None):
        group = check_hooks("hooks", hooks, optional=False)
        keyframes = check_keyframes("hook_kf", hook_kf)
        return (group if keyframes is None else group.with_keyframes(keyframes),)  # type: ignore[union-attr]


class CreateHookKeyframe(Node):
    spec = NodeSpec(
        name="CreateHookKeyframe",
        display_name="Create Hook Keyframe",
        category=SCHEDULING,
        description="From start_percent of the run on, hooks apply at strength_mult × their strength.",
        inputs=(_strength_in("strength_mult"), _percent_in("start_percent", 0.0), _prev_kf()),
        outputs=(Out(HOOK_KEYFRAMES, "HOOK_KF"),),
    )

    def execute(self, ctx, strength_mult=1.0, start_percent=0.0, prev_hook_kf=None):
        prev = check_keyframes("prev_hook_kf", prev_hook_kf) or HookKeyframes()
        keyframe = HookKeyframe(_number("strength_mult", strength_mult), check_percent("start_percent", start_percent))
        return (prev.add(keyframe),)


def _add_spread(prev: HookKeyframes, strengths: list[float], start: float, end: float, show: bool) -> HookKeyframes:
    """Keyframes at evenly spaced percents from start to end; the first holds one step."""
    out = prev
    for i, (percent, strength) in enumerate(zip(interpolated(start, end, len(strengths), "linear"), strengths)):
        out = out.add(HookKeyframe(strength, percent, guarantee_steps=1 if i == 0 else 0))
        if show:
            log.info("Hook Keyframe - start_percent:%s = %s", percent, strength)
    return out


class CreateHookKeyframesInterpolated(Node):
    spec = NodeSpec(
        name="CreateHookKeyframesInterpolated",
        display_name="Create Hook Keyframes Interp.",
        category=SCHEDULING,
        description="keyframes_count keyframes from start to end percent, strengths eased from start to end.",
        inputs=(
            In("strength_start", "FLOAT", default=1.0, min=0.0, max=10.0, step=0.001),
            In("strength_end", "FLOAT", default=1.0, min=0.0, max=10.0, step=0.001),
            In("interpolation", "COMBO", choices=INTERPOLATIONS),
            _percent_in("start_percent", 0.0),
            _percent_in("end_percent", 1.0),
            In("keyframes_count", "INT", default=5, min=2, max=100, step=1),
            In("print_keyframes", "BOOLEAN", default=False),
            _prev_kf(),
        ),
        outputs=(Out(HOOK_KEYFRAMES, "HOOK_KF"),),
    )

    def execute(self, ctx, strength_start=1.0, strength_end=1.0, interpolation="linear", start_percent=0.0,
                end_percent=1.0, keyframes_count=5, print_keyframes=False, prev_hook_kf=None):
        prev = check_keyframes("prev_hook_kf", prev_hook_kf) or HookKeyframes()
        if interpolation not in INTERPOLATIONS:
            raise NodeInputError("interpolation", f"must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
        count = keyframes_count
        if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= 100:
            raise NodeInputError("keyframes_count", f"must be a whole number from 2 to 100, got {count!r}")
        start, end = check_percent("start_percent", start_percent), check_percent("end_percent", end_percent)
        strengths = interpolated(_number("strength_start", strength_start), _number("strength_end", strength_end),
                                 count, interpolation)
        return (_add_spread(prev, strengths, start, end, bool(print_keyframes)),)


class CreateHookKeyframesFromFloats(Node):
    spec = NodeSpec(
        name="CreateHookKeyframesFromFloats",
        display_name="Create Hook Keyframes From Floats",
        category=SCHEDULING,
        description="One keyframe per number, spread evenly from start to end percent.",
        inputs=(
            In("floats_strength", FLOATS, default=-1, min=-1, step=0.001, editor_options={"forceInput": True}),
            _percent_in("start_percent", 0.0),
            _percent_in("end_percent", 1.0),
            In("print_keyframes", "BOOLEAN", default=False),
            _prev_kf(),
        ),
        outputs=(Out(HOOK_KEYFRAMES, "HOOK_KF"),),
    )

    def execute(self, ctx, floats_strength, start_percent=0.0, end_percent=1.0, print_keyframes=False,
                prev_hook_kf=None):
        prev = check_keyframes("prev_hook_kf", prev_hook_kf) or HookKeyframes()
        if isinstance(floats_strength, (int, float)) and not isinstance(floats_strength, bool):
            values = [float(floats_strength)]
        elif isinstance(floats_strength, Iterable) and not isinstance(floats_strength, (str, bytes, Mapping)):
            values = [_number("floats_strength", float(v) if hasattr(v, "item") else v) for v in floats_strength]
        else:
            raise NodeInputError("floats_strength", f"expected a number or a list of numbers, got {type(floats_strength).__name__}")
        if not values:
            raise NodeInputError("floats_strength", "is empty: give at least one strength")
        start, end = check_percent("start_percent", start_percent), check_percent("end_percent", end_percent)
        return (_add_spread(prev, values, start, end, bool(print_keyframes)),)


# -- combine --------------------------------------------------------------------------------------------
def _combine_node(count: int) -> type[Node]:
    letters = "ABCDEFGH"[:count]

    class CombineHooks(Node):
        spec = NodeSpec(
            name=f"CombineHooks{count}",
            display_name=f"Combine Hooks [{count}]",
            category=COMBINE,
            description="One group with the hooks of all given groups (each hook once).",
            inputs=tuple(In(f"hooks_{c}", HOOKS, required=False) for c in letters),
            outputs=(Out(HOOKS),),
        )

        def execute(self, ctx, **groups):
            given = [check_hooks(f"hooks_{c}", groups.get(f"hooks_{c}")) for c in letters]
            return (HookGroup.combine_all(given),)

    CombineHooks.__name__ = CombineHooks.__qualname__ = f"CombineHooks{count}"
    return CombineHooks


CombineHooks2, CombineHooks4, CombineHooks8 = (_combine_node(n) for n in (2, 4, 8))


# -- attach to conditionings ----------------------------------------------------------------------------
def _timesteps(value: Any) -> TimestepsRange | None:
    if value is None or isinstance(value, TimestepsRange):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return TimestepsRange(check_percent("timesteps", value[0]), check_percent("timesteps", value[1]))
    raise NodeInputError("timesteps", f"expected TIMESTEPS_RANGE (from Timesteps Range), got {type(value).__name__}")


def _props(name: str, cond: Any, *, hooks: HookGroup | None = None, mask: Any = None, set_cond_area: str = "default",
           strength: float = 1.0, timesteps: TimestepsRange | None = None, default: bool = False) -> list:
    """One conditioning with ComfyUI's hook properties set: hooks (added to any it has), the mask with
    its strength, default, the timestep range."""
    from latentgraph.nodes.conditioning_nodes import entries, set_values

    out = []
    for emb, extras in entries(name, cond):
        if hooks is not None:
            have = extras.get("hooks")
            extras["hooks"] = have.combined(hooks) if isinstance(have, HookGroup) else hooks
        out.append((emb, extras))
    if mask is not None:
        out = set_values(name, out, {"mask": mask if mask.ndim == 3 else mask.unsqueeze(0),
                                     "set_area_to_bounds": set_cond_area != "default", "mask_strength": strength})
    if default:
        out = set_values(name, out, {"default": True})
    if timesteps is not None:
        out = set_values(name, out, {"start_percent": timesteps.start_percent, "end_percent": timesteps.end_percent})
    return out


def _check_props(strength: Any, set_cond_area: Any, mask: Any, hooks: Any, timesteps: Any) -> dict[str, Any]:
    from latentgraph.nodes.latent_mask import check_mask

    if set_cond_area not in ("default", "mask bounds"):
        raise NodeInputError("set_cond_area", f"must be 'default' or 'mask bounds', got {set_cond_area!r}")
    return {
        "strength": _number("strength", strength),
        "set_cond_area": set_cond_area,
        "mask": None if mask is None else check_mask("mask", mask, max_ndim=3),
        "hooks": check_hooks("hooks", hooks),
        "timesteps": _timesteps(timesteps),
    }


def _props_inputs(*conds: str) -> tuple:
    return (
        *(In(c, "CONDITIONING") for c in conds),
        In("strength", "FLOAT", default=1.0, min=0.0, max=10.0, step=0.01),
        In("set_cond_area", "COMBO", choices=("default", "mask bounds"), default="default"),
        In("mask", "MASK", required=False),
        In("hooks", HOOKS, required=False),
        In("timesteps", TIMESTEPS_RANGE, required=False),
    )


class ConditioningSetProperties(Node):
    spec = NodeSpec(
        name="ConditioningSetProperties",
        display_name="Cond Set Props",
        category=COND_SINGLE,
        description="Attach hooks, a mask (with strength) and a timestep range to a conditioning.",
        inputs=_props_inputs("cond_NEW"),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, cond_NEW, strength=1.0, set_cond_area="default", mask=None, hooks=None, timesteps=None):
        props = _check_props(strength, set_cond_area, mask, hooks, timesteps)
        return (_props("cond_NEW", cond_NEW, **props),)


class ConditioningSetPropertiesAndCombine(Node):
    spec = NodeSpec(
        name="ConditioningSetPropertiesAndCombine",
        display_name="Cond Set Props Combine",
        category=COND_SINGLE,
        description="cond, plus cond_NEW with hooks, mask and timestep range attached.",
        inputs=_props_inputs("cond", "cond_NEW"),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, cond, cond_NEW, strength=1.0, set_cond_area="default", mask=None, hooks=None, timesteps=None):
        from latentgraph.nodes.conditioning_nodes import entries

        props = _check_props(strength, set_cond_area, mask, hooks, timesteps)
        return ([*entries("cond", cond), *_props("cond_NEW", cond_NEW, **props)],)


_PAIR_OUT = (Out("CONDITIONING", "positive"), Out("CONDITIONING", "negative"))


class PairConditioningSetProperties(Node):
    spec = NodeSpec(
        name="PairConditioningSetProperties",
        display_name="Cond Pair Set Props",
        category=COND_PAIR,
        description="Attach hooks, a mask (with strength) and a timestep range to a positive/negative pair.",
        inputs=_props_inputs("positive_NEW", "negative_NEW"),
        outputs=_PAIR_OUT,
    )

    def execute(self, ctx, positive_NEW, negative_NEW, strength=1.0, set_cond_area="default", mask=None, hooks=None,
                timesteps=None):
        props = _check_props(strength, set_cond_area, mask, hooks, timesteps)
        return (_props("positive_NEW", positive_NEW, **props), _props("negative_NEW", negative_NEW, **props))


class PairConditioningSetPropertiesAndCombine(Node):
    spec = NodeSpec(
        name="PairConditioningSetPropertiesAndCombine",
        display_name="Cond Pair Set Props Combine",
        category=COND_PAIR,
        description="positive/negative, plus the _NEW pair with hooks, mask and timestep range attached.",
        inputs=_props_inputs("positive", "negative", "positive_NEW", "negative_NEW"),
        outputs=_PAIR_OUT,
    )

    def execute(self, ctx, positive, negative, positive_NEW, negative_NEW, strength=1.0, set_cond_area="default",
                mask=None, hooks=None, timesteps=None):
        from latentgraph.nodes.conditioning_nodes import entries

        props = _check_props(strength, set_cond_area, mask, hooks, timesteps)
        return ([*entries("positive", positive), *_props("positive_NEW", positive_NEW, **props)],
                [*entries("negative", negative), *_props("negative_NEW", negative_NEW, **props)])


class PairConditioningCombine(Node):
    spec = NodeSpec(
        name="PairConditioningCombine",
        display_name="Cond Pair Combine",
        category=COND_PAIR,
        description="Two positive/negative pairs as one.",
        inputs=tuple(In(n, "CONDITIONING") for n in ("positive_A", "negative_A", "positive_B", "negative_B")),
        outputs=_PAIR_OUT,
    )

    def execute(self, ctx, positive_A, negative_A, positive_B, negative_B):
        from latentgraph.nodes.conditioning_nodes import entries

        return ([*entries("positive_A", positive_A), *entries("positive_B", positive_B)],
                [*entries("negative_A", negative_A), *entries("negative_B", negative_B)])


class PairConditioningSetDefaultCombine(Node):
    spec = NodeSpec(
        name="PairConditioningSetDefaultCombine",
        display_name="Cond Pair Set Default Combine",
        category=COND_PAIR,
        description="The _DEFAULT pair conditions only where the pair's other entries (masks, areas, "
        "timestep ranges) leave room at each step.",
        inputs=(
            *(In(n, "CONDITIONING") for n in ("positive", "negative", "positive_DEFAULT", "negative_DEFAULT")),
            In("hooks", HOOKS, required=False),
        ),
        outputs=_PAIR_OUT,
    )

    def execute(self, ctx, positive, negative, positive_DEFAULT, negative_DEFAULT, hooks=None):
        from latentgraph.nodes.conditioning_nodes import entries

        group = check_hooks("hooks", hooks)
        return ([*entries("positive", positive), *_props("positive_DEFAULT", positive_DEFAULT, hooks=group, default=True)],
                [*entries("negative", negative), *_props("negative_DEFAULT", negative_DEFAULT, hooks=group, default=True)])


class ConditioningSetDefaultCombine(Node):
    spec = NodeSpec(
        name="ConditioningSetDefaultCombine",
        display_name="Cond Set Default Combine",
        category=COND_SINGLE,
        description="cond_DEFAULT conditions only where cond's entries leave room at each step.",
        inputs=(In("cond", "CONDITIONING"), In("cond_DEFAULT", "CONDITIONING"), In("hooks", HOOKS, required=False)),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, cond, cond_DEFAULT, hooks=None):
        from latentgraph.nodes.conditioning_nodes import entries

        group = check_hooks("hooks", hooks)
        return ([*entries("cond", cond), *_props("cond_DEFAULT", cond_DEFAULT, hooks=group, default=True)],)


class ConditioningTimestepsRange(Node):
    spec = NodeSpec(
        name="ConditioningTimestepsRange",
        display_name="Timesteps Range",
        category="advanced/hooks",
        description="A part of the run for the Set Props nodes, and the parts before and after it.",
        inputs=(_percent_in("start_percent", 0.0), _percent_in("end_percent", 1.0)),
        outputs=(Out(TIMESTEPS_RANGE, "TIMESTEPS_RANGE"), Out(TIMESTEPS_RANGE, "BEFORE_RANGE"),
                 Out(TIMESTEPS_RANGE, "AFTER_RANGE")),
    )

    def execute(self, ctx, start_percent=0.0, end_percent=1.0):
        start, end = check_percent("start_percent", start_percent), check_percent("end_percent", end_percent)
        return (TimestepsRange(start, end), TimestepsRange(0.0, start), TimestepsRange(end, 1.0))


# -- CLIP -----------------------------------------------------------------------------------------------
class SetClipHooks(Node):
    spec = NodeSpec(
        name="SetClipHooks",
        display_name="Set CLIP Hooks",
        category="advanced/hooks/clip",
        description="The CLIP encodes with the hooks' CLIP weights; apply_to_conds also attaches the hooks "
        "to what it encodes; schedule_clip encodes once per keyframe range (else at strength 1).",
        inputs=(
            In("clip", "CLIP"),
            In("apply_to_conds", "BOOLEAN", default=True),
            In("schedule_clip", "BOOLEAN", default=False),
            In("hooks", HOOKS, required=False),
        ),
        outputs=(Out("CLIP"),),
    )

    def execute(self, ctx, clip, apply_to_conds=True, schedule_clip=False, hooks=None):
        from latentgraph.nodes.conditioning import check_clip

        clip = check_clip(clip)
        group = check_hooks("hooks", hooks)
        if group is None:
            return (clip,)
        setting = ClipHooks(group, bool(apply_to_conds), bool(schedule_clip))
        return (replace(clip, info={**clip.info, CLIP_INFO_KEY: setting}),)


NODES = [
    CreateHookLora, CreateHookLoraModelOnly, CreateHookModelAsLora, CreateHookModelAsLoraModelOnly,
    SetHookKeyframes, CreateHookKeyframe, CreateHookKeyframesInterpolated, CreateHookKeyframesFromFloats,
    CombineHooks2, CombineHooks4, CombineHooks8,
    ConditioningSetProperties, ConditioningSetPropertiesAndCombine, PairConditioningSetProperties,
    PairConditioningSetPropertiesAndCombine, ConditioningSetDefaultCombine, PairConditioningSetDefaultCombine,
    PairConditioningCombine, SetClipHooks, ConditioningTimestepsRange,
]
