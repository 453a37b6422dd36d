"""ForwardNoise: the forward diffusion process q(x_t | x0) as a node, at the step a KSampler would start.

q(x_t | x0) = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε is, divided by sqrt(ᾱ_t), ``x0 + σ_t·ε`` with
σ_t = sqrt((1 − ᾱ_t)/ᾱ_t): the same noisy latent in the σ form LATENTs carry. The node picks σ
the way KSampler takes it (``steps``, ``denoise``, ``sampler_name``, ``scheduler``), noises the
latent exactly as that KSampler would (same seed → same noise), and records the level, so a
KSampler with the same settings continues from it without noising again:
``VAEEncode → ForwardNoise → KSampler`` = ``VAEEncode → KSampler(denoise)``.

This was latentgraph's ``AddNoise`` before ComfyUI's ``AddNoise`` (model, noise, sigmas,
latent_image) took the name; workflows that use the old inputs still run: an ``AddNoise`` node
with a ``samples`` input (ComfyUI's has none) is read as ForwardNoise, in API and editor files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.sampling.run import RandomNoise, check_model, process_latent_in, process_latent_out
from latentgraph.nodes.sampling.schedules import schedule_sigmas

#: Key of the :class:`NoiseLevel` record in a LATENT.
NOISE_KEY = "noise_level"


@dataclass(frozen=True)
class NoiseLevel:
    """σ of a noisy LATENT made by ForwardNoise; applies only while ``samples`` is that tensor."""

    sigma: float
    description: str
    samples: torch.Tensor = field(repr=False, compare=False)


def noise_level_of(latent: Any) -> NoiseLevel | None:
    record = latent.get(NOISE_KEY) if isinstance(latent, dict) else None
    if isinstance(record, NoiseLevel) and latent.get("samples") is record.samples:
        return record
    return None


def same_sigma(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)


class ForwardNoise(Node):
    spec = NodeSpec(
        name="ForwardNoise",
        display_name="Forward Noise q(x_t | x0)",
        category="sampling/noise",
        description="Noise a clean latent to where a KSampler with these settings starts (the forward process).",
        inputs=(
            In("model", "MODEL"),
            In("samples", "LATENT"),
            In("noise_seed", "INT", default=0, min=0, max=0xFFFF_FFFF_FFFF_FFFF, control_after_generate=True),
            In("steps", "INT", default=20, min=1, max=10000, tooltip="steps the sampler will run"),
            In("sampler_name", "COMBO", choices=lambda s, r: list(r.samplers), default="euler"),
            In("scheduler", "COMBO", choices=lambda s, r: list(r.schedulers), default="normal"),
            In("denoise", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="how much noise: as KSampler's denoise"),
        ),
        outputs=(Out("LATENT"),),
        legacy_forms=(("AddNoise", ("samples",)),),
    )

    def execute(self, ctx, model, samples, noise_seed, steps, sampler_name, scheduler, denoise=1.0):
        # latents and ksampler_nodes import this module: importing them here breaks the cycle.
        from latentgraph.nodes.latents import DOWNSCALE_KEY, plain_latent
        from latentgraph.nodes.sampling.ksampler_nodes import input_latent, lookup_sampler, lookup_schedule

        model = check_model(model)
        x0, downscale = input_latent(model, samples, "samples")
        sampler = lookup_sampler(ctx, sampler_name)
        schedule = lookup_schedule(ctx, scheduler)
        sigmas = schedule_sigmas(schedule, model.model_sampling, int(steps),
                                 discard_penultimate=sampler.discard_penultimate_sigma, denoise=float(denoise))
        if sigmas.numel() == 0:
            return (plain_latent(samples, x0, **{DOWNSCALE_KEY: downscale}),)
        ms = model.model_sampling
        sigma = sigmas[0]
        noise = RandomNoise(int(noise_seed)).generate(samples, x0)
        latent = process_latent_in(model, x0.float()) if torch.count_nonzero(x0) > 0 else x0.float()
        noisy = process_latent_out(model, ms.noise_scaling(sigma, noise, latent, ms.is_max_sigma(float(sigma))))
        out = plain_latent(samples, noisy, **{DOWNSCALE_KEY: downscale})
        out[NOISE_KEY] = NoiseLevel(float(sigma), f"{steps} steps, denoise {denoise}, {sampler_name}/{scheduler}", noisy)
        return (out,)


NODES = [ForwardNoise]
