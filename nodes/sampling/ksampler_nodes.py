"""KSampler and KSamplerAdvanced: ComfyUI's two all-in-one sampling nodes, on the sigma-space core.

``denoise`` < 1 runs the last ``steps`` σ of a ``steps / denoise``-step schedule; KSamplerAdvanced
runs ``[start_at_step, end_at_step)`` of a ``steps``-step schedule, ending at σ = 0 unless it
returns with leftover noise (then the LATENT is ``x0 + σ·ε`` at that step's σ, ready for a second
KSamplerAdvanced with ``add_noise`` disabled).
"""

from __future__ import annotations

from typing import Any

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.latents import DOWNSCALE_KEY, latent_samples, model_latent_format, plain_latent
from latentgraph.nodes.preview import preview_image
from latentgraph.nodes.sampling.forward_noise import noise_level_of, same_sigma
from latentgraph.nodes.sampling.guidance import CFG, Guider
from latentgraph.nodes.sampling.run import NOISE_MASK_KEY, NoNoise, RandomNoise, check_model, sample
from latentgraph.nodes.sampling.samplers import SamplerDef
from latentgraph.nodes.sampling.schedules import ScheduleDef, schedule_sigmas

MAX_SEED = 0xFFFF_FFFF_FFFF_FFFF
MAX_STEPS = 10000


def sampler_names(settings: Any, registry: Any) -> list[str]:
    return list(registry.samplers)


def schedule_names(settings: Any, registry: Any) -> list[str]:
    return list(registry.schedulers)


def lookup_sampler(ctx, name: str, input_name: str = "sampler_name") -> SamplerDef:
    found = ctx.registry.samplers.get(name)
    if found is None:
        raise NodeInputError(input_name, f"unknown sampler {name!r}; known: {', '.join(ctx.registry.samplers)}")
    return found


def lookup_schedule(ctx, name: str, input_name: str = "scheduler") -> ScheduleDef:
    found = ctx.registry.schedulers.get(name)
    if found is None:
        raise NodeInputError(input_name, f"unknown scheduler {name!r}; known: {', '.join(ctx.registry.schedulers)}")
    return found


def input_latent(model: DiffusionModel, latent: Any, name: str) -> tuple[torch.Tensor, int]:
    """The LATENT's samples for this model (an EmptyLatent is built for it), and its downscale."""
    downscale, channels = model_latent_format(model)
    samples = latent_samples(latent, downscale, channels, name)
    from latentgraph.nodes.sampling.unet_inputs import latent_channels

    if samples.shape[1] != latent_channels(model):  # inpainting / instruct-pix2pix UNets take more, as conditioning
        raise NodeInputError(
            name, f"latent has {samples.shape[1]} channels but the model ({model.arch}) works on "
            f"{latent_channels(model)}: it was made for another model"
        )
    return samples, downscale


def run_guided(ctx, guider: Guider, sampler: SamplerDef, sigmas: torch.Tensor, noise: Any, latent: dict[str, Any],
               name: str = "latent_image", trace: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sample a LATENT: returns (output, denoised output) LATENTs, as SamplerCustom gives them.
    ``trace(step)`` sees every step (inspection nodes)."""
    model = guider.model
    samples, downscale = input_latent(model, latent, name)
    mask = latent.get(NOISE_MASK_KEY)
    result = sample(
        guider, sampler, sigmas, samples, noise.generate(latent, samples),
        downscale=downscale, seed=int(noise.seed), noise_mask=mask if isinstance(mask, torch.Tensor) else None,
        progress=ctx.progress, preview=lambda x0: preview_image(x0, model.arch), trace=trace, memory=ctx.memory,
    )
    extra = {DOWNSCALE_KEY: downscale}
    return plain_latent(latent, result.samples, **extra), plain_latent(latent, result.denoised, **extra)


def ksampler(ctx, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, *, denoise=1.0,
             disable_noise=False, start_step=None, last_step=None, force_full_denoise=False, trace=None) -> dict[str, Any]:
    """ComfyUI's common_ksampler: sigmas from the schedule, cut to the step range, then sample."""
    model = check_model(model)
    if not isinstance(latent, dict):
        raise NodeInputError("latent_image", "expected a LATENT (a dict with a 'samples' tensor)")
    sampler = lookup_sampler(ctx, sampler_name)
    schedule = lookup_schedule(ctx, scheduler)
    sigmas = schedule_sigmas(schedule, model.model_sampling, int(steps),
                             discard_penultimate=sampler.discard_penultimate_sigma, denoise=float(denoise))
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[: last_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step >= len(sigmas) - 1:
            return latent
        sigmas = sigmas[start_step:]
    record = noise_level_of(latent)
    if record is not None and sigmas.numel():
        if not same_sigma(record.sigma, float(sigmas[0])):
            raise NodeInputError(
                "latent_image",
                f"is already noisy (σ={record.sigma:.4g}, ForwardNoise with {record.description}) but this "
                f"sampler starts at σ={float(sigmas[0]):.4g}: give both the same steps, denoise and scheduler"
                + (" (and start_at_step where the ForwardNoise's denoise puts it)" if start_step else ""),
            )
        disable_noise = True  # the ForwardNoise latent is this run's noisy start
    # Per-step noise (ancestral, SDE samplers) is seeded by the node's seed even without initial noise.
    noise = NoNoise(int(seed)) if disable_noise else RandomNoise(int(seed))
    guider = Guider(model, {"positive": positive, "negative": negative}, CFG(float(cfg)))
    return run_guided(ctx, guider, sampler, sigmas, noise, latent, trace=trace)[0]


SAMPLER_CHOICES = (
    In("cfg", "FLOAT", default=8.0, min=0.0, max=100.0, step=0.1, tooltip="classifier-free guidance scale; 1 skips the negative"),
    In("sampler_name", "COMBO", choices=sampler_names, default="euler"),
    In("scheduler", "COMBO", choices=schedule_names, default="simple"),  # ComfyUI: its first choice
)


class KSampler(Node):
    """Denoise a latent: text-to-image from an empty latent, image-to-image with denoise < 1."""

    spec = NodeSpec(
        name="KSampler",
        category="sampling",
        inputs=(
            In("model", "MODEL"),
            In("seed", "INT", default=0, min=0, max=MAX_SEED, control_after_generate=True),
            In("steps", "INT", default=20, min=1, max=MAX_STEPS),
            *SAMPLER_CHOICES,
            In("positive", "CONDITIONING"),
            In("negative", "CONDITIONING"),
            In("latent_image", "LATENT"),
            In("denoise", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise=1.0):
        return (ksampler(ctx, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                         denoise=float(denoise)),)


class KSamplerAdvanced(Node):
    """KSampler over a step range, with the noise and the leftover noise under control."""

    spec = NodeSpec(
        name="KSamplerAdvanced",
        display_name="KSampler (Advanced)",
        category="sampling",
        inputs=(
            In("model", "MODEL"),
            In("add_noise", "COMBO", choices=("enable", "disable"), default="enable"),
            In("noise_seed", "INT", default=0, min=0, max=MAX_SEED, control_after_generate=True),
            In("steps", "INT", default=20, min=1, max=MAX_STEPS),
            *SAMPLER_CHOICES,
            In("positive", "CONDITIONING"),
            In("negative", "CONDITIONING"),
            In("latent_image", "LATENT"),
            In("start_at_step", "INT", default=0, min=0, max=MAX_STEPS),
            In("end_at_step", "INT", default=MAX_STEPS, min=0, max=MAX_STEPS),
            In("return_with_leftover_noise", "COMBO", choices=("disable", "enable"), default="disable"),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
                latent_image, start_at_step, end_at_step, return_with_leftover_noise):
        return (ksampler(
            ctx, model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
            disable_noise=add_noise == "disable", start_step=int(start_at_step), last_step=int(end_at_step),
            force_full_denoise=return_with_leftover_noise != "enable",
        ),)


NODES = [KSampler, KSamplerAdvanced]
