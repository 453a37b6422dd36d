"""XY grids: axis nodes that output lists of values, and the node that lays the pictures out.

The engine runs a node once per item of a list input (ComfyUI's list outputs: the longest list
wins, items are paired by position), and caches each item on its own, so everything upstream of
the axes runs once and re-running with one more value runs only the new cells. Pairing by position
means the grid's cross product is spelled out by the axis nodes: the x axis repeats its whole
list once per row (``other_count`` = the number of y values) and the y axis repeats each value once
per column, so cell k is (x[k mod columns], y[k div columns]), row-major, as XYGrid lays it out.

The axis nodes also give their labels (one per line), which XYGrid writes above the columns and
left of the rows. Without list outputs, XYGrid also lays out a batch, or pictures connected one by
one (``images``, ``image_2`` … ``image_16``), in that order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out, OutputSpec
from latentgraph.nodes.inspect.drawing import draw_grid, to_array, to_image_tensor
from latentgraph.nodes.inspect.drawing import zoom as enlarge

MAX_VALUES = 64
AXES = ("x", "y")
#: Explicit picture inputs besides ``images`` (image_2 … image_16): a grid without list outputs.
EXTRA_IMAGES = 15
#: Whether the engine maps nodes over list outputs (``Out(..., is_list=True)``).
LISTS = "is_list" in getattr(OutputSpec, "__dataclass_fields__", {})


def list_output(kind: str, name: str) -> OutputSpec:
    return Out(kind, name, is_list=True) if LISTS else Out(kind, name)


def split_values(text: str) -> list[str]:
    """Values one per line, or comma-separated on one line."""
    text = str(text)
    parts = text.splitlines() if "\n" in text.strip() else text.split(",")
    return [p.strip() for p in parts if p.strip()]


def cross(values: Sequence[Any], axis: str, other_count: int) -> list[Any]:
    """The axis's values in grid order (row-major): x tiled per row, y repeated per column."""
    if axis == "x":
        return [v for _ in range(other_count) for v in values]
    return [v for v in values for _ in range(other_count)]


def _axis_node(name: str, display: str, kind: str, parse: Callable[[str], Any], example: str, what: str,
               choices: Callable[[Any, Any], Sequence[str]] | None = None) -> type[Node]:
    def execute(self, ctx, values, axis="x", other_count=1, label=""):
        items = split_values(values)
        if not items:
            raise NodeInputError("values", f"is empty; write e.g. '{example}'")
        if len(items) > MAX_VALUES:
            raise NodeInputError("values", f"{len(items)} values; at most {MAX_VALUES}")
        parsed = []
        for item in items:
            try:
                parsed.append(parse(item))
            except ValueError:
                raise NodeInputError("values", f"{item!r} is not {what}") from None
        if choices is not None:
            known = list(choices(ctx.settings, ctx.registry))
            for v in parsed:
                if v not in known:
                    raise NodeInputError("values", f"unknown {what} {v!r}; known: {', '.join(known)}")
        if axis not in AXES:
            raise NodeInputError("axis", f"must be 'x' or 'y', got {axis!r}")
        if int(other_count) < 1:
            raise NodeInputError("other_count", f"must be at least 1, got {other_count}")
        prefix = f"{label}=" if str(label).strip() else ""
        labels = "\n".join(f"{prefix}{item}" for item in items)
        return (cross(parsed, axis, int(other_count)), labels)

    spec = NodeSpec(
        name=name,
        display_name=display,
        category="inspect/xy",
        description=(
            f"A list of {what} values for one axis of an XY grid (the node it feeds runs once per value), "
            "and their labels. x repeats the list once per row; y repeats each value once per column."
        ),
        inputs=(
            In("values", "STRING", default=example, tooltip="one per line, or comma-separated"),
            In("axis", "COMBO", choices=AXES, default="x"),
            In("other_count", "INT", default=1, min=1, max=MAX_VALUES, tooltip="how many values the other axis has"),
            In("label", "STRING", default="", tooltip="written before each value in the labels, e.g. 'cfg'"),
        ),
        outputs=(list_output(kind, "values"), Out("STRING", "labels")),
    )
    # OUTPUT_IS_LIST: ComfyUI's spelling, read by /object_info (and by the engine before is_list).
    return type(name, (Node,), {"spec": spec, "execute": execute, "__doc__": spec.description,
                                "OUTPUT_IS_LIST": (True, False)})


def _int(text: str) -> int:
    return int(text)


def _sampler_names(settings: Any, registry: Any) -> list[str]:
    return list(registry.samplers)


def _schedule_names(settings: Any, registry: Any) -> list[str]:
    return list(registry.schedulers)


XYAxisFloat = _axis_node("XYAxisFloat", "XY Axis (Float)", "FLOAT", float, "1.0, 3.0, 6.0", "a number")
XYAxisInt = _axis_node("XYAxisInt", "XY Axis (Int)", "INT", _int, "4, 8, 16", "a whole number")
XYAxisString = _axis_node("XYAxisString", "XY Axis (String)", "STRING", str, "a red circle\na blue star", "a text")
XYAxisSampler = _axis_node("XYAxisSampler", "XY Axis (Sampler)", "COMBO", str, "euler, dpmpp_2m", "sampler",
                           choices=_sampler_names)
XYAxisScheduler = _axis_node("XYAxisScheduler", "XY Axis (Scheduler)", "COMBO", str, "normal, karras", "scheduler",
                             choices=_schedule_names)


def grid_cells(images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Every picture of every IMAGE item (batches are flattened), in order."""
    cells = []
    for k, image in enumerate(images):
        if not isinstance(image, torch.Tensor) or image.ndim != 4:
            raise NodeInputError("images", f"item {k} is not an IMAGE tensor [batch, height, width, channels]")
        cells.extend(image[b] for b in range(image.shape[0]))
    return cells


def grid_shape(count: int, x_labels: Sequence[str], y_labels: Sequence[str]) -> tuple[int, int]:
    """(rows, columns): columns from the x labels (or a square-ish grid), rows from the y labels."""
    if x_labels:
        cols = len(x_labels)
    elif y_labels:
        cols = math.ceil(count / len(y_labels))
    else:
        cols = math.ceil(math.sqrt(count))
    rows = len(y_labels) if y_labels else math.ceil(count / cols)
    if rows * cols < count or (x_labels and y_labels and rows * cols != count):
        raise NodeInputError(
            "images", f"{count} pictures do not fill {rows} rows × {cols} columns (one per label); "
            "check the axes' values and other_count"
        )
    return rows, cols


def _first(value: Any, default: Any = "") -> Any:
    if isinstance(value, (list, tuple)):
        return value[0] if value else default
    return default if value is None else value


class XYGrid(Node):
    spec = NodeSpec(
        name="XYGrid",
        display_name="XY Grid",
        category="inspect/xy",
        description=(
            "Lays out pictures (a list from nodes run over XY axes, or a batch) as a labelled grid, row-major: "
            "the x labels name the columns, the y labels the rows."
        ),
        inputs=(
            In("images", "IMAGE"),
            In("x_labels", "STRING", default="", multiline=True, tooltip="one per column (an axis node's labels)"),
            In("y_labels", "STRING", default="", multiline=True, tooltip="one per row"),
            In("title", "STRING", default=""),
            In("zoom", "INT", default=1, min=1, max=8, tooltip="enlarge pictures (nearest neighbour)"),
            *(In(f"image_{k}", "IMAGE", required=False) for k in range(2, EXTRA_IMAGES + 2)),
        ),
        outputs=(Out("IMAGE"),),
        **({"input_is_list": True} if LISTS else {}),
    )
    INPUT_IS_LIST = True

    def execute(self, ctx, images, x_labels=("",), y_labels=("",), title=("",), zoom=(1,), **more):
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        for k in range(2, EXTRA_IMAGES + 2):
            extra = more.get(f"image_{k}")
            if extra is not None:
                items.extend(extra if isinstance(extra, (list, tuple)) else [extra])
        cells = grid_cells(items)
        if not cells:
            raise NodeInputError("images", "no pictures")
        xs = [s.strip() for s in str(_first(x_labels)).splitlines() if s.strip()]
        ys = [s.strip() for s in str(_first(y_labels)).splitlines() if s.strip()]
        rows, cols = grid_shape(len(cells), xs, ys)
        size = tuple(cells[0].shape[:2])
        for k, cell in enumerate(cells):
            if tuple(cell.shape[:2]) != size:
                raise NodeInputError("images", f"picture {k} is {cell.shape[1]}×{cell.shape[0]}, the first {size[1]}×{size[0]}")
        factor = int(_first(zoom, 1))
        if factor < 1:
            raise NodeInputError("zoom", f"must be at least 1, got {factor}")
        arrays = [enlarge(to_array(c), factor) for c in cells]
        pictures = [[arrays[r * cols + c] if r * cols + c < len(arrays) else None for c in range(cols)] for r in range(rows)]
        canvas, _ = draw_grid(pictures, col_labels=xs, row_labels=ys, title=str(_first(title)))
        return (to_image_tensor(canvas),)


NODES = [XYAxisFloat, XYAxisInt, XYAxisString, XYAxisSampler, XYAxisScheduler, XYGrid]
