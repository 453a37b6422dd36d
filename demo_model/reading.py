"""Reads back what a 64×64 demo picture shows: background colour, shape colour, shape kind.

Pixel statistics only, no learned parts, so it can judge the demo model (the tests) and follow
training (the trainer logs its accuracy): the border is background; the shape is the largest
connected region of pixels more than half-way from the background colour to the most distant
colour in the picture; its kind is the symmetry of its outline — the outline's distance from the
shape's centre, as a function of the angle, repeats 3 times around a triangle, 4 times around a
square, 5 times around a star and not at all around a circle — read as the strongest of the 3rd,
4th and 5th Fourier harmonics of that profile (relative to its mean); a circle has none above
:data:`CIRCLE_HARMONIC`.

Why not box fill and convexity (the reader until this change): on blurred, soft-cornered
references the classes overlap there — a triangle with rounded corners fills up to 0.75 of its
box, a circle as little as 0.72; a blurred star fills up to 0.92 of its convex hull, a soft
triangle as little as 0.89 — so any threshold misreads some references. The harmonics keep a
wide gap (below).

The thresholds are fixed from *reference drawings* alone — the dataset's own pictures degraded
the way a decoder degrades them (:func:`degrade`: blur, soft corners, colour bleed, noise) — never
from the model's pictures (:func:`calibrate`; ``python -m demo_model.reading``
re-derives the figures). ``tests/test_demo_reading.py`` reads the references back and fails if a
threshold misreads any of them.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from demo_model.data import COLOURS, SHAPES, ShapeSpec, nearest_colour, random_spec, render

#: The harmonic of the outline's radius profile that names each kind.
HARMONICS = {3: "triangle", 4: "square", 5: "star"}
#: Below this relative amplitude of all three harmonics the outline is round: a circle. In the
#: middle of the gap on the references (see :func:`calibrate`): circles ≤ 0.007; the named
#: harmonic of every other reference ≥ 0.041 (stars with 2-px soft corners and 2-px blur; squares
#: ≥ 0.05, triangles ≥ 0.09).
CIRCLE_HARMONIC = 0.026
#: Angular resolution of the radius profile (5.6° — about one pixel at the rim of the smallest shapes).
PROFILE_BINS = 64
#: Below this distance (RGB units) from the background at its most distant pixels, nothing is
#: drawn: the closest two named colours (orange, yellow) are 100 apart.
LEAST_CONTRAST = 50.0
#: A shape smaller than this many pixels is a speck, not a drawing (the smallest star is ≈ 170).
LEAST_AREA = 20

#: Degradations of the references (see :func:`degrade`), chosen from what the shipped decoder does
#: to a clean drawing on a round trip (best-fitting Gaussian blur σ 0.7 px median, 1.8 px worst;
#: interior colours within 1.3 % of the way to the background) and made harsher, because a
#: sampled latent is further from the data than an encoded one: blur σ up to 2 px; the shape's
#: colour pulled 20 % of the way to the background's (and the background 10 % to the shape's);
#: pixel noise σ 4; corners rounded with a radius up to 2 px (half a latent cell). Not 4 px (a
#: whole latent cell, the first choice): rounding by an 8-px disk erases every part narrower than
#: 8 px, and the arms of the dataset's smallest stars are ≈ 6 px wide at their base, so those
#: references were no longer stars but blobs no reader could name.
BLURS = (0.0, 0.7, 1.4, 2.0)
CORNER_RADII = (0, 1, 2)
BLEEDS = (0.0, 0.2)
NOISE = 4.0


@dataclass(frozen=True)
class Reading:
    background: str
    colour: str | None
    shape: str | None
    #: Relative amplitudes of the outline's 3rd, 4th and 5th harmonics.
    harmonics: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of ``mask`` (drops specks and blotches a decoder may leave)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def shape_mask(rgb: np.ndarray) -> tuple[str, np.ndarray | None, np.ndarray]:
    """(background name, the shape's pixels or None, distance of each pixel from the background)."""
    img = rgb.astype(np.float64)
    border = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3), img[:, :2].reshape(-1, 3), img[:, -2:].reshape(-1, 3)])
    background = nearest_colour(np.median(border, axis=0))
    distance = np.sqrt(((img - np.asarray(COLOURS[background], dtype=np.float64)) ** 2).sum(-1))
    # The shape's own colour is (about) the most distant one; a blurred edge crosses half-way
    # between the two colours where the sharp edge was, so half the contrast keeps the outline in
    # place for every colour pair (a fixed distance would grow high-contrast shapes and shrink
    # low-contrast ones, filling a blurred star's notches or eating a soft square's corners).
    peak = float(np.percentile(distance, 99))
    if peak < LEAST_CONTRAST:
        return background, None, distance
    mask = _largest_component(distance > peak / 2)
    return background, (mask if mask.sum() >= LEAST_AREA else None), distance


def read_picture(rgb: np.ndarray) -> Reading:
    """What ``rgb`` (uint8 [64, 64, 3]) shows."""
    background, mask, distance = shape_mask(rgb)
    if mask is None:
        return Reading(background, None, None)
    # The colour from the shape's core (beyond three quarters of the contrast), not its blurred rim.
    core = mask & (distance >= 0.75 * distance[mask].max())
    colour = shape_colour(np.median(rgb.astype(np.float64)[core if core.any() else mask], axis=0), background)
    profile = harmonics(mask)
    return Reading(background, colour, classify(profile), profile)


def shape_colour(rgb: np.ndarray, background: str) -> str:
    """The named colour which, mixed with the background, comes closest to ``rgb``.

    Blur and colour bleed both mix a shape's colour with the background's, most in thin parts
    (a small star's arms), so the measured colour lies on the segment from the background to the
    true colour, short of its end: the nearest named colour can then be a third one (blue pulled
    toward a yellow background passes closer to purple). Each candidate is judged by its distance
    from that segment — from half-way (the mask's edge) to the pure colour.
    """
    bg = np.asarray(COLOURS[background], dtype=np.float64)

    def off_line(name: str) -> float:
        direction = np.asarray(COLOURS[name], dtype=np.float64) - bg
        t = float(np.clip(np.dot(rgb - bg, direction) / np.dot(direction, direction), 0.5, 1.0))
        return float(np.linalg.norm(rgb - (bg + t * direction)))

    return min((name for name in COLOURS if name != background), key=off_line)


def harmonics(mask: np.ndarray) -> tuple[float, float, float]:
    """Relative amplitudes of the 3rd, 4th and 5th harmonics of the outline's radius profile.

    The profile is the largest distance (to the far side of the pixel) from the shape's centroid
    in each of :data:`PROFILE_BINS` angle sectors; amplitude k is |Σ r·e^(−ikθ)| / Σ r, rotation
    invariant, and 0 for a perfect circle.
    """
    ys, xs = np.nonzero(mask)
    dy, dx = ys - ys.mean(), xs - xs.mean()
    sector = ((np.arctan2(dy, dx) + math.pi) / (2 * math.pi) * PROFILE_BINS).astype(int) % PROFILE_BINS
    profile = np.zeros(PROFILE_BINS)
    np.maximum.at(profile, sector, np.hypot(dy, dx) + 0.5)
    for i in np.nonzero(profile == 0)[0]:  # a sector no pixel centre fell in (tiny shapes)
        profile[i] = max(profile[i - 1], profile[(i + 1) % PROFILE_BINS])
    angle = (np.arange(PROFILE_BINS) + 0.5) / PROFILE_BINS * 2 * math.pi - math.pi
    total = profile.sum()
    return tuple(float(abs((profile * np.exp(-1j * k * angle)).sum()) / total) for k in HARMONICS)  # type: ignore[return-value]


def classify(profile: tuple[float, float, float], circle_harmonic: float = CIRCLE_HARMONIC) -> str:
    """The kind whose harmonic is strongest, or circle when none reaches ``circle_harmonic``."""
    strongest = max(range(len(profile)), key=lambda i: profile[i])
    if profile[strongest] < circle_harmonic:
        return "circle"
    return list(HARMONICS.values())[strongest]


def matches(reading: Reading, colour: str, shape: str, background: str) -> tuple[bool, bool]:
    """(colours right, shape right) for a picture asked to show ``colour shape on background``."""
    return (reading.colour, reading.background) == (colour, background), reading.shape == shape


# -- the reference drawings the thresholds come from ---------------------------------------------------
@functools.lru_cache(maxsize=64)
def _coverage(spec: ShapeSpec, corner: int, scale: int = 4) -> np.ndarray:
    """Share of each pixel the shape covers, its corners rounded with radius ``corner`` pixels."""
    from scipy import ndimage

    white = ShapeSpec(spec.shape, "white", "black", spec.cx, spec.cy, spec.size, spec.angle)
    big = np.asarray(render(white, size=64 * scale))[..., 0] >= 128
    if corner:
        r = corner * scale
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        disk = xx**2 + yy**2 <= r * r
        big = ndimage.binary_closing(ndimage.binary_opening(big, disk), disk)
    return big.reshape(64, scale, 64, scale).mean(axis=(1, 3))


def degrade(spec: ShapeSpec, blur: float, corner: int, bleed: float, seed: int = 0) -> np.ndarray:
    """``spec`` drawn the way a decoder might return it (uint8 [64, 64, 3]).

    ``corner``: convex and concave corners rounded with that radius in pixels (a morphological
    opening and closing of the shape at 4× resolution); ``bleed``: the shape's colour moved that
    share of the way to the background's, the background half as far to the shape's; ``blur``:
    Gaussian σ in pixels; then Gaussian pixel noise of σ :data:`NOISE`.
    """
    from scipy import ndimage

    alpha = _coverage(spec, corner)[..., None]
    fg, bg = np.asarray(COLOURS[spec.colour], float), np.asarray(COLOURS[spec.background], float)
    fg, bg = fg + bleed * (bg - fg), bg + bleed / 2 * (fg - bg)
    img = alpha * fg + (1 - alpha) * bg
    if blur:
        img = ndimage.gaussian_filter(img, (blur, blur, 0), mode="nearest")
    img = img + np.random.default_rng(seed).normal(0.0, NOISE, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def reference_specs(per_shape: int = 12) -> list[ShapeSpec]:
    """Reference drawings: ``per_shape`` of each kind (colours, place and tilt as the dataset draws
    them), sizes spread evenly from the smallest to the largest."""
    from demo_model.data import IMAGE_SIZE, MARGIN, MAX_SIZE, MIN_SIZE

    specs = []
    for shape in SHAPES:
        for i in range(per_shape):
            base = random_spec(random.Random(f"reference:{shape}:{i}"))
            size = MIN_SIZE + (MAX_SIZE - MIN_SIZE) * i / max(1, per_shape - 1)
            lo, hi = MARGIN + size / 2, IMAGE_SIZE - MARGIN - size / 2
            place = (min(max(base.cx, lo), hi), min(max(base.cy, lo), hi))
            specs.append(ShapeSpec(shape, base.colour, base.background, *place, size,
                                   base.angle if shape in ("triangle", "star") else 0.0))
    return specs


def references(per_shape: int = 12) -> Iterator[tuple[ShapeSpec, tuple[float, int, float], np.ndarray]]:
    """Every reference spec at every degradation level: (spec, (blur, corner, bleed), picture)."""
    for n, spec in enumerate(reference_specs(per_shape)):
        for blur in BLURS:
            for corner in CORNER_RADII:
                for bleed in BLEEDS:
                    yield spec, (blur, corner, bleed), degrade(spec, blur, corner, bleed, seed=n)


def calibrate(per_shape: int = 12) -> dict[str, object]:
    """Over every reference: the harmonic ranges of each kind, the gap the circle threshold sits
    in, and how close the strongest harmonic came to the runner-up (the margin of the argmax)."""
    own = {s: [] for s in SHAPES}  # the named harmonic of each non-circle reference
    circle_peak: list[float] = []  # the strongest harmonic of each circle
    margin = {s: [] for s in SHAPES if s != "circle"}  # named harmonic − strongest other one
    kinds = list(HARMONICS.values())
    for spec, _level, picture in references(per_shape):
        _bg, mask, _d = shape_mask(picture)
        profile = harmonics(mask)
        if spec.shape == "circle":
            circle_peak.append(max(profile))
            continue
        i = kinds.index(spec.shape)
        own[spec.shape].append(profile[i])
        margin[spec.shape].append(profile[i] - max(p for j, p in enumerate(profile) if j != i))
    round_most = max(circle_peak)
    named_least = min(min(v) for v in own.values() if v)
    return {
        "circle strongest harmonic, max": round(round_most, 4),
        "named harmonic, min per kind": {k: round(min(v), 4) for k, v in own.items() if v},
        "named minus strongest other, min per kind": {k: round(min(v), 4) for k, v in margin.items()},
        "circle_harmonic (middle of the gap)": round((round_most + named_least) / 2, 4),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(calibrate(), indent=1))
