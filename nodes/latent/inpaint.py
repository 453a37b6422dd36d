"""Inpainting and outpainting preparation: VAEEncodeForInpaint, InpaintModelConditioning,
ImagePadForOutpaint, and DifferentialDiffusion (a soft noise mask that opens up step by step).

A noise mask (LATENT ``noise_mask``, 1 = repaint) tells every sampler where it may change the
latent; elsewhere the output equals the input (``sampling.run.MaskedDenoiser``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.components import Autoencoder
from latentgraph.nodes.conditioning_nodes import set_values
from latentgraph.nodes.latent_mask import check_mask
from latentgraph.nodes.latents import DOWNSCALE_KEY, MAX_RESOLUTION, encode_images
from latentgraph.nodes.sampling.run import NOISE_MASK_KEY


# -- pure functions ------------------------------------------------------------------------------------------
def fit_mask(mask: Tensor, height: int, width: int) -> Tensor:
    """A MASK as ``[B, 1, height, width]`` (bilinear)."""
    mask = mask.float().reshape(-1, 1, mask.shape[-2], mask.shape[-1])
    return F.interpolate(mask, size=(height, width), mode="bilinear")


def crop_to_scale(pixels: Tensor, mask: Tensor, f: int) -> tuple[Tensor, Tensor]:
    """Pixels ``[B, H, W, C]`` and mask ``[B, 1, H, W]`` centre-cropped to multiples of ``f``."""
    h, w = pixels.shape[1] // f * f, pixels.shape[2] // f * f
    if h == 0 or w == 0:
        raise NodeInputError("pixels", f"image {pixels.shape[2]}×{pixels.shape[1]} is smaller than the VAE's scale {f}")
    top, left = (pixels.shape[1] % f) // 2, (pixels.shape[2] % f) // 2
    return pixels[:, top : top + h, left : left + w, :], mask[:, :, top : top + h, left : left + w]


def grey_out(pixels: Tensor, mask: Tensor) -> Tensor:
    """Pixels with the masked part (mask rounded to 0/1) set to mid-grey: the VAE then encodes
    nothing of what is to be replaced."""
    keep = (1.0 - mask.round()).squeeze(1)[..., None]
    rgb = (pixels[..., :3] - 0.5) * keep + 0.5
    return torch.cat([rgb, pixels[..., 3:]], dim=-1)


def grow_mask(mask: Tensor, grow: int) -> Tensor:
    """The rounded mask dilated by a ``grow × grow`` box (0/1 values), same size."""
    binary = mask.round()
    if grow <= 0:
        return binary
    kernel = torch.ones(1, 1, grow, grow)
    padding = math.ceil((grow - 1) / 2)
    grown = F.conv2d(binary, kernel, padding=padding).clamp(0, 1)
    return grown[:, :, : mask.shape[2], : mask.shape[3]].round()


def pad_for_outpaint(image: Tensor, left: int, top: int, right: int, bottom: int, feathering: int) -> tuple[Tensor, Tensor]:
    """The image on a mid-grey canvas grown by the given margins, and the mask of what to paint:
    1 on the margins, fading quadratically into the picture over ``feathering`` pixels from the
    sides that grew (only when the picture is more than twice ``feathering`` in both directions)."""
    b, h, w, c = image.shape
    canvas = torch.full((b, h + top + bottom, w + left + right, c), 0.5, dtype=torch.float32)
    canvas[:, top : top + h, left : left + w, :] = image
    mask = torch.ones(h + top + bottom, w + left + right, dtype=torch.float32)
    inner = torch.zeros(h, w, dtype=torch.float32)
    if feathering > 0 and feathering * 2 < h and feathering * 2 < w:
        i = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
        j = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
        far_h, far_w = torch.full_like(i, float(h)), torch.full_like(j, float(w))
        d = torch.stack([
            i if top else far_h, (h - i) if bottom else far_h,
            j if left else far_w, (w - j) if right else far_w,
        ]).amin(dim=0)
        v = (feathering - d) / feathering
        inner = torch.where(d < feathering, v * v, inner)
    mask[top : top + h, left : left + w] = inner
    return canvas, mask[None]


def differential_mask(sigma: Tensor, mask: Tensor, sigmas: Tensor, model_sampling: Any, strength: float = 1.0) -> Tensor:
    """Differential diffusion (Levin & Fried 2023): at each step repaint where the mask value is
    at least the run's progress so far (1 at the first σ … 0 at the last), so a soft mask's
    strong parts change from the start and its weak parts only at the end. ``strength`` < 1 mixes
    the soft mask back in."""
    ms = model_sampling
    sigma_to = float(ms.sigma_min)
    if float(sigmas[-1]) > sigma_to:
        sigma_to = float(sigmas[-1])
    ts_from = ms.timestep(torch.as_tensor(float(sigmas[0])))
    ts_to = ms.timestep(torch.as_tensor(sigma_to))
    current = ms.timestep(torch.as_tensor(float(sigma.reshape(-1)[0])))
    threshold = (current - ts_to) / (ts_from - ts_to)
    binary = (mask >= threshold.to(mask)).to(mask.dtype)
    if strength and strength < 1:
        return strength * binary + (1 - strength) * mask
    return binary


# -- nodes ---------------------------------------------------------------------------------------------------
def _check(pixels: Any, mask: Any, vae: Any) -> tuple[Tensor, Tensor, Autoencoder]:
    if not isinstance(pixels, Tensor) or pixels.ndim != 4:
        raise NodeInputError("pixels", "expected an IMAGE tensor [batch, height, width, channels]")
    if not isinstance(vae, Autoencoder):
        raise NodeInputError("vae", f"expected a VAE, got {type(vae).__name__}")
    return pixels, check_mask("mask", mask), vae


class VAEEncodeForInpaint(Node):
    spec = NodeSpec(
        name="VAEEncodeForInpaint",
        display_name="VAE Encode (for Inpainting)",
        category="latent/inpaint",
        description="Encodes the image with the masked part greyed out, and sets the mask (grown by a few pixels) "
        "as the noise mask: the sampler paints it from scratch, use denoise 1.0.",
        inputs=(
            In("pixels", "IMAGE"),
            In("vae", "VAE"),
            In("mask", "MASK"),
            In("grow_mask_by", "INT", default=6, min=0, max=64, step=1),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, pixels, vae, mask, grow_mask_by=6):
        pixels, mask, vae = _check(pixels, mask, vae)
        f = vae.downscale_factor
        pixels, mask = crop_to_scale(pixels, fit_mask(mask, pixels.shape[1], pixels.shape[2]), f)
        noise_mask = grow_mask(mask, int(grow_mask_by))
        samples = encode_images(vae, grey_out(pixels, mask), ctx.memory)
        return ({"samples": samples, NOISE_MASK_KEY: noise_mask, DOWNSCALE_KEY: f},)


class InpaintModelConditioning(Node):
    spec = NodeSpec(
        name="InpaintModelConditioning",
        category="conditioning/inpaint",
        description="For inpainting models: the greyed-out picture and the mask go into the conditioning "
        "(concat_latent_image, concat_mask), the original picture into the latent.",
        inputs=(
            In("positive", "CONDITIONING"),
            In("negative", "CONDITIONING"),
            In("vae", "VAE"),
            In("pixels", "IMAGE"),
            In("mask", "MASK"),
            In("noise_mask", "BOOLEAN", default=True,
               tooltip="Add a noise mask to the latent so sampling will only happen within the mask. "
               "Might improve results or completely break things depending on the model."),
        ),
        outputs=(Out("CONDITIONING", "positive"), Out("CONDITIONING", "negative"), Out("LATENT", "latent")),
    )

    def execute(self, ctx, positive, negative, vae, pixels, mask, noise_mask=True):
        pixels, mask, vae = _check(pixels, mask, vae)
        f = vae.downscale_factor
        cropped, mask = crop_to_scale(pixels, fit_mask(mask, pixels.shape[1], pixels.shape[2]), f)
        concat = encode_images(vae, grey_out(cropped, mask), ctx.memory)
        latent: dict[str, Any] = {"samples": encode_images(vae, pixels, ctx.memory), DOWNSCALE_KEY: f}
        if noise_mask:
            latent[NOISE_MASK_KEY] = mask
        values = {"concat_latent_image": concat, "concat_mask": mask}
        return (set_values("positive", positive, values), set_values("negative", negative, values), latent)


class ImagePadForOutpaint(Node):
    spec = NodeSpec(
        name="ImagePadForOutpaint",
        display_name="Pad Image for Outpainting",
        category="image",
        description="Grows the canvas (mid-grey) and returns the mask of the new area, feathered into the picture.",
        inputs=(
            In("image", "IMAGE"),
            In("left", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
            In("top", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
            In("right", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
            In("bottom", "INT", default=0, min=0, max=MAX_RESOLUTION, step=8),
            In("feathering", "INT", default=40, min=0, max=MAX_RESOLUTION, step=1),
        ),
        outputs=(Out("IMAGE"), Out("MASK")),
    )

    def execute(self, ctx, image, left=0, top=0, right=0, bottom=0, feathering=40):
        if not isinstance(image, Tensor) or image.ndim != 4:
            raise NodeInputError("image", "expected an IMAGE tensor [batch, height, width, channels]")
        sizes = {"left": left, "top": top, "right": right, "bottom": bottom, "feathering": feathering}
        for name, value in sizes.items():
            if int(value) < 0:
                raise NodeInputError(name, f"must be 0 or more, got {value}")
        return pad_for_outpaint(image.float(), *(int(v) for v in sizes.values()))


class DifferentialDiffusion(Node):
    """A copy of the MODEL whose samplers read a soft noise mask as 'how early to repaint here'."""

    spec = NodeSpec(
        name="DifferentialDiffusion",
        display_name="Differential Diffusion",
        category="_for_testing",
        inputs=(In("model", "MODEL"), In("strength", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01, required=False)),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, model, strength=1.0):
        from latentgraph.nodes.sampling.hooks import DENOISE_MASK, with_hook
        from latentgraph.nodes.sampling.run import check_model

        s = float(strength)

        def mask_function(sigma, mask, sigmas, model_sampling):
            return differential_mask(sigma, mask, sigmas, model_sampling, s)

        return (with_hook(check_model(model), DENOISE_MASK, mask_function),)


NODES = [VAEEncodeForInpaint, InpaintModelConditioning, ImagePadForOutpaint, DifferentialDiffusion]
