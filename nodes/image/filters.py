"""Image filters: ImageBlur, ImageSharpen, ImageQuantize, Morphology.

Blur and sharpen convolve each channel with ComfyUI's kernels (a Gaussian sampled on [−1, 1], so
``sigma`` is relative to the radius, not in pixels) over a reflect-padded image. Quantize uses
Pillow's median-cut palette, as ComfyUI does. Morphology is grey-scale morphology with a flat
square structuring element, written here with max-pooling instead of ComfyUI's kornia.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.image.common import check_choice, check_image

DITHER_METHODS = ("none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16")
MORPHOLOGY_OPERATIONS = ("erode", "dilate", "open", "close", "gradient", "bottom_hat", "top_hat")


# -- convolution filters ------------------------------------------------------------------------


def gaussian_kernel(size: int, sigma: float, device=None, dtype=torch.float32) -> Tensor:
    """``size × size`` weights ``exp(−d²/2σ²)`` summing to 1, where d is the distance from the
    centre with the kernel's extent mapped to [−1, 1] (ComfyUI's convention)."""
    axis = torch.linspace(-1, 1, size, device=device, dtype=torch.float32)
    d = torch.sqrt(axis[:, None] * axis[:, None] + axis[None, :] * axis[None, :])
    g = torch.exp(-(d * d) / (2.0 * sigma * sigma))  # through the square root: ComfyUI's rounding, bit for bit
    return (g / g.sum()).to(dtype)


def _convolve(image: Tensor, kernel: Tensor, radius: int) -> Tensor:
    """Each channel of ``[B, H, W, C]`` convolved with ``kernel`` over the image padded by
    ``radius`` with its mirror (reflect; replicate where the image is too small to mirror)."""
    channels = image.shape[-1]
    x = image.movedim(-1, 1)
    mode = "reflect" if radius < min(x.shape[-2:]) else "replicate"
    x = F.pad(x, (radius, radius, radius, radius), mode=mode)
    weight = kernel.to(x.dtype).expand(channels, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=channels).movedim(1, -1)


def blur(image: Tensor, radius: int, sigma: float) -> Tensor:
    """Gaussian blur with a ``(2r+1)²`` kernel (radius 0: unchanged)."""
    if radius <= 0:
        return image
    return _convolve(image, gaussian_kernel(2 * radius + 1, sigma, image.device), radius)


def sharpen_kernel(radius: int, sigma: float, alpha: float, device=None) -> Tensor:
    """``δ + 10α(δ − g)``-style kernel: the Gaussian scaled by ``−10α`` with the centre raised so
    the weights sum to 1 (flat areas stay as they are)."""
    size = 2 * radius + 1
    kernel = gaussian_kernel(size, sigma, device) * -(alpha * 10)
    kernel[radius, radius] = kernel[radius, radius] - kernel.sum() + 1.0
    return kernel


def sharpen(image: Tensor, radius: int, sigma: float, alpha: float) -> Tensor:
    """Unsharp-mask style sharpening, clamped to 0..1 (radius 0: unchanged)."""
    if radius <= 0:
        return image
    return torch.clamp(_convolve(image, sharpen_kernel(radius, sigma, alpha, image.device), radius), 0, 1)


# -- quantize -----------------------------------------------------------------------------------


def bayer_matrix(order: int) -> Tensor:
    """The ``order × order`` ordered-dither thresholds in (−½, ½): ``(B + ½)/order² − ½`` with B the
    recursive Bayer index matrix ``[[4B, 4B+2], [4B+3, 4B+1]]``."""
    index = torch.zeros((1, 1), dtype=torch.float64)
    while index.shape[0] < order:
        index = torch.cat((torch.cat((4 * index, 4 * index + 2), 1), torch.cat((4 * index + 3, 4 * index + 1), 1)), 0)
    n = index.shape[0] ** 2
    return (index + 0.5) / n - 0.5


def quantize(image: Tensor, colors: int, dither: str = "none") -> Tensor:
    """Each image reduced to at most ``colors`` colours (Pillow's median-cut palette of its 8-bit
    RGB), optionally dithered; an alpha channel is kept as it is."""
    import numpy as np
    from PIL import Image

    out = image.clone()
    for b in range(image.shape[0]):
        rgb = image[b, ..., :3] if image.shape[-1] >= 3 else image[b, ..., :1].expand(-1, -1, 3)
        pixels = (rgb.detach().float().cpu().clamp(0, 1) * 255).to(torch.uint8).numpy()
        pil = Image.fromarray(pixels, mode="RGB")
        palette = pil.quantize(colors=int(colors))
        if dither == "none":
            result = pil.quantize(palette=palette, dither=Image.Dither.NONE)
        elif dither == "floyd-steinberg":
            result = pil.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
        else:
            order = int(dither.split("-")[-1])
            spread = 2 * 256 / (len(palette.getpalette()) // 3)
            threshold = spread * bayer_matrix(order) + 0.5
            h, w = pixels.shape[:2]
            reps = (math.ceil(h / order), math.ceil(w / order))
            tiled = threshold.repeat(*reps)[:h, :w, None]
            shifted = (torch.from_numpy(pixels.astype(np.float32)) + tiled).clamp(0, 255).to(torch.uint8)
            result = Image.fromarray(shifted.numpy(), mode="RGB").quantize(palette=palette, dither=Image.Dither.NONE)
        values = torch.from_numpy(np.array(result.convert("RGB"))).to(image.dtype) / 255
        if image.shape[-1] >= 3:
            out[b, ..., :3] = values.to(image.device)
        else:
            out[b] = values[..., :1].to(image.device)
    return out


# -- morphology ---------------------------------------------------------------------------------


def _extreme_filter(x: Tensor, size: int, maximum: bool, reflected: bool) -> Tensor:
    """Max (or min) of ``[B, C, H, W]`` over a ``size × size`` window, pixels outside the image
    ignored. The window's anchor cell is ``size // 2``; ``reflected`` mirrors the window (dilation
    is ``max f(x − b)``), which matters only for even sizes."""
    lo, hi = size // 2, size - 1 - size // 2
    if reflected:
        lo, hi = hi, lo
    sign = 1.0 if maximum else -1.0
    # pixels outside are −∞ for a max (never chosen): a window always holds at least its own pixel
    padded = F.pad(sign * x, (lo, hi, lo, hi), mode="constant", value=-math.inf)
    return sign * F.max_pool2d(padded, kernel_size=size, stride=1)


def erode(x: Tensor, size: int) -> Tensor:
    return _extreme_filter(x, size, maximum=False, reflected=False)


def dilate(x: Tensor, size: int) -> Tensor:
    return _extreme_filter(x, size, maximum=True, reflected=True)


def morphology(image: Tensor, operation: str, kernel_size: int) -> Tensor:
    """Grey-scale morphology of IMAGE ``[B, H, W, C]`` with a flat ``kernel_size²`` square, each
    channel on its own:

    erode = window minimum, dilate = window maximum (pixels outside the image are ignored: kornia's
    "geodesic" border), open = dilate(erode), close = erode(dilate), gradient = dilate − erode,
    top_hat = image − open, bottom_hat = close − image.

    ComfyUI's Morphology calls kornia.morphology with ``torch.ones(k, k)``; this is the same
    operation written with max-pooling and equals kornia 0.9's results (tests compare both, odd
    and even sizes)."""
    x = image.movedim(-1, 1)
    k = int(kernel_size)
    if operation == "erode":
        out = erode(x, k)
    elif operation == "dilate":
        out = dilate(x, k)
    elif operation == "open":
        out = dilate(erode(x, k), k)
    elif operation == "close":
        out = erode(dilate(x, k), k)
    elif operation == "gradient":
        out = dilate(x, k) - erode(x, k)
    elif operation == "top_hat":
        out = x - dilate(erode(x, k), k)
    elif operation == "bottom_hat":
        out = erode(dilate(x, k), k) - x
    else:
        raise NodeInputError("operation", f"{operation!r} is not one of {', '.join(MORPHOLOGY_OPERATIONS)}")
    return out.movedim(1, -1)


# -- nodes --------------------------------------------------------------------------------------


class ImageBlur(Node):
    spec = NodeSpec(
        name="ImageBlur",
        category="image/postprocessing",
        description="Gaussian blur; the kernel is 2·blur_radius+1 pixels wide and sigma is relative to it.",
        inputs=(
            In("image", "IMAGE"),
            In("blur_radius", "INT", default=1, min=1, max=31, step=1),
            In("sigma", "FLOAT", default=1.0, min=0.1, max=10.0, step=0.1),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, blur_radius=1, sigma=1.0):
        image = check_image("image", image)
        if not float(sigma) > 0:
            raise NodeInputError("sigma", f"must be more than 0, got {sigma}")
        return (blur(image, int(blur_radius), float(sigma)),)


class ImageSharpen(Node):
    spec = NodeSpec(
        name="ImageSharpen",
        category="image/postprocessing",
        description="Sharpens images (unsharp mask): alpha is the strength, radius and sigma the blur it "
        "subtracts.",
        inputs=(
            In("image", "IMAGE"),
            In("sharpen_radius", "INT", default=1, min=1, max=31, step=1),
            In("sigma", "FLOAT", default=1.0, min=0.1, max=10.0, step=0.01),
            In("alpha", "FLOAT", default=1.0, min=0.0, max=5.0, step=0.01),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, sharpen_radius=1, sigma=1.0, alpha=1.0):
        image = check_image("image", image)
        if not float(sigma) > 0:
            raise NodeInputError("sigma", f"must be more than 0, got {sigma}")
        return (sharpen(image, int(sharpen_radius), float(sigma), float(alpha)),)


class ImageQuantize(Node):
    spec = NodeSpec(
        name="ImageQuantize",
        category="image/postprocessing",
        description="Reduces each image to at most this many colours, optionally dithered.",
        inputs=(
            In("image", "IMAGE"),
            In("colors", "INT", default=256, min=1, max=256, step=1),
            In("dither", "COMBO", choices=DITHER_METHODS),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, colors=256, dither="none"):
        image = check_image("image", image)
        check_choice("dither", dither, DITHER_METHODS)
        if not 1 <= int(colors) <= 256:
            raise NodeInputError("colors", f"{colors} is outside 1..256")
        return (quantize(image, int(colors), dither),)


class Morphology(Node):
    spec = NodeSpec(
        name="Morphology",
        display_name="ImageMorphology",
        category="image/postprocessing",
        description="Grey-scale morphology with a square kernel: erode, dilate, open, close, gradient, "
        "top hat, bottom hat.",
        inputs=(
            In("image", "IMAGE"),
            In("operation", "COMBO", choices=MORPHOLOGY_OPERATIONS),
            In("kernel_size", "INT", default=3, min=3, max=999, step=1),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, operation, kernel_size=3):
        image = check_image("image", image)
        check_choice("operation", operation, MORPHOLOGY_OPERATIONS)
        if int(kernel_size) < 1:
            raise NodeInputError("kernel_size", f"must be at least 1, got {kernel_size}")
        return (morphology(image, operation, int(kernel_size)),)


NODES: list[type[Node]] = [ImageBlur, ImageSharpen, ImageQuantize, Morphology]
