"""Primitive values, a switch and a text preview: PrimitiveInt/Float/String/StringMultiline/Boolean,
ComfySwitchNode, PreviewAny."""

from __future__ import annotations

import json
from typing import Any

from latentgraph.node import ANY_TYPE, In, Node, NodeResult, NodeSpec, Out

#: ComfyUI's bounds of the primitive number widgets (int64, symmetric).
INT_LIMIT = 9223372036854775807


class PrimitiveInt(Node):
    spec = NodeSpec(
        name="PrimitiveInt",
        display_name="Int",
        category="utils/primitive",
        description="An integer.",
        inputs=(In("value", "INT", min=-INT_LIMIT, max=INT_LIMIT, control_after_generate=True),),
        outputs=(Out("INT"),),
    )

    def execute(self, ctx, value: int = 0):
        return (int(value),)


class PrimitiveFloat(Node):
    spec = NodeSpec(
        name="PrimitiveFloat",
        display_name="Float",
        category="utils/primitive",
        description="A number.",
        inputs=(In("value", "FLOAT", min=-INT_LIMIT, max=INT_LIMIT, step=0.1),),
        outputs=(Out("FLOAT"),),
    )

    def execute(self, ctx, value: float = 0.0):
        return (float(value),)


class PrimitiveString(Node):
    spec = NodeSpec(
        name="PrimitiveString",
        display_name="String",
        category="utils/primitive",
        description="A line of text.",
        inputs=(In("value", "STRING"),),
        outputs=(Out("STRING"),),
    )

    def execute(self, ctx, value: str = ""):
        return (str(value),)


class PrimitiveStringMultiline(Node):
    spec = NodeSpec(
        name="PrimitiveStringMultiline",
        display_name="String (Multiline)",
        category="utils/primitive",
        description="A text of several lines.",
        inputs=(In("value", "STRING", multiline=True),),
        outputs=(Out("STRING"),),
    )

    def execute(self, ctx, value: str = ""):
        return (str(value),)


class PrimitiveBoolean(Node):
    spec = NodeSpec(
        name="PrimitiveBoolean",
        display_name="Boolean",
        category="utils/primitive",
        description="True or false.",
        inputs=(In("value", "BOOLEAN"),),
        outputs=(Out("BOOLEAN"),),
    )

    def execute(self, ctx, value: bool = False):
        return (bool(value),)


class ComfySwitchNode(Node):
    """ComfyUI's ``Switch``: both branches are lazy, only the chosen one is evaluated."""

    spec = NodeSpec(
        name="ComfySwitchNode",
        display_name="Switch",
        category="logic",
        description="Passes on_true when switch is on, on_false when it is off.",
        inputs=(In("switch", "BOOLEAN"), In("on_false", ANY_TYPE, lazy=True), In("on_true", ANY_TYPE, lazy=True)),
        outputs=(Out(ANY_TYPE, "output"),),
    )

    def check_lazy_status(self, ctx, switch: bool = False, on_false: Any = None, on_true: Any = None):
        if switch and on_true is None:
            return ["on_true"]
        if not switch and on_false is None:
            return ["on_false"]
        return []

    def execute(self, ctx, switch: bool, on_false: Any = None, on_true: Any = None):
        return (on_true if switch else on_false,)


def preview_text(source: Any) -> str:
    """What PreviewAny shows: text as it is, numbers/booleans printed, other values as indented
    JSON where they are JSON, else their ``str``."""
    if source is None:
        return "None"
    if isinstance(source, str):
        return source
    if isinstance(source, (bool, int, float)):
        return str(source)
    try:
        return json.dumps(source, indent=4)
    except (TypeError, ValueError):
        try:
            return str(source)
        except Exception:  # noqa: BLE001 - a value whose __str__ fails still gets a preview
            return "source exists, but could not be serialized."


class PreviewAny(Node):
    spec = NodeSpec(
        name="PreviewAny",
        display_name="Preview as Text",
        category="utils",
        description="Shows any value as text in the editor.",
        inputs=(In("source", ANY_TYPE),),
        outputs=(),
        output_node=True,
    )

    def execute(self, ctx, source: Any = None) -> NodeResult:
        return NodeResult(outputs=(), ui={"text": [preview_text(source)]})


NODES = [PrimitiveInt, PrimitiveFloat, PrimitiveString, PrimitiveStringMultiline, PrimitiveBoolean,
         ComfySwitchNode, PreviewAny]
