"""Record how ComfyUI schedules hook keyframes (model side and CLIP side) and builds keyframe lists.

This script is latentgraph's own code (MIT). It contains no ComfyUI code: it *imports* ComfyUI
(GPL) at run time from a source checkout given with ``--comfyui`` and writes plain numbers to
``--out``/``hooks.json``:

* ``keyframes``: the keyframe lists ComfyUI's own nodes build (CreateHookKeyframe chains,
  CreateHookKeyframesInterpolated with each interpolation, CreateHookKeyframesFromFloats):
  ``[strength, start_percent, guarantee_steps]`` each;
* ``model_side``: for every list and σ sequence (the model evaluations of euler on ``normal``,
  heun on ``karras`` — every σ but the first twice — and euler at denoise 0.5), the keyframe
  strength ``HookKeyframeGroup.prepare_current_keyframe`` gives at each evaluation, after
  ``initialize_timesteps`` with the SD1 ``ModelSamplingDiscrete``;
* ``clip_side``: ``HookGroup.get_hooks_for_clip_schedule`` for each list alone and for two
  lists together: ``[[start, end], [strength per hook]]`` (a hook without a keyframe in a range
  is strength 1, what its ``strength`` property then gives).

Environment: as ``record_comfyui.py``::

    /tmp/comfy-venv/bin/python tests/reference/record_hooks.py --comfyui /tmp/comfyui-ref --out tests/data/comfyui
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record_comfyui import comfy_version, import_comfy, make_model_sampling  # noqa: E402

COMMIT = "3cd7b32f1b7e7e90395cefe7d9f9b1f89276d8ce"


def keyframe_lists(nodes) -> dict:
    one = nodes.CreateHookKeyframe()

    def chain(*frames):
        kf = None
        for strength, start in frames:
            (kf,) = one.create_hook_keyframe(strength_mult=strength, start_percent=start, prev_hook_kf=kf)
        return kf

    interp = nodes.CreateHookKeyframesInterpolated()
    floats = nodes.CreateHookKeyframesFromFloats()
    lists = {
        "off_at_half": chain((1.0, 0.0), (0.0, 0.5)),
        "on_at_third": chain((0.0, 0.0), (1.0, 0.33)),
        "single_late": chain((0.3, 0.6)),
        "same_start": chain((1.0, 0.0), (0.5, 0.4), (0.25, 0.4), (0.8, 0.7)),
        "interp_linear": interp.create_hook_keyframes(1.0, 0.0, "linear", 0.0, 1.0, 5)[0],
        "interp_ease_in": interp.create_hook_keyframes(2.0, 0.5, "ease_in", 0.1, 0.8, 7)[0],
        "interp_ease_out": interp.create_hook_keyframes(0.0, 1.0, "ease_out", 0.2, 0.9, 4)[0],
        "interp_ease_in_out": interp.create_hook_keyframes(1.0, 3.0, "ease_in_out", 0.0, 0.6, 12)[0],
        "floats": floats.create_hook_keyframes([0.2, 0.9, 0.4, 1.0], 0.25, 0.75)[0],
        "float_one": floats.create_hook_keyframes(0.7, 0.3, 0.9)[0],
    }
    # guarantee_steps > 1 has no node; built directly, as a custom node would
    C = sys.modules["comfy.hooks"]
    group = C.HookKeyframeGroup()
    for strength, start, steps in ((1.0, 0.0, 3), (0.2, 0.05, 1), (0.7, 0.1, 2), (0.1, 0.5, 1)):
        group.add(C.HookKeyframe(strength=strength, start_percent=start, guarantee_steps=steps))
    lists["guaranteed"] = group
    return lists


def as_list(group) -> list:
    return [[float(k.strength), float(k.start_percent), int(k.guarantee_steps)] for k in group.keyframes]


def evaluations(C, ms) -> dict:
    calc = C.comfy.samplers.calculate_sigmas
    normal = calc(ms, "normal", 10)
    karras = calc(ms, "karras", 8)
    half = calc(ms, "normal", 20)[10:]
    heun = [karras[0]]
    for s in karras[1:-1]:
        heun += [s, s]
    return {
        "euler_normal_10": (normal, list(normal[:-1])),
        "heun_karras_8": (karras, heun),
        "euler_denoise_half": (half, list(half[:-1])),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--comfyui", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    C = import_comfy(args.comfyui)
    import comfy.hooks
    import comfy_extras.nodes_hooks as nodes

    ms = make_model_sampling(C)

    class Model:
        model_sampling = ms

    lists = keyframe_lists(nodes)
    runs = evaluations(C, ms)
    model_side: dict = {}
    for name, group in lists.items():
        model_side[name] = {}
        for run, (sigmas, evals) in runs.items():
            g = group.clone()
            g.reset()
            g.initialize_timesteps(Model)
            out = []
            for sigma in evals:
                g.prepare_current_keyframe(curr_t=sigma.reshape(()), transformer_options={"sample_sigmas": sigmas})
                out.append(float(g.strength))
            model_side[name][run] = out

    def hook_with(group):
        hook = comfy.hooks.WeightHook()
        hook.hook_keyframe = group.clone()
        return hook

    clip_side: dict = {}
    pairs = {name: [name] for name in lists} | {"off_at_half+floats": ["off_at_half", "floats"],
                                               "same_start+interp_ease_in": ["same_start", "interp_ease_in"]}
    pairs["no_keyframes"] = []
    for label, names in pairs.items():
        hg = comfy.hooks.HookGroup()
        hooks = [hook_with(lists[n]) for n in names] or [comfy.hooks.WeightHook()]
        for h in hooks:
            hg.add(h)
        schedule = hg.get_hooks_for_clip_schedule()
        clip_side[label] = [[list(map(float, span)), [1.0 if kf is None else float(kf.strength) for _h, kf in per]]
                            for span, per in schedule]

    out = {
        "comfyui_version": comfy_version(args.comfyui),
        "comfyui_commit": COMMIT,
        "keyframes": {name: as_list(g) for name, g in lists.items()},
        "runs": {run: {"sigmas": [float(s) for s in sigmas], "evaluations": [float(s) for s in evals]}
                 for run, (sigmas, evals) in runs.items()},
        "model_side": model_side,
        "clip_side": clip_side,
    }
    with open(os.path.join(args.out, "hooks.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
