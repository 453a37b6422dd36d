"""The sampling loop: classifier-free guidance around the UNet, driven by a diffusers scheduler.

Conventions (one place, used by KSampler, KSamplerAdvanced and AddNoise alike):

* A noise level is a k-diffusion sigma σ. The variance-preserving (VP) coefficients are
  ``a = 1/sqrt(1+σ²) = sqrt(ᾱ)`` and ``s = σ·a = sqrt(1−ᾱ)``.
* A LATENT flowing between nodes is always in VP form, ``x_t = a·x0 + s·ε`` — the forward process
  q(x_t | x0) — so its magnitude stays ~1 and it means the same to every sampler. (ComfyUI passes
  the sigma-space form ``x0 + σ·ε`` instead; the two differ by the factor ``a``.)
* Inside a run the sample lives in the scheduler's own space: ``x0 + σ·ε`` for k-diffusion style
  schedulers (Euler, Heun, LMS, DPM2, DPM++ SDE: ``SamplerDef.sigma_space``), VP for the others
  (DDIM, DDPM, DPM++ 2M, UniPC, LCM). :func:`to_scheduler_space` / :func:`to_vp` convert.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from latentgraph.errors import NodeInputError
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.sampling import Schedule

#: Key of the :class:`NoiseLevel` record in a LATENT dict.
NOISE_KEY = "noise_level"

ProgressFn = Callable[[int, int, Callable[[], Any] | None], None]


# -- noise levels ----------------------------------------------------------------------------------
def vp_coefficients(sigma: float) -> tuple[float, float]:
    """``(sqrt(ᾱ), sqrt(1−ᾱ))`` of the noise level σ."""
    a = 1.0 / math.sqrt(1.0 + sigma * sigma)
    return a, sigma * a


def forward_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """q(x_t | x0) = sqrt(ᾱ)·x0 + sqrt(1−ᾱ)·ε at noise level σ (VP form)."""
    a, s = vp_coefficients(sigma)
    return x0 * a + noise * s


def to_scheduler_space(x_vp: torch.Tensor, sigma: float, sigma_space: bool) -> torch.Tensor:
    return x_vp * math.sqrt(1.0 + sigma * sigma) if sigma_space else x_vp


def to_vp(x: torch.Tensor, sigma: float, sigma_space: bool) -> torch.Tensor:
    return x * vp_coefficients(sigma)[0] if sigma_space else x


def predicted_x0(output: torch.Tensor, sample: torch.Tensor, sigma: float, prediction_type: str, sigma_space: bool) -> torch.Tensor:
    """The clean latent the model's output implies for ``sample`` (scheduler space) at σ."""
    a, s = vp_coefficients(sigma)
    x_vp = sample * a if sigma_space else sample
    if prediction_type == "epsilon":
        return (x_vp - output * s) / a
    if prediction_type == "v_prediction":
        return x_vp * a - output * s
    if prediction_type == "sample":
        return output
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


@dataclass(frozen=True)
class NoiseLevel:
    """Recorded in a LATENT (under :data:`NOISE_KEY`) by AddNoise and by samplers that stop early.

    ``samples`` is the tensor the record describes: if a later node replaces ``samples`` the
    record no longer applies and is ignored.
    """

    sigma: float
    description: str
    samples: torch.Tensor = field(repr=False, compare=False)

    def describes(self, samples: Any) -> bool:
        if samples is self.samples:
            return True
        return (
            isinstance(samples, torch.Tensor)
            and samples.shape == self.samples.shape
            and torch.equal(samples.to(self.samples.device), self.samples)
        )


def noise_level_of(latent: dict[str, Any]) -> NoiseLevel | None:
    record = latent.get(NOISE_KEY)
    if isinstance(record, NoiseLevel) and record.describes(latent.get("samples")):
        return record
    return None


def initial_noise(shape: Sequence[int], seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """Noise drawn on the CPU so a seed gives the same image on every device.

    The same generator then feeds the per-step noise of ancestral/SDE samplers, exactly as
    diffusers' pipelines do; the initial draw is always made, so that per-step noise depends
    only on the seed whether or not the initial noise was used.
    """
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32), generator


# -- conditioning ----------------------------------------------------------------------------------
@dataclass
class Guidance:
    """Text conditioning of one run, batched so every step is ONE UNet call.

    Rows are ``[negative entries…, positive entries…]``, each entry ``batch`` rows; with cfg 1
    (or a guidance-distilled model) there are no negative rows at all.
    """

    hidden_states: torch.Tensor
    added_cond: dict[str, torch.Tensor] | None
    negative_weights: tuple[float, ...]
    positive_weights: tuple[float, ...]
    cfg: float
    batch: int
    timestep_cond: torch.Tensor | None = None

    @property
    def entries(self) -> int:
        return len(self.negative_weights) + len(self.positive_weights)


def _check_entries(name: str, conditioning: Any) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    if not isinstance(conditioning, (list, tuple)) or not conditioning:
        raise NodeInputError(name, "expected CONDITIONING (a non-empty list of (embeddings, extras))")
    entries = []
    for item in conditioning:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], torch.Tensor)):
            raise NodeInputError(name, "expected CONDITIONING entries of (embeddings tensor, extras dict)")
        emb, extras = item
        extras = dict(extras or {})
        if emb.ndim != 3:
            raise NodeInputError(name, f"embeddings must be [batch, tokens, dim], got shape {tuple(emb.shape)}")
        unsupported = sorted(k for k in ("area", "mask", "control", "gligen") if extras.get(k) is not None)
        if unsupported:
            raise NodeInputError(name, f"{', '.join(unsupported)} conditioning is not supported")
        entries.append((emb, extras))
    return entries


def _fit_batch(name: str, tensor: torch.Tensor, batch: int) -> torch.Tensor:
    if tensor.shape[0] == batch:
        return tensor
    if tensor.shape[0] == 1:
        return tensor.expand(batch, *tensor.shape[1:])
    raise NodeInputError(name, f"has a batch of {tensor.shape[0]} but the latent has {batch}")


def _time_ids(extras: dict[str, Any], pixel_hw: tuple[int, int], n_ids: int, negative: bool) -> list[float]:
    """SDXL micro-conditioning: original size, crop top-left, then target size or aesthetic score."""
    height, width = pixel_hw
    ids = [
        extras.get("height", height),
        extras.get("width", width),
        extras.get("crop_h", 0),
        extras.get("crop_w", 0),
    ]
    if n_ids == 6:
        ids += [extras.get("target_height", height), extras.get("target_width", width)]
    else:  # the SDXL refiner conditions on an aesthetic score instead of the target size
        ids += [extras.get("aesthetic_score", 2.5 if negative else 6.0)]
    return [float(v) for v in ids]


def guidance_scale_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (cfg − 1)·1000 for guidance-distilled (LCM) UNets."""
    w = w.float() * 1000.0
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    angles = w[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


def prepare_guidance(
    model: DiffusionModel,
    positive: Any,
    negative: Any,
    cfg: float,
    batch: int,
    pixel_hw: tuple[int, int],
    names: tuple[str, str] = ("positive", "negative"),
) -> Guidance:
    """Check conditioning against the model and stack it for batched CFG."""
    config = model.unet.config
    distilled = getattr(config, "time_cond_proj_dim", None) is not None
    guidance_w = float(cfg) - 1.0
    if distilled:  # guidance-distilled (LCM) model: cfg goes in as an embedding, no unconditional pass
        cfg = 1.0
    pos = _check_entries(names[0], positive)
    neg = _check_entries(names[1], negative) if cfg != 1.0 else []
    groups = [(names[1], e, True) for e in neg] + [(names[0], e, False) for e in pos]

    want_dim = model.cross_attention_dim
    for name, (emb, extras), _neg in groups:
        if emb.shape[-1] != want_dim:
            source = f" (encoded by a {extras['arch']} CLIP)" if extras.get("arch") else ""
            raise NodeInputError(
                name,
                f"text embeddings have dimension {emb.shape[-1]}{source} but the model ({model.arch}) expects "
                f"{want_dim}: the CLIP and the model come from different architectures",
            )
    # Entries of different token lengths (long prompts) are repeated to a common length.
    lengths = {emb.shape[1] for _, (emb, _), _ in groups}
    common = math.lcm(*lengths)
    hidden = []
    for name, (emb, _), _ in groups:
        emb = _fit_batch(name, emb, batch)
        hidden.append(emb.repeat(1, common // emb.shape[1], 1) if emb.shape[1] != common else emb)
    hidden_states = torch.cat(hidden).to(model.device, model.dtype)

    added = None
    if getattr(config, "addition_embed_type", None) == "text_time":
        time_dim = int(config.addition_time_embed_dim)
        pooled_rows, id_rows = [], []
        for name, (_, extras), is_neg in groups:
            pooled = extras.get("pooled_output")
            if not isinstance(pooled, torch.Tensor):
                raise NodeInputError(
                    name, f"the {model.arch} model needs pooled text embeddings ('pooled_output'), this "
                    "conditioning has none: encode it with the model's own CLIP"
                )
            pooled = pooled.reshape(pooled.shape[0], -1)
            leftover = int(config.projection_class_embeddings_input_dim) - pooled.shape[-1]
            n_ids = leftover // time_dim if leftover % time_dim == 0 else 0
            if n_ids not in (5, 6):
                raise NodeInputError(
                    name, f"pooled text embeddings have dimension {pooled.shape[-1]}, which does not fit the "
                    f"model's added-condition size {config.projection_class_embeddings_input_dim}"
                )
            pooled_rows.append(_fit_batch(name, pooled, batch))
            ids = torch.tensor([_time_ids(extras, pixel_hw, n_ids, is_neg)])
            id_rows.append(ids.expand(batch, -1))
        added = {
            "text_embeds": torch.cat(pooled_rows).to(model.device, model.dtype),
            "time_ids": torch.cat(id_rows).to(model.device, model.dtype),
        }

    timestep_cond = None
    if distilled:
        w = torch.full((hidden_states.shape[0],), guidance_w)
        timestep_cond = guidance_scale_embedding(w, int(config.time_cond_proj_dim)).to(model.device, model.dtype)

    def weights(entries):
        return tuple(float(extras.get("strength", 1.0)) for _, extras in entries)

    return Guidance(hidden_states, added, weights(neg), weights(pos), float(cfg), batch, timestep_cond)


def _mix(chunks: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    if len(chunks) == 1:
        return chunks[0]
    total = sum(weights)
    return sum(c * (w / total) for c, w in zip(chunks, weights))


def predict(model: DiffusionModel, guidance: Guidance, x_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """One UNet call over all conditioning rows; returns the guided prediction in float32."""
    n = guidance.entries
    x = x_in.repeat(n, 1, 1, 1) if n > 1 else x_in
    out = model.unet(
        x.to(model.dtype),
        t,
        encoder_hidden_states=guidance.hidden_states,
        added_cond_kwargs=guidance.added_cond,
        timestep_cond=guidance.timestep_cond,
        return_dict=False,
    )[0].float()
    chunks = out.chunk(n) if n > 1 else (out,)
    n_neg = len(guidance.negative_weights)
    cond = _mix(chunks[n_neg:], guidance.positive_weights)
    if n_neg == 0:
        return cond
    uncond = _mix(chunks[:n_neg], guidance.negative_weights)
    return uncond + guidance.cfg * (cond - uncond)


# -- the loop --------------------------------------------------------------------------------------
def _step_kwargs(scheduler: Any, generator: torch.Generator) -> dict[str, Any]:
    params = inspect.signature(scheduler.step).parameters
    kwargs: dict[str, Any] = {}
    if "generator" in params:
        kwargs["generator"] = generator
    if "eta" in params:
        kwargs["eta"] = 0.0
    return kwargs


def denoise(
    model: DiffusionModel,
    schedule: Schedule,
    guidance: Guidance,
    x: torch.Tensor,
    *,
    start_step: int,
    end_step: int,
    generator: torch.Generator,
    force_full_denoise: bool = False,
    progress: ProgressFn | None = None,
    preview: Callable[[torch.Tensor], Any] | None = None,
) -> torch.Tensor:
    """Run steps ``[start_step, end_step)`` of ``schedule`` on ``x`` (scheduler space).

    With ``force_full_denoise`` and ``end_step`` before the end of the schedule, the last step
    goes to σ = 0 instead (it returns the model's clean estimate), as ComfyUI's KSamplerAdvanced
    does when it returns without leftover noise. ``progress(step, total, preview)`` is called
    after every step; ``preview(x0)`` renders an image and is only called if a sink wants it.
    """
    scheduler = schedule.scheduler
    order = schedule.order
    sigma_space = schedule.sampler.sigma_space
    prediction_type = model.prediction_type
    begin = schedule.index_of_step(start_step)
    finish_early = force_full_denoise and end_step < schedule.total_steps
    stop = schedule.index_of_step(end_step - 1) + 1 if finish_early else schedule.index_of_step(end_step)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    timesteps = scheduler.timesteps[begin:stop]
    kwargs = _step_kwargs(scheduler, generator)
    total = end_step - start_step
    last_preview: Callable[[], Any] | None = None

    for i, t in enumerate(timesteps):
        index = begin + i
        model_input = scheduler.scale_model_input(x, t)
        output = predict(model, guidance, model_input, t)
        jump_to_zero = finish_early and index == stop - 1
        # σ is exact where a step starts; previews of midpoint evaluations keep the step's start.
        if index % order == 0 and (preview is not None or jump_to_zero):
            sigma = schedule.sigma_at_index(index)
            if preview is not None:
                last_preview = partial(_render, preview, output, x, sigma, prediction_type, sigma_space)
        if jump_to_zero:  # (always a step start: stop - 1 = (end_step - 1) * order)
            x = predicted_x0(output, x, sigma, prediction_type, sigma_space)
        else:
            x = scheduler.step(output, t, x, **kwargs, return_dict=False)[0]
        if progress is not None and ((i + 1) % order == 0 or i == len(timesteps) - 1):
            progress(-(-(i + 1) // order), total, last_preview)
    return x


def _render(preview: Callable[[torch.Tensor], Any], output, sample, sigma, prediction_type, sigma_space):
    return preview(predicted_x0(output, sample, sigma, prediction_type, sigma_space))
