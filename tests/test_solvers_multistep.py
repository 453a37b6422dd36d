"""The multistep-family samplers (ddpm, lcm, ipndm, ipndm_v, deis, ddim, uni_pc, uni_pc_bh2)
against ComfyUI's own trajectories recorded in ``tests/data/comfyui``.

Bar, fixed before looking at results: the final latent and every reported step's x and x0
estimate within 1e-5 relative (max |a − b| / max |b|) of ComfyUI's.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from analytic import GaussianDenoiser
from latentgraph.nodes.sampling import kit
from latentgraph.nodes.sampling.run import MaskedDenoiser, inpaint_noise
from latentgraph.nodes.sampling.samplers import builtin_samplers
from latentgraph.nodes.sampling.solvers_multistep import SAMPLERS

DATA = Path(__file__).parent / "data" / "comfyui"
REL_TOL = 1e-5
NAMES = tuple(d.name for d in SAMPLERS)
#: ComfyUI reports its *initial* x at every step for these (its callback passes the function's
#: argument, never updated); we report the current x. Only step 0 is comparable.
INITIAL_X_QUIRK = {"ipndm", "ipndm_v", "deis"}


@lru_cache(maxsize=1)
def _reference() -> tuple[dict, dict]:
    from safetensors.torch import load_file

    meta = json.loads((DATA / "samplers.json").read_text())
    return meta, load_file(str(DATA / "samplers.safetensors"))


def _cases() -> list[str]:
    if not (DATA / "samplers.json").exists():
        return []
    meta, _ = _reference()
    # Inpainting blends the latent around the sampler (the run layer's job); ddim's case is below.
    return [k for k, c in meta["cases"].items() if c.get("sampler") in NAMES and not c["inpaint"]]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _tensor(case: dict, field: str) -> torch.Tensor:
    """A recorded tensor (identical tensors are stored once, so always go through the case's map)."""
    return _reference()[1][case["tensors"][field]]


def _run(definition, case: dict, dtype=None, sigmas=None):
    dtype = dtype or getattr(torch, case["dtype"])
    noise = _tensor(case, "noise")
    model = GaussianDenoiser(tuple(noise.shape), cfg=case["cfg"], dtype=dtype)
    sigmas = _tensor(case, "sigmas") if sigmas is None else sigmas
    ms = model.model_sampling
    x = ms.noise_scaling(sigmas[0], noise.to(dtype), _tensor(case, "latent_image").to(dtype),
                         max_denoise=ms.is_max_sigma(float(sigmas[0])))
    before = sigmas.clone()
    steps: list[kit.Step] = []
    out = definition.with_options(**case["extra_options"]).sample(model, x, sigmas, seed=case["seed"],
                                                                   callback=steps.append)
    assert torch.equal(sigmas, before)  # ComfyUI's uni_pc overwrites the final 0 in place; we don't
    return x, out, steps


@pytest.mark.parametrize("key", _cases())
def test_matches_comfyui(key: str) -> None:
    case = _reference()[0]["cases"][key]
    definition = {d.name: d for d in SAMPLERS}[case["sampler"]]
    x, out, steps = _run(definition, case)

    ref_x, ref_d = _tensor(case, "x"), _tensor(case, "denoised")
    assert [s.i for s in steps] == _tensor(case, "callback_i").tolist() == case["callback_i"]
    assert _rel(out, _tensor(case, "samples")) < REL_TOL
    for step, rx, rd in zip(steps, ref_x, ref_d):
        assert _rel(step.denoised, rd) < REL_TOL, f"x0 at step {step.i}"
        if case["sampler"] in INITIAL_X_QUIRK:
            assert torch.equal(rx, ref_x[0])  # the quirk is still there
            if step.i == 0:
                assert _rel(step.x, rx) < REL_TOL
        else:
            assert _rel(step.x, rx) < REL_TOL, f"x at step {step.i}"


def test_every_name_has_a_reference() -> None:
    if not (DATA / "samplers.json").exists():
        pytest.skip("no ComfyUI reference data")
    meta, _ = _reference()
    assert {meta["cases"][k]["sampler"] for k in _cases()} == set(NAMES)


@pytest.mark.parametrize("scheduler", ["normal", "karras"])
@pytest.mark.parametrize("name", ["uni_pc", "uni_pc_bh2"])
def test_uni_pc_float64_agrees_with_float32(name: str, scheduler: str) -> None:
    """ComfyUI 0.8's UniPC cannot run float64 latents (a float32 ρ = ½ meets float64 tensors in
    ``tensordot``: "both inputs should have same dtype"), so its cases are recorded in float32
    only. Ours runs float64 too: on ComfyUI's 11-step schedule with the penultimate σ dropped, a
    float64 run agrees with the float32 one to float32 precision. (A scratch run of ComfyUI's
    code with the ρ dtype patched gave our float64 numbers bit for bit.)"""
    if not (DATA / "samplers.json").exists():
        pytest.skip("no ComfyUI reference data")
    full = json.loads((DATA / "schedules.json").read_text())["calculate_sigmas"][scheduler]["11"]
    sigmas = torch.tensor(full[:-2] + full[-1:], dtype=torch.float32)
    case = {**_reference()[0]["cases"]["txt2img/uni_pc"], "extra_options": {}}
    runs = [_run({d.name: d for d in SAMPLERS}[name], case, dtype, sigmas)
            for dtype in (torch.float64, torch.float32)]
    (_, out64, steps64), (_, out32, steps32) = runs
    assert [s.i for s in steps64] == [s.i for s in steps32] == list(range(10))
    assert _rel(out32.double(), out64) < REL_TOL
    for a, b in zip(steps32, steps64):
        assert _rel(a.denoised.double(), b.denoised) < REL_TOL
        assert _rel(a.x.double(), b.x) < REL_TOL


def test_ddim_inpaint_renoises_with_fresh_noise() -> None:
    """ComfyUI's "ddim" is Euler plus one inpainting difference (``inpaint_options.random``): the
    region outside the mask is re-noised with fresh CPU noise from ``seed + 1`` (float32 randn,
    cast), not with the initial noise. Only the model's input shows it; ``run.inpaint_noise``
    supplies that noise for samplers flagged ``fresh_inpaint_noise``."""
    if not (DATA / "samplers.json").exists():
        pytest.skip("no ComfyUI reference data")
    case = _reference()[0]["cases"]["inpaint/ddim"]
    noise, latent, sigmas = _tensor(case, "noise"), _tensor(case, "latent_image"), _tensor(case, "sigmas")
    seen: list[torch.Tensor] = []

    class Recording(GaussianDenoiser):
        def predict(self, x, sigma):
            seen.append(x.clone())
            return super().predict(x, sigma)

    model = Recording(tuple(noise.shape), cfg=case["cfg"])
    ddim = {d.name: d for d in SAMPLERS}["ddim"]
    masked = MaskedDenoiser(model, _tensor(case, "denoise_mask"), inpaint_noise(ddim, noise, case["seed"]), latent)
    x = model.model_sampling.noise_scaling(sigmas[0], noise, latent, max_denoise=True)
    out = ddim.sample(masked, x, sigmas, seed=case["seed"])
    assert _rel(out, _tensor(case, "samples")) < REL_TOL
    assert max(_rel(a, b) for a, b in zip(seen, _tensor(case, "model_input"))) < REL_TOL


def test_registered_in_comfy_order() -> None:
    names = [d.name for d in builtin_samplers()]
    for name in NAMES:
        assert name in names
    assert {d.name for d in SAMPLERS if d.discard_penultimate_sigma} == {"uni_pc", "uni_pc_bh2"}
    assert {d.name for d in SAMPLERS if d.stochastic} == {"ddpm", "lcm"}
