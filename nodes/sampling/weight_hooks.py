"""Scheduled weight hooks (ComfyUI's "Hooks"): LoRA-style weight changes that ride on conditionings.

A HOOKS value (:class:`HookGroup`) holds :class:`WeightHook` s — a weight source (a LoRA file, or
another checkpoint taken as a difference) with a model and a CLIP strength, and HOOK_KEYFRAMES
(:class:`HookKeyframes`) that scale the strength over the run. Conditionings carry a group under
the ``hooks`` key; at each σ the sampler evaluates every entry with its group's weights applied at
the keyframe's strength (:class:`WeightRun`), entries of different groups in separate UNet calls.
The weights go into a shallow clone of the UNet (:func:`latentgraph.nodes.lora.patched_copy`): the
base model is never changed, and a clone is rebuilt only when a group's strengths change.

Keyframes follow ComfyUI's rule: a keyframe starts at ``start_percent`` of the run (as σ, via the
model's ``percent_to_sigma``); at each new σ the current keyframe, once it has been used for its
``guarantee_steps`` evaluations, gives way to the last later keyframe whose start σ is at or above
this σ (stopping at the first one that itself guarantees steps). A keyframe starting before the
run's first σ guarantees nothing.

The CLIP side (SetClipHooks): :func:`clip_entries` encodes a prompt with the group's CLIP weights,
once, or once per keyframe range (``schedule_clip``) giving entries with ``clip_start_percent`` /
``clip_end_percent``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.nodes.components import DiffusionModel, TextEncoder

HOOKS = "HOOKS"
HOOK_KEYFRAMES = "HOOK_KEYFRAMES"
TIMESTEPS_RANGE = "TIMESTEPS_RANGE"
FLOATS = "FLOATS"

#: Where SetClipHooks keeps its setting on a CLIP (``TextEncoder.info``).
CLIP_INFO_KEY = "weight_hooks"


# -- values -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HookKeyframe:
    """From ``start_percent`` of the run on, hooks apply at ``strength`` × their own strength."""

    strength: float
    start_percent: float = 0.0
    #: Evaluations (distinct σ) this keyframe holds before a later one may take over.
    guarantee_steps: int = 1


@dataclass(frozen=True)
class HookKeyframes:
    """HOOK_KEYFRAMES: keyframes in order of ``start_percent`` (ties keep the order they were added)."""

    keyframes: tuple[HookKeyframe, ...] = ()

    def add(self, keyframe: HookKeyframe) -> HookKeyframes:
        return HookKeyframes(tuple(sorted((*self.keyframes, keyframe), key=lambda k: k.start_percent)))


class TimestepsRange(NamedTuple):
    """TIMESTEPS_RANGE: the part of the run (0 = start, 1 = end) a conditioning applies to. A
    tuple, as ComfyUI's value is, so custom nodes that index it keep working."""

    start_percent: float
    end_percent: float


class WeightSource(Protocol):
    """Where a hook's weight changes come from; changes are at strength 1, in float32."""

    name: str
    #: Changes when the weights do (file size and time): part of the hook's identity.
    fingerprint: str

    def unet_deltas(self, model: DiffusionModel) -> dict[str, Tensor]: ...

    def encoder_deltas(self, clip: TextEncoder) -> list[dict[str, Tensor]]: ...


@dataclass(frozen=True, eq=False)
class LoraWeights:
    """A LoRA file (CreateHookLora)."""

    lora: Any  # latentgraph.nodes.lora.LoraFile
    fingerprint: str

    @property
    def name(self) -> str:
        return self.lora.name

    def unet_deltas(self, model: DiffusionModel) -> dict[str, Tensor]:
        return self._deltas(model.unet, ()).unet

    def encoder_deltas(self, clip: TextEncoder) -> list[dict[str, Tensor]]:
        return self._deltas(None, clip.encoders).encoders

    def _deltas(self, unet: Any, encoders: Sequence[Any]) -> Any:
        from latentgraph.nodes.lora import lora_deltas

        found = lora_deltas(self.lora, unet, encoders)
        if found.wrong:
            raise ValueError(f"{self.name} does not fit this model: {len(found.wrong)} layers have other shapes "
                             f"(e.g. {found.wrong[0]}); is it a LoRA for another architecture?")
        return found


@dataclass(frozen=True, eq=False)
class CheckpointWeights:
    """Another checkpoint taken as the difference to the model (CreateHookModelAsLora): at strength 1
    a hooked entry is evaluated with that checkpoint's weights."""

    name: str
    fingerprint: str
    model: DiffusionModel | None
    clip: TextEncoder | None

    def unet_deltas(self, model: DiffusionModel) -> dict[str, Tensor]:
        if self.model is None:
            return {}
        return _differences(self.model.unet, model.unet, self.name)

    def encoder_deltas(self, clip: TextEncoder) -> list[dict[str, Tensor]]:
        if self.clip is None:
            return [{} for _ in clip.encoders]
        if len(self.clip.encoders) != len(clip.encoders):
            raise ValueError(f"{self.name} has {len(self.clip.encoders)} text encoders, the CLIP has {len(clip.encoders)}")
        return [_differences(target, base, self.name) for target, base in zip(self.clip.encoders, clip.encoders)]


def _differences(target: torch.nn.Module, base: torch.nn.Module, name: str) -> dict[str, Tensor]:
    """``target − base`` per floating-point parameter of the same name and shape (others are left)."""
    theirs = dict(target.named_parameters())
    out: dict[str, Tensor] = {}
    matched = 0
    with torch.no_grad():
        for path, p in base.named_parameters():
            t = theirs.get(path)
            if t is None or t.shape != p.shape or not p.is_floating_point():
                continue
            matched += 1
            t = t.to(p.device)
            if torch.equal(t, p):
                continue
            out[path] = t.float() - p.float()
    if not matched:
        raise ValueError(f"no weights of {name} match this model's layers; is it a checkpoint of another architecture?")
    return out


@dataclass(frozen=True, eq=False)
class WeightHook:
    """One weight source with its strengths and keyframes. Two hooks are the same hook when they
    come from the same creation (``uid``), whatever keyframes were set on them since (ComfyUI's rule:
    a group never holds one hook twice)."""

    source: WeightSource
    strength_model: float
    strength_clip: float
    uid: str
    keyframes: HookKeyframes = HookKeyframes()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WeightHook) and other.uid == self.uid

    def __hash__(self) -> int:
        return hash(self.uid)

    @property
    def key(self) -> tuple[str, HookKeyframes]:
        """What makes two hooks evaluate alike (the identity and the schedule)."""
        return (self.uid, self.keyframes)


def hook_uid(*parts: Any) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class HookGroup:
    """HOOKS: the weight hooks that apply together to the conditionings they are attached to."""

    hooks: tuple[WeightHook, ...] = ()

    def __len__(self) -> int:
        return len(self.hooks)

    def combined(self, other: HookGroup | None) -> HookGroup:
        """This group's hooks, then ``other``'s that are not in it."""
        if other is None:
            return self
        out = list(self.hooks)
        out += [h for h in other.hooks if h not in out]
        return HookGroup(tuple(out))

    def with_keyframes(self, keyframes: HookKeyframes | None) -> HookGroup:
        kf = keyframes if keyframes is not None else HookKeyframes()
        return HookGroup(tuple(replace(h, keyframes=kf) for h in self.hooks))

    @property
    def key(self) -> tuple:
        return tuple(h.key for h in self.hooks)

    @staticmethod
    def combine_all(groups: Iterable[HookGroup | None]) -> HookGroup | None:
        """ComfyUI's CombineHooks: None when none is given, the one group when one is."""
        present = [g for g in groups if g is not None]
        if not present:
            return None
        out = present[0]
        for g in present[1:]:
            out = out.combined(g)
        return out


def check_hooks(name: str, value: Any, optional: bool = True) -> HookGroup | None:
    if value is None and optional:
        return None
    if not isinstance(value, HookGroup):
        raise NodeInputError(name, f"expected HOOKS (from a Create Hook node), got {type(value).__name__}")
    return value


def check_keyframes(name: str, value: Any) -> HookKeyframes | None:
    if value is None:
        return None
    if not isinstance(value, HookKeyframes):
        raise NodeInputError(name, f"expected HOOK_KEYFRAMES (from a Create Hook Keyframe node), got {type(value).__name__}")
    return value


def check_percent(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise NodeInputError(name, f"must be a fraction of the run between 0.0 and 1.0, got {value!r}")
    return float(value)


def interpolated(start: float, end: float, count: int, method: str) -> list[float]:
    """``count`` values from ``start`` to ``end``: linear, or eased (quadratic in/out, cosine in-out)."""
    index = torch.linspace(0.0, 1.0, count)  # float32, as ComfyUI computes them
    if method == "linear":
        return [float(v) for v in torch.linspace(start, end, count)]
    if method == "ease_in":
        shape = index ** 2
    elif method == "ease_out":
        shape = 1 - (1 - index) ** 2
    elif method == "ease_in_out":
        shape = (1 - torch.cos(index * math.pi)) / 2
    else:
        raise ValueError(f"unknown interpolation {method!r}")
    return [float(v) for v in (end - start) * shape + start]


INTERPOLATIONS = ("linear", "ease_in", "ease_out", "ease_in_out")


# -- the model side: one sampling run ----------------------------------------------------------------------
class KeyframeCursor:
    """Which keyframe of one hook applies at each σ of a run (see the module docstring)."""

    def __init__(self, keyframes: HookKeyframes, percent_to_sigma: Callable[[float], float]):
        self.frames = keyframes.keyframes
        self.starts = [percent_to_sigma(k.start_percent) for k in self.frames]
        self.index = 0
        self.used = 0
        self.last: float | None = None
        self.max_sigma: float | None = None

    def _guaranteed(self, i: int) -> int:
        assert self.max_sigma is not None
        return 0 if self.starts[i] > self.max_sigma else self.frames[i].guarantee_steps

    def strength(self, sigma: float) -> float:
        if not self.frames:
            return 1.0
        if sigma != self.last:
            # the run's first σ is its largest (ComfyUI reads max(sample_sigmas))
            self.max_sigma = sigma if self.max_sigma is None else max(self.max_sigma, sigma)
            if self.used >= self._guaranteed(self.index):
                for i in range(self.index + 1, len(self.frames)):
                    if self.starts[i] < sigma:
                        break
                    self.index, self.used = i, 0
                    if self._guaranteed(i) > 0:
                        break
            self.used += 1
            self.last = sigma
        return self.frames[self.index].strength


@dataclass
class WeightRun:
    """The weight hooks of one sampling run: keyframe positions and the patched UNets in use.

    One patched clone per hook group is kept, rebuilt when the group's strengths change (a
    keyframe switch), so a constant-strength run patches once.
    """

    model: DiffusionModel
    cursors: dict[tuple, KeyframeCursor] = field(default_factory=dict)
    deltas: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    patched: dict[tuple, tuple[tuple[float, ...], DiffusionModel]] = field(default_factory=dict)

    def strengths(self, group: HookGroup, sigma: float) -> tuple[float, ...]:
        """Each hook's model strength at ``sigma`` (moves the keyframes on to this σ)."""
        out = []
        for hook in group.hooks:
            cursor = self.cursors.get(hook.key)
            if cursor is None:
                cursor = self.cursors[hook.key] = KeyframeCursor(hook.keyframes, self.model.model_sampling.percent_to_sigma)
            out.append(hook.strength_model * cursor.strength(sigma))
        return tuple(out)

    def model_for(self, group: HookGroup, strengths: tuple[float, ...]) -> DiffusionModel:
        from latentgraph.nodes.lora import patched_copy

        cached = self.patched.get(group.key)
        if cached is not None and cached[0] == strengths:
            return cached[1]
        total: dict[str, Tensor] = {}
        for hook, s in zip(group.hooks, strengths):
            if s == 0:
                continue
            for path, delta in self._deltas(hook).items():
                change = delta * s
                total[path] = total[path] + change if path in total else change
        model = replace(self.model, unet=patched_copy(self.model.unet, total, 1.0)) if total else self.model
        self.patched[group.key] = (strengths, model)
        return model

    def _deltas(self, hook: WeightHook) -> dict[str, Tensor]:
        found = self.deltas.get(hook.uid)
        if found is None:
            try:
                found = hook.source.unet_deltas(self.model)
            except ValueError as exc:
                raise NodeInputError("model", f"hook {hook.source.name}: {exc}") from None
            self.deltas[hook.uid] = found
        return found


def cond_hooks(name: str, extras: Mapping[str, Any]) -> HookGroup | None:
    """The hook group a conditioning entry carries (an empty group is none)."""
    value = extras.get("hooks")
    if value is None:
        return None
    if not isinstance(value, HookGroup):
        raise NodeInputError(name, f"its 'hooks' is a {type(value).__name__}, not HOOKS from a Create Hook node")
    return value if value.hooks else None


# -- the CLIP side -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipHooks:
    """SetClipHooks' setting on a CLIP."""

    hooks: HookGroup
    apply_to_conds: bool
    schedule_clip: bool


def clip_hooks(clip: TextEncoder) -> ClipHooks | None:
    return clip.info.get(CLIP_INFO_KEY)


def clip_schedule(group: HookGroup) -> list[tuple[tuple[float, float], list[float]]]:
    """``[((start, end), keyframe strength per hook)]``: the parts of the run over which every
    hook's keyframe strength is constant (ComfyUI's CLIP schedule; before a hook's first keyframe
    its strength is 1)."""
    per_hook: list[list[tuple[tuple[float, float], float]]] = []
    for hook in group.hooks:
        frames = hook.keyframes.keyframes
        if not frames:
            per_hook.append([((0.0, 1.0), 1.0)])
            continue
        spans = []
        prev = frames[0]
        for kf in frames:
            if kf.start_percent > prev.start_percent and not math.isclose(kf.strength, prev.strength):
                spans.append(((prev.start_percent, kf.start_percent), prev.strength))
                prev = kf
            elif kf.start_percent == prev.start_percent:
                prev = kf
        if not math.isclose(prev.start_percent, 1.0):
            spans.append(((prev.start_percent, 1.0), prev.strength))
        per_hook.append(spans)
    bounds = sorted(set(itertools.chain.from_iterable(r for spans in per_hook for r, _ in spans)) | {0.0})
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        strengths = []
        for spans in per_hook:
            strengths.append(next((s for (a, b), s in spans if a < hi and b > lo), 1.0))
        out.append(((lo, hi), strengths))
    return out


def patched_clip(clip: TextEncoder, group: HookGroup, keyframe_strengths: Sequence[float]) -> TextEncoder:
    """A CLIP whose encoders carry the group's CLIP weights at ``strength_clip`` × keyframe strength."""
    from latentgraph.nodes.lora import patched_copy

    totals: list[dict[str, Tensor]] = [{} for _ in clip.encoders]
    for hook, kf in zip(group.hooks, keyframe_strengths):
        s = hook.strength_clip * kf
        if s == 0:
            continue
        try:
            per_encoder = hook.source.encoder_deltas(clip)
        except ValueError as exc:
            raise NodeInputError("clip", f"hook {hook.source.name}: {exc}") from None
        for total, deltas in zip(totals, per_encoder):
            for path, delta in deltas.items():
                total[path] = total[path] + delta * s if path in total else delta * s
    encoders = [patched_copy(e, t, 1.0) if t else e for e, t in zip(clip.encoders, totals)]
    info = {k: v for k, v in clip.info.items() if k != CLIP_INFO_KEY}
    return replace(clip, encoders=encoders, info=info)


def clip_entries(clip: TextEncoder, encode: Callable[[TextEncoder], tuple[Tensor, Tensor]],
                 extras: Mapping[str, Any]) -> list[tuple[Tensor, dict[str, Any]]]:
    """A prompt's CONDITIONING entries from ``encode(clip)`` → (embeddings, pooled), honouring
    SetClipHooks: encoded with the hooks' CLIP weights (per keyframe range with ``schedule_clip``),
    and the hooks attached to the entries with ``apply_to_conds``."""
    setting = clip_hooks(clip)
    if setting is None:
        emb, pooled = encode(clip)
        return [(emb, {"pooled_output": pooled, **extras})]
    group = setting.hooks
    if setting.schedule_clip:
        schedule = clip_schedule(group)
    else:
        schedule = [(None, [1.0] * len(group.hooks))]
    out = []
    for span, strengths in schedule:
        emb, pooled = encode(patched_clip(clip, group, strengths))
        entry = {"pooled_output": pooled}
        if span is not None:
            entry.update(clip_start_percent=span[0], clip_end_percent=span[1])
        entry.update(extras)
        if setting.apply_to_conds:
            entry["hooks"] = group
        out.append((emb, entry))
    return out
