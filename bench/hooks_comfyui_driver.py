"""ComfyUI's side of ``bench/hooks_parity.py``: run API-format workflows with its own nodes.

latentgraph's own code (MIT). It contains no ComfyUI code: it *imports* ComfyUI (GPL) from a
source checkout (``--comfyui``) and evaluates each workflow's nodes in-process, inputs before
the node, as its executor would (no server, no cache across workflows), with ``nodes.py``'s and
``comfy_extras/nodes_hooks.py``'s classes. For each workflow ``DIR/<id>.png`` (SaveImage's 8-bit
rule on the VAEDecode output) and ``DIR/<id>.safetensors`` (the KSampler's ``samples``).

    /tmp/comfy-venv/bin/python bench/hooks_comfyui_driver.py --comfyui /tmp/comfyui-ref \
        --models DIR --cases cases.json --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from comfyui_driver import comfyui_version, import_comfyui  # noqa: E402


def evaluate(prompt: dict, mappings: dict, memo: dict) -> dict:
    """Every node's outputs, inputs first; a node whose class, literals and inputs' nodes were
    computed before (``memo``, across workflows: the checkpoint loads once) is not run again."""
    done: dict = {}
    keys: dict = {}

    def outputs(node_id: str):
        if node_id in done:
            return done[node_id]
        node = prompt[node_id]
        cls = mappings[node["class_type"]]
        kwargs, key = {}, [node["class_type"]]
        for name, value in sorted(node["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                linked = outputs(value[0])
                key.append((name, keys[value[0]], value[1]))
                value = linked[value[1]]
            else:
                key.append((name, json.dumps(value)))
            kwargs[name] = value
        keys[node_id] = repr(key)
        if keys[node_id] not in memo:
            result = getattr(cls(), cls.FUNCTION)(**kwargs)
            memo[keys[node_id]] = result["result"] if isinstance(result, dict) else result
        done[node_id] = memo[keys[node_id]]
        return done[node_id]

    for node_id in prompt:
        if prompt[node_id]["class_type"] != "SaveImage":
            outputs(node_id)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", required=True)
    parser.add_argument("--models", required=True, help="folder with checkpoints/ and loras/")
    parser.add_argument("--cases", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    nodes, _preview = import_comfyui(args.comfyui)
    import comfy_extras.nodes_hooks as hook_nodes
    import folder_paths

    for kind in ("checkpoints", "loras"):
        folder_paths.add_model_folder_path(kind, os.path.join(os.path.abspath(args.models), kind), is_default=True)
    mappings = {**nodes.NODE_CLASS_MAPPINGS, **hook_nodes.NODE_CLASS_MAPPINGS}
    os.makedirs(args.out, exist_ok=True)
    spec = json.load(open(args.cases))
    timings = {}
    memo: dict = {}
    with torch.inference_mode():
        for case in spec["cases"]:
            t0 = time.perf_counter()
            done = evaluate(case["workflow"], mappings, memo)
            timings[case["id"]] = time.perf_counter() - t0
            image = done["decode"][0]
            pixels = np.clip(255.0 * image[0].cpu().numpy(), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(args.out, f"{case['id']}.png"), compress_level=4)
            save_file({"samples": done["sample"][0]["samples"].float().contiguous()},
                      os.path.join(args.out, f"{case['id']}.safetensors"))
            print(f"comfyui {case['id']}: {timings[case['id']]:.1f}s", file=sys.stderr, flush=True)
    with open(os.path.join(args.out, "comfyui.json"), "w") as f:
        json.dump({"version": comfyui_version(args.comfyui), "timings": timings}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
