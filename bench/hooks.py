"""What do scheduled weight hooks cost compared with a LoRA loaded into the model?

KSampler runs (euler, normal schedule, cfg 6) on the tiny SD1 checkpoint with its shipped LoRA,
called as nodes (no engine), ``--repeats`` runs each, interleaved:

* ``base``            — no LoRA;
* ``lora_loader``     — LoraLoaderModelOnly then KSampler (the patch is timed with the run);
* ``hook_both``       — the LoRA as a hook on positive and negative (one patched clone per run);
* ``hook_keyframes``  — the same hook switched off at 50 % (a second, unpatched group from then on);
* ``hook_interp``     — the same hook with 5 interpolated keyframes (a clone per keyframe);
* ``hook_positive``   — the hook on the positive only: two groups, so two UNet calls per step
                        instead of one batched call (ComfyUI does the same).

The tiny UNet makes a step cheap, so patching weighs more here than with a real model: a worst
case. The point is that hooks re-patch only when a keyframe changes, never per step: the
``hook_both`` / ``lora_loader`` ratio should stay near 1. Prints a table and one JSON line.

    python bench/hooks.py [--steps 20] [--repeats 5] [--size 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

LORA = "tiny-sd1-lora.safetensors"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=64, help="picture size in pixels")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from sd_helpers import SHIPPED_TINY, Env

    env = Env(Path(tempfile.mkdtemp(prefix="bench-hooks-")))
    model, clip, _vae = env.run("LoadCheckpoint", ckpt_name=SHIPPED_TINY)
    (pos,) = env.run("CLIPTextEncode", clip=clip, text="a red circle on a blue background")
    (neg,) = env.run("CLIPTextEncode", clip=clip, text="")
    (hooks,) = env.run("CreateHookLoraModelOnly", lora_name=LORA, strength_model=0.8)
    (kf,) = env.run("CreateHookKeyframe", strength_mult=1.0, start_percent=0.0)
    (kf,) = env.run("CreateHookKeyframe", strength_mult=0.0, start_percent=0.5, prev_hook_kf=kf)
    (keyed,) = env.run("SetHookKeyframes", hooks=hooks, hook_kf=kf)
    (kf5,) = env.run("CreateHookKeyframesInterpolated", strength_start=1.0, strength_end=0.0, interpolation="linear",
                     start_percent=0.0, end_percent=1.0, keyframes_count=5, print_keyframes=False)
    (interp,) = env.run("SetHookKeyframes", hooks=hooks, hook_kf=kf5)

    def pair(group):
        return env.run("PairConditioningSetProperties", positive_NEW=pos, negative_NEW=neg, strength=1.0,
                       set_cond_area="default", hooks=group)

    (hpos,) = env.run("ConditioningSetProperties", cond_NEW=pos, strength=1.0, set_cond_area="default", hooks=hooks)
    latent = {"samples": torch.zeros(1, 4, args.size // 2, args.size // 2)}

    def ksampler(m, p, n):
        env.run("KSampler", model=m, seed=1, steps=args.steps, cfg=6.0, sampler_name="euler", scheduler="normal",
                positive=p, negative=n, latent_image=latent, denoise=1.0)

    def lora_loader():
        (m,) = env.run("LoraLoaderModelOnly", model=model, lora_name=LORA, strength_model=0.8)
        ksampler(m, pos, neg)

    runners = {
        "base": lambda: ksampler(model, pos, neg),
        "lora_loader": lora_loader,
        "hook_both": lambda: ksampler(model, *pair(hooks)),
        "hook_keyframes": lambda: ksampler(model, *pair(keyed)),
        "hook_interp": lambda: ksampler(model, *pair(interp)),
        "hook_positive": lambda: ksampler(model, hpos, neg),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():  # warm-up
        run()
    for _ in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)

    ref = statistics.median(times["lora_loader"])
    print(f"{args.steps} steps, {args.size}×{args.size}, {args.repeats} repeats, {args.threads} thread(s)")
    print(f"{'runner':<16}{'median ms':>10}{'min ms':>9}{'max ms':>9}{'÷ lora_loader':>15}")
    summary = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        summary[name] = {"median_ms": round(med * 1000, 2), "ratio_to_lora_loader": round(med / ref, 3)}
        print(f"{name:<16}{med * 1000:>10.1f}{min(ts) * 1000:>9.1f}{max(ts) * 1000:>9.1f}{med / ref:>15.2f}")
    print(json.dumps({"bench": "hooks", "steps": args.steps, "size": args.size, "repeats": args.repeats, "results": summary}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
