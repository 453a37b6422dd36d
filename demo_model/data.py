"""The procedural captioned dataset the demo model learns from: one plain shape on a plain background.

Every sample is a 64×64 RGB picture of one shape (circle, square, triangle, star) in one named
colour, at a random size and position, on a background of a different named colour, captioned
exactly ``"a {colour} {shape} on a {colour} background"``. Everything follows from the seed, so
the data needs no download and a training run can be reproduced. Shapes are drawn 4× larger and
downsampled for clean anti-aliased edges; the shape stays a few pixels away from the border, so
the border always shows the background (the demo tests rely on that).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

#: Named colours as plain saturated RGB values; the test classifies pixels by the nearest one.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 0, 0),
    "green": (0, 180, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 230, 0),
    "orange": (255, 130, 0),
    "purple": (140, 0, 200),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")

IMAGE_SIZE = 64
#: Pixels between the shape's bounding box and the image border.
MARGIN = 4
#: Side of the shape's bounding box, in pixels.
MIN_SIZE, MAX_SIZE = 24, 44
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class ShapeSpec:
    """What one picture shows; ``cx, cy, size`` in pixels of the 64×64 image."""

    shape: str
    colour: str
    background: str
    cx: float
    cy: float
    size: float
    #: Rotation in degrees (triangles and stars only; squares and circles stay upright).
    angle: float = 0.0

    @property
    def caption(self) -> str:
        return caption(self.colour, self.shape, self.background)


def caption(colour: str, shape: str, background: str) -> str:
    """The one phrasing the model is trained on."""
    return f"a {colour} {shape} on a {background} background"


def all_prompts() -> list[tuple[str, str, str]]:
    """Every (colour, shape, background) combination the dataset can produce."""
    return [(c, s, b) for s in SHAPES for c in COLOURS for b in COLOURS if b != c]


def random_spec(rng: random.Random) -> ShapeSpec:
    """Draw one picture description from ``rng``: uniform shape, colour, other background, size, place."""
    shape = rng.choice(SHAPES)
    colour = rng.choice(list(COLOURS))
    background = rng.choice([c for c in COLOURS if c != colour])
    size = rng.uniform(MIN_SIZE, MAX_SIZE)
    half = size / 2
    cx = rng.uniform(MARGIN + half, IMAGE_SIZE - MARGIN - half)
    cy = rng.uniform(MARGIN + half, IMAGE_SIZE - MARGIN - half)
    angle = rng.uniform(-12.0, 12.0) if shape in ("triangle", "star") else 0.0
    return ShapeSpec(shape, colour, background, cx, cy, size, angle)


def _polygon(spec: ShapeSpec, scale: float) -> list[tuple[float, float]]:
    cx, cy, r = spec.cx * scale, spec.cy * scale, spec.size * scale / 2
    rot = math.radians(spec.angle)
    if spec.shape == "triangle":
        # Equilateral, pointing up, fitted to the box (height spans it, centred vertically).
        points = [(0.0, -1.0), (-1.0, 0.85), (1.0, 0.85)]
    elif spec.shape == "star":
        points = []
        for i in range(10):
            radius = 1.0 if i % 2 == 0 else 0.42
            a = -math.pi / 2 + i * math.pi / 5
            points.append((radius * math.cos(a), radius * math.sin(a) + 0.08))
    else:
        raise ValueError(spec.shape)
    out = []
    for x, y in points:
        xr = x * math.cos(rot) - y * math.sin(rot)
        yr = x * math.sin(rot) + y * math.cos(rot)
        out.append((cx + xr * r, cy + yr * r))
    return out


def render(spec: ShapeSpec, size: int = IMAGE_SIZE) -> Image.Image:
    """The picture ``spec`` describes, as an RGB image ``size`` pixels wide."""
    scale = size / IMAGE_SIZE * _SUPERSAMPLE
    big = Image.new("RGB", (size * _SUPERSAMPLE, size * _SUPERSAMPLE), COLOURS[spec.background])
    draw = ImageDraw.Draw(big)
    fill = COLOURS[spec.colour]
    half = spec.size * scale / 2
    box = (spec.cx * scale - half, spec.cy * scale - half, spec.cx * scale + half, spec.cy * scale + half)
    if spec.shape == "circle":
        draw.ellipse(box, fill=fill)
    elif spec.shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon(_polygon(spec, scale), fill=fill)
    return big.resize((size, size), Image.Resampling.BOX)


def sample(seed: int, index: int) -> tuple[np.ndarray, str]:
    """Sample ``index`` of the dataset with ``seed``: (uint8 array [64, 64, 3], caption)."""
    spec = random_spec(random.Random(f"{seed}:{index}"))
    return np.asarray(render(spec), dtype=np.uint8), spec.caption


def dataset(seed: int, count: int) -> Iterator[tuple[np.ndarray, str]]:
    """``count`` samples in order; the same seed always yields the same pictures."""
    for index in range(count):
        yield sample(seed, index)


def batch_arrays(seed: int, start: int, count: int) -> tuple[np.ndarray, list[str]]:
    """Samples ``start … start+count-1`` stacked: (uint8 [N, 64, 64, 3], captions)."""
    images, captions = zip(*(sample(seed, i) for i in range(start, start + count)))
    return np.stack(images), list(captions)


def nearest_colour(rgb: np.ndarray | tuple[float, float, float]) -> str:
    """Name of the :data:`COLOURS` entry closest to ``rgb`` (0..255)."""
    value = np.asarray(rgb, dtype=np.float64)
    return min(COLOURS, key=lambda name: float(np.sum((value - np.asarray(COLOURS[name])) ** 2)))


def contact_sheet(seed: int = 0, count: int = 32, columns: int = 8) -> Image.Image:
    """A grid of dataset samples, for looking at the data."""
    rows = math.ceil(count / columns)
    sheet = Image.new("RGB", (columns * IMAGE_SIZE, rows * IMAGE_SIZE), (128, 128, 128))
    for i, (array, _) in enumerate(dataset(seed, count)):
        sheet.paste(Image.fromarray(array), ((i % columns) * IMAGE_SIZE, (i // columns) * IMAGE_SIZE))
    return sheet
