"""One sampling run, ComfyUI's way: LATENT in, LATENT out.

The LATENT convention at node boundaries (ComfyUI's, so its nodes and custom nodes interoperate):
``samples`` holds *unscaled* VAE latents; a noisy latent is ``x0 + σ·ε`` in those units. A run

1. scales the latent into the model's space, ``(z − shift)·scale`` (an all-zero latent is left
   alone, so text-to-image starts from pure noise);
2. noises it to σ₀: ``x0 + σ₀·ε``, or ``x0 + sqrt(1 + σ₀²)·ε`` when σ₀ is the model's top σ
   (a run from pure noise, which the UNet saw with unit-variance input);
3. runs the sampler over ``sigmas`` with the guider as denoiser, the noise mask (inpainting)
   pinning the unmasked part to the re-noised original at every step;
4. scales the result back out of the model's space.

Initial noise is ``torch.randn`` from a CPU generator seeded with the seed — one draw per batch
index (``batch_index`` picks which), so a seed gives the same picture on every device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.sampling import hooks
from latentgraph.nodes.sampling.guidance import Guider
from latentgraph.nodes.sampling.kit import Denoiser, Prediction, Step
from latentgraph.nodes.sampling.samplers import SamplerDef

NOISE_MASK_KEY = "noise_mask"
BATCH_INDEX_KEY = "batch_index"


# -- latents in and out of the model's space --------------------------------------------------------------
def latent_scale(model: DiffusionModel) -> tuple[float, float]:
    """``(scaling_factor, shift_factor)`` of the model's latent space."""
    info = model.info or {}
    return float(info.get("scaling_factor", 0.18215)), float(info.get("shift_factor", 0.0) or 0.0)


def process_latent_in(model: DiffusionModel, z: Tensor) -> Tensor:
    scale, shift = latent_scale(model)
    return (z - shift) * scale


def process_latent_out(model: DiffusionModel, x: Tensor) -> Tensor:
    scale, shift = latent_scale(model)
    return x / scale + shift


# -- noise ------------------------------------------------------------------------------------------------
def prepare_noise(latent: Tensor, seed: int, batch_index: Sequence[int] | None = None) -> Tensor:
    """Gaussian noise shaped like ``latent`` from a CPU generator seeded with ``seed``.

    With ``batch_index`` (a latent cut from a larger batch), latent i gets the noise the full
    batch would have given index ``batch_index[i]``: draws are made one latent at a time up to
    the largest index.
    """
    generator = torch.Generator("cpu").manual_seed(int(seed))
    shape = tuple(latent.shape)
    if batch_index is None:
        return torch.randn(shape, dtype=torch.float32, generator=generator)
    wanted = sorted(set(int(i) for i in batch_index))
    drawn: dict[int, Tensor] = {}
    for i in range(wanted[-1] + 1):
        noise = torch.randn((1, *shape[1:]), dtype=torch.float32, generator=generator)
        if i in wanted:
            drawn[i] = noise
    return torch.cat([drawn[int(i)] for i in batch_index], dim=0)


@dataclass(frozen=True)
class RandomNoise:
    """NOISE: seeded Gaussian noise (what KSampler draws)."""

    seed: int

    def generate(self, latent: dict[str, Any], samples: Tensor) -> Tensor:
        return prepare_noise(samples, self.seed, latent.get(BATCH_INDEX_KEY))


@dataclass(frozen=True)
class NoNoise:
    """NOISE: zeros (the latent is already noisy, or is to be denoised as it is)."""

    seed: int = 0

    def generate(self, latent: dict[str, Any], samples: Tensor) -> Tensor:
        return torch.zeros(samples.shape, dtype=torch.float32)


# -- inpainting ---------------------------------------------------------------------------------------------
def prepare_mask(mask: Tensor, shape: Sequence[int], device: torch.device) -> Tensor:
    """A noise mask resized (bilinear) to the latent and repeated over channels and batch."""
    mask = mask.float().reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
    mask = F.interpolate(mask, size=(int(shape[2]), int(shape[3])), mode="bilinear")
    mask = torch.cat([mask] * int(shape[1]), dim=1)
    if mask.shape[0] < shape[0]:
        mask = mask.repeat(-(-int(shape[0]) // mask.shape[0]), 1, 1, 1)
    return mask[: int(shape[0])].to(device)


def inpaint_noise(sampler: SamplerDef, noise: Tensor, seed: int | None) -> Tensor:
    """The noise that re-noises the kept region at each σ: the run's, or a fresh draw."""
    if not sampler.fresh_inpaint_noise:
        return noise
    generator = torch.Generator("cpu").manual_seed(int(seed or 0) + 1)
    return torch.randn(noise.shape, generator=generator).to(noise.dtype).to(noise.device)


@dataclass
class MaskedDenoiser:
    """Inpainting: outside the mask the latent is held at the original, re-noised to each σ."""

    inner: Any  # Denoiser
    mask: Tensor
    noise: Tensor
    latent: Tensor
    #: The run's σ schedule and the MODEL's ``denoise_mask`` hook, if any.
    sigmas: Tensor | None = None
    mask_function: Callable[..., Tensor] | None = None

    @property
    def model_sampling(self) -> Any:
        return self.inner.model_sampling

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        ms = self.inner.model_sampling
        mask = self.mask
        if self.mask_function is not None:
            mask = self.mask_function(sigma, mask, self.sigmas, ms)
        keep = 1.0 - mask
        x = x * mask + ms.noise_scaling(sigma.reshape(-1, *([1] * (x.ndim - 1))), self.noise, self.latent) * keep
        pred = self.inner.predict(x, sigma)
        # CFG++ samplers see the model's own unconditional estimate, as ComfyUI's post-CFG hook does.
        return Prediction(pred.denoised * mask + self.latent * keep, pred.uncond)

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self.predict(x, sigma).denoised


# -- the run ------------------------------------------------------------------------------------------------
@dataclass
class Result:
    samples: Tensor  # unscaled latents, CPU float32
    denoised: Tensor  # the last x0 estimate, unscaled


def sample(
    guider: Guider,
    sampler: SamplerDef,
    sigmas: Tensor,
    samples: Tensor,
    noise: Tensor,
    *,
    downscale: int,
    seed: int | None,
    noise_mask: Tensor | None = None,
    progress: Callable[[int, int, Callable[[], Any] | None], None] | None = None,
    preview: Callable[[Tensor], Any] | None = None,
    trace: Callable[[Step], None] | None = None,
    memory: Any = None,
) -> Result:
    """Sample ``samples`` (unscaled LATENT samples) over ``sigmas``; see the module docstring.

    ``memory`` (``ctx.memory``) puts the UNet and the conditionings' ControlNets on the device for
    the whole run, evicting other models first if its budget needs it."""
    if sigmas.numel() == 0:
        return Result(samples, samples)
    if memory is not None and memory.active:
        with memory.use(*models_of(guider)):
            return sample(guider, sampler, sigmas, samples, noise, downscale=downscale, seed=seed,
                          noise_mask=noise_mask, progress=progress, preview=preview, trace=trace)
    model = guider.model
    rule = guider.rule
    if sampler.needs_uncond and getattr(rule, "always_uncond", True) is False:
        guider = dataclasses.replace(guider, rule=dataclasses.replace(rule, always_uncond=True))
    device = model.device
    ms = model.model_sampling
    sigmas = sigmas.float().to(device)
    latent = samples.float().to(device)
    if torch.count_nonzero(latent) > 0:
        latent = process_latent_in(model, latent)
    noise = noise.float().to(device)
    denoiser: Denoiser = guider.bind(latent.shape, downscale, seed=seed, latent=latent, noise_mask=noise_mask)
    if noise_mask is not None:
        mask = prepare_mask(noise_mask, latent.shape, device)
        denoiser = MaskedDenoiser(denoiser, mask, inpaint_noise(sampler, noise, seed), latent, sigmas=sigmas,
                                  mask_function=hooks.hook(model, hooks.DENOISE_MASK))
    x = ms.noise_scaling(sigmas[0], noise, latent, ms.is_max_sigma(float(sigmas[0])))

    total = len(sigmas) - 1
    last: dict[str, Any] = {"reported": 0}

    def on_step(step: Step) -> None:
        last["denoised"] = step.denoised
        if trace is not None:  # inspection nodes record the run
            trace(step)
        if progress is not None:
            render = (lambda d=step.denoised: preview(d)) if preview is not None else None
            last["reported"] = min(step.i + 1, total)
            progress(last["reported"], total, render)

    with torch.no_grad():
        out = sampler.sample(denoiser, x, sigmas, seed=seed, callback=on_step)
    if progress is not None and last["reported"] < total:  # dpm_fast reports fewer steps than σ
        progress(total, total, None)
    out = ms.inverse_noise_scaling(sigmas[-1], out)
    denoised = last.get("denoised", out)
    return Result(process_latent_out(model, out).float().cpu(), process_latent_out(model, denoised).float().cpu())


def models_of(guider: Guider) -> list[Any]:
    """The modules a sampling run calls: the UNet and every ControlNet / T2I-Adapter its conditionings carry."""
    modules = {id(guider.model.unet): guider.model.unet}
    for cond in guider.conds.values():
        for entry in cond or ():
            extras = entry[1] if isinstance(entry, (list, tuple)) and len(entry) > 1 else None
            control = extras.get("control") if isinstance(extras, dict) else None
            for link in control.chain() if hasattr(control, "chain") else ():
                net = getattr(getattr(link, "net", None), "model", None)
                if net is not None:
                    modules[id(net)] = net
    return list(modules.values())


def check_model(model: Any, name: str = "model") -> DiffusionModel:
    if not isinstance(model, DiffusionModel):
        raise NodeInputError(name, f"expected a MODEL, got {type(model).__name__}")
    return model
