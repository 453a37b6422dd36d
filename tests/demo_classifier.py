"""Reads back what a 64×64 demo picture shows: background colour, shape colour, shape kind.

Pixel statistics only: the border is background; pixels far from the background colour are the
shape; the kind follows from how much of its bounding box the shape fills and how round it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentgraph.nodes.demo_data import COLOURS, nearest_colour


@dataclass(frozen=True)
class Reading:
    background: str
    colour: str | None
    shape: str | None
    fill: float = 0.0


def read_picture(rgb: np.ndarray) -> Reading:
    img = rgb.astype(np.float64)
    border = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3), img[:, :2].reshape(-1, 3), img[:, -2:].reshape(-1, 3)])
    background = nearest_colour(np.median(border, axis=0))
    bg = np.asarray(COLOURS[background], dtype=np.float64)
    distance = np.sqrt(((img - bg) ** 2).sum(-1))
    mask = distance > 90
    if mask.sum() < 20:
        return Reading(background, None, None)
    colour = nearest_colour(np.median(img[mask], axis=0))
    ys, xs = np.nonzero(mask)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = float(mask.sum() / (h * w))
    if fill > 0.88:
        shape = "square"
    elif fill > 0.66:
        shape = "circle"
    elif fill > 0.44:
        shape = "triangle"
    else:
        shape = "star"
    return Reading(background, colour, shape, fill)
