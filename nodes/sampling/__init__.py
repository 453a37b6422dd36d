"""Sampling in sigma space (Karras et al. 2022; ComfyUI's behaviour is the reference).

* ``model_sampling`` — a model's training noise levels and σ ↔ timestep maps;
* ``schedules`` — (model sampling, steps) → SIGMAS, the nine named schedules;
* ``kit`` + ``solvers_*`` — the samplers, plain functions (denoiser, x, sigmas, …) → x;
* ``samplers`` — the table of sampler names;
* ``guidance`` — conditionings (areas, masks, timestep ranges, strength) and guiders (CFG …);
* ``run`` — one sampling run from LATENT to LATENT (noise, latent scaling, inpaint mask);
* ``ksampler_nodes``, ``forward_noise`` and the custom-sampling nodes — the graph nodes.

Plugins import :class:`SamplerDef` and :class:`ScheduleDef` from here.
"""

from latentgraph.nodes.sampling.samplers import SamplerDef, builtin_samplers
from latentgraph.nodes.sampling.schedules import SCHEDULES, ScheduleDef

__all__ = ["SCHEDULES", "SamplerDef", "ScheduleDef", "builtin_samplers"]
