"""Full-size parity with ComfyUI: the same PNG from the same SD1.5-architecture checkpoint (issue 11).

A full-size SD1.5-layout checkpoint with seeded random weights (UNet 320/640/1280/1280, CLIP-L 12
layers × 768, VAE 128/256/512/512; fp16, ~2.1 GB, no download) is written once to ``--ckpt``.
ComfyUI runs in a subprocess with ``--python`` (``bench/comfyui_driver.py`` imports it from
``--comfyui``: CheckpointLoaderSimple → CLIPTextEncode ×2 → EmptyLatentImage → KSampler →
VAEDecode → SaveImage's 8-bit conversion), latentgraph runs the same workflow in-process on its
Engine (LoadCheckpoint / CLIPTextEncode / EmptyLatentImage / KSampler / VAEDecode / SaveImage).
Cases: every sampler with the ``normal`` schedule and ``euler`` with every schedule. Both sides
record each step's x and x0 estimate, so a gap is located (initial noise, first step, which step).

Target: PSNR ≥ 40 dB for every case. Defaults (64×64, 4 steps, cfg 5) keep the 52 cases at 25–30 min
on a shared 2-core CPU: a full-size UNet call costs about the same at any small size (its 3.4 GB of
float32 weights are read each time). Results: docs/sampling.md, "Full-size parity with ComfyUI".
Run: ``python bench/comfyui_parity.py --comfyui /tmp/comfyui-ref --python /tmp/comfy-venv/bin/python
[--size 64] [--steps 4] [--out DIR]``; prints a table and one JSON line.
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
DEFAULT_CKPT = Path(tempfile.gettempdir()) / "latentgraph-bench" / "models" / "checkpoints" / "sd15-random-seed0.safetensors"
PROMPT = "a photograph of an astronaut riding a horse on the moon, detailed, sharp focus"
NEGATIVE = "blurry, low quality"


# -- the checkpoint ---------------------------------------------------------------------------------

#: Gains on the default N(0, 1/fan_in) init that keep the random networks moderate, closer to a
#: trained model: ε̂ with a standard deviation near 1 (UNet output conv ×2), the prompt changing ε̂
#: by about a fifth of that (cross-attention values ×0.1; at ×1 cond and uncond ε̂ are nearly
#: unrelated and cfg multiplies noise), decoded pixels mostly inside [-1, 1] (VAE output conv
#: ×0.6) so the PNG is not saturated and measures the whole picture. Matched by key suffix.
GAINS = {
    ".out.2.weight": 2.0,  # model.diffusion_model.out.2: the UNet's output conv
    ".attn2.to_v.weight": 0.1,
    "first_stage_model.decoder.conv_out.weight": 0.6,
}


def gain(key: str) -> float:
    return math.prod(g for suffix, g in GAINS.items() if key.endswith(suffix) and key.startswith(("model.", "first_")))


def checkpoint_tensors(seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """Every tensor of a real SD1.5 checkpoint, original key layout and shapes, seeded random values.

    Matrices and kernels get N(0, 1/fan_in) (activations keep their scale through the layers),
    norm scales 1 + 0.02·N, biases 0.02·N. Values come from one seeded 4M-normal pool read at a
    different offset per tensor (drawing a billion normals takes minutes on a small CPU).
    """
    import transformers
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from latentgraph.nodes.model_configs import load_shipped_config
    from latentgraph.nodes.tiny_models import original_state_dict

    cfg = load_shipped_config("sd1")
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(cfg.unet).state_dict()
        vae = AutoencoderKL.from_config(cfg.vae).state_dict()
        encoders = [getattr(transformers, e.class_name)(transformers.CLIPTextConfig(**e.config)).state_dict()
                    for e in cfg.text_encoders]
        shapes = {k: tuple(v.shape) for k, v in original_state_dict(cfg, unet, vae, encoders).items()}
    pool = torch.randn(1 << 22, generator=torch.Generator().manual_seed(seed))
    tensors: dict[str, torch.Tensor] = {}
    offset = 0
    for key in sorted(shapes):
        shape = shapes[key]
        n = math.prod(shape)
        start = offset % pool.numel()
        offset += 7_919 * (n + 1)
        if start + n <= pool.numel():
            values = pool[start: start + n].view(shape)
        else:
            values = pool.roll(-start).repeat(math.ceil(n / pool.numel()))[:n].view(shape)
        if len(shape) >= 2:
            value = values * (gain(key) / math.sqrt(math.prod(shape[1:])))
        elif key.endswith("weight"):  # norm scales
            value = 1 + 0.02 * values
        else:
            value = 0.02 * values
        tensors[key] = value.to(dtype).contiguous()
    tensors["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    return tensors


def ensure_checkpoint(path: Path, seed: int = 0) -> Path:
    """Write the checkpoint unless it exists (the same seed always gives the same bytes)."""
    from safetensors.torch import save_file

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    save_file(checkpoint_tensors(seed), str(tmp), metadata={"latentgraph.bench": f"random sd15 seed={seed}"})
    tmp.replace(path)
    return path


# -- the cases ------------------------------------------------------------------------------------


def cases(samplers: list[str], schedules: list[str]) -> list[dict]:
    """Every sampler with ``normal``, then ``euler`` with every other schedule."""
    out = [{"id": f"{name}-normal", "sampler": name, "scheduler": "normal"} for name in samplers]
    out += [{"id": f"euler-{name}", "sampler": "euler", "scheduler": name} for name in schedules if name != "normal"]
    return out


def workflow(settings: dict, case: dict) -> dict:
    """The API-format workflow both sides run (ComfyUI's node names; latentgraph resolves them)."""
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": settings["ckpt_name"]}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": settings["prompt"], "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": settings["negative"], "clip": ["ckpt", 1]}},
        "empty": {"class_type": "EmptyLatentImage",
                  "inputs": {"width": settings["width"], "height": settings["height"], "batch_size": 1}},
        "sample": {"class_type": "KSampler", "inputs": {
            "model": ["ckpt", 0], "seed": settings["seed"], "steps": settings["steps"], "cfg": settings["cfg"],
            "sampler_name": case["sampler"], "scheduler": case["scheduler"], "positive": ["pos", 0],
            "negative": ["neg", 0], "latent_image": ["empty", 0], "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": case["id"]}},
    }


# -- latentgraph's side ---------------------------------------------------------------------------


def run_latentgraph(settings: dict, case_list: list[dict], out_dir: Path, models_base: Path) -> dict:
    """Run every case on an Engine; write ``<id>.png`` / ``<id>.safetensors`` as the driver does."""
    from dataclasses import replace

    from PIL import Image
    from safetensors.torch import save_file

    from latentgraph import Settings
    from latentgraph.engine import Engine

    engine_settings = Settings.from_env(models_base, output_dir=out_dir / "output", environ={}, device="cpu")
    engine = Engine.create(engine_settings, entry_points=False)
    trace: dict[str, list] = {"x": [], "denoised": []}

    def traced(definition):
        def function(model, x, sigmas, *, callback=None, **kw):
            def record(step):
                trace["x"].append(step.x.detach().float().cpu().clone())
                trace["denoised"].append(step.denoised.detach().float().cpu().clone())
                if callback is not None:
                    callback(step)
            out = definition.function(model, x, sigmas, callback=record, **kw)
            trace["final"] = out.detach().float().cpu().clone()
            return out
        return replace(definition, function=function)

    samplers = engine.registry.samplers
    for name in list(samplers):
        samplers[name] = traced(samplers[name])
    timings = {}
    for case in case_list:
        trace["x"].clear()
        trace["denoised"].clear()
        t0 = time.perf_counter()
        result = engine.run(workflow(settings, case))
        elapsed = time.perf_counter() - t0
        if result.status != "success":
            raise RuntimeError(f"latentgraph {case['id']}: {result.status} {result.failure}")
        saved = result.outputs["save"]["images"][0]
        png = engine_settings.output_dir / saved["subfolder"] / saved["filename"]
        pixels = np.asarray(Image.open(png).convert("RGB"))
        record = {"image": torch.from_numpy(pixels.copy())}
        if "final" in trace:  # model space; the driver's ``samples`` are unscaled (÷ 0.18215)
            record["final"] = trace.pop("final")
        if trace["x"]:
            record["x"] = torch.stack(trace["x"]).contiguous()
            record["denoised"] = torch.stack(trace["denoised"]).contiguous()
        save_file(record, str(out_dir / f"{case['id']}.safetensors"))
        (out_dir / f"{case['id']}.png").write_bytes(png.read_bytes())
        timings[case["id"]] = result.seconds.get("sample", elapsed)
        print(f"latentgraph {case['id']}: {elapsed:.1f}s (KSampler {timings[case['id']]:.1f}s)", file=sys.stderr, flush=True)
    return timings


# -- comparison -----------------------------------------------------------------------------------

SD1_SCALE = 0.18215


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def compare(case: dict, ours: Path, theirs: Path) -> dict:
    """PSNR of the PNGs, max |Δ| of the final latents, and where the per-step latents part."""
    from PIL import Image
    from safetensors.torch import load_file

    a = np.asarray(Image.open(ours / f"{case['id']}.png").convert("RGB"))
    b = np.asarray(Image.open(theirs / f"{case['id']}.png").convert("RGB"))
    row = {"case": case["id"], "sampler": case["sampler"], "scheduler": case["scheduler"], "psnr_db": psnr(a, b)}
    lg, cu = load_file(str(ours / f"{case['id']}.safetensors")), load_file(str(theirs / f"{case['id']}.safetensors"))
    if "final" in lg:
        row["latent_max_abs"] = float((lg["final"] - cu["samples"] * SD1_SCALE).abs().max())
        row["latent_rms"] = float(cu["samples"].mul(SD1_SCALE).pow(2).mean().sqrt())
    if "x" in lg and "x" in cu:
        row["steps_ours"], row["steps_comfyui"] = len(lg["x"]), len(cu["x"])
        # The x0 estimate each step used: both report it the same way (ComfyUI's ipndm, ipndm_v
        # and deis report the *initial* x as the step's x, so x itself is not comparable there).
        row["step_x0_rel"] = [float((p - q).abs().max() / q.abs().max().clamp_min(1e-12))
                              for p, q in zip(lg["denoised"], cu["denoised"])]
        row["first_step_apart"] = next((i for i, d in enumerate(row["step_x0_rel"]) if d > 1e-3), None)
    return row


def report_rows(root: Path, case_list: list[dict]) -> tuple[list[dict], dict, float, float]:
    theirs, ours = root / "comfyui", root / "latentgraph"
    info = json.loads((theirs / "comfyui.json").read_text())
    lg_info = json.loads((ours / "latentgraph.json").read_text()) if (ours / "latentgraph.json").exists() else {}
    rows = []
    for case in case_list:
        row = compare(case, ours, theirs)
        row["seconds_ours"] = round(lg_info.get("timings", {}).get(case["id"], math.nan), 2)
        row["seconds_comfyui"] = round(info["timings"]["cases"][case["id"]]["sample_s"], 2)
        rows.append(row)
    t_comfy = json.loads((theirs / "wall.json").read_text())["wall_s"] if (theirs / "wall.json").exists() else math.nan
    return rows, info, t_comfy, lg_info.get("wall_s", math.nan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", required=True, help="ComfyUI source checkout (0.8.0)")
    parser.add_argument("--python", required=True, help="a python with ComfyUI's requirements")
    parser.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT, help="checkpoint (written if missing)")
    parser.add_argument("--size", type=int, default=64, help="image width and height")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--samplers", nargs="*", help="only these samplers (default: all registered)")
    parser.add_argument("--schedules", nargs="*", help="only these schedules for euler (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for each side (they run at once)")
    parser.add_argument("--out", type=Path, help="keep the PNGs and traces here (default: a temp folder)")
    parser.add_argument("--compare-only", action="store_true", help="only compare what an earlier --out run left")
    args = parser.parse_args(argv)

    from latentgraph.nodes.sampling.samplers import builtin_samplers
    from latentgraph.nodes.sampling.schedules import SCHEDULES

    t_start = time.perf_counter()
    ckpt = args.ckpt
    if ckpt.parent.name != "checkpoints":
        raise SystemExit("--ckpt must be in a folder named 'checkpoints' (latentgraph looks there)")
    samplers = args.samplers if args.samplers is not None else [d.name for d in builtin_samplers()]
    schedules = args.schedules if args.schedules is not None else [d.name for d in SCHEDULES]
    case_list = cases(samplers, schedules)
    settings = {"ckpt_name": ckpt.name, "prompt": PROMPT, "negative": NEGATIVE, "width": args.size,
                "height": args.size, "seed": args.seed, "cfg": args.cfg, "steps": args.steps}
    if args.compare_only:
        if args.out is None:
            raise SystemExit("--compare-only needs --out")
        spec = json.loads((args.out / "cases.json").read_text())
        settings, case_list = spec["settings"], spec["cases"]
        args.size, args.steps, args.cfg, args.seed = settings["width"], settings["steps"], settings["cfg"], settings["seed"]
        rows, info, t_comfy, t_ours = report_rows(args.out, case_list)
    else:
        ensure_checkpoint(ckpt)
        with tempfile.TemporaryDirectory() as tmp:
            root = args.out or Path(tmp)
            theirs, ours = root / "comfyui", root / "latentgraph"
            ours.mkdir(parents=True, exist_ok=True)
            theirs.mkdir(parents=True, exist_ok=True)
            (root / "cases.json").write_text(json.dumps({"settings": settings, "cases": case_list}, indent=1))
            # Both sides at once, one thread each: the same CPU share as one two-thread run, and on
            # a shared machine neither waits for the other (a full-size UNet call is memory-bound).
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
            t0 = time.perf_counter()
            driver = subprocess.Popen([args.python, str(HERE / "comfyui_driver.py"), "--comfyui", args.comfyui,
                                       "--ckpt", str(ckpt), "--cases", str(root / "cases.json"), "--out", str(theirs)],
                                      env=env)
            torch.set_num_threads(args.threads)
            try:
                lg_times = run_latentgraph(settings, case_list, ours, ckpt.parent.parent.parent)
                (ours / "latentgraph.json").write_text(json.dumps({"wall_s": time.perf_counter() - t0,
                                                                   "timings": lg_times}, indent=1))
            finally:
                if driver.wait() != 0:
                    raise SystemExit(f"the ComfyUI driver failed (exit {driver.returncode})")
            (theirs / "wall.json").write_text(json.dumps({"wall_s": time.perf_counter() - t0}))
            rows, info, t_comfy, t_ours = report_rows(root, case_list)
    print(f"ComfyUI {info['version']} vs latentgraph, SD1.5-size random checkpoint, {args.size}x{args.size}, "
          f"{args.steps} steps, cfg {args.cfg}, seed {args.seed}")
    print(f"{'sampler':<32}{'schedule':<18}{'PSNR dB':>9}{'max|Δz|':>11}{'max Δx0 (rel)':>15}{'steps':>7}{'apart at':>10}")
    for r in rows:
        first = r.get("first_step_apart")
        print(f"{r['sampler']:<32}{r['scheduler']:<18}{r['psnr_db']:>9.2f}{r.get('latent_max_abs', float('nan')):>11.2e}"
              f"{max(r.get('step_x0_rel') or [float('nan')]):>15.1e}{r.get('steps_comfyui', 0):>7}"
              f"{'-' if first is None else 'step ' + str(first):>10}")
    worst = min(r["psnr_db"] for r in rows)
    total = "compared only" if args.compare_only else f"total {time.perf_counter() - t_start:.0f}s"
    print(f"worst {worst:.2f} dB; {sum(r['psnr_db'] >= 40 for r in rows)}/{len(rows)} cases ≥ 40 dB; "
          f"ComfyUI {t_comfy:.0f}s, latentgraph {t_ours:.0f}s (in parallel), {total}")
    summary = {"bench": "comfyui_parity", "comfyui": info["version"], "size": args.size, "steps": args.steps,
               "cfg": args.cfg, "seed": args.seed, "worst_psnr_db": round(worst, 2),
               "comfyui_s": round(t_comfy, 1), "latentgraph_s": round(t_ours, 1),
               "rows": [{k: (v if not isinstance(v, float) else round(v, 6) if math.isfinite(v) else str(v))
                         for k, v in r.items() if k != "step_x0_rel"} for r in rows]}
    print(json.dumps(summary, default=str))
    return 0 if worst >= 40 else 1


if __name__ == "__main__":
    sys.exit(main())
