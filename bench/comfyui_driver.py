"""ComfyUI's side of ``bench/comfyui_parity.py``: run its own nodes on a list of KSampler cases.

latentgraph's own code (MIT). It contains no ComfyUI code: it *imports* ComfyUI (GPL) from a
source checkout given with ``--comfyui`` and calls its nodes in-process, as a queued prompt would
(no server): CheckpointLoaderSimple → CLIPTextEncode (positive, negative) → EmptyLatentImage →
``nodes.common_ksampler`` (what KSampler runs) → VAEDecode, then SaveImage's conversion to 8 bits
(``clip(255·x, 0, 255).astype(uint8)``; the PNG metadata is left out). ComfyUI runs with
``--cpu`` and its defaults otherwise (UNet and VAE in float32 on the CPU, text encoder weights
stored in float16 and computed in float32).

Run with a python that has ComfyUI's requirements, never latentgraph's environment::

    /tmp/comfy-venv/bin/python bench/comfyui_driver.py --comfyui /tmp/comfyui-ref \
        --ckpt /path/model.safetensors --cases cases.json --out DIR

``cases.json``: ``{"settings": {prompt, negative, width, height, seed, cfg, steps}, "cases":
[{"id", "sampler", "scheduler"}]}``. For each case ``DIR/<id>.png`` and ``DIR/<id>.safetensors``
(final latent ``samples``, the 8-bit ``image``, and per step the sampler's ``x`` and ``denoised``
in the model's latent space, from ComfyUI's sampling callback); ``DIR/common.safetensors`` holds
the conditionings and the initial noise; ``DIR/comfyui.json`` the version and timings.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import os
import sys
import time
import types


def import_comfyui(path: str):
    """Import ComfyUI's ``nodes`` from ``path`` set up as ``main.py --cpu`` would."""
    path = os.path.abspath(path)
    sys.path.insert(0, path)
    if "torchvision" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except Exception:  # ComfyUI imports it only for model classes a SD1 checkpoint does not use
            tv = types.ModuleType("torchvision")
            tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
            tv.transforms = types.ModuleType("torchvision.transforms")
            sys.modules["torchvision"] = tv
            sys.modules["torchvision.transforms"] = tv.transforms
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    import latent_preview
    import nodes

    assert str(comfy.model_management.get_torch_device()) == "cpu"
    return nodes, latent_preview


def comfyui_version(path: str) -> str:
    ns: dict = {}
    with open(os.path.join(path, "comfyui_version.py")) as f:
        exec(f.read(), ns)
    return ns["__version__"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", required=True, help="ComfyUI source checkout")
    parser.add_argument("--ckpt", required=True, help="checkpoint file")
    parser.add_argument("--cases", required=True, help="cases JSON")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)

    import torch

    spec = json.load(open(args.cases))
    os.makedirs(args.out, exist_ok=True)
    nodes, latent_preview = import_comfyui(args.comfyui)
    with torch.inference_mode():  # as ComfyUI's executor runs every node
        run(args, spec, nodes, latent_preview)
    return 0


def run(args, spec, nodes, latent_preview) -> None:
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    s = spec["settings"]
    import comfy.sample
    import folder_paths

    ckpt_dir, ckpt_name = os.path.split(os.path.abspath(args.ckpt))
    folder_paths.add_model_folder_path("checkpoints", ckpt_dir, is_default=True)

    timings: dict = {}
    t0 = time.perf_counter()
    model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(ckpt_name)[:3]
    (positive,) = nodes.CLIPTextEncode().encode(clip, s["prompt"])
    (negative,) = nodes.CLIPTextEncode().encode(clip, s["negative"])
    (latent,) = nodes.EmptyLatentImage().generate(s["width"], s["height"], 1)
    timings["load_and_encode_s"] = time.perf_counter() - t0
    common = {
        "positive": positive[0][0].float().contiguous(),
        "negative": negative[0][0].float().contiguous(),
        "noise": comfy.sample.prepare_noise(latent["samples"], s["seed"]).float().contiguous(),
    }
    save_file(common, os.path.join(args.out, "common.safetensors"))

    trace: dict[str, list] = {"x": [], "denoised": []}

    def prepare_callback(model, steps, x0_output_dict=None):
        def callback(step, x0, x, total_steps):
            trace["x"].append(x.detach().float().cpu().clone())
            trace["denoised"].append(x0.detach().float().cpu().clone())
        return callback

    latent_preview.prepare_callback = prepare_callback  # common_ksampler looks it up at call time
    timings["cases"] = {}
    for case in spec["cases"]:
        trace["x"].clear()
        trace["denoised"].clear()
        t0 = time.perf_counter()
        (out,) = nodes.common_ksampler(model, s["seed"], s["steps"], s["cfg"], case["sampler"], case["scheduler"],
                                       positive, negative, latent, denoise=1.0)
        t1 = time.perf_counter()
        (image,) = nodes.VAEDecode().decode(vae, out)
        pixels = np.clip(255.0 * image[0].cpu().numpy(), 0, 255).astype(np.uint8)  # SaveImage's rule
        Image.fromarray(pixels).save(os.path.join(args.out, f"{case['id']}.png"), compress_level=4)
        t2 = time.perf_counter()
        record = {"samples": out["samples"].float().contiguous(), "image": torch.from_numpy(pixels).contiguous()}
        if trace["x"]:
            record["x"] = torch.stack(trace["x"]).contiguous()
            record["denoised"] = torch.stack(trace["denoised"]).contiguous()
        save_file(record, os.path.join(args.out, f"{case['id']}.safetensors"))
        timings["cases"][case["id"]] = {"sample_s": t1 - t0, "decode_s": t2 - t1}
        print(f"comfyui {case['id']}: {t1 - t0:.1f}s + decode {t2 - t1:.1f}s", file=sys.stderr, flush=True)
    info = {"version": comfyui_version(args.comfyui), "torch": torch.__version__, "timings": timings}
    with open(os.path.join(args.out, "comfyui.json"), "w") as f:
        json.dump(info, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
