"""How long does a checkpoint take to load, and a cold ``latentgraph run`` to its first image?

Loads full-size, random-weight checkpoints in the original single-file layout (SD1.5, SD2 512,
SDXL; the files are written on first use, seeded, with every tensor of the real models at its
real shape) three ways, each in a fresh process so no loader profits from another's imports:

* ``latentgraph`` — ``latentgraph.nodes.checkpoints.load_checkpoint`` (models built on the
  ``meta`` device, tensors from the memory-mapped file, cast only when the dtype differs);
* ``diffusers``   — ``StableDiffusion(XL)Pipeline.from_single_file(path, config=<local folder>,
  local_files_only=True)``, offline, with our configs written as a diffusers folder;
* ``comfyui``     — ComfyUI's ``comfy.sd.load_checkpoint_guess_config`` in its own venv (optional:
  ``--comfyui DIR --comfy-python PY``; skipped with a note when absent).

Each process first imports what its loader needs (``imports``), then loads ``--repeats`` times;
``--rounds`` processes per loader run interleaved with the other loaders', so a busy minute on a
shared machine hits all alike. ``first load`` is each process's first load, ``any load`` every
load; the minimum is the best estimate of the uncontended cost. The page cache is warmed by
reading the file before each process, so all loaders read from RAM. Then the cold start: ``latentgraph
run workflows/txt2img.json`` (the embedded demo model) as a user types it, wall time per run, and
``latentgraph validate`` (start-up and registry only). Prints a table and one JSON line.

    python bench/load.py [--archs sd1,sd2,sdxl] [--dtype fp32] [--rounds 3] [--repeats 2] [--runs 3]
                         [--comfyui /tmp/comfyui-ref --comfy-python /tmp/comfy-venv/bin/python]

The dtype is every loader's CPU default (fp32) unless ``--dtype`` says otherwise; SDXL in fp32
needs ~14 GB per loader process, so a loader whose estimated peak does not fit in the available
RAM is skipped with a note (``--sdxl-dtype fp16`` loads SDXL in fp16 instead, for every loader).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = Path(tempfile.gettempdir()) / "latentgraph-bench" / "models" / "checkpoints"
FILES = {"sd1": "sd15-random-seed0.safetensors", "sd2": "sd2-random-seed0.safetensors", "sdxl": "sdxl-random-seed0.safetensors"}
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
ST_DTYPES = {"float16": "F16", "float32": "F32", "int64": "I64", "bfloat16": "BF16"}


# -- the files ------------------------------------------------------------------------------------


def _shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Every tensor of a real ``arch`` checkpoint, original names, from the shipped configs on meta."""
    import torch
    import transformers
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from latentgraph.nodes.model_configs import load_shipped_config
    from latentgraph.nodes.original_layout import TEXT_ENCODER_PREFIXES, text_encoder_to_original, unet_to_original, vae_to_original

    cfg = load_shipped_config(arch)
    with torch.device("meta"):
        out = unet_to_original(UNet2DConditionModel.from_config(cfg.unet).state_dict(), cfg.unet)
        out.update(vae_to_original(AutoencoderKL.from_config(cfg.vae).state_dict(), cfg.vae))
        for (prefix, layout), enc in zip(TEXT_ENCODER_PREFIXES[cfg.arch], cfg.text_encoders):
            config = dict(enc.config)
            if arch == "sd2":
                config["num_hidden_layers"] = 24  # SD2 files hold all 24 OpenCLIP layers (it conditions on 23)
            model = getattr(transformers, enc.class_name)(transformers.CLIPTextConfig(**config))
            out.update(text_encoder_to_original(model.state_dict(), prefix, layout))
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    if arch == "sd1":
        shapes["cond_stage_model.transformer.text_model.embeddings.position_ids"] = (1, 77)
    open_clip = {"sd2": "cond_stage_model.model.", "sdxl": "conditioner.embedders.1.model."}.get(arch)
    if open_clip:  # real files keep the projection and the logit scale of the whole OpenCLIP text tower
        width = shapes[open_clip + "ln_final.weight"][0]
        shapes.setdefault(open_clip + "text_projection", (width, width))
        shapes[open_clip + "logit_scale"] = ()
    return shapes


def write_random_checkpoint(arch: str, path: Path, seed: int = 0) -> Path:
    """Stream a full-size fp16 checkpoint to ``path``, one tensor in memory at a time.

    Matrices get N(0, 1/fan_in), norm scales 1 + 0.02·N, biases 0.02·N, all tiled from one seeded
    4M-value pool at a different offset per tensor (a billion fresh normals take minutes).
    """
    import numpy as np
    import torch

    shapes = _shapes(arch)
    keys = sorted(shapes)
    header: dict = {"__metadata__": {"latentgraph.bench": f"random {arch} seed={seed}"}}
    offset = 0
    for key in keys:
        dtype = "I64" if key.endswith("position_ids") else "F16"
        size = math.prod(shapes[key]) * (8 if dtype == "I64" else 2)
        header[key] = {"dtype": dtype, "shape": list(shapes[key]), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    pool = torch.randn(1 << 22, generator=torch.Generator().manual_seed(seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    start = 0
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for key in keys:
            shape = shapes[key]
            if key.endswith("position_ids"):
                f.write(np.arange(77, dtype=np.int64).tobytes())
                continue
            n = math.prod(shape)
            first = start % pool.numel()
            start += 7_919 * (n + 1)
            values = pool.roll(-first).repeat(math.ceil(n / pool.numel()))[:n] if first + n > pool.numel() else pool[first:first + n]
            if len(shape) >= 2:
                values = values / math.sqrt(math.prod(shape[1:]))
            elif key.endswith("weight") or key.endswith("logit_scale"):
                values = 1 + 0.02 * values
            else:
                values = 0.02 * values
            f.write(values.to(torch.float16).numpy().tobytes())
    tmp.replace(path)
    return path


def ensure_file(arch: str, folder: Path) -> Path:
    path = folder / FILES[arch]
    if path.is_file():
        return path
    if arch == "sd1":  # the file bench/comfyui_parity.py uses: same bytes, one copy on disk
        sys.path.insert(0, str(HERE))
        from comfyui_parity import ensure_checkpoint

        return ensure_checkpoint(path)
    t = time.perf_counter()
    write_random_checkpoint(arch, path)
    print(f"wrote {path} ({path.stat().st_size / 1e9:.1f} GB) in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    return path


def warm_page_cache(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


# -- one loader in one process --------------------------------------------------------------------

CHILD = r"""
import gc, json, resource, sys, time
loader, path, dtype_name, repeats, extra = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
t0 = time.perf_counter()
import torch
dtype = getattr(torch, dtype_name)
if loader == "latentgraph":
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection
    from latentgraph.nodes.checkpoints import load_checkpoint
    from latentgraph.settings import Settings
    settings = Settings.from_env(extra["home"], environ={}, device="cpu", dtype=extra["dtype_flag"])
    def load():
        out = load_checkpoint(path, settings)
        return out, out.model.unet.dtype
elif loader == "diffusers":
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.utils import logging as dlog
    dlog.set_verbosity_error(); dlog.disable_progress_bar()
    cls = StableDiffusionXLPipeline if extra["arch"] == "sdxl" else StableDiffusionPipeline
    def load():
        out = cls.from_single_file(path, config=extra["config"], local_files_only=True, torch_dtype=dtype)
        return out, out.unet.dtype
else:
    sys.path.insert(0, extra["bench"])
    from comfyui_driver import import_comfyui
    import_comfyui(extra["comfyui"])
    import comfy.sd
    def load():
        out = comfy.sd.load_checkpoint_guess_config(path, output_vae=True, output_clip=True, model_options={"dtype": dtype})
        return out, next(out[0].model.diffusion_model.parameters()).dtype
imports = time.perf_counter() - t0
loads = []
for _ in range(repeats):
    t = time.perf_counter()
    out, got = load()
    loads.append(time.perf_counter() - t)
    del out
    gc.collect()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("RESULT " + json.dumps({"imports": imports, "loads": loads, "dtype": str(got).replace("torch.", ""), "peak_rss": peak}))
"""


def run_child(python: str, loader: str, path: Path, dtype: str, repeats: int, extra: dict, cwd: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [python, "-c", CHILD, loader, str(path), DTYPES[dtype], str(repeats), json.dumps(extra)],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=3600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1][:200]}
    return json.loads(lines[-1][len("RESULT "):])


def params_bytes(path: Path) -> int:
    """Bytes of the file's weights at fp32 (the loaders' CPU default)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return sum(4 * math.prod(v["shape"]) for v in header.values())


def available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


#: Rough peak RAM of each loader as a multiple of the weights' fp32 size (diffusers initialises a
#: random model and then loads a converted copy; ComfyUI holds the file's tensors while it copies).
PEAK_FACTOR = {"latentgraph": 1.1, "diffusers": 2.2, "comfyui": 1.6}


# -- cold start -----------------------------------------------------------------------------------


def cold_start(runs: int, work: Path) -> dict:
    """Wall seconds of ``latentgraph run workflows/txt2img.json`` and of ``latentgraph validate``."""
    cli = [sys.executable, "-c", "import sys; from latentgraph.cli import main; sys.exit(main())"]
    workflow = str(ROOT / "workflows" / "txt2img.json")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    libraries = "import torch; from diffusers import AutoencoderKL, UNet2DConditionModel; from transformers import CLIPTextModel"
    commands = {
        "validate": cli + ["validate", workflow],
        "run": cli + ["run", workflow, "--quiet", "--output-dir", str(work / "out")],
        # what any diffusers-based program pays before its first model: the floor under `run`
        "import torch": [sys.executable, "-c", "import torch"],
        "import torch+diffusers+transformers": [sys.executable, "-c", libraries],
    }
    out: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            t = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True, cwd=work, env=env, timeout=600)
            elapsed = time.perf_counter() - t
            if proc.returncode != 0:
                raise SystemExit(f"latentgraph {name} failed: {proc.stderr[-500:]}")
            out[name].append(elapsed)
    return out


# -- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="sd1,sd2,sdxl")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--sdxl-dtype", choices=sorted(DTYPES), help="dtype for SDXL rows (default: --dtype)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per loader, interleaved across loaders")
    parser.add_argument("--repeats", type=int, default=2, help="loads per process")
    parser.add_argument("--runs", type=int, default=3, help="cold-start runs (0: skip)")
    parser.add_argument("--models", type=Path, default=MODELS, help="folder of the random checkpoints")
    parser.add_argument("--loaders", default="latentgraph,diffusers,comfyui")
    parser.add_argument("--comfyui", default="/tmp/comfyui-ref", help="ComfyUI source checkout")
    parser.add_argument("--comfy-python", default="/tmp/comfy-venv/bin/python", help="a python that can run ComfyUI")
    args = parser.parse_args(argv)

    from latentgraph.nodes.model_configs import load_shipped_config, write_config_folder

    loaders = args.loaders.split(",")
    notes: list[str] = []
    if "comfyui" in loaders and not (Path(args.comfyui, "comfy", "sd.py").is_file() and Path(args.comfy_python).is_file()):
        loaders.remove("comfyui")
        notes.append(f"comfyui skipped: no ComfyUI at {args.comfyui} or no {args.comfy_python}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for arch in args.archs.split(","):
            path = ensure_file(arch, args.models)
            dtype = (args.sdxl_dtype or args.dtype) if arch == "sdxl" else args.dtype
            config = write_config_folder(load_shipped_config(arch), work / f"config-{arch}")
            extra = {"arch": arch, "config": str(config), "home": str(work), "dtype_flag": dtype,
                     "bench": str(HERE), "comfyui": args.comfyui}
            fp32 = params_bytes(path)
            runnable = []
            for loader in loaders:
                need = fp32 * PEAK_FACTOR[loader] * (1 if dtype == "fp32" or loader == "diffusers" else 0.5)
                if need > available_bytes():
                    notes.append(f"{arch} {loader} skipped: needs ~{need / 1e9:.0f} GB, {available_bytes() / 1e9:.0f} GB available")
                else:
                    runnable.append(loader)
            results: dict[str, list[dict]] = {loader: [] for loader in runnable}
            for _ in range(args.rounds):  # interleaved, so a busy minute hits every loader alike
                for loader in runnable:
                    warm_page_cache(path)
                    python = args.comfy_python if loader == "comfyui" else sys.executable
                    res = run_child(python, loader, path, dtype, args.repeats, extra, work)
                    print(f"{arch} {loader}: {res}", file=sys.stderr, flush=True)
                    results[loader].append(res)
            for loader, runs in results.items():
                ok = [r for r in runs if "error" not in r]
                row = {"arch": arch, "loader": loader, "file_gb": round(path.stat().st_size / 1e9, 2), "requested": dtype}
                if not ok:
                    rows.append({**row, "error": runs[-1]["error"]})
                    continue
                firsts = [r["loads"][0] for r in ok]
                rows.append({**row, "dtype": ok[0]["dtype"], "processes": len(ok),
                             "imports_median": statistics.median(r["imports"] for r in ok),
                             "first_load_min": min(firsts), "first_load_median": statistics.median(firsts),
                             "load_min": min(t for r in ok for t in r["loads"]),
                             "load_median": statistics.median(t for r in ok for t in r["loads"]),
                             "peak_rss_gb": round(max(r["peak_rss"] for r in ok) / 1e9, 2)})
        cold = cold_start(args.runs, work) if args.runs else {}

    print(f"\n{'arch':5} {'loader':12} {'file GB':>7} {'dtype':>8} {'imports':>8} {'first load':>16} {'any load':>16} {'peak GB':>8}")
    print(f"{'':5} {'':12} {'':>7} {'':>8} {'median':>8} {'min / median':>16} {'min / median':>16} {'':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['arch']:5} {r['loader']:12} {r['file_gb']:7.2f}  error: {r['error']}")
            continue
        print(f"{r['arch']:5} {r['loader']:12} {r['file_gb']:7.2f} {r['dtype']:>8} {r['imports_median']:7.2f}s "
              f"{r['first_load_min']:7.2f} / {r['first_load_median']:5.2f}s {r['load_min']:7.2f} / {r['load_median']:5.2f}s "
              f"{r['peak_rss_gb']:8.1f}")
    if cold:
        for name, times in cold.items():
            label = f"latentgraph {name} workflows/txt2img.json" if name in ("run", "validate") else f"python -c '{name}'"
            print(f"cold `{label}`: median {statistics.median(times):.2f}s "
                  f"(min {min(times):.2f}, max {max(times):.2f}, {len(times)} runs)")
    for note in notes:
        print("note:", note)
    load_avg = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(json.dumps({"bench": "load", "rows": rows, "cold_start": cold, "notes": notes, "cpus": os.cpu_count(),
                      "load_avg_at_end": load_avg, "dtype": args.dtype}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
