"""LATENT nodes: EmptyLatent, VAEEncode, VAEDecode, LatentUpscale; and the latent scaling rule.

A LATENT is a dict (as in ComfyUI, so custom nodes can copy and extend it):

* ``samples``: tensor ``[B, C, h, w]`` of *unscaled* VAE latents ``z`` (ComfyUI's convention);
  samplers scale into the model's space, ``(z − shift)·scale``, and back (``sampling.run``); a
  noisy latent is ``z0 + σ·ε`` in these units;
* ``downscale``: pixels per latent cell, when known (LatentUpscale reads it; default 8);
* ``empty_size``: an :class:`EmptyLatentSpec` for an empty latent whose shape is decided by the
  model that samples it (see :class:`EmptyLatent`);
* ``noise_mask``: where a sampler may change the latent (inpainting; 1 = change);
* ``noise_level``: a ``sampling.forward_noise.NoiseLevel`` record from ForwardNoise.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.components import Autoencoder, DiffusionModel
from latentgraph.nodes.images import center_crop_to_aspect
from latentgraph.nodes.sampling.forward_noise import NOISE_KEY

DOWNSCALE_KEY = "downscale"
EMPTY_KEY = "empty_size"
#: What ComfyUI assumes when nothing says otherwise (SD1/SD2/SDXL VAEs).
DEFAULT_DOWNSCALE = 8
DEFAULT_CHANNELS = 4
MAX_RESOLUTION = 16384
#: Images per VAE call; bounds peak memory on long batches.
VAE_CHUNK = 4


# -- the model's latent format --------------------------------------------------------------------
def model_latent_format(model: DiffusionModel) -> tuple[int, int]:
    """``(downscale, channels)`` of the model's latent space, from what the loader recorded."""
    info = model.info or {}
    return int(info.get("latent_downscale", DEFAULT_DOWNSCALE)), int(info.get("latent_channels", model.in_channels))


# -- empty latents -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmptyLatentSpec:
    """A requested empty latent: pixel size and batch, shape decided by the model using it."""

    width: int
    height: int
    batch_size: int
    #: The ComfyUI-shaped zeros published alongside; if a node replaced them, the spec is stale.
    placeholder: torch.Tensor = field(repr=False, compare=False)


def size_problem(name: str, value: int, downscale: int) -> str | None:
    if value % downscale == 0:
        return None
    return (
        f"{name} {value} is not a multiple of {downscale}, the model's latent scale "
        f"(try {max(downscale, value // downscale * downscale)})"
    )


def empty_samples(width: int, height: int, batch: int, downscale: int, channels: int) -> torch.Tensor:
    for name, value in (("width", width), ("height", height)):
        problem = size_problem(name, value, downscale)
        if problem:
            raise NodeInputError(name, problem)
    return torch.zeros(batch, channels, height // downscale, width // downscale)


def latent_samples(latent: Any, downscale: int, channels: int, input_name: str) -> torch.Tensor:
    """The samples of a LATENT input; materialises an :class:`EmptyLatent` for this model."""
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), torch.Tensor):
        raise NodeInputError(input_name, "expected a LATENT (a dict with a 'samples' tensor)")
    spec = latent.get(EMPTY_KEY)
    if isinstance(spec, EmptyLatentSpec) and latent["samples"] is spec.placeholder:
        for name, value in (("width", spec.width), ("height", spec.height)):
            problem = size_problem(name, value, downscale)
            if problem:
                raise NodeInputError(input_name, f"the EmptyLatent's {problem}")
        return empty_samples(spec.width, spec.height, spec.batch_size, downscale, channels)
    samples = latent["samples"]
    if samples.ndim != 4:
        raise NodeInputError(input_name, f"samples must be [batch, channels, height, width], got {tuple(samples.shape)}")
    return samples


def plain_latent(latent: dict[str, Any], samples: torch.Tensor, **extra: Any) -> dict[str, Any]:
    """A copy of ``latent`` with new samples and without records that described the old ones."""
    out = {k: v for k, v in latent.items() if k not in (EMPTY_KEY, NOISE_KEY)}
    out["samples"] = samples
    out.update(extra)
    return out


class EmptyLatent(Node):
    """Zeros to start text-to-image from.

    The latent's shape depends on the model (a VAE's downscale and channels: 8× and 4 channels
    for SD1/SDXL, other factors elsewhere). Connect ``vae`` and the latent is built for it now,
    with a clear error if width/height do not fit. Without it (ComfyUI's ``EmptyLatentImage``
    has no model input) the node publishes ComfyUI-shaped zeros ``[B, 4, H/8, W/8]`` plus the
    requested pixel size; a sampler or VAEDecode then builds the right zeros for its own model,
    so the same API workflow runs on any architecture.
    """

    spec = NodeSpec(
        name="EmptyLatent",
        aliases=("EmptyLatentImage",),
        display_name="Empty Latent",
        category="latent",
        inputs=(
            In("width", "INT", default=512, min=16, max=MAX_RESOLUTION, step=8),
            In("height", "INT", default=512, min=16, max=MAX_RESOLUTION, step=8),
            In("batch_size", "INT", default=1, min=1, max=4096),
            In("vae", "VAE", required=False, tooltip="optional: build the latent for this VAE right away"),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, width: int, height: int, batch_size: int, vae: Autoencoder | None = None):
        width, height, batch_size = int(width), int(height), int(batch_size)
        if vae is not None:
            f = vae.downscale_factor
            return ({"samples": empty_samples(width, height, batch_size, f, vae.latent_channels), DOWNSCALE_KEY: f},)
        placeholder = torch.zeros(
            batch_size, DEFAULT_CHANNELS, height // DEFAULT_DOWNSCALE, width // DEFAULT_DOWNSCALE
        )
        spec = EmptyLatentSpec(width, height, batch_size, placeholder)
        return ({"samples": placeholder, EMPTY_KEY: spec, DOWNSCALE_KEY: DEFAULT_DOWNSCALE},)


# -- VAE -----------------------------------------------------------------------------------------
def encode_images(vae: Autoencoder, images: torch.Tensor, memory: Any = None) -> torch.Tensor:
    """IMAGE ``[B, H, W, C]`` 0..1 → unscaled latents (the posterior mean: deterministic).

    ``memory`` (``ctx.memory``) puts the VAE on the device first; without it an offloaded VAE streams."""
    f = vae.downscale_factor
    h, w = images.shape[1] // f * f, images.shape[2] // f * f
    if h == 0 or w == 0:
        raise NodeInputError("pixels", f"image {images.shape[2]}×{images.shape[1]} is smaller than the VAE's scale {f}")
    top, left = (images.shape[1] - h) // 2, (images.shape[2] - w) // 2
    pixels = images[:, top : top + h, left : left + w, :3]
    out = []
    with torch.no_grad(), _in_use(memory, vae):
        for chunk in pixels.split(VAE_CHUNK):
            x = chunk.permute(0, 3, 1, 2).to(vae.device, vae.dtype) * 2.0 - 1.0
            z = vae.vae.encode(x).latent_dist.mode()
            out.append(z.float().cpu())
    return torch.cat(out)


def decode_latents(vae: Autoencoder, latents: torch.Tensor, memory: Any = None) -> torch.Tensor:
    """Unscaled latents → IMAGE ``[B, H, W, 3]`` float 0..1 on the CPU (``memory``: as :func:`encode_images`)."""
    out = []
    with torch.no_grad(), _in_use(memory, vae):
        for chunk in latents.split(VAE_CHUNK):
            z = chunk.float().to(vae.device)
            x = vae.vae.decode(z.to(vae.dtype)).sample
            if vae.dtype == torch.float16 and not torch.isfinite(x).all():
                # fp16 VAEs (SDXL's) can overflow; redo this chunk in float32 rather than return NaNs.
                x = copy.deepcopy(vae.vae).float().decode(z.float()).sample
            out.append(((x.float() + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 3, 1).cpu())
    return torch.cat(out)


def _in_use(memory: Any, vae: Autoencoder) -> Any:
    return memory.use(vae.vae) if memory is not None else contextlib.nullcontext()


class VAEEncode(Node):
    """Pixels to latent. Sizes that are not a multiple of the VAE's scale are centre-cropped."""

    spec = NodeSpec(
        name="VAEEncode",
        display_name="VAE Encode",
        category="latent",
        inputs=(In("pixels", "IMAGE"), In("vae", "VAE")),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, pixels: torch.Tensor, vae: Autoencoder):
        if not isinstance(pixels, torch.Tensor) or pixels.ndim != 4:
            raise NodeInputError("pixels", "expected an IMAGE tensor [batch, height, width, channels]")
        return ({"samples": encode_images(vae, pixels, ctx.memory), DOWNSCALE_KEY: vae.downscale_factor},)


class VAEDecode(Node):
    spec = NodeSpec(
        name="VAEDecode",
        display_name="VAE Decode",
        category="latent",
        inputs=(In("samples", "LATENT"), In("vae", "VAE")),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, samples: dict[str, Any], vae: Autoencoder):
        latents = latent_samples(samples, vae.downscale_factor, vae.latent_channels, "samples")
        if latents.shape[1] != vae.latent_channels:
            raise NodeInputError(
                "samples", f"latent has {latents.shape[1]} channels but the VAE expects {vae.latent_channels}: "
                "it was made for another model"
            )
        return (decode_latents(vae, latents, ctx.memory),)


# -- resizing ------------------------------------------------------------------------------------
UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "bislerp")


def _sample_positions(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each of ``size`` outputs samples ``n`` inputs: (lower index, upper index, weight of
    the upper). Taken from torch's own bilinear resize of the indices, so positions round exactly
    as bilinear interpolation's (and ComfyUI's bislerp's) do."""
    index = torch.arange(n, dtype=torch.float32).view(1, 1, 1, n)
    pos = F.interpolate(index, size=(1, size), mode="bilinear").view(size)
    upper = (index + 1).view(n)
    upper[-1] = n - 1
    hi = F.interpolate(upper.view(1, 1, 1, n), size=(1, size), mode="bilinear").view(size)
    return pos.long(), hi.long(), pos - pos.floor()


def _slerp_rows(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of channel vectors (rows of ``[N, C]``), lengths interpolated
    linearly; (nearly) parallel rows keep ``a``, opposite ones are blended linearly."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua = torch.where(na == 0, torch.zeros_like(a), a / na)
    ub = torch.where(nb == 0, torch.zeros_like(b), b / nb)
    dot = (ua * ub).sum(-1)
    omega = dot.acos()
    so = omega.sin()
    wa = (((1.0 - t.squeeze(-1)) * omega).sin() / so).unsqueeze(-1)
    wb = ((t.squeeze(-1) * omega).sin() / so).unsqueeze(-1)
    out = (wa * ua + wb * ub) * (na * (1.0 - t) + nb * t)
    parallel, opposite = (dot > 1 - 1e-5).unsqueeze(-1), (dot < 1e-5 - 1).unsqueeze(-1)
    out = torch.where(parallel, a, out)
    return torch.where(opposite, a * (1.0 - t) + b * t, out)


def _slerp_axis(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Resize ``[B, C, H, W]`` along one spatial axis by spherical interpolation of the channel
    vectors (bislerp), computed on ``[N, C]`` rows."""
    lo, hi, t = _sample_positions(x.shape[dim], size)
    a = x.index_select(dim, lo).movedim(1, -1)
    b = x.index_select(dim, hi).movedim(1, -1)
    shape = [1] * a.ndim
    shape[dim - 1] = size
    weights = t.view(shape).expand(*a.shape[:-1], 1)
    c = a.shape[-1]
    out = _slerp_rows(a.reshape(-1, c), b.reshape(-1, c), weights.reshape(-1, 1))
    return out.reshape(a.shape).movedim(-1, 1)


def resize_latents(samples: torch.Tensor, width: int, height: int, method: str, crop: str) -> torch.Tensor:
    """Resize ``[B, C, h, w]`` to ``[B, C, height, width]`` (latent cells), optionally centre-cropped."""
    if crop == "center":
        samples = center_crop_to_aspect(samples, width, height)
    x = samples.float()
    if method == "bislerp":
        return _slerp_axis(_slerp_axis(x, width, 3), height, 2).to(samples.dtype)
    kwargs = {"align_corners": False} if method in ("bilinear", "bicubic") else {}
    return F.interpolate(x, size=(height, width), mode=method, **kwargs).to(samples.dtype)


#: LatentUpscale never makes a side smaller than this many latent cells (ComfyUI's 64 px).
MIN_UPSCALE_CELLS = 8


class LatentUpscale(Node):
    """Resize a latent to a pixel size (0 keeps the aspect ratio from the other side)."""

    spec = NodeSpec(
        name="LatentUpscale",
        display_name="Upscale Latent",
        category="latent",
        inputs=(
            In("samples", "LATENT"),
            In("upscale_method", "COMBO", choices=UPSCALE_METHODS, default="nearest-exact"),
            In("width", "INT", default=512, min=0, max=MAX_RESOLUTION, step=8),
            In("height", "INT", default=512, min=0, max=MAX_RESOLUTION, step=8),
            In("crop", "COMBO", choices=("disabled", "center"), default="disabled"),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples: dict[str, Any], upscale_method: str, width: int, height: int, crop: str):
        if not isinstance(samples, dict) or not isinstance(samples.get("samples"), torch.Tensor):
            raise NodeInputError("samples", "expected a LATENT (a dict with a 'samples' tensor)")
        if upscale_method not in UPSCALE_METHODS:
            raise NodeInputError("upscale_method", f"unknown method {upscale_method!r}; use one of {', '.join(UPSCALE_METHODS)}")
        f = int(samples.get(DOWNSCALE_KEY, DEFAULT_DOWNSCALE))
        spec = samples.get(EMPTY_KEY)
        pending = isinstance(spec, EmptyLatentSpec) and samples["samples"] is spec.placeholder
        current = samples["samples"]
        cells_w = spec.width // DEFAULT_DOWNSCALE if pending else current.shape[3]
        cells_h = spec.height // DEFAULT_DOWNSCALE if pending else current.shape[2]
        width, height = int(width), int(height)
        if width == 0 and height == 0:
            return (samples,)
        # ComfyUI's rule: at least 8 cells a side (64 px at SD's scale); a 0 side follows the
        # aspect ratio, rounded in pixels, then floored to whole cells
        least = MIN_UPSCALE_CELLS * f
        if width == 0:
            height = max(least, height)
            width = max(least, round(cells_w * height / cells_h))
        elif height == 0:
            width = max(least, width)
            height = max(least, round(cells_h * width / cells_w))
        else:
            width, height = max(least, width), max(least, height)
        if pending:
            # Still empty: resizing zeros is just a new size, decided by the model later.
            placeholder = torch.zeros(spec.batch_size, current.shape[1], height // DEFAULT_DOWNSCALE, width // DEFAULT_DOWNSCALE)
            new_spec = EmptyLatentSpec(width, height, spec.batch_size, placeholder)
            return ({**plain_latent(samples, placeholder), EMPTY_KEY: new_spec},)
        resized = resize_latents(current, width // f, height // f, upscale_method, crop)
        return (plain_latent(samples, resized),)


NODES = [EmptyLatent, VAEEncode, VAEDecode, LatentUpscale]
