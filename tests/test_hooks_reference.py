"""Hook keyframes against numbers recorded from ComfyUI 0.8.0 (tests/reference/record_hooks.py):
the keyframe lists its nodes build, the strength its keyframe groups give at each model evaluation
of three runs, and its CLIP schedule ranges."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from latentgraph.nodes.sampling.hook_nodes import (
    CreateHookKeyframe,
    CreateHookKeyframesFromFloats,
    CreateHookKeyframesInterpolated,
)
from latentgraph.nodes.sampling.model_sampling import ModelSampling
from latentgraph.nodes.sampling.weight_hooks import (
    HookGroup,
    HookKeyframe,
    HookKeyframes,
    KeyframeCursor,
    WeightHook,
    clip_schedule,
)

DATA = json.loads((Path(__file__).parent / "data" / "comfyui" / "hooks.json").read_text())
SD1 = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000}


def chain(*frames):
    kf = None
    for strength, start in frames:
        (kf,) = CreateHookKeyframe().execute(None, strength_mult=strength, start_percent=start, prev_hook_kf=kf)
    return kf


def our_lists() -> dict[str, HookKeyframes]:
    interp = CreateHookKeyframesInterpolated().execute
    floats = CreateHookKeyframesFromFloats().execute
    guaranteed = HookKeyframes()
    for strength, start, steps in ((1.0, 0.0, 3), (0.2, 0.05, 1), (0.7, 0.1, 2), (0.1, 0.5, 1)):
        guaranteed = guaranteed.add(HookKeyframe(strength, start, steps))
    return {
        "off_at_half": chain((1.0, 0.0), (0.0, 0.5)),
        "on_at_third": chain((0.0, 0.0), (1.0, 0.33)),
        "single_late": chain((0.3, 0.6)),
        "same_start": chain((1.0, 0.0), (0.5, 0.4), (0.25, 0.4), (0.8, 0.7)),
        "interp_linear": interp(None, 1.0, 0.0, "linear", 0.0, 1.0, 5)[0],
        "interp_ease_in": interp(None, 2.0, 0.5, "ease_in", 0.1, 0.8, 7)[0],
        "interp_ease_out": interp(None, 0.0, 1.0, "ease_out", 0.2, 0.9, 4)[0],
        "interp_ease_in_out": interp(None, 1.0, 3.0, "ease_in_out", 0.0, 0.6, 12)[0],
        "floats": floats(None, [0.2, 0.9, 0.4, 1.0], 0.25, 0.75)[0],
        "float_one": floats(None, 0.7, 0.3, 0.9)[0],
        "guaranteed": guaranteed,
    }


LISTS = our_lists()


def test_every_recorded_list_is_replayed():
    assert set(LISTS) == set(DATA["keyframes"]) and DATA["comfyui_version"] == "0.8.0"


@pytest.mark.parametrize("name", sorted(DATA["keyframes"]))
def test_keyframe_nodes_build_comfyuis_lists(name):
    ours = [[k.strength, k.start_percent, k.guarantee_steps] for k in LISTS[name].keyframes]
    theirs = DATA["keyframes"][name]
    assert [k[2] for k in ours] == [k[2] for k in theirs]
    for a, b in zip(ours, theirs):  # float32 arithmetic on both sides: equal up to float32 rounding
        assert a[:2] == pytest.approx(b[:2], rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("name", sorted(DATA["model_side"]))
@pytest.mark.parametrize("run", sorted(DATA["runs"]))
def test_keyframe_strength_at_every_evaluation_matches_comfyui(name, run):
    ms = ModelSampling.from_config(SD1)
    # ComfyUI's own list, so that only the cursor is under test here
    frames = HookKeyframes(tuple(HookKeyframe(s, p, g) for s, p, g in DATA["keyframes"][name]))
    cursor = KeyframeCursor(frames, ms.percent_to_sigma)
    ours = [cursor.strength(s) for s in DATA["runs"][run]["evaluations"]]
    assert ours == pytest.approx(DATA["model_side"][name][run], rel=1e-6)


def _hook(name: str, frames: HookKeyframes) -> WeightHook:
    return WeightHook(source=None, strength_model=1.0, strength_clip=1.0, uid=name, keyframes=frames)  # type: ignore[arg-type]


@pytest.mark.parametrize("label", sorted(DATA["clip_side"]))
def test_clip_schedule_matches_comfyui(label):
    names = [] if label == "no_keyframes" else label.split("+")
    lists = {n: HookKeyframes(tuple(HookKeyframe(s, p, g) for s, p, g in DATA["keyframes"][n])) for n in names}
    group = HookGroup(tuple(_hook(n, lists[n]) for n in names) or (_hook("none", HookKeyframes()),))
    ours = [[list(span), strengths] for span, strengths in clip_schedule(group)]
    theirs = DATA["clip_side"][label]
    assert len(ours) == len(theirs)
    for (span, strengths), (their_span, their_strengths) in zip(ours, theirs):
        assert span == pytest.approx(their_span, rel=1e-9) and strengths == pytest.approx(their_strengths, rel=1e-9)
        assert not any(math.isnan(v) for v in strengths)
