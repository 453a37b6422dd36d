"""How ``widgets_values`` map onto a node type's inputs, and the seed "control after generate".

The editor stores widget values positionally, not by name: one per widget input in declaration
order (required, then optional), plus a control mode right after each seed-like widget and an
upload button's value at the end. Reading them back needs the node type's spec, hence our registry.
"""

from __future__ import annotations

import math
import random
from typing import Any

from latentgraph.editor_graph import Entry, Problems, Widget, short
from latentgraph.node import InputSpec, NodeSpec

#: The value that follows a seed widget in ``widgets_values``.
CONTROL_MODES = frozenset({"fixed", "increment", "decrement", "randomize"})
#: Control values older editors stored as a checkbox: ``true`` was "randomize", ``false`` "fixed".
LEGACY_CONTROL = {True: "randomize", False: "fixed"}
#: Values older editors left after the last widget (removed widgets, spacers): nothing to read.
EMPTY_VALUES = ("", None)
#: INT inputs the editor gives a control widget even when the node type does not say so.
SEED_NAMES = frozenset({"seed", "noise_seed"})
#: Values of an upload button widget (the editor appends it after the file COMBO).
UPLOAD_VALUES = frozenset({"image", "upload", "video", "audio"})
#: The editor keeps random seeds within JavaScript's exact integers.
RANDOM_SEED_LIMIT = 2**50


def shown_as_widget(inp: InputSpec) -> bool:
    """Whether the editor draws this input as a widget (``forceInput`` makes a widget type a socket)."""
    return inp.is_widget and not (inp.editor_options and inp.editor_options.get("forceInput"))


def editor_widgets(spec: NodeSpec) -> tuple[InputSpec, ...]:
    """Widget inputs in the order the editor creates them: required ones, then optional ones."""
    widgets = [i for i in spec.inputs if shown_as_widget(i)]
    return tuple([i for i in widgets if i.required] + [i for i in widgets if not i.required])


def has_control(inp: InputSpec) -> bool:
    """Whether the editor puts a control_after_generate value after this widget."""
    return inp.control_after_generate or (inp.type == "INT" and inp.name in SEED_NAMES)


def is_control(value: Any) -> bool:
    return (isinstance(value, str) and value in CONTROL_MODES) or isinstance(value, bool)


def take_widget(values: list[Any], pos: int, with_control: bool) -> tuple[Widget, int]:
    """The widget at ``values[pos]``, with the control mode after it when it may have one; and the
    position of the next widget. Old workflows have no control value, so it is only taken if there."""
    widget = Widget(values[pos], home=(values, pos))
    pos += 1
    if with_control and pos < len(values) and is_control(values[pos]):
        widget.control = LEGACY_CONTROL.get(values[pos], values[pos]) if isinstance(values[pos], bool) else values[pos]
        pos += 1
    return widget, pos


def node_widgets(entry: Entry, spec: NodeSpec, problems: Problems) -> dict[str, Widget]:
    """A node's widget values by input name; a count that does not fit the spec is reported."""
    order = editor_widgets(spec)
    raw = entry.node.get("widgets_values")
    if raw is None or raw == []:  # saved without widget values (older editors, API exports): defaults
        return {w.name: Widget(w.default) for w in order if w.default is not None}
    if isinstance(raw, dict):  # some nodes save their widgets by name
        return {name: Widget(value) for name, value in raw.items() if name in spec.input_by_name}
    if not isinstance(raw, list):
        problems.node(entry, "widget_count_mismatch", "'widgets_values' must be a list", details=f"got {type(raw).__name__}")
        return {}
    out: dict[str, Widget] = {}
    pos = 0
    missing: list[str] = []
    for inp in order:
        if pos >= len(raw):
            if inp.required:
                missing.append(inp.name)
            continue
        out[inp.name], pos = take_widget(raw, pos, has_control(inp))
    leftover = raw[pos:]
    while leftover and leftover[-1] in EMPTY_VALUES and not isinstance(leftover[-1], bool):
        leftover = leftover[:-1]
    if len(leftover) == 1 and isinstance(leftover[0], str) and leftover[0] in UPLOAD_VALUES and any(i.type == "COMBO" for i in spec.inputs):
        leftover = []
    if missing or leftover:
        expected = ", ".join(w.name + (" (+control_after_generate)" if has_control(w) else "") for w in order)
        problems.node(
            entry,
            "widget_count_mismatch",
            f"{len(raw)} widget value(s) for {len(order)} widget(s) of {spec.name}"
            + (f"; missing {', '.join(missing)}" if missing else f"; {len(leftover)} left over"),
            details=f"expected: {expected or 'no widgets'}; got: {short(raw)}",
            expected=[w.name for w in order],
            received=raw,
        )
    return out


def apply_control(value: Any, mode: str | None, inp: InputSpec | None, rng: random.Random) -> Any:
    """The value a widget takes when its control mode is applied (as the editor does on queueing)."""
    if mode in (None, "fixed") or inp is None or inp.type not in ("INT", "FLOAT"):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return value  # validation reports it; applying a step to Infinity or NaN would raise
    is_int = inp.type == "INT"
    lo = inp.min if inp.min is not None else (-RANDOM_SEED_LIMIT if is_int else -math.inf)
    hi = inp.max if inp.max is not None else (RANDOM_SEED_LIMIT if is_int else math.inf)
    step = inp.step or 1
    if mode == "increment":
        new = value + step
    elif mode == "decrement":
        new = value - step
    elif mode == "randomize":
        if is_int:
            new = rng.randint(int(max(lo, -RANDOM_SEED_LIMIT)), int(min(hi, RANDOM_SEED_LIMIT)))
        elif math.isfinite(lo) and math.isfinite(hi):
            new = rng.uniform(lo, hi)
        else:
            return value
    else:
        return value
    new = min(max(new, lo), hi)
    return int(new) if is_int else float(new)


class SeedControl:
    """The value each widget runs with: stored, or (when asked) its control mode applied.

    A widget folded into several targets (a primitive, a promoted value) is applied once, and the
    value that ran is written back into the editor JSON so a saved image reproduces it.
    """

    def __init__(self, apply: bool, rng: random.Random) -> None:
        self.apply = apply
        self.rng = rng
        self._applied: dict[Widget, Any] = {}

    def value(self, widget: Widget, inp: InputSpec | None) -> Any:
        if not self.apply or widget.control in (None, "fixed"):
            return widget.value
        if widget not in self._applied:
            value = apply_control(widget.value, widget.control, inp, self.rng)
            self._applied[widget] = value
            if widget.home is not None:
                values, index = widget.home
                values[index] = value
        return self._applied[widget]
