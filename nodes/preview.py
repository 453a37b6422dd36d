"""Cheap previews while sampling: a linear latent → RGB map, no VAE call.

The SD1/SDXL factors are least-squares fits of decoded colour on latent channels published by
the community (ComfyUI's ``latent_formats``, Birch-san's "latent2rgb" notes); they are data, good
to a few percent, and plenty for a 1/8-scale progress picture. Other latent formats get a
normalised view of their first three channels.
"""

from __future__ import annotations

from typing import Any

import torch

#: arch → (weights [C, 3], bias [3]) applied to latents in sampling scale.
LATENT_RGB: dict[str, tuple[tuple[tuple[float, float, float], ...], tuple[float, float, float]]] = {
    "sd1": (
        ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177)),
        (0.0, 0.0, 0.0),
    ),
    "sdxl": (
        ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188)),
        (0.1084, -0.0175, -0.0011),
    ),
}
LATENT_RGB["sd2"] = LATENT_RGB["sd1"]
LATENT_RGB["sd2_v"] = LATENT_RGB["sd1"]

#: Previews are upscaled (nearest) until their long side reaches this many pixels.
MIN_PREVIEW_SIDE = 256


def latent_to_rgb(latent: torch.Tensor, arch: str = "") -> torch.Tensor:
    """``[C, h, w]`` latent → ``[h, w, 3]`` float RGB in 0..1."""
    latent = latent.detach().float().cpu()
    factors = LATENT_RGB.get(arch)
    if factors is not None and latent.shape[0] == len(factors[0]):
        weights = torch.tensor(factors[0])
        bias = torch.tensor(factors[1])
        rgb = torch.einsum("chw,cr->hwr", latent, weights) + bias
        return ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)
    channels = latent[:3] if latent.shape[0] >= 3 else latent[:1].expand(3, -1, -1)
    lo = channels.amin(dim=(1, 2), keepdim=True)
    hi = channels.amax(dim=(1, 2), keepdim=True)
    return ((channels - lo) / (hi - lo).clamp_min(1e-6)).permute(1, 2, 0)


def preview_image(latents: torch.Tensor, arch: str = "") -> Any:
    """A small PIL RGB image of the first latent of a batch."""
    from PIL import Image

    rgb = latent_to_rgb(latents[0], arch)
    image = Image.fromarray((rgb * 255.0).round().to(torch.uint8).numpy(), "RGB")
    scale = max(1, MIN_PREVIEW_SIDE // max(image.size))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image
