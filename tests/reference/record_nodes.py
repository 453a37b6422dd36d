"""Record what ComfyUI's own node classes output for small deterministic inputs (node parity data).

This script is latentgraph's own code (MIT). It contains no ComfyUI code: it *imports* ComfyUI
(GPL) at run time from a source checkout given with ``--comfyui``, loads its node classes the way
its server does (``nodes.py`` + ``init_builtin_extra_nodes``, see ``record_object_info.py``) and
writes plain numbers to ``--out``: ``nodes.safetensors`` + ``nodes.json``.

A case is a *call tree*: a node class name and its inputs, where an input may itself be a call
(``{"call": name, "args": {...}, "index": i}``), a stored tensor (``{"tensor": key}``), a LATENT
(``{"latent": {...}}``), a CONDITIONING (``{"conditioning": [[emb, extras], ...]}``), the model
(``{"model": "fake_sd1"}``) or a literal. ``tests/test_comfyui_node_parity.py`` evaluates the
same tree with latentgraph's node classes (found by the same names, called with the same input
names) and compares the outputs. So a two-stage ``KSamplerAdvanced``, ``AddNoise`` into
``SamplerCustomAdvanced`` or area conditioning into a sampler are each one tree, built and run by
each side's own nodes end to end.

The model: ComfyUI's real ``comfy.model_base.BaseModel.apply_model`` (SD1 ``ModelSamplingDiscrete``
+ ``EPS``, ``SD15`` latent format, inside a real ``comfy.model_patcher.ModelPatcher``) on the
analytic UNet ε :func:`node_eps` (``record_guidance.fake_eps``, whose crop-local ramp makes areas
visible, plus a per-channel term from the embedding's features, so two prompts differ in direction
as Perp-Neg needs); latentgraph's side gives its ``DiffusionModel`` the same ε. Everything else
(KSampler/KSamplerAdvanced, noise, schedules, guiders, CFG, ``calc_cond_batch``) is each side's
real code.

Environment: as ``record_comfyui.py`` (``/tmp/comfy-venv``, ``--cpu``, torchvision stub)::

    /tmp/comfy-venv/bin/python tests/reference/record_nodes.py --comfyui /tmp/comfyui-ref --out tests/data/comfyui

Deterministic: two runs give identical files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record_comfyui import comfy_version, make_model_sampling  # noqa: E402
from record_guidance import fake_eps, make_model  # noqa: E402
from record_object_info import load_comfy_nodes  # noqa: E402
from node_cases import EMB_DIM, inputs, sampling_cases, tensor_cases  # noqa: E402

COMMIT = "3cd7b32f1b7e7e90395cefe7d9f9b1f89276d8ce"
EPS_FORMULA = ("record_guidance.fake_eps + 0.5*mean_tokens(context[b])[c]*sin(0.5*i + 0.9*j + c) "
               "(crop-local i, j; the second term makes prompts differ in direction, not only in size)")


def node_eps(xc: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """The UNet stand-in (float32), identical in tests/test_comfyui_node_parity.py."""
    b, c, h, w = xc.shape
    feature = context.float().mean(dim=1)[:, :c].reshape(b, c, 1, 1)
    i = torch.arange(h, dtype=torch.float32).reshape(1, 1, h, 1)
    j = torch.arange(w, dtype=torch.float32).reshape(1, 1, 1, w)
    k = torch.arange(c, dtype=torch.float32).reshape(1, c, 1, 1)
    return fake_eps(xc, t, context) + 0.5 * feature * torch.sin(0.5 * i + 0.9 * j + k)


# --------------------------------------------------------------------------- evaluation (ComfyUI side)


class Evaluator:
    def __init__(self, C, nodes, patcher, tensors: dict[str, torch.Tensor]):
        self.C, self.nodes, self.patcher, self.inputs = C, nodes, patcher, tensors

    def value(self, v):
        if isinstance(v, dict):
            if "call" in v:
                return self.run(v["call"], v["args"])[v["index"]]
            if "tensor" in v:
                return self.inputs[v["tensor"]].clone()
            if "latent" in v:
                return {k: self.value(x) for k, x in v["latent"].items()}
            if "conditioning" in v:
                return [[self.value(e), {k: self.value(x) for k, x in extras.items()}] for e, extras in v["conditioning"]]
            if "model" in v:
                return self.patcher
            raise ValueError(v)
        if isinstance(v, list):
            return [self.value(x) for x in v]
        return v

    def run(self, name: str, args: dict) -> list:
        cls = self.nodes.NODE_CLASS_MAPPINGS[name]
        kwargs = {k: self.value(v) for k, v in args.items()}
        torch.manual_seed(0)  # nothing should depend on the global RNG; make it so if something does
        if hasattr(cls, "FUNCTION"):
            out = getattr(cls(), cls.FUNCTION)(**kwargs)
        else:
            out = cls.execute(**kwargs)
        vals = getattr(out, "args", out)
        if isinstance(vals, dict):  # V1 {"ui": ..., "result": (...)}
            vals = vals["result"]
        return list(vals)


class Store:
    def __init__(self, initial: dict[str, torch.Tensor]):
        self.tensors = {f"in/{k}": v.contiguous() for k, v in initial.items()}

    def put(self, key: str, t: torch.Tensor) -> str:
        t = t.detach().contiguous().clone()
        for k, v in self.tensors.items():
            if v.dtype == t.dtype and v.shape == t.shape and torch.equal(v, t):
                return k
        assert key not in self.tensors, key
        self.tensors[key] = t
        return key

    def encode(self, key: str, v):
        """An output value as JSON (tensors stored under ``key``…)."""
        if isinstance(v, torch.Tensor):
            return {"tensor": self.put(key, v), "dtype": str(v.dtype).removeprefix("torch.")}
        if isinstance(v, dict):
            return {"latent": {k: self.encode(f"{key}/{k}", x) for k, x in sorted(v.items())}}
        if isinstance(v, list) and v and isinstance(v[0], (list, tuple)) and len(v[0]) == 2 \
                and isinstance(v[0][0], torch.Tensor) and isinstance(v[0][1], dict):
            return {"conditioning": [[self.encode(f"{key}/{i}/emb", e),
                                      {k: self.encode(f"{key}/{i}/{k}", x) for k, x in sorted(extras.items())}]
                                     for i, (e, extras) in enumerate(v)]}
        if isinstance(v, (list, tuple)):
            return [self.encode(f"{key}/{i}", x) for i, x in enumerate(v)]
        if isinstance(v, float) and not math.isfinite(v):
            return repr(v)
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise TypeError(f"{key}: cannot record a {type(v).__name__}")


def rename_inputs(tree):
    """The case trees use bare input keys; stored tensors live under ``in/``."""
    if isinstance(tree, dict):
        if set(tree) == {"tensor"}:
            return {"tensor": f"in/{tree['tensor']}"}
        return {k: rename_inputs(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [rename_inputs(x) for x in tree]
    return tree


def make_patcher(C):
    """ComfyUI's ModelPatcher around a BaseModel whose UNet is record_guidance.fake_eps."""
    import comfy.latent_formats
    import comfy.model_patcher

    ms = make_model_sampling(C)
    model = make_model(C, ms)

    class NodeUNet(torch.nn.Module):
        dtype = torch.float32

        def forward(self, x, timesteps, context=None, control=None, transformer_options=None, **kwargs):
            return node_eps(x, timesteps, context)

    model.diffusion_model = NodeUNet()
    model.latent_format = comfy.latent_formats.SD15()
    model.device = torch.device("cpu")
    model.model_config = None
    cpu = torch.device("cpu")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)
    model.current_patcher = patcher
    return patcher


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--comfyui", required=True, help="ComfyUI source checkout (0.8.0)")
    ap.add_argument("--out", required=True, help="output directory (tests/data/comfyui)")
    ap.add_argument("--only", nargs="*", help="case-name prefixes (debugging; the stored files want all)")
    args = ap.parse_args(argv)
    C, nodes = load_comfy_nodes(args.comfyui)
    version = comfy_version(C.path)
    stored = inputs()
    store = Store(stored)
    patcher = make_patcher(C)
    ev = Evaluator(C, nodes, patcher, {f"in/{k}": v for k, v in stored.items()})
    out = {
        "comfyui_version": version,
        "comfyui_commit": COMMIT,
        "model": {"fake_sd1": "SD1 ModelSamplingDiscrete+EPS, SD15 latent format, UNet eps = record_guidance.fake_eps",
                  "unet_eps": EPS_FORMULA,
                  "emb_dim": EMB_DIM},
        "cases": {},
        "failures": {},
    }
    for group, cases in (("tensor", tensor_cases()), ("sampling", sampling_cases())):
        for name, tree in cases:
            if args.only and not any(name.startswith(p) for p in args.only):
                continue
            tree = rename_inputs(tree)
            try:
                values = ev.run(tree["call"], tree["args"])
                value = values[tree["index"]]
            except Exception as e:  # recorded, so a test can say ComfyUI raises here
                out["failures"][name] = f"{type(e).__name__}: {e}"
                continue
            out["cases"][name] = {"group": group, "tree": tree, "output": store.encode(f"out/{name}", value)}
            print(name, flush=True)

    from safetensors.torch import save_file

    os.makedirs(args.out, exist_ok=True)
    save_file(dict(sorted(store.tensors.items())), os.path.join(args.out, "nodes.safetensors"),
              metadata={"comfyui": f"{version} {COMMIT}"})
    with open(os.path.join(args.out, "nodes.json"), "w") as f:
        json.dump(out, f, indent=0, sort_keys=True)
        f.write("\n")
    size = os.path.getsize(os.path.join(args.out, "nodes.safetensors"))
    print(f"{len(out['cases'])} cases, {len(out['failures'])} failures, {len(store.tensors)} tensors, {size} bytes")
    for k, v in out["failures"].items():
        print("FAILED", k, v)


if __name__ == "__main__":
    main()
