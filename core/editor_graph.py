"""The editor graph as the converter sees it: nodes sorted into kinds, one scope per subgraph level.

Kept apart from the conversion steps so that widget mapping, subgraph expansion and link following
share one vocabulary (and one way of reporting a problem against the editor node it is about).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from latentgraph.editor_links import EditorLink, input_name
from latentgraph.errors import ErrorDetail, ErrorReport
from latentgraph.node import NodeSpec

MODE_MUTED = 2
MODE_BYPASSED = 4
#: Inside a subgraph, links from this node come from the instance's inputs ...
SUBGRAPH_INPUT_NODE = "-10"
#: ... and links to this one feed the instance's outputs.
SUBGRAPH_OUTPUT_NODE = "-20"
NOTE_TYPES = frozenset({"Note", "MarkdownNote"})
REROUTE = "Reroute"
PRIMITIVE = "PrimitiveNode"
#: ComfyUI's backend primitives (one value widget, output = that value): folded like PrimitiveNode
#: unless a plugin registers them.
VALUE_NODES = frozenset({"PrimitiveInt", "PrimitiveFloat", "PrimitiveBoolean", "PrimitiveString", "PrimitiveStringMultiline"})
GROUP_PREFIXES = ("workflow>", "workflow/")


def as_list(value: Any) -> list[Any]:
    """``value`` if it is a list, else an empty one: editor JSON from the wild may hold anything."""
    return value if isinstance(value, list) else []


def node_inputs(node: Mapping[str, Any]) -> list[Any]:
    return as_list(node.get("inputs"))


@dataclass(eq=False)
class Widget:
    """A widget value, its control mode, and where it lives in the editor JSON (for write-back).

    Compared by identity: each one is applied (and written back) once, see ``SeedControl``.
    """

    value: Any
    control: str | None = None
    home: tuple[list[Any], int] | None = None


@dataclass(eq=False)
class Definition:
    """A subgraph definition (or a group node turned into one)."""

    id: str
    name: str
    nodes: list[dict[str, Any]]
    links: dict[str, EditorLink]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    #: A legacy group node: its widget values were already spread over the inner nodes.
    is_group: bool = False

    @property
    def label(self) -> str:
        return self.name or self.id

    def node(self, node_id: str) -> dict[str, Any] | None:
        for node in self.nodes:
            if isinstance(node, dict) and str(node.get("id")) == node_id:
                return node
        return None


@dataclass(eq=False)
class Scope:
    """One graph level: the root, or the inside of one subgraph instance."""

    prefix: tuple[str, ...]
    links: dict[str, EditorLink]
    entries: dict[str, Entry] = field(default_factory=dict)
    instance: Entry | None = None
    definition: Definition | None = None


@dataclass(eq=False)
class Entry:
    """One editor node in its scope; ``exec_id`` is its id in the API prompt (``"5:3"`` inside 5)."""

    exec_id: str
    local_id: str
    node: dict[str, Any]
    scope: Scope
    kind: str  # node | reroute | primitive | note | subgraph | unknown
    mode: int
    spec: NodeSpec | None = None
    definition: Definition | None = None
    inner: Scope | None = None
    #: Subgraph instances: values of promoted widgets, by subgraph input name.
    promoted: dict[str, Widget] = field(default_factory=dict)
    #: Subgraph instances: values that replace inner nodes' widgets, by (inner id, widget name).
    overrides: dict[tuple[str, str], Widget] = field(default_factory=dict)
    primitive: Widget | None = None

    @property
    def type(self) -> str:
        return str(self.node.get("type", ""))

    @property
    def title(self) -> str:
        title = self.node.get("title")
        if isinstance(title, str) and title:
            return title
        if self.spec is not None:
            return self.spec.title
        if self.definition is not None and self.definition.name:
            return self.definition.name
        return self.type

    @property
    def inputs(self) -> list[Any]:
        return node_inputs(self.node)

    @property
    def active(self) -> bool:
        return self.mode not in (MODE_MUTED, MODE_BYPASSED)

    def instance_overrides(self) -> dict[str, Widget]:
        """Widget values the enclosing subgraph instance sets on this node, by widget name."""
        instance = self.scope.instance
        if instance is None:
            return {}
        return {name: widget for (local, name), widget in instance.overrides.items() if local == self.local_id}

    def subgraph_input_index(self, slot: int) -> int | None:
        """For a subgraph instance: which of its ``inputs`` carries the subgraph's input ``slot``
        (``None`` when none does, or that entry is not an object)."""
        definition = self.definition
        assert definition is not None
        if slot >= len(definition.inputs):
            return None
        name = definition.inputs[slot].get("name")
        for i, inp in enumerate(self.inputs):
            if isinstance(inp, dict) and inp.get("name") == name:
                return i
        if len(self.inputs) == len(definition.inputs) and isinstance(self.inputs[slot], dict):
            return slot
        return None


@dataclass(eq=False)
class Problems:
    """Every problem found, as an :class:`ErrorReport` naming the editor node's id and title."""

    report: ErrorReport = field(default_factory=ErrorReport)
    _reported: set[tuple[str, str]] = field(default_factory=set)

    def workflow(self, kind: str, message: str, details: str = "") -> None:
        """A problem with the file as a whole (the latest one is the report's ``error``)."""
        self.report.error = ErrorDetail(kind, message, details=details)

    def node(self, entry: Entry, kind: str, message: str, details: str = "", **extra: Any) -> None:
        """A problem with one node, reported once however often it is met."""
        if (entry.exec_id, message) in self._reported:
            return
        self._reported.add((entry.exec_id, message))
        title = entry.title
        info = {"node_id": entry.exec_id, "node_title": title, "node_type": entry.type, **extra}
        self.report.add(entry.exec_id, entry.type, ErrorDetail(kind, f"{message} (node {entry.exec_id} '{title}')", details, info))
        self.report.node_errors[entry.exec_id].title = title

    def dangling(self, entry: Entry, inp: dict[str, Any], message: str) -> None:
        self.node(entry, "dangling_link", message[:1].upper() + message[1:], input_name=input_name(inp))


def short(value: Any, limit: int = 120) -> str:
    """``repr`` cut to fit an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
