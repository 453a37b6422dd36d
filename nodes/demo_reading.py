"""Reads back what a 64×64 demo picture shows: background colour, shape colour, shape kind.

Pixel statistics only, no learned parts, so it can judge the demo model (the tests) and follow
training (the trainer logs its accuracy): the border is background; pixels far from the background
colour are the shape (its largest connected region, so specks a decoder leaves do not count); a
star is the one concave shape (it fills little of its convex hull), and the convex ones differ in
how much of their bounding box they fill.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentgraph.nodes.demo_data import COLOURS, nearest_colour

#: Below this share of its convex hull a shape is concave: a star (arms survive soft edges).
STAR_SOLIDITY = 0.8
#: Least fill of the bounding box for the convex shapes (square ≈ 1, circle ≈ π/4, triangle ≈ ½);
#: set between the classes so rounded corners and soft edges do not move a shape across.
FILL_THRESHOLDS = (("square", 0.85), ("circle", 0.7))


@dataclass(frozen=True)
class Reading:
    background: str
    colour: str | None
    shape: str | None
    fill: float = 0.0
    solidity: float = 0.0


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of ``mask`` (drops specks and blotches a decoder may leave)."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    h, w = mask.shape
    best, best_size, label = 0, 0, 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        label += 1
        labels[y0, x0] = label
        stack, size = [(y0, x0)], 0
        while stack:
            y, x = stack.pop()
            size += 1
            for ny in (y - 1, y, y + 1):
                for nx in (x - 1, x, x + 1):
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = label
                        stack.append((ny, nx))
        if size > best_size:
            best, best_size = label, size
    return labels == best


def _hull_area(mask: np.ndarray) -> float:
    """Area of the convex hull of the pixels (as unit squares) of ``mask``."""
    ys, xs = np.nonzero(mask)
    points = set()
    for y in np.unique(ys):
        row = xs[ys == y]
        for x in (row.min(), row.max() + 1):
            points.update({(float(x), float(y)), (float(x), float(y + 1))})
    ordered = sorted(points)

    def chain(pts):
        out: list[tuple[float, float]] = []
        for p in pts:
            while len(out) >= 2 and (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1]) - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0]) <= 0:
                out.pop()
            out.append(p)
        return out

    hull = chain(ordered)[:-1] + chain(ordered[::-1])[:-1]
    return 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(hull, hull[1:] + hull[:1])))


def read_picture(rgb: np.ndarray) -> Reading:
    """What ``rgb`` (uint8 [64, 64, 3]) shows."""
    img = rgb.astype(np.float64)
    border = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3), img[:, :2].reshape(-1, 3), img[:, -2:].reshape(-1, 3)])
    background = nearest_colour(np.median(border, axis=0))
    bg = np.asarray(COLOURS[background], dtype=np.float64)
    distance = np.sqrt(((img - bg) ** 2).sum(-1))
    mask = _largest_component(distance > 90)
    if mask.sum() < 20:
        return Reading(background, None, None)
    colour = nearest_colour(np.median(img[mask], axis=0))
    ys, xs = np.nonzero(mask)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = float(mask.sum() / (h * w))
    solidity = float(mask.sum() / _hull_area(mask))
    if solidity < STAR_SOLIDITY:
        shape = "star"
    else:
        shape = next((name for name, least in FILL_THRESHOLDS if fill > least), "triangle")
    return Reading(background, colour, shape, fill, solidity)


def matches(reading: Reading, colour: str, shape: str, background: str) -> tuple[bool, bool]:
    """(colours right, shape right) for a picture asked to show ``colour shape on background``."""
    return (reading.colour, reading.background) == (colour, background), reading.shape == shape
