"""Record how ComfyUI combines conditionings (areas, masks, strengths, timestep ranges, CFG).

This script is latentgraph's own code (MIT). It contains no ComfyUI code: it *imports* ComfyUI
(GPL) at run time from a source checkout given with ``--comfyui`` and writes plain numbers to
``--out``: ``guidance.safetensors`` + ``guidance.json``.

Everything but the UNet is ComfyUI's real code:

* the CONDITIONING values are built by ComfyUI's own nodes (``ConditioningSetArea``,
  ``ConditioningSetAreaPercentage``, ``ConditioningSetAreaStrength``, ``ConditioningSetMask``,
  ``ConditioningSetTimestepRange``, ``ConditioningCombine``);
* they go through ``comfy.sampler_helpers.convert_cond`` and ``comfy.samplers.process_conds``
  (``resolve_areas_and_cond_masks_multidim``, ``calculate_start_end_timesteps``,
  ``encode_model_conds`` with ``BaseModel.extra_conds``, ``create_cond_with_same_area_if_none``),
  as ``CFGGuider`` does before sampling;
* then, at each probe σ, ``comfy.samplers.calc_cond_batch`` (the per-side averages) and
  ``comfy.samplers.sampling_function`` (the guided x0) run on a model whose ``apply_model`` is
  ComfyUI's real ``BaseModel.apply_model`` (``calculate_input`` → ``timestep(σ)`` → UNet →
  ``calculate_denoised``) with the SD1 ``ModelSamplingDiscrete`` + ``EPS``.

Only the UNet is a stand-in, :func:`fake_eps`: an analytic ε of the scaled input ``xc``, the
timestep ``t`` and the text embedding, with a ramp in *crop-local* coordinates so that which
crop of the latent the model sees is visible in the result::

    ε[b,c,i,j] = xc·(0.5 + t/2000) + mean(context[b])·(1 + 0.25·c) + 0.03·i − 0.02·j

``tests/test_guidance_parity.py`` gives latentgraph the same ε (as a diffusers-style UNet) so
both worlds turn it into x0 with their own model sampling.

Environment: as ``record_comfyui.py`` (``/tmp/comfy-venv``, ``--cpu``, torchvision stub)::

    /tmp/comfy-venv/bin/python tests/reference/record_guidance.py --comfyui /tmp/comfyui-ref --out tests/data/comfyui

Deterministic: two runs give identical files.
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
SHAPE = (1, 2, 40, 36)  # [B, C, H, W] of most cases: 40×36 cells = 320×288 px; H ≠ W so h/w mix-ups show
EMB_DIM = 8
EPS_FORMULA = "xc*(0.5 + t/2000) + mean(context[b])*(1 + 0.25*c) + 0.03*i - 0.02*j (i, j crop-local row, col)"


def fake_eps(xc: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """The UNet stand-in (float32), identical in tests/test_guidance_parity.py."""
    b, c, h, w = xc.shape
    a = (0.5 + t.float() / 2000.0).reshape(b, 1, 1, 1)
    m = context.float().mean(dim=(1, 2)).reshape(b, 1, 1, 1)
    ch = 1.0 + 0.25 * torch.arange(c, dtype=torch.float32).reshape(1, c, 1, 1)
    i = torch.arange(h, dtype=torch.float32).reshape(1, 1, h, 1)
    j = torch.arange(w, dtype=torch.float32).reshape(1, 1, 1, w)
    return xc.float() * a + m * ch + 0.03 * i - 0.02 * j


def make_model(C, ms):
    """A comfy.model_base.BaseModel without weights: real apply_model/extra_conds, fake UNet."""
    BaseModel = C.comfy.model_base.BaseModel

    class FakeUNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dtype = torch.float32
            self.calls = 0
            self.rows = 0

        def forward(self, x, timesteps, context=None, control=None, transformer_options=None, **kwargs):
            self.calls += 1
            self.rows += x.shape[0]
            return fake_eps(x, timesteps, context)

    class Patcher:  # the current_patcher hooks calc_cond_batch touches
        def prepare_state(self, timestep):
            pass

        def apply_hooks(self, hooks):
            return {}

        def prepare_hook_patches_current_keyframe(self, *a, **k):
            pass

    class FakeModel(BaseModel):
        def __init__(self):  # BaseModel.__init__ needs a model config; set what sampling reads
            torch.nn.Module.__init__(self)
            self.model_sampling = ms
            self.diffusion_model = FakeUNet()
            self.manual_cast_dtype = None
            self.concat_keys = ()
            self.current_patcher = Patcher()

        def memory_required(self, input_shape, cond_shapes={}):
            return 0  # always batch everything that can be concatenated

    return FakeModel()


# --------------------------------------------------------------------------- case building


class Recorder:
    def __init__(self, C):
        self.C = C
        self.tensors: dict[str, torch.Tensor] = {}
        self.nodes = __import__("nodes")

    def put(self, key: str, t: torch.Tensor) -> str:
        """Store once: an identical tensor already stored is referred to by its first key."""
        t = t.detach().contiguous().clone()
        for k, v in self.tensors.items():
            if v.dtype == t.dtype and v.shape == t.shape and torch.equal(v, t):
                return k
        assert key not in self.tensors, key
        self.tensors[key] = t
        return key

    def describe_extras(self, case: str, side: str, idx: int, extras: dict) -> dict:
        out = {}
        for k, v in extras.items():
            if isinstance(v, torch.Tensor):
                out[k] = {"tensor": self.put(f"{case}/{side}{idx}/{k}", v)}
            elif isinstance(v, tuple):
                out[k] = list(v)
            else:
                out[k] = v
        return out


def embedding(name: str, tokens: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(sum(map(ord, name)) * 7 + tokens)
    return (torch.randn((1, tokens, EMB_DIM), generator=g) + 0.5 * (len(name) % 3)).float()


def soft_mask(h: int, w: int, box: tuple[float, float, float, float] | None = None) -> torch.Tensor:
    """A smooth [1, h, w] mask in [0, 1]; with box (y0, y1, x0, x1 as fractions) zero outside it."""
    yy = torch.linspace(0, 1, h, dtype=torch.float32).reshape(h, 1)
    xx = torch.linspace(0, 1, w, dtype=torch.float32).reshape(1, w)
    m = 0.5 + 0.5 * torch.sin(6.0 * yy + 1.0) * torch.cos(5.0 * xx)
    if box is not None:
        y0, y1, x0, x1 = box
        inside = (yy >= y0) & (yy <= y1) & (xx >= x0) & (xx <= x1)
        m = torch.where(inside, 0.2 + 0.8 * m, torch.zeros_like(m))
    return m.unsqueeze(0).contiguous()


def build_cases(C, ms):
    n = __import__("nodes")
    SetArea = n.ConditioningSetArea().append
    SetPct = n.ConditioningSetAreaPercentage().append
    SetStrength = n.ConditioningSetAreaStrength().append
    SetMask = n.ConditioningSetMask().append
    SetRange = n.ConditioningSetTimestepRange().set_range
    Combine = n.ConditioningCombine().combine

    A = [[embedding("A", 3), {}]]
    B = [[embedding("B", 5), {}]]  # lcm(3,5)/3 = 5 > 4: ComfyUI does not batch A with B
    Cc = [[embedding("C", 6), {}]]  # lcm(3,6)/3 = 2: batched with A
    N = [[embedding("N", 3), {}]]
    N2 = [[embedding("N2", 4), {}]]
    N3 = [[embedding("N3", 3), {}]]

    def cat(*cs):
        out = cs[0]
        for c in cs[1:]:
            out = Combine(out, c)[0]
        return out

    def area(c, w, h, x, y, s=1.0):
        return SetArea(c, w, h, x, y, s)[0]

    sig = ms.sigmas
    S_MAX = float(sig[-1])  # 14.6146…, the first step of a txt2img run
    S_MID = float(sig[600])  # ≈ 1.99
    S_LOW = float(sig[150])  # ≈ 0.26
    s_start = ms.percent_to_sigma(0.2)
    s_end = ms.percent_to_sigma(0.6)

    big = dict(w=256, h=256, x=16, y=32)  # → (32, 32, 4, 2): feathered on all 4 sides, 8 cells
    big_args = (big["w"], big["h"], big["x"], big["y"])
    mask_same = soft_mask(40, 36)
    mask_low = soft_mask(20, 18, box=(0.3, 0.75, 0.2, 0.9))  # half resolution: upsampled bilinear
    mask_high = soft_mask(80, 72)  # double resolution: downsampled bilinear
    mask_tiny = soft_mask(40, 36, box=(0.1, 0.2, 0.7, 0.8))  # bounds < 8 cells: grown to 8

    cases = []

    def case(name, pos, neg, cfg, sigmas, about, shape=SHAPE):
        cases.append(dict(name=name, positive=pos, negative=neg, cfg=cfg, sigmas=sigmas, about=about, shape=shape))

    # full conds
    case("full/two_averaged", cat(A, B), N, 3.0, [S_MID], "two full positives averaged (separate UNet calls), cfg 3")
    case("full/strength", cat(A, SetStrength(Cc, 0.4)[0]), cat(N, SetStrength(N3, 2.0)[0]), 3.0, [S_MID],
         "full conds weighted by strength on both sides")
    # areas, mirrored on the negative so no opposite-area copies are made
    case("area/offset_all_sides", cat(A, area(B, *big_args)), cat(N, area(N2, *big_args)), 3.0, [S_MID],
         "area (32,32,4,2): offsets non-zero, not touching borders: 8-cell feather on 4 sides")
    case("area/origin", cat(A, area(B, 256, 256, 0, 0)), cat(N, area(N2, 256, 256, 0, 0)), 3.0, [S_MID],
         "area (32,32,0,0): feather only bottom/right")
    case("area/touch_far", cat(A, area(B, 288, 256, 0, 64)), cat(N, area(N2, 288, 256, 0, 64)), 3.0, [S_MID],
         "area (32,36,8,0): touches bottom and both sides: feather top only")
    case("area/overhang", cat(A, area(B, 256, 320, 64, 96)), cat(N, area(N2, 256, 320, 64, 96)), 3.0, [S_MID],
         "area (40,32,12,8) reaches past bottom and right: clipped to 28×28, feather min(8, 28//4) = 7 cells")
    case("area/small", cat(A, area(B, 96, 64, 24, 16)), cat(N, area(N2, 96, 64, 24, 16)), 3.0, [S_MID],
         "area (8,12,2,3): feather min(8, size//4) = 2 rows, 3 cols")
    case("area/tiny", cat(A, area(B, 48, 24, 40, 40)), cat(N, area(N2, 48, 24, 40, 40)), 3.0, [S_MID],
         "area (3,6,5,5): feather min(8, size//4) = 0 / 1 cells")
    case("area/strength", cat(A, SetStrength(area(B, *big_args, 0.7), 1.8)[0]), cat(N, area(N2, *big_args, 0.5)), 3.0,
         [S_MID], "area + strength (SetArea 0.7 overridden by SetAreaStrength 1.8; negative 0.5)")
    case("area/percentage", cat(A, SetPct(B, 0.9, 0.8, 0.05, 0.1, 1.0)[0]), cat(N, SetPct(N2, 0.9, 0.8, 0.05, 0.1, 1.0)[0]),
         3.0, [S_MID], "percentage area → round(0.8·40), round(0.9·36), round(0.1·40), round(0.05·36) = (32,32,4,2)")
    case("area/percentage_small", cat(A, SetPct(B, 0.5, 0.3, 0.25, 0.0625, 1.0)[0]),
         cat(N, SetPct(N2, 0.5, 0.3, 0.25, 0.0625, 1.0)[0]), 3.0, [S_MID],
         "percentage area (12,18,2,9): y = round(2.5) = 2 (banker's rounding), small feather")
    # the opposite-area rule: an area on one side gets a same-area twin on the other side
    case("area/opposite_copy", cat(A, area(B, *big_args)), N, 3.0, [S_MID],
         "positive area only: ComfyUI adds a negative with that area (negative's embedding)")
    case("area/opposite_copy_smallest", cat(A, area(B, *big_args, 0.6)), cat(N, area(N2, 288, 304, 0, 8)), 3.0, [S_MID],
         "the twin takes the smallest enclosing negative's embedding (N2) and the positive's strength")
    # masks
    case("mask/same_res", cat(A, SetMask(B, mask_same, "default", 0.8)[0]), N, 3.0, [S_MID],
         "mask at latent size, mask_strength 0.8, no area")
    case("mask/low_res_bounds", cat(A, SetMask(B, mask_low, "mask bounds", 1.3)[0]),
         cat(N, SetMask(N2, mask_low, "mask bounds", 1.0)[0]), 3.0, [S_MID],
         "20×18 mask upsampled bilinear, set_area_to_bounds (mirrored on negative)")
    case("mask/high_res", cat(A, SetMask(B, mask_high, "default", 1.0)[0]), N, 3.0, [S_MID],
         "80×72 mask downsampled bilinear, default area")
    case("mask/tiny_bounds", cat(A, SetMask(B, mask_tiny, "mask bounds", 1.0)[0]),
         cat(N, SetMask(N2, mask_tiny, "mask bounds", 1.0)[0]), 3.0, [S_MID],
         "mask bounds smaller than 8 cells: area grown to 8×8 (clipped at the border)")
    case("mask/with_area", cat(A, SetMask(area(B, *big_args), mask_same, "default", 0.9)[0]),
         cat(N, area(N2, *big_args)), 3.0, [S_MID], "SetArea then SetMask: mask narrowed to the area, no feather")
    case("mask/bounds_opposite_copy", cat(A, SetMask(B, mask_low, "mask bounds", 1.0)[0]), N, 3.0, [S_MID],
         "mask bounds on the positive only: the negative twin carries the positive's mask too")
    # timestep ranges
    case("range/start_end", cat(A, SetRange(B, 0.2, 0.6)[0]), N, 3.0, [S_MAX, s_start, s_end, S_LOW],
         "B active for percent 0.2..0.6: σ_max (before), exactly σ(0.2) and σ(0.6) (inside), σ_low (after)")
    # several conds on both sides
    multi_pos = cat(A, area(B, *big_args, 0.8), SetMask(Cc, mask_same, "default", 0.7)[0])
    multi_neg = cat(N, area(N2, *big_args), SetStrength(N3, 0.5)[0])
    case("multi/cfg3", multi_pos, multi_neg, 3.0, [S_MAX, S_LOW], "3 positives (full, area, mask), 3 negatives, cfg 3")
    case("multi/cfg1", multi_pos, multi_neg, 1.0, [S_MAX, S_LOW], "same at cfg 1: uncond not evaluated (zeros)")
    case("multi/cfg1_negative_area", A, cat(N, area(N2, *big_args)), 1.0, [S_MID],
         "cfg 1, area only on the (unevaluated) negative: its twin still joins the positive")
    case("mask/empty_bounds", cat(A, SetMask(B, torch.zeros(1, 40, 36), "mask bounds", 1.0)[0]), N, 3.0, [S_MID],
         "all-zero mask with set_area_to_bounds: area (8,8,0,0), weight 0 (twin on the negative too)")
    # batch 2: a batch-2 mask (double resolution) and a small area on a small latent
    mask_b2 = torch.cat([soft_mask(24, 20), soft_mask(24, 20, box=(0.0, 0.5, 0.3, 1.0))])
    case("batch/mask_and_area", cat(A, SetMask(B, mask_b2, "default", 1.1)[0], area(Cc, 48, 40, 16, 8, 0.9)), N, 3.0,
         [S_MID], "latent batch 2 (2×2×12×10): per-sample mask [2,24,20] resized, area (5,6,1,2)", shape=(2, 2, 12, 10))
    # a side that is wholly inactive at σ
    case("inactive/negative", A, cat(SetRange(N, 0.5, 1.0)[0], SetRange(N3, 0.7, 1.0)[0]), 3.0, [S_MAX],
         "every negative starts at 50%: at σ_max uncond = 0 so guided = 3·cond")
    case("inactive/positive", cat(SetRange(A, 0.0, 0.3)[0], SetRange(B, 0.0, 0.2)[0]), N, 3.0, [S_LOW],
         "every positive ends by 30%: at σ_low cond = 0 so guided = −2·uncond")
    return cases


def run_case(C, ms, rec: Recorder, case: dict) -> dict:
    samplers = C.comfy.samplers
    model = make_model(C, ms)
    shape = case["shape"]
    raw = {"positive": case["positive"], "negative": case["negative"]}
    conds = {k: C.comfy.sampler_helpers.convert_cond(v) for k, v in raw.items()}
    noise = torch.zeros(shape)
    conds = samplers.process_conds(model, noise, conds, "cpu", latent_image=torch.zeros(shape), denoise_mask=None, seed=0)

    name = case["name"]
    entry: dict = {"about": case["about"], "cfg": case["cfg"], "shape": list(shape)}
    embs: dict[str, list] = {}
    for side, conditioning in raw.items():
        items = []
        for i, (emb, extras) in enumerate(conditioning):
            key = rec.put(f"emb/{name}/{side}{i}", emb)
            embs.setdefault(side, []).append(emb)
            items.append({"embedding": key, "extras": rec.describe_extras(name, side, i, extras)})
        entry[side] = items

    # what ComfyUI made of them (explains twins / resolved areas)
    processed = {}
    all_embs = [(s, i, e) for s, es in embs.items() for i, e in enumerate(es)]
    for side, items in conds.items():
        rows = []
        for it in items:
            ca = it["model_conds"]["c_crossattn"].cond
            src = next((f"{s}{i}" for s, i, e in all_embs if e is ca or torch.equal(e, ca)), "?")
            rows.append({
                "embedding_of": src,
                "area": [int(v) for v in it["area"]] if "area" in it else None,
                "strength": it.get("strength", 1.0),
                "mask": list(it["mask"].shape) if "mask" in it else None,
                "timestep_start": it.get("timestep_start"),
                "timestep_end": it.get("timestep_end"),
            })
        processed[side] = rows
    entry["comfy_processed"] = processed

    base = 0.3 * torch.sin(torch.arange(shape[0] * shape[1] * shape[2] * shape[3], dtype=torch.float32).reshape(shape))
    g = torch.Generator().manual_seed(0)
    unit = torch.randn(shape, generator=g)
    tag = "x".join(map(str, shape))
    entry["x"] = {"base": rec.put(f"x/{tag}/base", base), "unit": rec.put(f"x/{tag}/unit", unit),
                  "rule": "x = base + sigma*unit (float32)"}
    opts = {"transformer_options": {}}
    probes = []
    for sigma in case["sigmas"]:
        s32 = torch.full((shape[0],), sigma, dtype=torch.float32)
        x = base + float(s32[0]) * unit  # the test rebuilds x the same way
        uncond_in = None if abs(case["cfg"] - 1.0) < 1e-9 else conds["negative"]
        model.diffusion_model.calls = model.diffusion_model.rows = 0
        cond_pred, uncond_pred = samplers.calc_cond_batch(model, [conds["positive"], uncond_in], x, s32, opts)
        calls, rows = model.diffusion_model.calls, model.diffusion_model.rows
        guided = samplers.sampling_function(model, x, s32, conds["negative"], conds["positive"], case["cfg"], model_options=opts)
        p = {
            "sigma": float(s32[0]),
            "cond": rec.put(f"{name}/{len(probes)}/cond", cond_pred),
            "uncond": None if uncond_in is None else rec.put(f"{name}/{len(probes)}/uncond", uncond_pred),
            "uncond_all_zero": bool((uncond_pred == 0).all()),
            "cond_all_zero": bool((cond_pred == 0).all()),
            "guided": rec.put(f"{name}/{len(probes)}/guided", guided),
            "unet_calls": calls,
            "unet_rows": rows,
        }
        probes.append(p)
    entry["probes"] = probes
    return entry


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--comfyui", required=True, help="ComfyUI source checkout (0.8.0)")
    ap.add_argument("--out", required=True, help="output directory (tests/data/comfyui)")
    args = ap.parse_args(argv)
    C = import_comfy(args.comfyui)
    version = comfy_version(C.path)
    torch.manual_seed(0)
    ms = make_model_sampling(C)
    rec = Recorder(C)
    out = {
        "comfyui_version": version,
        "comfyui_commit": COMMIT,
        "model_sampling": "SD1 ModelSamplingDiscrete+EPS (as samplers.json)",
        "unet_eps": EPS_FORMULA,
        "emb_dim": EMB_DIM,
        "downscale": 8,
        "cases": {},
    }
    for case in build_cases(C, ms):
        out["cases"][case["name"]] = run_case(C, ms, rec, case)

    from safetensors.torch import save_file

    os.makedirs(args.out, exist_ok=True)
    save_file(dict(sorted(rec.tensors.items())), os.path.join(args.out, "guidance.safetensors"),
              metadata={"comfyui": f"{version} {COMMIT}"})
    with open(os.path.join(args.out, "guidance.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    size = os.path.getsize(os.path.join(args.out, "guidance.safetensors"))
    print(f"{len(out['cases'])} cases, {len(rec.tensors)} tensors, {size} bytes")


if __name__ == "__main__":
    main()
