"""The demo-model reader against reference drawings degraded the way a decoder degrades them.

The references (``demo_reading.references``) are the dataset's own shapes — 12 of each kind,
smallest to largest, in the dataset's colours, places and tilts — at every combination of blur
σ 0…2 px, corners rounded by 0…2 px, colour bleed 0 or 20 % and pixel noise (the levels and why:
``demo_model/reading.py``). The reader's one threshold was placed in the middle of the gap these
references leave (``calibrate``), before the reader saw any picture of the model.

Bars (fixed with the thresholds, before the model was read): every reference reads right —
background, colour and kind, no exception; the threshold keeps at least a quarter of the gap on
each side; and moving it out of the gap misreads references (so this file catches a threshold
change that would, not just one that already does).
"""

from __future__ import annotations

import numpy as np
import pytest

from demo_model import reading as R
from demo_model.data import COLOURS, SHAPES, ShapeSpec


@pytest.fixture(scope="module")
def readings():
    """(spec, level, Reading) for every reference."""
    return [(spec, level, R.read_picture(picture)) for spec, level, picture in R.references()]


def test_every_reference_reads_right(readings):
    wrong = [f"{s.colour} {s.shape} on {s.background} size {s.size:.0f} at {level}: {r}"
             for s, level, r in readings if (r.background, r.colour, r.shape) != (s.background, s.colour, s.shape)]
    levels = {level for _s, level, _r in readings}
    print(f"{len(readings) - len(wrong)}/{len(readings)} references read right over {len(levels)} degradation levels")
    assert len(readings) == 4 * 12 * len(R.BLURS) * len(R.CORNER_RADII) * len(R.BLEEDS)
    assert not wrong, "\n".join(wrong[:20])


def _gap(readings) -> tuple[float, float]:
    """(strongest harmonic of any circle, weakest named harmonic of any other kind)."""
    kinds = list(R.HARMONICS.values())
    circles = [max(r.harmonics) for s, _l, r in readings if s.shape == "circle"]
    named = [r.harmonics[kinds.index(s.shape)] for s, _l, r in readings if s.shape != "circle"]
    return max(circles), min(named)


def test_the_circle_threshold_sits_mid_gap(readings):
    round_most, named_least = _gap(readings)
    width = named_least - round_most
    print(f"circles ≤ {round_most:.4f}, other kinds ≥ {named_least:.4f}, threshold {R.CIRCLE_HARMONIC}")
    assert width > 0.02, "the references no longer separate circles from the other kinds"
    assert round_most + width / 4 <= R.CIRCLE_HARMONIC <= named_least - width / 4


@pytest.mark.parametrize("moved", [0.004, 0.06])
def test_a_threshold_out_of_the_gap_misreads_references(readings, moved):
    """The bar above has teeth: below the gap circles read as polygons, above it polygons as circles."""
    misread = sum(R.classify(r.harmonics, circle_harmonic=moved) != s.shape for s, _l, r in readings)
    assert misread > 0


def test_the_references_are_degraded(readings):
    """A degrade() that silently did nothing would make the bars above meaningless."""
    star = ShapeSpec("star", "red", "white", 32.0, 32.0, 24.0)
    clean, harsh = R.degrade(star, 0.0, 0, 0.0), R.degrade(star, 2.0, 2, 0.2)
    assert np.abs(clean.astype(int) - harsh.astype(int)).max() > 100
    assert R.read_picture(harsh).harmonics[2] < 0.6 * R.read_picture(clean).harmonics[2]
    # colour bleed: the harsh star's core is 20 % of the way to white
    core = harsh[30:34, 30:34].reshape(-1, 3).mean(0)
    assert np.allclose(core, np.asarray(COLOURS["red"]) + 0.2 * (255 - np.asarray(COLOURS["red"])), atol=15)


def test_each_kind_reads_by_its_own_symmetry(readings):
    """The named harmonic is the strongest one on every non-circle reference (the argmax has a margin)."""
    kinds = list(R.HARMONICS.values())
    for shape in SHAPES:
        if shape == "circle":
            continue
        i = kinds.index(shape)
        margins = [r.harmonics[i] - max(h for j, h in enumerate(r.harmonics) if j != i)
                   for s, _l, r in readings if s.shape == shape]
        assert min(margins) > 0.02, (shape, min(margins))


def test_a_plain_picture_shows_no_shape():
    plain = np.zeros((64, 64, 3), np.uint8) + np.asarray(COLOURS["green"], np.uint8)
    noisy = np.clip(plain + np.random.default_rng(0).normal(0, 6, plain.shape), 0, 255).astype(np.uint8)
    for picture in (plain, noisy):
        r = R.read_picture(picture)
        assert (r.background, r.colour, r.shape) == ("green", None, None)
