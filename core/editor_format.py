"""Editor-format workflows (what ComfyUI's web editor saves) converted to the API format, headless.

ComfyUI itself only runs the API format; its browser converts the editor graph before queueing.
We do the same with our registry: ``widgets_values`` are mapped positionally onto each node type's
widget inputs, links are followed through reroutes, primitives, bypassed nodes, group nodes and
subgraphs, and every problem becomes an :class:`ErrorDetail` naming the editor node id and title.

Editor-format facts this module relies on (ComfyUI frontend):

- ``links`` are ``[id, from_node, from_slot, to_node, to_slot, type]`` arrays, or (newer) objects
  ``{id, origin_id, origin_slot, target_id, target_slot, type}``, as a list or keyed by id. A node's
  ``inputs[i].link`` names the link feeding input ``i``; that, not ``target_slot``, is authoritative.
- ``widgets_values`` hold one value per widget input, in declaration order (required, then
  optional), plus a ``"fixed" | "increment" | "decrement" | "randomize"`` value right after each
  seed-like widget, and an ``"image"`` value for an upload button at the end. An input entry with
  a ``widget`` key is a widget turned into a socket: when linked, the link supplies the value.
- ``mode`` 2 is muted (the node and everything it feeds are dropped), 4 is bypassed (each output
  is replaced by the first input of a matching type).
- Subgraphs: a node whose ``type`` is the id of an entry in ``definitions.subgraphs``; inside, links
  from node -10 come from the instance's inputs and links to node -20 feed its outputs. Widget
  inputs of the subgraph are shown on the instance and their values are its ``widgets_values``
  (or, newer, ``properties.proxyWidgets`` pairs ``[inner node id, widget]`` say whose value each
  entry overrides). Inner node ids are prefixed with the instance id: ``"5:3"``, ``"5:7:2"``.
- Group nodes (legacy): ``type`` ``"workflow>Name"``; the definition lives in
  ``extra.groupNodes[Name]`` with inner links ``[from_index, from_slot, to_index, to_slot, …]``.
  Inner node ids are ``"<group id>:<index>"``.

The steps live in their own modules: ``editor_links`` (link forms), ``editor_graph`` (the nodes
sorted into scopes), ``editor_widgets`` (widget mapping, seed control), ``editor_subgraphs``
(subgraph and group-node definitions, promoted widgets), ``editor_resolve`` (following links),
``editor_export`` (the other way). Every public name is importable from here.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latentgraph.editor_export import api_to_editor
from latentgraph.editor_graph import (
    GROUP_PREFIXES,
    MODE_BYPASSED,
    MODE_MUTED,
    NOTE_TYPES,
    PRIMITIVE,
    REROUTE,
    SUBGRAPH_INPUT_NODE,
    SUBGRAPH_OUTPUT_NODE,
    VALUE_NODES,
    Entry,
    Problems,
    Scope,
)
from latentgraph.editor_links import EditorLink, as_int, input_name, parse_links
from latentgraph.editor_resolve import InputTracer, Source, Value
from latentgraph.editor_subgraphs import Subgraphs
from latentgraph.editor_widgets import (
    CONTROL_MODES,
    RANDOM_SEED_LIMIT,
    SEED_NAMES,
    UPLOAD_VALUES,
    SeedControl,
    apply_control,
    editor_widgets,
    has_control,
    node_widgets,
)
from latentgraph.errors import ErrorReport
from latentgraph.workflow import LITERAL_LIST_KEY

if TYPE_CHECKING:
    from latentgraph.registry import NodeRegistry

__all__ = [
    "CONTROL_MODES",
    "GROUP_PREFIXES",
    "MODE_BYPASSED",
    "MODE_MUTED",
    "NOTE_TYPES",
    "PRIMITIVE",
    "RANDOM_SEED_LIMIT",
    "REROUTE",
    "SEED_NAMES",
    "SUBGRAPH_INPUT_NODE",
    "SUBGRAPH_OUTPUT_NODE",
    "UPLOAD_VALUES",
    "VALUE_NODES",
    "Conversion",
    "EditorLink",
    "api_to_editor",
    "apply_control",
    "convert_editor_workflow",
    "detect_format",
    "editor_widgets",
    "has_control",
    "is_api_workflow",
    "is_editor_workflow",
    "parse_links",
]


# -- format detection -----------------------------------------------------------------------------


def is_editor_workflow(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list)


def is_api_workflow(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and bool(data)
        and all(isinstance(v, dict) and "class_type" in v for v in data.values())
    )


def detect_format(data: Any) -> str:
    """``"editor"``, ``"api"`` or ``"unknown"``."""
    if is_editor_workflow(data):
        return "editor"
    if is_api_workflow(data):
        return "api"
    return "unknown"


# -- the conversion -------------------------------------------------------------------------------


@dataclass
class Conversion:
    """The API-format prompt, every problem found, and the editor JSON it came from.

    ``workflow`` is a copy of the input with applied control values written back (so a SaveImage
    embeds the values that actually ran); it is the input unchanged when nothing was applied.
    """

    prompt: dict[str, Any]
    report: ErrorReport
    workflow: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.report


def convert_editor_workflow(
    workflow: Any,
    registry: NodeRegistry,
    *,
    apply_controls: bool = False,
    rng: random.Random | None = None,
) -> Conversion:
    """Convert an editor-format workflow to the API format.

    With ``apply_controls`` each seed's "control after generate" mode (increment, decrement,
    randomize) is applied first, like the editor does when it queues; otherwise stored values run.
    """
    converter = _Converter(registry, SeedControl(apply_controls, rng or random.Random()))
    working = copy.deepcopy(workflow) if apply_controls else workflow
    prompt = converter.run(working)
    return Conversion(prompt, converter.problems.report, working if isinstance(working, dict) else {})


class _Converter:
    """One conversion: sorts every node (nested ones too) into scopes, then emits the real ones."""

    def __init__(self, registry: NodeRegistry, seeds: SeedControl) -> None:
        self.registry = registry
        self.seeds = seeds
        self.problems = Problems()
        self.tracer = InputTracer(self.problems)
        self.prompt: dict[str, Any] = {}

    def run(self, workflow: Any) -> dict[str, Any]:
        if not is_editor_workflow(workflow):
            self.problems.workflow(
                "invalid_editor_workflow",
                "Not an editor-format workflow: expected an object with a 'nodes' list",
                details=f"got {type(workflow).__name__}" + (f" with keys {sorted(workflow)[:8]}" if isinstance(workflow, dict) else ""),
            )
            return {}
        links, problems = parse_links(workflow.get("links"))
        self.subgraphs = Subgraphs(workflow, self.registry, self.problems)
        root = Scope((), links)
        self._populate(root, workflow["nodes"], ())
        self._emit(root)
        self._drop_links_to_missing_nodes()
        report = self.problems.report
        if problems:
            self.problems.workflow(
                "invalid_editor_workflow", f"{len(problems)} unreadable link entr{'y' if len(problems) == 1 else 'ies'}", details="; ".join(problems[:5])
            )
        elif report.node_errors and report.error is None:
            count = sum(len(n.errors) for n in report.node_errors.values())
            self.problems.workflow(
                "workflow_conversion_failed",
                "The editor workflow could not be converted to the API format",
                details=f"{count} problem(s) in {len(report.node_errors)} node(s)",
            )
        return self.prompt

    # -- building entries ---------------------------------------------------------------------
    def _populate(self, scope: Scope, nodes: list[Any], stack: tuple[str, ...]) -> None:
        """Sort one level's nodes into ``scope``, then expand its active subgraph instances."""
        for raw in nodes:
            if not isinstance(raw, dict) or raw.get("id") is None:
                self.problems.workflow("invalid_editor_workflow", "A node entry has no 'id'", details=str(raw)[:120])
                continue
            local = str(raw["id"])
            exec_id = ":".join((*scope.prefix, local))
            mode = as_int(raw.get("mode") or 0) or 0
            entry = Entry(exec_id, local, raw, scope, "unknown", mode)
            if local in scope.entries:
                self.problems.node(entry, "duplicate_node_id", f"Node id {local} appears twice")
                continue
            scope.entries[local] = entry
            self._classify(entry)
        for entry in list(scope.entries.values()):
            if entry.kind == "subgraph" and entry.active and entry.definition is not None:
                definition = entry.definition
                if definition.id in stack:
                    self.problems.node(entry, "subgraph_recursion", f"Subgraph '{definition.label}' contains itself")
                    continue
                self.subgraphs.promote(entry)
                entry.inner = Scope((*scope.prefix, entry.local_id), definition.links, instance=entry, definition=definition)
                self._populate(entry.inner, definition.nodes, (*stack, definition.id))

    def _classify(self, entry: Entry) -> None:
        node_type = entry.type
        if node_type in NOTE_TYPES:
            entry.kind = "note"
        elif node_type == REROUTE:
            entry.kind = "reroute"
        elif node_type == PRIMITIVE:
            entry.kind = "primitive"
        elif self.subgraphs.instantiates(node_type):
            entry.kind, entry.definition = "subgraph", self.subgraphs.definition_for(entry)
        elif node_type in VALUE_NODES:  # folded into the inputs they feed, registered or not
            entry.kind = "primitive"
        elif (node_cls := self.registry.get(node_type, _input_names(entry.node))) is not None:
            entry.kind, entry.spec = "node", node_cls.spec
        elif entry.mode != MODE_MUTED:
            detail = "is the plugin that provides it installed and enabled? (`latentgraph plugins`)"
            if not node_type:
                detail = "the node has no 'type'"
            elif "-" in node_type and len(node_type) == 36:
                detail = "it looks like a subgraph id, but the workflow has no such entry in definitions.subgraphs"
            self.problems.node(entry, "missing_node_type", f"Unknown node type '{node_type}'", details=detail)

    # -- emitting API nodes -------------------------------------------------------------------
    def _emit(self, scope: Scope) -> None:
        for entry in scope.entries.values():
            if not entry.active:
                continue
            if entry.kind == "subgraph" and entry.inner is not None:
                self._emit(entry.inner)
            elif entry.kind == "node":
                self._emit_node(entry)

    def _emit_node(self, entry: Entry) -> None:
        spec = entry.spec
        assert spec is not None
        widgets = node_widgets(entry, spec, self.problems)
        widgets.update({name: w for name, w in entry.instance_overrides().items() if name in spec.input_by_name})
        values: dict[str, Any] = {name: _literal(self.seeds.value(w, spec.input_by_name.get(name))) for name, w in widgets.items()}
        for index, inp in enumerate(entry.inputs):
            if not isinstance(inp, dict) or inp.get("link") is None:
                continue
            name = input_name(inp)
            if not name:
                continue
            resolved = self.tracer.trace(entry, index, str(inp.get("type") or "*"))
            if isinstance(resolved, Source):
                values[name] = [resolved.exec_id, resolved.slot]
            elif isinstance(resolved, Value):
                values[name] = _literal(self.seeds.value(resolved.widget, spec.input_by_name.get(name)))
        order = {inp.name: i for i, inp in enumerate(spec.inputs)}
        inputs = dict(sorted(values.items(), key=lambda kv: order.get(kv[0], len(order))))
        self.prompt[entry.exec_id] = {"class_type": entry.type, "inputs": inputs, "_meta": {"title": entry.title}}

    def _drop_links_to_missing_nodes(self) -> None:
        """Inputs fed by nodes that were not converted (unknown types) are left out, like the editor does."""
        for node in self.prompt.values():
            for name, value in list(node["inputs"].items()):
                if isinstance(value, list) and value[0] not in self.prompt:  # literal lists are wrapped
                    del node["inputs"][name]


def _literal(value: Any) -> Any:
    """A literal list is wrapped so it is not read as a link."""
    return {LITERAL_LIST_KEY: value} if isinstance(value, list) else value


def _input_names(node: dict[str, Any]) -> list[str]:
    """Names of an editor node's inputs (its sockets), which tell older forms of a node apart."""
    inputs = node.get("inputs")
    if not isinstance(inputs, list):
        return []
    return [str(i["name"]) for i in inputs if isinstance(i, dict) and isinstance(i.get("name"), str)]
