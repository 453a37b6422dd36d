"""The recent samplers (res_multistep*, gradient_estimation*, er_sde, seeds_2/3, sa_solver*) against
ComfyUI's own trajectories recorded in ``tests/data/comfyui``, including the option variants of
its SamplerER_SDE, SamplerSASolver and SamplerSEEDS2 nodes.

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
from latentgraph.nodes.sampling.samplers import SamplerDef, builtin_samplers
from latentgraph.nodes.sampling.solvers_recent import SAMPLERS

DATA = Path(__file__).parent / "data" / "comfyui"
REL_TOL = 1e-5
BY_NAME = {d.name: d for d in SAMPLERS}
#: ComfyUI's parameterised nodes → our sampler; the node's inputs are our option names.
NODE_SAMPLER = {"SamplerER_SDE": "er_sde", "SamplerSASolver": "sa_solver", "SamplerSEEDS2": "seeds_2"}
needs_data = pytest.mark.skipif(not (DATA / "samplers.json").exists(), reason="no ComfyUI reference data")


@lru_cache(maxsize=1)
def _reference() -> tuple[dict, dict]:
    from safetensors.torch import load_file

    return json.loads((DATA / "samplers.json").read_text()), load_file(str(DATA / "samplers.safetensors"))


def _our_sampler(case: dict) -> SamplerDef | None:
    """Our SamplerDef for a recorded case (with the node's options), or None if not one of ours."""
    if case.get("node") in NODE_SAMPLER:
        return BY_NAME[NODE_SAMPLER[case["node"]]].with_options(**case["node_args"])
    if case.get("sampler") in BY_NAME and not case.get("node"):
        return BY_NAME[case["sampler"]].with_options(**case["extra_options"])
    return None


def _cases() -> list[str]:
    if not (DATA / "samplers.json").exists():
        return []
    meta, _ = _reference()
    return [k for k, c in meta["cases"].items() if _our_sampler(c) is not None and not c["inpaint"]]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _kit_seeds_like_comfy() -> bool:
    """ComfyUI 0.8's default noise sampler seeds a CPU generator with seed + 1 (so step noise differs
    from the initial noise); whether kit.default_noise_sampler does the same."""
    x = torch.zeros(3, dtype=torch.float64)
    ours = kit.default_noise_sampler(x, 7)(torch.tensor(1.0), torch.tensor(0.5))
    return torch.equal(ours, torch.randn(3, dtype=torch.float64, generator=torch.Generator().manual_seed(8)))


def _run(key: str, *, comfy_noise: bool):
    """Run our sampler on a recorded case. ``comfy_noise`` hands it ComfyUI's step noise explicitly
    (seed + 1), so the maths is checked whatever kit's seeding is."""
    meta, arrays = _reference()
    case = meta["cases"][key]
    names = case["tensors"]
    dtype = getattr(torch, case["dtype"])
    noise = arrays[names["noise"]].to(dtype)
    model = GaussianDenoiser(tuple(noise.shape), cfg=case["cfg"], dtype=dtype)
    sigmas = arrays[names["sigmas"]]
    ms = model.model_sampling
    x = ms.noise_scaling(sigmas[0], noise, arrays[names["latent_image"]].to(dtype),
                         max_denoise=ms.is_max_sigma(float(sigmas[0])))
    sampler = _our_sampler(case)
    noise_sampler = None  # kit's default noise sampler seeds as ComfyUI does (seed + 1)
    steps: list[kit.Step] = []
    out = sampler.sample(model, x, sigmas, seed=case["seed"], callback=steps.append, noise_sampler=noise_sampler)
    return case, arrays, model, out, steps


@needs_data
@pytest.mark.parametrize("key", _cases())
def test_matches_comfyui(key: str) -> None:
    case, arrays, model, out, steps = _run(key, comfy_noise=True)
    names = case["tensors"]
    assert [s.i for s in steps] == arrays[names["callback_i"]].tolist()
    assert model.calls == case["model_calls"]
    assert _rel(out, arrays[names["samples"]]) < REL_TOL
    for step, rx, rd in zip(steps, arrays[names["x"]], arrays[names["denoised"]], strict=True):
        assert _rel(step.x, rx) < REL_TOL, f"x at step {step.i}"
        assert _rel(step.denoised, rd) < REL_TOL, f"x0 at step {step.i}"


@needs_data
@pytest.mark.parametrize("name", [d.name for d in SAMPLERS if d.stochastic])
def test_default_step_noise_is_comfyuis(name: str) -> None:
    """With no noise sampler given, the run's seed alone reproduces ComfyUI's stochastic runs."""
    assert _kit_seeds_like_comfy()
    case, arrays, _, out, _ = _run(f"txt2img/{name}", comfy_noise=False)
    assert _rel(out, arrays[case["tensors"]["samples"]]) < REL_TOL


@needs_data
def test_every_name_and_node_is_recorded() -> None:
    meta, _ = _reference()
    keys = _cases()
    assert {f"txt2img/{name}" for name in BY_NAME} <= set(keys)
    assert {meta["cases"][k]["node"] for k in keys if k.startswith("node/")} == set(NODE_SAMPLER)


@pytest.mark.parametrize("name", ["sa_solver", "sa_solver_pece", "er_sde", "seeds_3"])
def test_float32_sigmas_with_float64_latent(name: str) -> None:
    """Schedules come as float32; a float64 latent must still run (ComfyUI's SA-Solver stops here
    with "both inputs should have same dtype") and agree with float64 σ's to float32 precision."""
    shape = (1, 2, 3, 3)
    model = GaussianDenoiser(shape)
    sigmas = torch.tensor([14.6146, 4.6092, 1.9502, 0.9324, 0.3687, 0.0292, 0.0])
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 14.65
    a = BY_NAME[name].sample(model, x, sigmas, seed=5)
    b = BY_NAME[name].sample(model, x, sigmas.double(), seed=5)
    assert a.dtype == torch.float64
    assert _rel(a, b) < 1e-5


def test_er_sde_ode_first_stage_is_euler() -> None:
    """ER-SDE with f(ℓ) = ℓ (the ODE) and one stage is exactly the Euler step (x − D)/σ·dσ."""
    shape = (1, 2, 3, 3)
    model = GaussianDenoiser(shape)
    sigmas = torch.tensor([14.6146, 2.9183, 0.6250, 0.0], dtype=torch.float64)
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 14.65
    out = BY_NAME["er_sde"].with_options(solver_type="ODE", max_stage=1).sample(model, x, sigmas)
    expected = x
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        d = model(expected, kit.batch_sigma(expected, s))
        expected = d if s_next == 0 else expected + (expected - d) / s * (s_next - s)
    assert _rel(out, expected) < 1e-12


def test_registered_with_comfy_names() -> None:
    names = [d.name for d in builtin_samplers()]
    assert set(BY_NAME) <= set(names)
    assert not any(d.discard_penultimate_sigma for d in SAMPLERS)
    assert {d.name for d in SAMPLERS if d.stochastic} == {
        "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp", "er_sde", "seeds_2", "seeds_3",
        "sa_solver", "sa_solver_pece"}
    assert all(d.description for d in SAMPLERS)
