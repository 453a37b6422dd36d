"""The last workflow an engine validated, so an identical re-run skips re-validating it.

Re-submitting the same prompt is the commonest thing a user does, and with every node cached,
parsing and validating were nearly all of its cost. Validation is a function of the workflow, the
registry and the settings, except for two things that can change on disk: COMBO inputs whose
choices are listed at run time (model files, input images) and a node's own ``check_inputs``.
Those are checked again on every hit; anything they refuse, or any other difference, means a full
validation (which then reports every problem as usual).

"Identical" is decided on a snapshot only the engine holds: the JSON text as given, or for a
dict its ``repr`` when it holds nothing but JSON types (then the text is a faithful copy —
``True``, ``1`` and ``1.0`` differ — whatever the caller later does to the dict). Anything else
is simply not remembered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from latentgraph.node import Node
from latentgraph.registry import NodeRegistry
from latentgraph.settings import Settings
from latentgraph.standard_json import MAX_DEPTH, plainly_standard
from latentgraph.validation import Graph, PlannedNode, _ChoiceCache

#: ("text", the JSON text) or ("dict", repr of the dict).
Snapshot = tuple[str, str | bytes]


@dataclass(frozen=True)
class _Entry:
    snapshot: Snapshot
    targets: tuple[str, ...] | None
    generation: int
    settings: Settings
    graph: Graph
    #: Nodes whose validity depends on more than the workflow (files on disk, their own checks).
    volatile: tuple[PlannedNode, ...]


class ValidationMemo:
    """One entry (the last successful validation); safe to use from several threads."""

    def __init__(self, registry: NodeRegistry) -> None:
        self.registry = registry
        self._entry: _Entry | None = None

    @staticmethod
    def snapshot(workflow: Any) -> Snapshot | None:
        """What identifies ``workflow`` (text as given, or a dict's repr); None: not remembered."""
        if isinstance(workflow, (str, bytes)):
            return ("text", workflow)
        if type(workflow) is dict and plainly_standard(workflow, MAX_DEPTH):
            return ("dict", repr(workflow))
        return None

    def holds(self, snapshot: Snapshot | None) -> bool:
        """Whether ``snapshot`` is the one remembered (its text already passed every JSON check)."""
        entry = self._entry
        return snapshot is not None and entry is not None and entry.snapshot == snapshot

    def recall(self, snapshot: Snapshot, targets: tuple[str, ...] | None, settings: Settings,
               source: dict[str, Any]) -> Graph | None:
        """The remembered graph, with ``source`` as its JSON, if it is still valid."""
        entry = self._entry
        if (
            entry is None
            or entry.snapshot != snapshot
            or entry.targets != targets
            or entry.settings is not settings
            or entry.generation != self.registry.generation
            or not self._still_valid(entry.volatile, settings)
        ):
            return None
        graph = entry.graph
        return Graph(graph.nodes, graph.order, graph.outputs, source)

    def remember(self, snapshot: Snapshot, targets: tuple[str, ...] | None, settings: Settings, graph: Graph) -> None:
        choices = _ChoiceCache(settings, self.registry)
        volatile = tuple(node for node in graph.nodes.values() if _volatile(node, choices))
        kept = Graph(graph.nodes, graph.order, graph.outputs)  # not its JSON: each run brings its own
        self._entry = _Entry(snapshot, targets, self.registry.generation, settings, kept, volatile)

    def forget(self) -> None:
        self._entry = None

    def _still_valid(self, nodes: tuple[PlannedNode, ...], settings: Settings) -> bool:
        """The checks validation made that depend on more than the workflow, made again."""
        if not nodes:
            return True
        choices = _ChoiceCache(settings, self.registry)
        for node in nodes:
            spec, literals = node.spec, node.literals
            try:
                for inp in spec.inputs:
                    if _listed_at_run_time(inp) and inp.name in literals and not choices.allows(spec, inp, literals[inp.name]):
                        return False
                if choices.checks_inputs(node.node_type) and node.node_type.check_inputs(settings, literals):
                    return False
            except Exception:  # validation reports it properly
                return False
        return True


def _listed_at_run_time(inp: Any) -> bool:
    return inp.type == "COMBO" and inp.strict_choices and callable(inp.choices)


def _volatile(node: PlannedNode, choices: _ChoiceCache) -> bool:
    node_type: type[Node] = node.node_type
    return choices.checks_inputs(node_type) or any(
        _listed_at_run_time(inp) and inp.name in node.literals for inp in node_type.spec.inputs
    )
