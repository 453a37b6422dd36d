"""Canny edge detection in plain torch, and the Canny node (ComfyUI's, which calls kornia).

The steps and conventions follow kornia's ``filters.canny`` as ComfyUI calls it (5×5 Gaussian,
σ 1, hysteresis on), so the thresholds mean the same numbers:

1. RGB → grey (0.299 R + 0.587 G + 0.114 B);
2. Gaussian blur, 5×5, σ = 1 px, reflect padding;
3. unnormalised Sobel gradients (replicate padding): a unit step reaches a magnitude of ≈ 2.6
   after the blur, which is why ComfyUI's thresholds (0.4 / 0.8) are not fractions of 1;
4. non-maximum suppression along the gradient direction rounded to 45°: a pixel must beat both
   neighbours, a tie being allowed only with the right / lower neighbour (so of two equal pixels
   across a step the left / upper one stays, as in OpenCV);
5. double threshold (strictly above ``low`` = weak, above ``high`` = strong) and hysteresis: weak
   pixels touching a strong one (8-neighbourhood) become strong until nothing changes; the rest go.

Written from the algorithm (Canny 1986) and kornia's documented conventions; no kornia needed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out

#: (dy, dx) of the 8 gradient directions, k·45° from +x (y grows downwards).
_DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))
GREY = (0.299, 0.587, 0.114)


def _gaussian_1d(size: int, sigma: float, dtype: torch.dtype, device) -> Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - size // 2
    if size % 2 == 0:
        x = x + 0.5
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _blur(grey: Tensor, size: int = 5, sigma: float = 1.0) -> Tensor:
    g = _gaussian_1d(size, sigma, grey.dtype, grey.device)
    r = size // 2
    x = F.pad(grey, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, size))
    return F.conv2d(x, g.view(1, 1, size, 1))


def _sobel(grey: Tensor) -> tuple[Tensor, Tensor]:
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=grey.dtype, device=grey.device)
    x = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(x, kx.view(1, 1, 3, 3))
    gy = F.conv2d(x, kx.t().contiguous().view(1, 1, 3, 3))
    return gx, gy


def canny(image: Tensor, low: float, high: float, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """``image`` [B, C, H, W] (C = 1 or 3, values 0..1) → (magnitude after suppression, edges 0/1),
    both [B, 1, H, W]."""
    x = image.float()
    if x.shape[1] == 3:
        w = torch.tensor(GREY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x * w).sum(1, keepdim=True)
    elif x.shape[1] != 1:
        raise ValueError(f"canny expects 1 or 3 channels, got {x.shape[1]}")
    gx, gy = _sobel(_blur(x))
    height, width = x.shape[-2:]
    # The magnitude one pixel beyond the image is that of a flat pixel (sqrt(eps)).
    padded = torch.sqrt(F.pad(gx, (1, 1, 1, 1)) ** 2 + F.pad(gy, (1, 1, 1, 1)) ** 2 + eps)
    magnitude = padded[..., 1:-1, 1:-1]
    neighbours = torch.stack(
        [padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy, dx in _DIRECTIONS], 2
    )  # [B, 1, 8, H, W]
    direction = torch.round(torch.nan_to_num(torch.atan2(gy, gx)) * (4 / math.pi))
    ahead = (direction % 8).long()
    behind = ((direction + 4) % 8).long()

    def beats(k: Tensor) -> Tensor:
        other = torch.gather(neighbours, 2, k.unsqueeze(2)).squeeze(2)
        tie_ok = (k == 0) | (k == 2)  # right and lower neighbours may tie
        return (magnitude > other) | (tie_ok & (magnitude == other))

    keep = beats(ahead) & beats(behind) & (magnitude > math.sqrt(eps))
    magnitude = magnitude * keep
    edges = ((magnitude > low).float() + (magnitude > high).float()) * 0.5
    ring = torch.ones(1, 1, 3, 3, dtype=edges.dtype, device=edges.device)
    ring[0, 0, 1, 1] = 0
    while True:
        strong = edges == 1
        touched = F.conv2d(strong.to(edges.dtype), ring, padding=1) > 0
        grow = (edges == 0.5) & touched
        if not bool(grow.any()):
            break
        edges = torch.where(grow, torch.ones_like(edges), edges)
    return magnitude, (edges == 1).to(edges.dtype)


class Canny(Node):
    spec = NodeSpec(
        name="Canny",
        category="image/preprocessors",
        description="Canny edges of an image (white on black), e.g. the hint of a canny ControlNet.",
        inputs=(
            In("image", "IMAGE"),
            In("low_threshold", "FLOAT", default=0.4, min=0.01, max=0.99, step=0.01),
            In("high_threshold", "FLOAT", default=0.8, min=0.01, max=0.99, step=0.01),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, low_threshold, high_threshold):
        if not isinstance(image, Tensor) or image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
            raise NodeInputError("image", "expected an IMAGE [batch, height, width, channels]")
        if low_threshold > high_threshold:
            raise NodeInputError("low_threshold", f"must not exceed high_threshold ({high_threshold})")
        rgb = image[..., :3] if image.shape[-1] == 4 else image
        _, edges = canny(rgb.movedim(-1, 1), float(low_threshold), float(high_threshold))
        return (edges.repeat(1, 3, 1, 1).movedim(1, -1).to(image.dtype),)


NODES = [Canny]
