"""The Euler / Heun / DPM2 / LMS family gives ComfyUI's numbers (tests/data/comfyui/samplers.*).

Every recorded case of a sampler in ``solvers_euler`` (txt2img, karras, img2img, cfg 1, float32,
noise_inds and the SamplerEulerAncestral / SamplerEulerAncestralCFGPP / SamplerLMS node options)
is re-run through ``SamplerDef.sample`` with the exact Gaussian denoiser of ``tests/analytic.py``
on the recorded sigmas and initial noise. The final latent and every callback's x and denoised
must equal ComfyUI's within 1e-5 relative (max |a − b| / max |b|), a bar fixed before looking at
the results. The inpaint case needs the inpaint wrapper and is tested with it elsewhere.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from analytic import GaussianDenoiser

from latentgraph.nodes.sampling.kit import Step
from latentgraph.nodes.sampling.samplers import SamplerDef
from latentgraph.nodes.sampling.solvers_euler import SAMPLERS, lms_coefficient

DATA = Path(__file__).parent / "data" / "comfyui"
REL_TOL = 1e-5
BY_NAME = {d.name: d for d in SAMPLERS}
#: ComfyUI's parameterised sampler nodes for samplers of this module.
NODES = {"SamplerEulerAncestral": "euler_ancestral", "SamplerEulerAncestralCFGPP": "euler_ancestral_cfg_pp",
         "SamplerLMS": "lms"}
SHAPE = (2, 4, 6, 6)


@cache
def _reference() -> tuple[dict, dict]:
    return json.loads((DATA / "samplers.json").read_text()), load_file(str(DATA / "samplers.safetensors"))


def _definition(meta: dict) -> SamplerDef | None:
    if meta.get("node"):
        name = NODES.get(meta["node"])
        return None if name is None else BY_NAME[name].with_options(**meta["extra_options"])
    return BY_NAME.get(meta["sampler"])


def _cases() -> list[str]:
    meta_all, _ = _reference()
    return [key for key, meta in meta_all["cases"].items() if not meta["inpaint"] and _definition(meta) is not None]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _run(key: str):
    meta, tensors = _reference()[0]["cases"][key], _reference()[1]
    ref = {field: tensors[name] for field, name in meta["tensors"].items()}
    dtype = getattr(torch, meta["dtype"])
    model = GaussianDenoiser(SHAPE, cfg=meta["cfg"], dtype=dtype)
    sigmas = ref["sigmas"].to(dtype)
    ms = model.model_sampling
    x = ms.noise_scaling(sigmas[0], ref["noise"].to(dtype), ref["latent_image"].to(dtype),
                         max_denoise=ms.is_max_sigma(float(sigmas[0])))
    steps: list[Step] = []
    out = _definition(meta).sample(model, x, sigmas, seed=meta["seed"], callback=steps.append)
    return meta, ref, out, steps


def test_every_sampler_of_this_module_is_recorded():
    names = {m.get("sampler") for m in _reference()[0]["cases"].values()}
    assert set(BY_NAME) <= names


@pytest.mark.parametrize("key", _cases())
def test_matches_comfyui(key):
    meta, ref, out, steps = _run(key)
    assert out.dtype == getattr(torch, meta["dtype"])
    assert [s.i for s in steps] == ref["callback_i"].tolist()
    errors = {"samples": _rel(out, ref["samples"])}
    for field in ("x", "denoised"):
        errors[field] = max(_rel(getattr(s, field), r) for s, r in zip(steps, ref[field]))
    assert max(errors.values()) <= REL_TOL, errors


def test_euler_ancestral_with_eta_0_is_euler():
    """η = 0 removes the noise: the ancestral sampler's ODE limit is plain Euler."""
    model = GaussianDenoiser(SHAPE)
    sigmas = torch.tensor([14.6, 6.0, 2.0, 0.5, 0.0], dtype=torch.float64)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sigmas[0]
    euler = BY_NAME["euler"].sample(model, x, sigmas)
    ancestral = BY_NAME["euler_ancestral"].with_options(eta=0.0).sample(model, x, sigmas, seed=1)
    assert torch.allclose(euler, ancestral, rtol=0, atol=1e-12)


def test_ode_solvers_converge_to_the_exact_flow_at_their_order():
    """For Gaussian data the guided denoiser is affine, D = M + s²/(s²+σ²)(x − M), so the
    probability-flow ODE has the closed form x(σ) = M + sqrt((s²+σ²)/(s²+σ₀²))·(x₀ − M). Doubling
    the steps must halve a first-order solver's error and quarter a second-order one's. (heunpp2's
    slope weights σ/(3σ₀) are not the trapezoid's ½, so it is first order, as in ComfyUI.)"""
    model = GaussianDenoiser(SHAPE)
    s2 = 0.25
    mean = model.uncond_mean + model.cfg * (model.cond_mean - model.uncond_mean)
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 10.0
    sigma_end = 0.05
    exact = mean + ((s2 + sigma_end**2) / (s2 + 100.0)) ** 0.5 * (x0 - mean)

    def error(name: str, steps: int) -> float:
        sigmas = torch.exp(torch.linspace(math.log(10.0), math.log(sigma_end), steps + 1, dtype=torch.float64))
        return float((BY_NAME[name].sample(model, x0, sigmas) - exact).abs().max())

    for name, order in (("euler", 1), ("heunpp2", 1), ("heun", 2), ("dpm_2", 2), ("exp_heun_2_x0", 2), ("lms", 2)):
        assert error(name, 20) / error(name, 40) > 2**order * 0.9, name


def test_lms_coefficients_sum_to_the_step():
    """The Lagrange basis polynomials sum to 1, so the weights of one step sum to its length."""
    ts = [14.6, 9.0, 5.0, 2.5, 1.0]
    for order in (1, 2, 3, 4):
        i = order - 1
        total = sum(lms_coefficient(order, ts, i, j) for j in range(order))
        assert total == pytest.approx(ts[i + 1] - ts[i], rel=1e-9)
    with pytest.raises(ValueError):
        lms_coefficient(3, ts, 1, 0)


def test_stochastic_samplers_are_seeded():
    model = GaussianDenoiser(SHAPE)
    sigmas = torch.tensor([14.6, 6.0, 2.0, 0.5, 0.0], dtype=torch.float64)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sigmas[0]
    for definition in SAMPLERS:
        if not definition.stochastic:
            continue
        a, b = definition.sample(model, x, sigmas, seed=7), definition.sample(model, x, sigmas, seed=7)
        c = definition.sample(model, x, sigmas, seed=8)
        assert torch.equal(a, b), definition.name
        assert not torch.allclose(a, c), definition.name
