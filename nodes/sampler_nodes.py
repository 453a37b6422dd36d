"""KSampler, KSamplerAdvanced and AddNoise: the nodes that put noise in and take it out.

How noise is added (the same rule for all three, see ``denoise`` for the VP convention):

* A run over steps ``[start, end)`` of an N-step schedule starts at noise level σ_start.
* Adding noise to a clean latent x0 is the forward process q(x_t | x0) at σ_start. Exception:
  a run from step 0 on an all-zero latent (text-to-image) starts from pure noise
  ``ε · init_noise_sigma``, exactly as diffusers' pipelines do.
* AddNoise applies the forward process and records σ in the LATENT; a KSampler given such a
  latent does not add noise again and starts at the step of its schedule with that σ, so
  ``VAEEncode → AddNoise → KSampler`` equals ``VAEEncode → KSampler(denoise < 1)`` when both
  use the same seed (per-step noise of ancestral samplers included).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.denoise import (
    NOISE_KEY,
    NoiseLevel,
    denoise,
    forward_noise,
    initial_noise,
    noise_level_of,
    prepare_guidance,
    to_scheduler_space,
    to_vp,
)
from latentgraph.nodes.latents import DOWNSCALE_KEY, latent_samples, model_latent_format, plain_latent
from latentgraph.nodes.preview import preview_image
from latentgraph.nodes.sampling import (
    Schedule,
    ScheduleUnsupported,
    build_schedule,
    sampler_names,
    schedule_names,
    supported_schedules,
)

MAX_SEED = 0xFFFF_FFFF_FFFF_FFFF
MAX_STEPS = 10000


def _check_model(model: Any) -> DiffusionModel:
    if not isinstance(model, DiffusionModel):
        raise NodeInputError("model", f"expected a MODEL, got {type(model).__name__}")
    return model


def make_schedule(ctx, model: DiffusionModel, sampler_name: str, scheduler: str, total_steps: int, seed: int) -> Schedule:
    """A fresh scheduler for this execution, with errors that name the offending input."""
    sampler = ctx.registry.samplers.get(sampler_name)
    if sampler is None:
        raise NodeInputError("sampler_name", f"unknown sampler {sampler_name!r}; known: {', '.join(ctx.registry.samplers)}")
    schedule = ctx.registry.schedulers.get(scheduler)
    if schedule is None:
        raise NodeInputError("scheduler", f"unknown scheduler {scheduler!r}; known: {', '.join(ctx.registry.schedulers)}")
    try:
        return build_schedule(sampler, schedule, model.scheduler_config, total_steps, seed=seed, device=model.device)
    except ScheduleUnsupported as exc:
        usable = supported_schedules(sampler, ctx.registry.schedulers)
        raise NodeInputError("scheduler", f"{exc}; with '{sampler_name}' use one of: {', '.join(usable)}") from None
    except ImportError as exc:
        raise NodeInputError("sampler_name", f"sampler '{sampler_name}' is not available: {exc}") from None


def _describe(schedule: Schedule, step: int) -> str:
    return f"step {step} of {schedule.total_steps}, {schedule.sampler.name}/{schedule.schedule.name}"


def _input_latent(model: DiffusionModel, latent: Any, name: str) -> tuple[torch.Tensor, int]:
    downscale, channels = model_latent_format(model)
    samples = latent_samples(latent, downscale, channels, name)
    if samples.shape[1] != model.in_channels:
        raise NodeInputError(
            name, f"latent has {samples.shape[1]} channels but the model ({model.arch}) takes "
            f"{model.in_channels}: it was made for another model"
        )
    return samples, downscale


def run_sampler(
    ctx,
    model: DiffusionModel,
    positive: Any,
    negative: Any,
    latent: dict[str, Any],
    *,
    seed: int,
    cfg: float,
    schedule: Schedule,
    start: int,
    end: int,
    add_noise: bool,
    force_full_denoise: bool,
) -> dict[str, Any]:
    """Sample steps ``[start, end)``; returns a clean LATENT, or a noisy one with its NoiseLevel."""
    x0, downscale = _input_latent(model, latent, "latent_image")
    noise, generator = initial_noise(x0.shape, seed)
    scheduler = schedule.scheduler
    sigma_space = schedule.sampler.sigma_space
    sigma_start = schedule.sigma_at_step(start)
    if add_noise and start == 0 and not x0.any():
        x = noise * float(scheduler.init_noise_sigma)
    elif add_noise:
        x = to_scheduler_space(forward_noise(x0.float(), noise, sigma_start), sigma_start, sigma_space)
    else:
        x = to_scheduler_space(x0.float(), sigma_start, sigma_space)
    pixel_hw = (x0.shape[2] * downscale, x0.shape[3] * downscale)
    guidance = prepare_guidance(model, positive, negative, cfg, x0.shape[0], pixel_hw)
    with torch.no_grad():
        x = denoise(
            model,
            schedule,
            guidance,
            x.to(model.device),
            start_step=start,
            end_step=end,
            generator=generator,
            force_full_denoise=force_full_denoise,
            progress=ctx.progress,
            preview=lambda x0_estimate: preview_image(x0_estimate, model.arch),
        )
    sigma_end = 0.0 if force_full_denoise else schedule.sigma_at_step(end)
    samples = to_vp(x, sigma_end, sigma_space).float().cpu()
    out = plain_latent(latent, samples, **{DOWNSCALE_KEY: downscale})
    if sigma_end > 0:
        out[NOISE_KEY] = NoiseLevel(sigma_end, _describe(schedule, end), samples)
    return out


def _denoise_steps(steps: int, denoise: float) -> tuple[int, int]:
    """``(total_steps, start_step)``: ``denoise < 1`` runs the last ``steps`` of a longer schedule."""
    if denoise >= 0.9999:
        return steps, 0
    total = int(steps / denoise)
    return total, total - steps


SAMPLER_CHOICES = (
    In("cfg", "FLOAT", default=8.0, min=0.0, max=100.0, step=0.1, tooltip="classifier-free guidance scale; 1 skips the negative"),
    In("sampler_name", "COMBO", choices=sampler_names, default="euler"),
    In("scheduler", "COMBO", choices=schedule_names, default="normal"),
)


class KSampler(Node):
    """Denoise a latent: text-to-image from an empty latent, image-to-image with denoise < 1.

    ``denoise`` < 1 runs the last ``steps`` steps of a ``steps / denoise``-step schedule
    (ComfyUI's rule). A latent from AddNoise is not noised again: sampling starts at the step
    of this schedule that has AddNoise's noise level.
    """

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
        model = _check_model(model)
        steps, denoise = int(steps), float(denoise)
        if denoise <= 0.0:
            return (latent_image,)
        total, start = _denoise_steps(steps, denoise)
        schedule = make_schedule(ctx, model, sampler_name, scheduler, total, seed)
        record = noise_level_of(latent_image) if isinstance(latent_image, dict) else None
        add_noise = record is None
        if record is not None:
            found = schedule.find_step(record.sigma)
            if found is None:
                raise NodeInputError(
                    "latent_image",
                    f"is already noisy (σ={record.sigma:.4g}, {record.description}) and this KSampler's schedule "
                    f"({sampler_name}/{scheduler}, {total} steps) has no step at that noise level: use the same "
                    "steps, denoise and scheduler as the node that added the noise",
                )
            start = found
        out = run_sampler(
            ctx, model, positive, negative, latent_image, seed=seed, cfg=cfg, schedule=schedule,
            start=start, end=total, add_noise=add_noise, force_full_denoise=False,
        )
        return (out,)


class KSamplerAdvanced(Node):
    """KSampler with explicit control over noise and the step range (ComfyUI's inputs).

    ``add_noise`` disabled takes the latent as already noisy at ``start_at_step`` (a LATENT from
    AddNoise or from a sampler that returned with leftover noise is checked to be at that noise
    level). ``return_with_leftover_noise`` disabled makes a run that ends early finish with a
    step to σ = 0.
    """

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
        model = _check_model(model)
        total = int(steps)
        start, end = int(start_at_step), min(int(end_at_step), total)
        if start >= end:
            return (latent_image,)
        schedule = make_schedule(ctx, model, sampler_name, scheduler, total, noise_seed)
        adding = add_noise == "enable"
        if not adding:
            record = noise_level_of(latent_image) if isinstance(latent_image, dict) else None
            here = schedule.sigma_at_step(start)
            if record is not None and not math.isclose(record.sigma, here, rel_tol=1e-4, abs_tol=1e-6):
                found = schedule.find_step(record.sigma)
                hint = f"set start_at_step to {found}" if found is not None else "use the same steps and scheduler"
                raise NodeInputError(
                    "latent_image",
                    f"is noisy at σ={record.sigma:.4g} ({record.description}) but start_at_step {start} of this "
                    f"schedule is at σ={here:.4g}: {hint}",
                )
        out = run_sampler(
            ctx, model, positive, negative, latent_image, seed=noise_seed, cfg=cfg, schedule=schedule,
            start=start, end=end, add_noise=adding,
            force_full_denoise=return_with_leftover_noise != "enable" and end < total,
        )
        return (out,)


class AddNoise(Node):
    """The forward diffusion process: noise a clean latent to where a sampler would start.

    The amount is given the way KSampler takes it: ``steps`` and ``denoise`` pick the start
    step of a ``steps / denoise``-step schedule of ``sampler_name``/``scheduler``; the output is
    q(x_t | x0) = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε at that step's noise level (for σ-based
    schedulers ᾱ = 1/(1 + σ²), so this is ``x0 + σ·ε`` scaled by sqrt(ᾱ)). The noise level is
    recorded in the LATENT: a KSampler (same seed, steps, denoise, scheduler) continues from it
    without adding noise again. The input is taken as clean, even if it is itself noisy.
    """

    spec = NodeSpec(
        name="AddNoise",
        display_name="Add Noise (forward process)",
        category="sampling",
        inputs=(
            In("model", "MODEL"),
            In("samples", "LATENT"),
            In("noise_seed", "INT", default=0, min=0, max=MAX_SEED, control_after_generate=True),
            In("steps", "INT", default=20, min=1, max=MAX_STEPS, tooltip="steps the sampler will run"),
            In("sampler_name", "COMBO", choices=sampler_names, default="euler"),
            In("scheduler", "COMBO", choices=schedule_names, default="normal"),
            In("denoise", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="how much noise: as KSampler's denoise"),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, model, samples, noise_seed, steps, sampler_name, scheduler, denoise=1.0):
        model = _check_model(model)
        x0, downscale = _input_latent(model, samples, "samples")
        if float(denoise) <= 0.0:
            return (plain_latent(samples, x0, **{DOWNSCALE_KEY: downscale}),)
        total, start = _denoise_steps(int(steps), float(denoise))
        schedule = make_schedule(ctx, model, sampler_name, scheduler, total, noise_seed)
        sigma = schedule.sigma_at_step(start)
        noise, _ = initial_noise(x0.shape, noise_seed)
        noisy = forward_noise(x0.float(), noise, sigma)
        out = plain_latent(samples, noisy, **{DOWNSCALE_KEY: downscale})
        out[NOISE_KEY] = NoiseLevel(sigma, _describe(schedule, start), noisy)
        return (out,)


NODES = [KSampler, KSamplerAdvanced, AddNoise]
