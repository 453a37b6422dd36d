"""Pictures for the inspection nodes, drawn with Pillow: labelled grids of frames and line plots.

Why Pillow and not matplotlib: Pillow is already a dependency (PNG I/O), draws the same pixels on
every machine (the example workflows' PNGs are compared byte for byte between their API and editor
forms), and costs no import time; the plots here are a few polylines, markers, ticks and a legend
on linear or log axes, which is little code. matplotlib would add a 40 MB optional extra and a
second look for the same curves.

Text uses DejaVu Sans when the system has it (it has the Greek letters: ᾱ, σ, β, ε, √) and
Pillow's built-in font otherwise, with the Greek spelled out (``abar``, ``sigma``, …).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
GRID = (225, 225, 225)
#: Curve colours (colour-blind safe: Okabe & Ito).
PALETTE = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233), (0, 0, 0))

_SPELLED = {"ᾱ": "abar", "α": "alpha", "σ": "sigma", "β": "beta", "ε": "eps", "√": "sqrt", "−": "-", "·": "*",
            "x̂₀": "x0^", "₀": "0", "×": "x", "μ": "mean", "≈": "~", "→": "->", "…": "..."}


@functools.lru_cache(maxsize=16)
def font(size: int) -> tuple[ImageFont.ImageFont, bool]:
    """(font, whether it has Greek letters)."""
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size), True
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size), False
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default(), False


def text_for(text: str, greek: bool) -> str:
    if greek:
        return text
    for symbol, spelled in _SPELLED.items():
        text = text.replace(symbol, spelled)
    return text


def text_size(text: str, size: int) -> tuple[int, int]:
    f, greek = font(size)
    box = f.getbbox(text_for(text, greek) or " ")
    return int(math.ceil(box[2] - min(box[0], 0))), int(math.ceil(size * 1.25))


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, fill=INK, anchor: str = "la") -> None:
    f, greek = font(size)
    draw.text(xy, text_for(text, greek), fill=fill, font=f, anchor=anchor)


def fit_size(texts: Sequence[str], width: int, largest: int = 14, smallest: int = 8) -> int:
    """The largest font size (down to ``smallest``) at which every text fits ``width`` pixels."""
    for size in range(largest, smallest - 1, -1):
        if all(text_size(t, size)[0] <= width for t in texts):
            return size
    return smallest


# -- images -------------------------------------------------------------------------------------------------
def to_array(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """One picture ``[H, W, C]`` (0..1 float) → uint8 RGB."""
    a = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, dtype=np.float32)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return (np.clip(a[..., :3], 0.0, 1.0) * 255.0).round().astype(np.uint8)


def zoom(a: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer factor (pixels stay exact, just bigger)."""
    if factor <= 1:
        return a
    return np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)


def to_image_tensor(picture: Image.Image | np.ndarray) -> torch.Tensor:
    """A PIL picture or uint8 array → IMAGE ``[1, H, W, 3]`` float 0..1."""
    a = np.asarray(picture.convert("RGB") if isinstance(picture, Image.Image) else picture, dtype=np.float32) / 255.0
    return torch.from_numpy(a.copy())[None]


# -- labelled grids -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridLayout:
    """Where everything of a labelled grid goes (pixels, top-left origins)."""

    width: int
    height: int
    #: ``cells[r][c]`` = (x, y) of the picture in row r, column c.
    cells: tuple[tuple[tuple[int, int], ...], ...]
    cell_size: tuple[int, int]
    font_size: int
    header: int  # height of the column-label band
    margin: int  # width of the row-label band
    caption: int  # height of the caption band under each picture
    title: int  # height of the title band


PAD = 4


def grid_layout(rows: int, cols: int, cell: tuple[int, int], *, col_labels: Sequence[str] = (),
                row_labels: Sequence[str] = (), captions: int = 0, title: str = "",
                texts: Sequence[str] = ()) -> GridLayout:
    """The layout of ``rows × cols`` pictures of ``cell`` = (width, height) with their labels.

    ``captions`` is the number of caption lines under each picture; the font is the largest at
    which the column labels and ``texts`` (the captions) fit a cell's width.
    """
    w, h = cell
    size = fit_size([*col_labels, *texts], w, largest=14)
    line = text_size("Ag", size)[1]
    header = line + PAD if any(col_labels) else 0
    margin = max((text_size(t, size)[0] for t in row_labels), default=0)
    margin = margin + 2 * PAD if margin else 0
    caption = captions * line + (PAD if captions else 0)
    title_h = text_size(title, size + 2)[1] + PAD if title else 0
    x0, y0 = margin + PAD, title_h + header + PAD
    cells = tuple(
        tuple((x0 + c * (w + PAD), y0 + r * (h + caption + PAD)) for c in range(cols)) for r in range(rows)
    )
    width = x0 + cols * (w + PAD)
    height = y0 + rows * (h + caption + PAD)
    width = max(width, text_size(title, size + 2)[0] + 2 * PAD if title else 0)
    return GridLayout(width, height, cells, (w, h), size, header, margin, caption, title_h)


def draw_grid(pictures: Sequence[Sequence[np.ndarray | None]], *, col_labels: Sequence[str] = (),
              row_labels: Sequence[str] = (), captions: Sequence[Sequence[Sequence[str]]] = (),
              title: str = "") -> tuple[Image.Image, GridLayout]:
    """Pictures (uint8 ``[h, w, 3]``, all one size; None leaves a cell empty) in rows and columns,
    column labels above, row labels on the left, caption lines under each picture."""
    rows = len(pictures)
    cols = max((len(r) for r in pictures), default=0)
    first = next((p for r in pictures for p in r if p is not None), None)
    if first is None:
        raise ValueError("no pictures to lay out")
    h, w = first.shape[:2]
    n_captions = max((len(c) for r in captions for c in r), default=0)
    layout = grid_layout(rows, cols, (w, h), col_labels=col_labels, row_labels=row_labels,
                         captions=n_captions, title=title, texts=[t for r in captions for c in r for t in c])
    canvas = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    size = layout.font_size
    line = text_size("Ag", size)[1]
    if title:
        draw_text(draw, (PAD, PAD // 2), title, size + 2)
    for c, label in enumerate(col_labels[:cols]):
        x, y = layout.cells[0][c]
        draw_text(draw, (x + w / 2, y - PAD), label, size, anchor="md")
    for r, label in enumerate(row_labels[:rows]):
        x, y = layout.cells[r][0]
        draw_text(draw, (x - 2 * PAD, y + h / 2), label, size, anchor="rm")
    for r, row in enumerate(pictures):
        for c, picture in enumerate(row):
            if picture is None:
                continue
            if picture.shape[:2] != (h, w):
                raise ValueError(f"picture {r},{c} is {picture.shape[1]}×{picture.shape[0]}, the first is {w}×{h}")
            x, y = layout.cells[r][c]
            canvas.paste(Image.fromarray(picture, "RGB"), (x, y))
            lines = captions[r][c] if r < len(captions) and c < len(captions[r]) else ()
            for k, text in enumerate(lines):
                draw_text(draw, (x + w / 2, y + h + PAD // 2 + k * line), text, size, anchor="ma")
    return canvas, layout


# -- line plots -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    label: str
    x: np.ndarray
    y: np.ndarray
    color: tuple[int, int, int]
    markers: bool = False  # dots instead of a line


@dataclass(frozen=True)
class Panel:
    title: str
    series: tuple[Series, ...]
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    log_y: bool = False
    x_label: str = ""


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * step:
            step *= m
            break
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + k * step, 12) for k in range(int((hi - first) / step + 1e-9) + 1)]


def tick_text(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100000 or abs(v) < 0.001:
        return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{v:g}"


def draw_panel(canvas: Image.Image, box: tuple[int, int, int, int], panel: Panel, size: int = 12) -> None:
    """One plot in ``box`` = (left, top, right, bottom): axes, grid, ticks, curves, legend."""
    draw = ImageDraw.Draw(canvas)
    line = text_size("Ag", size)[1]
    left, top, right, bottom = box
    draw_text(draw, ((left + right) / 2, top), panel.title, size + 1, anchor="ma")
    top += line + PAD
    legend: list[tuple[Series, float, float]] = []
    for row in legend_rows(panel.series, right - left, size):  # the legend: under the title, centred
        x = (left + right - sum(w for _, w in row)) / 2
        for s, w in row:
            legend.append((s, x, top + line / 2))
            x += w
        top += line
    top += PAD // 2 if legend else 0
    ylo, yhi = panel.y_range
    if panel.log_y:
        ylo, yhi = math.log10(ylo), math.log10(yhi)
        yticks = [float(e) for e in range(math.ceil(ylo), math.floor(yhi) + 1)]
    else:
        yticks = nice_ticks(ylo, yhi)
    labels = [tick_text(10**v if panel.log_y else v) for v in yticks]
    left += max((text_size(t, size)[0] for t in labels), default=0) + 2 * PAD
    bottom -= line + (line if panel.x_label else 0) + PAD
    xlo, xhi = panel.x_range

    def px(x: np.ndarray) -> np.ndarray:
        return left + (np.asarray(x, dtype=np.float64) - xlo) / (xhi - xlo) * (right - left)

    def py(y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if panel.log_y:
            y = np.log10(np.clip(y, 10**ylo, None))
        return bottom - (y - ylo) / (yhi - ylo) * (bottom - top)

    for v, text in zip(yticks, labels):
        y = float(py(np.array(10**v if panel.log_y else v)))
        draw.line([(left, y), (right, y)], fill=GRID)
        draw_text(draw, (left - PAD, y), text, size, anchor="rm")
    for v in nice_ticks(xlo, xhi, 5):
        x = float(px(np.array(v)))
        draw.line([(x, top), (x, bottom)], fill=GRID)
        draw_text(draw, (x, bottom + PAD // 2), tick_text(v), size, anchor="ma")
    if panel.x_label:
        draw_text(draw, ((left + right) / 2, bottom + line + PAD // 2), panel.x_label, size, anchor="ma")
    draw.rectangle([left, top, right, bottom], outline=INK)
    for s in panel.series:
        xs, ys = px(s.x), py(s.y)
        keep = np.isfinite(xs) & np.isfinite(ys)
        points = list(zip(xs[keep].tolist(), np.clip(ys[keep], top, bottom).tolist()))
        if s.markers:
            for x, y in points:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], outline=s.color, width=2)
        elif len(points) > 1:
            draw.line(points, fill=s.color, width=2)
    if legend:
        draw_legend(draw, legend, size)


def legend_rows(series: Sequence[Series], width: int, size: int) -> list[list[tuple[Series, int]]]:
    """Legend entries (series, width) in rows that fit ``width``."""
    rows: list[list[tuple[Series, int]]] = [[]]
    used = 0
    for s in series:
        if not s.label:
            continue
        w = text_size(s.label, size)[0] + 26 + 2 * PAD
        if rows[-1] and used + w > width:
            rows.append([])
            used = 0
        rows[-1].append((s, w))
        used += w
    return [r for r in rows if r]


def draw_legend(draw: ImageDraw.ImageDraw, placed: list[tuple[Series, float, float]], size: int) -> None:
    for s, x, y in placed:
        if s.markers:
            draw.ellipse([x + 6, y - 3, x + 12, y + 3], outline=s.color, width=2)
        else:
            draw.line([(x, y), (x + 18, y)], fill=s.color, width=2)
        draw_text(draw, (x + 24, y), s.label, size, anchor="lm")
