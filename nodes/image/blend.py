"""Per-pixel image arithmetic: ImageBlend, ImageInvert, ImageAddNoise."""

from __future__ import annotations

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.image.common import check_choice, check_image, match_channels, resize_bchw

BLEND_MODES = ("normal", "multiply", "screen", "overlay", "soft_light", "difference")
#: ImageAddNoise's seed range (ComfyUI's: any unsigned 64-bit value).
MAX_SEED = 0xFFFFFFFFFFFFFFFF


def blend_mode(a: Tensor, b: Tensor, mode: str) -> Tensor:
    """``b`` applied to ``a`` with a layer blend mode (un-mixed, unclamped).

    soft_light is the W3C/Photoshop formula (``D(a) = ((16a − 12)a + 4)a`` below a = ¼, ``√a``
    above); difference is ``a − b`` (signed, as ComfyUI: negative parts clamp to 0 later)."""
    if mode == "normal":
        return b
    if mode == "multiply":
        return a * b
    if mode == "screen":
        return 1 - (1 - a) * (1 - b)
    if mode == "overlay":
        return torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    if mode == "soft_light":
        d = torch.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, torch.sqrt(a))
        return torch.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (d - a))
    if mode == "difference":
        return a - b
    raise NodeInputError("blend_mode", f"{mode!r} is not one of {', '.join(BLEND_MODES)}")


def blend(image1: Tensor, image2: Tensor, blend_factor: float, mode: str) -> Tensor:
    """``image1·(1−f) + mode(image1, image2)·f`` clamped to 0..1; image2 is fitted to image1's
    channels and resized (bicubic, centre-cropped to the aspect) to its size."""
    image1, image2 = match_channels(image1, image2.to(image1.device, image1.dtype))
    if image2.shape[1:3] != image1.shape[1:3]:
        image2 = resize_bchw(image2.movedim(-1, 1), image1.shape[2], image1.shape[1], "bicubic", crop=True).movedim(1, -1)
    mixed = blend_mode(image1, image2, mode)
    return torch.clamp(image1 * (1 - blend_factor) + mixed * blend_factor, 0, 1)


def invert(image: Tensor) -> Tensor:
    """``1 − image`` in every channel (alpha too, as ComfyUI)."""
    return 1.0 - image


def add_noise(image: Tensor, seed: int, strength: float) -> Tensor:
    """``image + strength · N(0, 1)`` clamped to 0..1; the noise is drawn on the CPU from a
    generator seeded with ``seed``, so it is the same on every device (and equals ComfyUI's)."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn(image.shape, generator=generator, device="cpu").to(image)
    return torch.clamp(image + strength * noise, 0.0, 1.0)


class ImageBlend(Node):
    spec = NodeSpec(
        name="ImageBlend",
        category="image/postprocessing",
        description="Blends image2 onto image1 with a layer blend mode; blend_factor 0 keeps image1.",
        inputs=(
            In("image1", "IMAGE"),
            In("image2", "IMAGE"),
            In("blend_factor", "FLOAT", default=0.5, min=0.0, max=1.0, step=0.01),
            In("blend_mode", "COMBO", choices=BLEND_MODES),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image1, image2, blend_factor=0.5, blend_mode="normal"):
        image1, image2 = check_image("image1", image1), check_image("image2", image2)
        check_choice("blend_mode", blend_mode, BLEND_MODES)
        b1, b2 = image1.shape[0], image2.shape[0]
        if b1 != b2 and 1 not in (b1, b2):
            raise NodeInputError("image2", f"a batch of {b2} cannot be blended with a batch of {b1}")
        return (blend(image1, image2, float(blend_factor), blend_mode),)


class ImageInvert(Node):
    spec = NodeSpec(
        name="ImageInvert",
        display_name="Invert Image",
        category="image",
        description="1 − image, in every channel.",
        inputs=(In("image", "IMAGE"),),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image):
        return (invert(check_image("image", image)),)


class ImageAddNoise(Node):
    spec = NodeSpec(
        name="ImageAddNoise",
        category="image",
        description="Adds Gaussian noise of the given strength (the same noise for the same seed).",
        inputs=(
            In("image", "IMAGE"),
            In("seed", "INT", default=0, min=0, max=MAX_SEED, control_after_generate=True,
               tooltip="The random seed used for creating the noise."),
            In("strength", "FLOAT", default=0.5, min=0.0, max=1.0, step=0.01),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, seed=0, strength=0.5):
        image = check_image("image", image)
        if not 0 <= int(seed) <= MAX_SEED:
            raise NodeInputError("seed", f"{seed} is outside 0..{MAX_SEED}")
        return (add_noise(image, int(seed), float(strength)),)


NODES: list[type[Node]] = [ImageBlend, ImageInvert, ImageAddNoise]
