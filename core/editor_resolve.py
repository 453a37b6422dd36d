"""Following a link back to what really feeds an input: a node output, or a value to fold in.

Only real nodes exist in the API format. Reroutes pass their input through, primitives become
their value, muted nodes feed nothing, a bypassed node hands on one of its own inputs, and links
cross subgraph boundaries through the instance's inputs (or promoted widgets) and outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from latentgraph.editor_graph import (
    MODE_BYPASSED,
    MODE_MUTED,
    SUBGRAPH_INPUT_NODE,
    SUBGRAPH_OUTPUT_NODE,
    Entry,
    Problems,
    Scope,
    Widget,
    as_list,
)
from latentgraph.editor_links import input_name, types_compatible
from latentgraph.editor_widgets import take_widget


@dataclass(frozen=True, slots=True)
class Source:
    """An output of a node that is in the API prompt."""

    exec_id: str
    slot: int


@dataclass(frozen=True, slots=True)
class Value:
    """A widget value (of a primitive or a promoted subgraph widget) standing in for a link."""

    widget: Widget


Resolved = Source | Value | None
_Visited = set[tuple[str, str, int]]


class InputTracer:
    """Traces inputs across reroutes, primitives, bypassed nodes and subgraphs; reports loops and
    links that lead nowhere."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems

    def trace(self, entry: Entry, index: int, want: str) -> Resolved:
        """What feeds ``entry``'s input ``index`` (of socket type ``want``); ``None`` for nothing."""
        return self._input(entry, index, want, set())

    def _loops(self, entry: Entry, key: tuple[str, str, int], visited: _Visited) -> bool:
        if key in visited:
            self.problems.node(entry, "dependency_cycle", "Links loop back to this node through reroutes or bypassed nodes")
            return True
        visited.add(key)
        return False

    def _input(self, entry: Entry, index: int, want: str, visited: _Visited) -> Resolved:
        if self._loops(entry, (entry.exec_id, "in", index), visited):
            return None
        inputs = entry.inputs
        if not 0 <= index < len(inputs) or not isinstance(inputs[index], dict):
            return None
        inp = inputs[index]
        link_id = inp.get("link")
        if link_id is None:
            return None
        link = entry.scope.links.get(str(link_id))
        if link is None:
            self.problems.dangling(entry, inp, f"input '{input_name(inp)}' uses link {link_id}, which is not in the workflow's links")
            return None
        if link.origin_id == SUBGRAPH_INPUT_NODE and entry.scope.instance is not None:
            return self._subgraph_input(entry.scope, link.origin_slot, want, visited)
        origin = entry.scope.entries.get(link.origin_id)
        if origin is None:
            self.problems.dangling(
                entry, inp, f"input '{input_name(inp)}' is linked (link {link_id}) to node {link.origin_id}, which is not in the workflow"
            )
            return None
        return self._output(origin, link.origin_slot, want, visited)

    def _output(self, entry: Entry, slot: int, want: str, visited: _Visited) -> Resolved:
        if self._loops(entry, (entry.exec_id, "out", slot), visited):
            return None
        if entry.mode == MODE_MUTED:
            return None
        if entry.mode == MODE_BYPASSED:
            index = bypass_input(entry, slot, want)
            return None if index < 0 else self._input(entry, index, want, visited)
        if entry.kind == "reroute":
            return self._input(entry, 0, want, visited)
        if entry.kind == "primitive":
            widget = primitive_widget(entry)
            return None if widget is None else Value(widget)
        if entry.kind == "subgraph":
            return self._subgraph_output(entry, slot, want, visited)
        if entry.kind == "note":
            return None
        return Source(entry.exec_id, slot)

    def _subgraph_input(self, scope: Scope, slot: int, want: str, visited: _Visited) -> Resolved:
        instance, definition = scope.instance, scope.definition
        assert instance is not None and definition is not None
        if not 0 <= slot < len(definition.inputs):
            self.problems.node(instance, "dangling_link", f"A link inside the subgraph comes from its input {slot}, which does not exist")
            return None
        index = instance.subgraph_input_index(slot)
        if index is not None and instance.inputs[index].get("link") is not None:
            return self._input(instance, index, want, visited)
        widget = instance.promoted.get(str(definition.inputs[slot].get("name")))
        return None if widget is None else Value(widget)

    def _subgraph_output(self, entry: Entry, slot: int, want: str, visited: _Visited) -> Resolved:
        definition, inner = entry.definition, entry.inner
        if definition is None or inner is None:
            return None
        link = None
        if 0 <= slot < len(definition.outputs):
            for lid in as_list(definition.outputs[slot].get("linkIds")):
                candidate = definition.links.get(str(lid))
                if candidate is not None and candidate.target_id == SUBGRAPH_OUTPUT_NODE:
                    link = candidate
                    break
        if link is None:
            link = next(
                (l for l in definition.links.values() if l.target_id == SUBGRAPH_OUTPUT_NODE and l.target_slot == slot),
                None,
            )
        if link is None:
            return None
        if link.origin_id == SUBGRAPH_INPUT_NODE:  # an input wired straight to an output
            return self._subgraph_input(inner, link.origin_slot, want, visited)
        origin = inner.entries.get(link.origin_id)
        if origin is None:
            self.problems.node(entry, "dangling_link", f"Subgraph output {slot} is fed by node {link.origin_id}, which is not in the subgraph")
            return None
        return self._output(origin, link.origin_slot, want, visited)


def bypass_input(entry: Entry, slot: int, want: str) -> int:
    """Which input a bypassed node passes to output ``slot``: same index if its type fits,
    else the first input of exactly the wanted type, else the first compatible one; -1 for none."""
    types = [str(i.get("type") or "*") if isinstance(i, dict) else "*" for i in entry.inputs]
    if not types or slot < 0:
        return -1
    outputs = as_list(entry.node.get("outputs"))
    if slot < len(outputs) and isinstance(outputs[slot], dict):
        out_type = str(outputs[slot].get("type") or "*")
    elif entry.spec is not None and slot < len(entry.spec.outputs):
        out_type = entry.spec.outputs[slot].type
    else:
        out_type = "*"
    if want in ("*", ""):
        return slot if slot < len(types) else 0
    if slot < len(types) and types_compatible(types[slot], out_type) and types_compatible(types[slot], want):
        return slot
    for i, t in enumerate(types):
        if t == want:
            return i
    for i, t in enumerate(types):
        if types_compatible(t, out_type) and types_compatible(t, want):
            return i
    return -1


def primitive_widget(entry: Entry) -> Widget | None:
    """A primitive node's value (its instance's override first), read once so that every target
    folds the same widget and a control mode is applied once."""
    if entry.primitive is None:
        override = entry.instance_overrides().get("value")
        values = entry.node.get("widgets_values")
        if override is not None:
            entry.primitive = override
        elif isinstance(values, list) and values:
            entry.primitive, _ = take_widget(values, 0, with_control=True)
        elif isinstance(values, dict) and "value" in values:
            entry.primitive = Widget(values["value"])
    return entry.primitive
