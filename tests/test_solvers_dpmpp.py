"""The DPM-Solver / DPM-Solver++ samplers give ComfyUI's numbers (tests/data/comfyui/samplers.*).

Each recorded case is re-run through ``SamplerDef.sample`` with the exact Gaussian denoiser of
``tests/analytic.py`` on the recorded sigmas and initial noise; the final latent and every
callback's x and denoised must equal ComfyUI's within 1e-5 relative (max |a − b| / max |b|).
The bar holds for every sampler here, dpm_adaptive included: its controller sees the same errors,
so it accepts and rejects the same steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from analytic import GaussianDenoiser, sd1_model_sampling

from latentgraph.nodes.sampling.kit import Prediction
from latentgraph.nodes.sampling.samplers import SamplerDef
from latentgraph.nodes.sampling.solvers_dpmpp import SAMPLERS

#: torchsde warns when a query time rounded to float32 lands just above the tree's float64 end;
#: ComfyUI queries the same way.
pytestmark = pytest.mark.filterwarnings("ignore:Should have tb<=t1:UserWarning")

DATA = Path(__file__).parent / "data" / "comfyui"
REL_TOL = 1e-5
BY_NAME = {d.name: d for d in SAMPLERS}
#: ComfyUI's parameterised sampler nodes → (sampler name for noise_device cpu, for gpu).
NODES = {
    "SamplerDPMPP_3M_SDE": ("dpmpp_3m_sde", "dpmpp_3m_sde_gpu"),
    "SamplerDPMPP_2M_SDE": ("dpmpp_2m_sde", "dpmpp_2m_sde_gpu"),
    "SamplerDPMPP_SDE": ("dpmpp_sde", "dpmpp_sde_gpu"),
    "SamplerDPMPP_2S_Ancestral": ("dpmpp_2s_ancestral", None),
    "SamplerDPMAdaptative": ("dpm_adaptive", None),
}


@cache
def _reference() -> tuple[dict, dict]:
    return json.loads((DATA / "samplers.json").read_text()), load_file(str(DATA / "samplers.safetensors"))


@dataclass
class Case:
    key: str
    definition: SamplerDef
    meta: dict

    def tensor(self, field: str) -> torch.Tensor:
        return _reference()[1][self.meta["tensors"][field]]


def _definition(meta: dict) -> SamplerDef | None:
    if "node" in meta:
        if meta["node"] not in NODES:
            return None
        cpu, gpu = NODES[meta["node"]]
        name = gpu if meta["node_args"].get("noise_device") == "gpu" else cpu
        return BY_NAME[name].with_options(**meta["extra_options"])
    return BY_NAME.get(meta["sampler"])


def _cases() -> list[Case]:
    meta_all, _ = _reference()
    found = []
    for key, meta in meta_all["cases"].items():
        definition = _definition(meta)
        if definition is not None:
            found.append(Case(key, definition, meta))
    return found


class _Inpaint:
    """ComfyUI's KSamplerX0Inpaint around a denoiser: the kept region is re-noised from the
    latent before each call and replaced by it after."""

    def __init__(self, inner: GaussianDenoiser, latent: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor):
        self.inner, self.latent, self.noise, self.mask = inner, latent, noise, mask
        self.model_sampling = inner.model_sampling

    def predict(self, x: torch.Tensor, sigma: torch.Tensor) -> Prediction:
        keep = 1 - self.mask
        x = x * self.mask + (self.latent + sigma.reshape(-1, 1, 1, 1) * self.noise) * keep
        pred = self.inner.predict(x, sigma)
        return Prediction(pred.denoised * self.mask + self.latent * keep, pred.uncond * self.mask + self.latent * keep)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.predict(x, sigma).denoised


def _rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


CASES = _cases()


def test_every_sampler_of_the_module_has_a_reference_case():
    covered = {c.definition.name for c in CASES}
    assert covered == set(BY_NAME), set(BY_NAME) - covered


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_matches_comfyui(case: Case):
    meta = case.meta
    dtype = getattr(torch, meta["dtype"])
    sigmas = case.tensor("sigmas").to(dtype)
    noise = case.tensor("noise").to(dtype)
    latent = case.tensor("latent_image").to(dtype)
    model_sampling = sd1_model_sampling()
    denoiser = GaussianDenoiser(tuple(noise.shape), cfg=meta["cfg"], dtype=dtype, model_sampling=model_sampling)
    model = denoiser
    if meta["inpaint"]:
        model = _Inpaint(denoiser, latent, noise, case.tensor("denoise_mask").to(dtype))
    x = model_sampling.noise_scaling(sigmas[0], noise, latent, model_sampling.is_max_sigma(float(sigmas[0])))

    steps = []
    out = case.definition.sample(model, x, sigmas, seed=meta["seed"], callback=steps.append)

    assert out.dtype == dtype
    assert _rel(out, case.tensor("samples")) < REL_TOL
    assert [s.i for s in steps] == meta["callback_i"]
    xs, denoised = case.tensor("x"), case.tensor("denoised")
    for n, step in enumerate(steps):
        assert _rel(step.x, xs[n]) < REL_TOL, f"x at callback {n}"
        assert _rel(step.denoised, denoised[n]) < REL_TOL, f"denoised at callback {n}"


def test_gpu_names_are_the_same_algorithms():
    for name, definition in BY_NAME.items():
        if name.endswith("_gpu"):
            plain = BY_NAME[name.removesuffix("_gpu")]
            assert (definition.function, dict(definition.options)) == (plain.function, dict(plain.options))
            assert definition.stochastic and plain.stochastic


def test_dpm_fast_and_adaptive_need_a_positive_end():
    model = GaussianDenoiser((1, 1, 2, 2))
    x = torch.randn(1, 1, 2, 2, dtype=torch.float64)
    with pytest.raises(ValueError):
        BY_NAME["dpm_fast"].sample(model, x, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
