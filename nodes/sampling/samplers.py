"""The sampler table: every sampler name a user can pick, mapped to its function.

The functions live in the ``solvers_*`` modules by family; each module lists its samplers in a
``SAMPLERS`` tuple. Plugins add their own :class:`SamplerDef` through ``register_samplers``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from torch import Tensor

from latentgraph.nodes.sampling.kit import Denoiser, NoiseSampler, StepCallback

#: ComfyUI's order of ``sampler_name`` choices (editors show them in this order).
COMFY_ORDER = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "exp_heun_2_x0", "exp_heun_2_x0_sde", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast",
    "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu",
    "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v",
    "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp", "er_sde",
    "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
)

_SOLVER_MODULES = ("solvers_euler", "solvers_dpmpp", "solvers_multistep", "solvers_recent")

SamplerFn = Callable[..., Tensor]


@dataclass(frozen=True)
class SamplerDef:
    """A sampling algorithm: ``function(model, x, sigmas, *, seed, callback, noise_sampler, **options)``."""

    name: str
    function: SamplerFn
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: Schedules for it are computed for one step more and the second-to-last σ dropped (ComfyUI's
    #: rule for DPM2 and UniPC, whose last step to σ = 0 needs a σ in between).
    discard_penultimate_sigma: bool = False
    #: Draws fresh noise during sampling (ancestral / SDE): the seed matters past the start.
    stochastic: bool = False
    description: str = ""
    #: Steps along the unconditional estimate too (CFG++): the guider evaluates it even at cfg 1.
    needs_uncond: bool = False
    #: Inpainting re-noises the kept region with fresh noise (seed + 1), not the initial noise
    #: (ComfyUI's "ddim": Euler with ``inpaint_options.random``).
    fresh_inpaint_noise: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        if "cfg_pp" in self.name:
            object.__setattr__(self, "needs_uncond", True)

    def with_options(self, **options: Any) -> SamplerDef:
        """The same sampler with some options changed (the parameterised Sampler* nodes)."""
        return replace(self, options={**self.options, **options})

    def sample(self, model: Denoiser, x: Tensor, sigmas: Tensor, *, seed: int | None = None,
               callback: StepCallback | None = None, noise_sampler: NoiseSampler | None = None) -> Tensor:
        if len(sigmas) <= 1:
            return x
        return self.function(model, x, sigmas, seed=seed, callback=callback, noise_sampler=noise_sampler, **self.options)


def builtin_samplers() -> list[SamplerDef]:
    """Every built-in sampler, in ComfyUI's order (unknown names last)."""
    found: dict[str, SamplerDef] = {}
    for module_name in _SOLVER_MODULES:
        module = importlib.import_module(f"latentgraph.nodes.sampling.{module_name}")
        for definition in module.SAMPLERS:
            found[definition.name] = definition
    rank = {name: i for i, name in enumerate(COMFY_ORDER)}
    return sorted(found.values(), key=lambda d: rank.get(d.name, len(rank)))
