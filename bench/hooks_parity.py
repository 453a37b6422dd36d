"""Hooks parity with ComfyUI: the same PNG from the same hooked workflows on a full-size SD1.5 checkpoint.

The seeded random SD1.5-layout checkpoint of ``bench/comfyui_parity.py`` (written once, ~2.1 GB)
and a seeded random kohya LoRA for it (rank 4 on every UNet attention projection and CLIP
self-attention projection, diffusers names, written once) run through five workflows on both
sides — ComfyUI in a subprocess (``bench/hooks_comfyui_driver.py``, its own nodes incl.
``comfy_extras/nodes_hooks.py``), latentgraph on its Engine:

* ``plain``          — no hooks (the base parity, for scale);
* ``hook_both``      — CreateHookLoraModelOnly 0.8 on positive and negative (PairConditioningSetProperties);
* ``hook_keyframes`` — the same hook switched off at 50 % (CreateHookKeyframe ×2, SetHookKeyframes);
* ``hook_positive``  — the hook on the positive only (ConditioningSetProperties);
* ``clip_scheduled`` — CreateHookLora 0.8/0.8 with the keyframes on SetClipHooks (apply_to_conds,
  schedule_clip): CLIP encodings per keyframe range, hooks on both prompts.

Target: every hooked case as close to ComfyUI as the plain one (PSNR ≥ 40 dB), and each feature
(hooks, keyframes, positive-only, CLIP schedule) moving the final latent more than 100× the gap
between the two implementations (its effect: the distance to the case without that feature).
The random checkpoint's prompt barely moves its pictures (cross-attention values are scaled
down), so the CLIP-side effect shows in the latents, not in the 8-bit PNGs. Prints a table and
one JSON line.

    python bench/hooks_parity.py --comfyui /tmp/comfyui-ref --python /tmp/comfy-venv/bin/python [--size 64] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from comfyui_parity import DEFAULT_CKPT, NEGATIVE, PROMPT, SD1_SCALE, ensure_checkpoint, psnr  # noqa: E402

LORA_NAME = "hooks-sd15-random.safetensors"
#: The case each hooked case adds one feature to: their latents' distance is that feature's effect.
CONTRAST = {"hook_both": "plain", "hook_keyframes": "hook_both", "hook_positive": "hook_both",
            "clip_scheduled": "hook_keyframes"}


def ensure_lora(path: Path, seed: int = 0) -> Path:
    """A kohya LoRA for the SD1.5 layout: rank 4, alpha 4, on attention projections."""
    import transformers
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from latentgraph.nodes.model_configs import load_shipped_config

    if path.is_file():
        return path
    cfg = load_shipped_config("sd1")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(cfg.unet)
        text = transformers.CLIPTextModel(transformers.CLIPTextConfig(**cfg.text_encoders[0].config))
    layers = [("lora_unet_" + n.replace(".", "_"), m) for n, m in unet.named_modules()
              if n.endswith(("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                             "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0"))]
    layers += [("lora_te_" + ("" if n.startswith("text_model.") else "text_model.") .replace(".", "_") + n.replace(".", "_"), m)
               for n, m in text.named_modules()
               if n.endswith(("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"))]
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    rank = 4
    for key, layer in sorted(layers, key=lambda kv: kv[0]):
        tensors[f"{key}.lora_down.weight"] = torch.randn(rank, layer.in_features, generator=g) / math.sqrt(layer.in_features)
        tensors[f"{key}.lora_up.weight"] = torch.randn(layer.out_features, rank, generator=g) * (0.3 / math.sqrt(rank))
        tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() if v.ndim else v for k, v in tensors.items()}, str(path))
    return path


def workflows(ckpt: str, size: int, steps: int, cfg: float, seed: int) -> list[dict]:
    def base(pos="pos", neg="neg", clip=("ckpt", 1)):
        return {
            "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
            "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": list(clip)}},
            "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": list(clip)}},
            "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
            "sample": {"class_type": "KSampler", "inputs": {
                "model": ["ckpt", 0], "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler",
                "scheduler": "normal", "positive": [pos[0], pos[1]] if isinstance(pos, tuple) else [pos, 0],
                "negative": [neg[0], neg[1]] if isinstance(neg, tuple) else [neg, 0], "latent_image": ["empty", 0],
                "denoise": 1.0}},
            "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
            "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "hooks"}},
        }

    hook = {"class_type": "CreateHookLoraModelOnly", "inputs": {"lora_name": LORA_NAME, "strength_model": 0.8}}
    keyframes = {
        "kf_on": {"class_type": "CreateHookKeyframe", "inputs": {"strength_mult": 1.0, "start_percent": 0.0}},
        "kf_off": {"class_type": "CreateHookKeyframe",
                   "inputs": {"strength_mult": 0.0, "start_percent": 0.5, "prev_hook_kf": ["kf_on", 0]}},
    }

    def pair(hooks):
        return {"class_type": "PairConditioningSetProperties", "inputs": {
            "positive_NEW": ["pos", 0], "negative_NEW": ["neg", 0], "strength": 1.0, "set_cond_area": "default",
            "hooks": [hooks, 0]}}

    cases = [{"id": "plain", "workflow": base()}]
    wf = base(pos=("pair", 0), neg=("pair", 1))
    wf.update(hook=hook, pair=pair("hook"))
    cases.append({"id": "hook_both", "workflow": wf})
    wf = base(pos=("pair", 0), neg=("pair", 1))
    wf.update(hook=hook, **keyframes, keyed={"class_type": "SetHookKeyframes",
                                             "inputs": {"hooks": ["hook", 0], "hook_kf": ["kf_off", 0]}},
              pair=pair("keyed"))
    cases.append({"id": "hook_keyframes", "workflow": wf})
    wf = base(pos="hpos")
    wf.update(hook=hook, hpos={"class_type": "ConditioningSetProperties", "inputs": {
        "cond_NEW": ["pos", 0], "strength": 1.0, "set_cond_area": "default", "hooks": ["hook", 0]}})
    cases.append({"id": "hook_positive", "workflow": wf})
    wf = base(clip=("hclip", 0))
    wf.update(**keyframes,
              hook={"class_type": "CreateHookLora",
                    "inputs": {"lora_name": LORA_NAME, "strength_model": 0.8, "strength_clip": 0.8}},
              keyed={"class_type": "SetHookKeyframes", "inputs": {"hooks": ["hook", 0], "hook_kf": ["kf_off", 0]}},
              hclip={"class_type": "SetClipHooks", "inputs": {"clip": ["ckpt", 1], "apply_to_conds": True,
                                                              "schedule_clip": True, "hooks": ["keyed", 0]}})
    cases.append({"id": "clip_scheduled", "workflow": wf})
    return cases


def run_latentgraph(cases: list[dict], models: Path, out: Path) -> dict:
    from latentgraph import Settings
    from latentgraph.engine import Engine

    from dataclasses import replace

    from safetensors.torch import save_file

    settings = Settings.from_env(models.parent, output_dir=out / "output", environ={}, device="cpu")
    engine = Engine.create(settings, entry_points=False)
    final: dict[str, torch.Tensor] = {}

    def traced(definition):  # the sampler's result in the model's latent space
        def function(*args, **kw):
            final["x"] = definition.function(*args, **kw)
            return final["x"]
        return replace(definition, function=function)

    samplers = engine.registry.samplers
    samplers["euler"] = traced(samplers["euler"])
    timings = {}
    for case in cases:
        t0 = time.perf_counter()
        result = engine.run(case["workflow"])
        save_file({"final": final.pop("x").float().contiguous()}, str(out / f"{case['id']}.safetensors"))
        timings[case["id"]] = time.perf_counter() - t0
        if result.status != "success":
            raise RuntimeError(f"latentgraph {case['id']}: {result.failure}")
        saved = result.outputs["save"]["images"][0]
        png = settings.output_dir / saved["subfolder"] / saved["filename"]
        (out / f"{case['id']}.png").write_bytes(png.read_bytes())
        print(f"latentgraph {case['id']}: {timings[case['id']]:.1f}s", file=sys.stderr, flush=True)
    return timings


def pixels(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", required=True)
    parser.add_argument("--python", required=True)
    parser.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    if args.ckpt.parent.name != "checkpoints":
        raise SystemExit("--ckpt must be in a folder named 'checkpoints'")
    t_start = time.perf_counter()
    models = args.ckpt.parent.parent
    ensure_checkpoint(args.ckpt)
    ensure_lora(models / "loras" / LORA_NAME)
    cases = workflows(args.ckpt.name, args.size, args.steps, args.cfg, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        theirs, ours = root / "comfyui", root / "latentgraph"
        for d in (theirs, ours):
            d.mkdir(parents=True, exist_ok=True)
        (root / "cases.json").write_text(json.dumps({"cases": cases}, indent=1))
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        driver = subprocess.Popen([args.python, str(HERE / "hooks_comfyui_driver.py"), "--comfyui", args.comfyui,
                                   "--models", str(models), "--cases", str(root / "cases.json"), "--out", str(theirs)],
                                  env=env)
        torch.set_num_threads(args.threads)
        try:
            ours_s = run_latentgraph(cases, models, ours)
        finally:
            if driver.wait() != 0:
                raise SystemExit(f"the ComfyUI driver failed (exit {driver.returncode})")
        info = json.loads((theirs / "comfyui.json").read_text())
        from safetensors.torch import load_file

        rows = []
        plain_ours = pixels(ours / "plain.png")
        z_ours = {c["id"]: load_file(str(ours / f"{c['id']}.safetensors"))["final"] for c in cases}
        z_theirs = {c["id"]: load_file(str(theirs / f"{c['id']}.safetensors"))["samples"] * SD1_SCALE for c in cases}
        for case in cases:
            a, b = pixels(ours / f"{case['id']}.png"), pixels(theirs / f"{case['id']}.png")
            contrast = CONTRAST.get(case["id"])
            rows.append({"case": case["id"], "psnr_db": round(psnr(a, b), 2),
                         "psnr_vs_plain_db": round(psnr(a, plain_ours), 2),
                         "latent_max_abs": float((z_ours[case["id"]] - z_theirs[case["id"]]).abs().max()),
                         "contrast": contrast,
                         "effect_max_abs": (float((z_ours[case["id"]] - z_ours[contrast]).abs().max())
                                            if contrast else None),
                         "seconds_ours": round(ours_s[case["id"]], 1),
                         "seconds_comfyui": round(info["timings"][case["id"]], 1)})
    print(f"ComfyUI {info['version']} vs latentgraph, hooks on a SD1.5-size random checkpoint, {args.size}x{args.size}, "
          f"{args.steps} steps euler/normal, cfg {args.cfg}, seed {args.seed}")
    print(f"{'case':<16}{'PSNR dB':>9}{'vs plain dB':>13}{'max|Δz| vs ComfyUI':>20}{'effect max|Δz| (vs)':>28}"
          f"{'ours s':>8}{'ComfyUI s':>11}")
    for r in rows:
        effect = "-" if r["contrast"] is None else f"{r['effect_max_abs']:.2e} ({r['contrast']})"
        print(f"{r['case']:<16}{r['psnr_db']:>9.2f}{r['psnr_vs_plain_db']:>13.2f}{r['latent_max_abs']:>20.2e}{effect:>28}"
              f"{r['seconds_ours']:>8.1f}{r['seconds_comfyui']:>11.1f}")
    worst = min(r["psnr_db"] for r in rows)
    # each feature must move the latent far more than the two implementations differ
    separated = all(r["effect_max_abs"] is None or r["effect_max_abs"] > 100 * r["latent_max_abs"] for r in rows)
    print(f"worst {worst:.2f} dB; every hook effect > 100× the ComfyUI gap: {separated}; "
          f"total {time.perf_counter() - t_start:.0f}s")
    print(json.dumps({"bench": "hooks_parity", "comfyui": info["version"], "size": args.size, "steps": args.steps,
                      "worst_psnr_db": worst, "effects_separated": separated, "rows": rows}))
    return 0 if worst >= 40 and separated else 1


if __name__ == "__main__":
    sys.exit(main())
