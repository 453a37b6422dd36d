"""Checks a workflow against the registry before anything runs, reporting every problem at once.

The result is a :class:`Graph`: the nodes the output nodes need, their coerced literal inputs,
their links, and a dependency order — everything the executor needs and nothing it must re-check.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from latentgraph.errors import ErrorDetail, ErrorReport, preview
from latentgraph.node import ANY_TYPE, WIDGET_TYPES, InputSpec, Node, NodeSpec
from latentgraph.registry import NodeRegistry
from latentgraph.settings import Settings
from latentgraph.workflow import UNREADABLE, Link, Workflow, WorkflowNode

_INT_TEXT = re.compile(r"^[+-]?\d+$")
_ABSENT = object()
_DEFAULT_CHECK = Node.check_inputs.__func__
#: Node ids listed in a dependency-cycle error (the rest are counted).
CYCLE_SHOWN = 20
#: Distinct unknown node types that get "did you mean" suggestions in one validation.
SUGGESTED_TYPES = 20
PLUGIN_HINT = "is the plugin that provides it installed and enabled? (`latentgraph plugins`)"


@dataclass(slots=True)
class PlannedNode:
    id: str
    class_type: str  # canonical name (aliases resolved)
    node_type: type[Node]
    literals: dict[str, Any]
    links: dict[str, Link]
    #: Canonical text of the literal inputs, computed once; part of the cache key.
    literal_key: str = ""
    title: str = ""

    @property
    def spec(self) -> NodeSpec:
        return self.node_type.spec


@dataclass
class Graph:
    """A validated workflow, ready to execute."""

    nodes: dict[str, PlannedNode]
    #: Dependency order of the nodes the outputs need.
    order: list[str]
    outputs: list[str]
    #: The API-format JSON it came from (embedded in saved images).
    source: dict[str, Any] = field(default_factory=dict)


class _ChoiceCache:
    """What one validation looks up once: each COMBO's choices (they may list files on disk) and
    which node types check their inputs themselves."""

    def __init__(self, settings: Settings, registry: NodeRegistry) -> None:
        self.settings, self.registry = settings, registry
        self._seen: dict[tuple[str, str], tuple[list[str], frozenset[str]]] = {}
        self._checks: dict[type[Node], bool] = {}

    def checks_inputs(self, node_type: type[Node]) -> bool:
        """Whether ``node_type`` overrides ``check_inputs`` (the default finds nothing)."""
        found = self._checks.get(node_type)
        if found is None:
            found = self._checks[node_type] = getattr(node_type.check_inputs, "__func__", None) is not _DEFAULT_CHECK
        return found

    def get(self, spec: NodeSpec, inp: InputSpec) -> list[str]:
        return self._lookup(spec, inp)[0]

    def allows(self, spec: NodeSpec, inp: InputSpec, value: str) -> bool:
        """Membership in O(1): thousands of nodes may each pick from thousands of files."""
        return value in self._lookup(spec, inp)[1]

    def _lookup(self, spec: NodeSpec, inp: InputSpec) -> tuple[list[str], frozenset[str]]:
        key = (spec.name, inp.name)
        if key not in self._seen:
            choices = inp.resolve_choices(self.settings, self.registry)
            self._seen[key] = (choices, frozenset(c for c in choices if isinstance(c, str)))
        return self._seen[key]


class _Suggester:
    """"Did you mean" for unknown node types: difflib costs the registry's size times the name's
    length squared, so each distinct name is looked up once, and only the first
    ``SUGGESTED_TYPES`` of them (a workflow of 12k distinct unknown names stays linear)."""

    def __init__(self, registry: NodeRegistry) -> None:
        self.registry = registry
        self._seen: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name not in self._seen:
            if len(self._seen) >= SUGGESTED_TYPES or len(name) > 200:
                return PLUGIN_HINT  # what _suggest says when nothing is close
            self._seen[name] = _suggest(name, self.registry)
        return self._seen[name]


def validate(
    workflow: Workflow,
    registry: NodeRegistry,
    settings: Settings,
    *,
    report: ErrorReport | None = None,
    targets: Iterable[str] | None = None,
    source: dict[str, Any] | None = None,
) -> tuple[Graph | None, ErrorReport]:
    """Validate; returns ``(graph, report)`` with ``graph`` None when anything is wrong.

    ``targets`` restricts the run to these output nodes (and what they need). ``source`` is the
    API JSON the workflow was parsed from (kept as given, for embedding in saved images).
    """
    report = report if report is not None else ErrorReport()
    types: dict[str, type[Node]] = {}
    suggest = _Suggester(registry)
    for node in workflow.nodes.values():
        node_type = registry.get(node.class_type, node.inputs)
        if node_type is None:
            report.add(
                node.id,
                node.class_type,
                ErrorDetail(
                    "missing_node_type",
                    f"Unknown node type '{node.class_type}'",
                    details=suggest(node.class_type),
                    extra_info={"node_id": node.id, "class_type": node.class_type, "node_title": node.title},
                ),
            )
        else:
            types[node.id] = node_type

    if targets is not None:
        outputs = []
        for t in targets:
            if t not in workflow.nodes:
                report.error = ErrorDetail("invalid_prompt", f"Target node '{t}' is not in the workflow")
            elif t in types:
                outputs.append(t)
    else:
        outputs = [nid for nid, t in types.items() if t.spec.output_node]
    if not outputs and not report.node_errors:
        report.error = report.error or ErrorDetail(
            "prompt_no_outputs",
            "Workflow has no output nodes",
            details="add a node such as SaveImage or PreviewImage",
        )

    needed = _ancestors(workflow, outputs)
    choices = _ChoiceCache(settings, registry)
    planned: dict[str, PlannedNode] = {}
    for node_id in (nid for nid in workflow.nodes if nid in needed):  # workflow order: a capped report is stable
        node = workflow.nodes[node_id]
        node_type = types.get(node_id)
        if node_type is None:
            continue
        item = _check_node(node, node_type, workflow, types, registry, settings, choices, report)
        if item is not None:
            planned[node_id] = item

    order = _dependency_order(workflow, needed, report)
    if report:
        return None, report
    return Graph(planned, order, outputs, source if source is not None else workflow.to_api()), report


def _ancestors(workflow: Workflow, outputs: list[str]) -> set[str]:
    needed: set[str] = set()
    stack = list(outputs)
    while stack:
        node_id = stack.pop()
        if node_id in needed:
            continue
        needed.add(node_id)
        for value in workflow.nodes[node_id].inputs.values():
            if isinstance(value, Link) and value.node_id in workflow.nodes and value.node_id not in needed:
                stack.append(value.node_id)
    return needed


def _dependency_order(workflow: Workflow, needed: set[str], report: ErrorReport) -> list[str]:
    """Kahn's algorithm, first-come first-served: ready nodes in workflow order, then each node's
    dependants in the order their links were written (what ``networkx.topological_sort`` gives on
    the same graph, without building one: it was a third of validating a large workflow)."""
    nodes = workflow.nodes
    ordered = [nid for nid in nodes if nid in needed]  # workflow order: deterministic runs
    waiting: dict[str, int] = {}  # node → sources not yet ordered (distinct ones)
    dependants: dict[str, list[str]] = {}
    for node_id in ordered:
        sources = [v.node_id for v in nodes[node_id].inputs.values() if isinstance(v, Link) and v.node_id in needed]
        if not sources:
            continue
        if len(sources) > 1:
            sources = list(dict.fromkeys(sources))
        waiting[node_id] = len(sources)
        for source in sources:
            found = dependants.get(source)
            if found is None:
                dependants[source] = [node_id]
            else:
                found.append(node_id)
    order = [nid for nid in ordered if nid not in waiting]
    for node_id in order:  # grows while it is read
        for dependant in dependants.get(node_id, ()):
            left = waiting[dependant] - 1
            if left:
                waiting[dependant] = left
            else:
                del waiting[dependant]
                order.append(dependant)
    if not waiting:
        return order
    _report_cycles(workflow, ordered, needed, report)
    return []


def _report_cycles(workflow: Workflow, ordered: list[str], needed: set[str], report: ErrorReport) -> None:
    import networkx as nx  # only for a workflow that cannot run: name its cycles

    graph = nx.DiGraph()
    graph.add_nodes_from(ordered)
    graph.add_edges_from(
        (value.node_id, node_id)
        for node_id in ordered
        for value in workflow.nodes[node_id].inputs.values()
        if isinstance(value, Link) and value.node_id in needed
    )
    for component in nx.strongly_connected_components(graph):
        if len(component) == 1 and not graph.has_edge(next(iter(component)), next(iter(component))):
            continue
        _report_cycle(workflow, component, report)


def _report_cycle(workflow: Workflow, component: set[str], report: ErrorReport) -> None:
    """A cycle is named once, on its first node; every other member points at that node.

    (Listing the cycle in each member's error made a 4k-node cycle a 312 MB answer.)"""
    members = sorted(component, key=_id_sort_key)
    first, count = members[0], len(members)
    shown = members[:CYCLE_SHOWN]
    listing = " → ".join(shown) + (f" → … ({count - len(shown)} more)" if count > len(shown) else "")
    report.add(
        first,
        workflow.nodes[first].class_type,
        ErrorDetail(
            "dependency_cycle",
            f"Node is part of a dependency cycle of {count} node(s)",
            details=f"cycle through nodes {listing}",
            extra_info={"cycle": shown, "cycle_length": count},
        ),
    )
    for node_id in members[1:]:
        report.add(
            node_id,
            workflow.nodes[node_id].class_type,
            ErrorDetail(
                "dependency_cycle",
                f"Node is part of the dependency cycle through node {first}",
                extra_info={"cycle_of": first},
            ),
        )


def _check_node(
    node: WorkflowNode,
    node_type: type[Node],
    workflow: Workflow,
    types: dict[str, type[Node]],
    registry: NodeRegistry,
    settings: Settings,
    choices: _ChoiceCache,
    report: ErrorReport,
) -> PlannedNode | None:
    spec = node_type.spec
    literals: dict[str, Any] = {}
    links: dict[str, Link] = {}
    ok = True
    given = node.inputs
    for inp in spec.inputs:
        value = given.get(inp.name, _ABSENT)
        if value is _ABSENT:
            if inp.required:
                ok = _fail(report, node, "required_input_missing", f"Required input '{inp.name}' is missing", inp)
            elif inp.is_widget and inp.default is not None:
                literals[inp.name] = inp.default
            continue
        if value is UNREADABLE:
            ok = False
            continue
        if isinstance(value, Link):
            source = workflow.nodes.get(value.node_id)
            if source is None:
                ok = _fail(
                    report, node,
                    "missing_link_source",
                    f"Input '{inp.name}' is linked to node '{value.node_id}', which does not exist",
                    inp,
                    extra_info_link(value),
                )
                continue
            source_type = types.get(value.node_id)
            if source_type is None:
                ok = False  # already reported as an unknown type
                continue
            outs = source_type.spec.outputs
            if not 0 <= value.output < len(outs):
                ok = _fail(
                    report, node,
                    "output_index_out_of_range",
                    f"Input '{inp.name}' is linked to output {value.output} of node '{value.node_id}' "
                    f"({source.class_type}), which has {len(outs)} output(s)",
                    inp,
                    extra_info_link(value),
                )
                continue
            out_type = outs[value.output].type
            if out_type != inp.type and not registry.compatible(out_type, inp.type):
                ok = _fail(
                    report, node,
                    "return_type_mismatch",
                    f"Input '{inp.name}' expects {inp.type} but node '{value.node_id}' "
                    f"({source.class_type}) output {value.output} gives {out_type}",
                    inp,
                    extra_info_link(value),
                    received_type=out_type,
                )
                continue
            links[inp.name] = value
            continue
        kind = inp.type
        if kind == "INT" and type(value) is int and (inp.min is None or value >= inp.min) and (inp.max is None or value <= inp.max):
            literals[inp.name] = value  # the commonest literal, as _coerce would take it
            continue
        if kind not in WIDGET_TYPES and kind != ANY_TYPE:
            ok = _fail(
                report, node,
                "invalid_input_type",
                f"Input '{inp.name}' takes a {inp.type} connection [node_id, output_index], not a value",
                inp,
                details=f"got {preview(value, 80)[0]}",
                received_value=value,
            )
            continue
        coerced, problem = _coerce(value, inp, spec, choices)
        if problem is not None:
            kind, message = problem
            ok = _fail(report, node, kind, message, inp, received_value=value)
            continue
        literals[inp.name] = coerced

    if not ok:
        return None
    if choices.checks_inputs(node_type):
        try:
            problems = node_type.check_inputs(settings, literals)
        except Exception as exc:  # a node's own check must not crash validation
            problems = [f"check_inputs raised {type(exc).__name__}: {exc}"]
        for problem in problems:
            ok = False
            name, message = problem if isinstance(problem, tuple) else (None, problem)
            extra = {"input_name": name} if name else {}
            report.add(node.id, node.class_type, ErrorDetail("custom_validation_failed", str(message), extra_info=extra))
        if not ok:
            return None
    return PlannedNode(
        node.id,
        spec.name,
        node_type,
        literals,
        links,
        literal_key=_literal_key(literals),
        title=node.title,
    )


def _fail(report: ErrorReport, node: WorkflowNode, kind: str, message: str, inp: InputSpec, details: str = "",
          **extra: Any) -> bool:
    """Report one input's problem; returns False (the node is not ok)."""
    info = {"input_name": inp.name, "input_config": _input_config(inp), **extra}
    report.add(node.id, node.class_type, ErrorDetail(kind, message, details, info))
    return False


def extra_info_link(link: Link) -> str:
    return f"link [{link.node_id!r}, {link.output}]"


def _coerce(value: Any, inp: InputSpec, spec: NodeSpec, choices: _ChoiceCache) -> tuple[Any, tuple[str, str] | None]:
    """Convert a literal to the input's type where unambiguous, then check its range."""
    t = inp.type
    if t == "INT" and type(value) is int and (inp.min is None or value >= inp.min) and (inp.max is None or value <= inp.max):
        return value, None  # fast path: the most common literal
    bad = _BadType(inp.name, t, value)
    if t == "INT":
        if isinstance(value, bool):
            return None, bad
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        elif isinstance(value, str) and _INT_TEXT.match(value.strip()):
            try:
                value = int(value.strip())
            except ValueError:  # over Python's 4,300-digit limit
                return None, bad
        if not isinstance(value, int):
            return None, bad
    elif t == "FLOAT":
        if isinstance(value, bool):
            return None, bad
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                return None, bad
        if not isinstance(value, (int, float)):
            return None, bad
        try:
            value = float(value)
        except OverflowError:  # an integer such as 10**400
            kind = "value_bigger_than_max" if value > 0 else "value_smaller_than_min"
            return None, (kind, f"Input '{inp.name}': {_short(value)} is beyond the range of a FLOAT")
        if not math.isfinite(value):
            return None, ("invalid_input_type", f"Input '{inp.name}' expects a finite FLOAT, got {_short(value)}")
    elif t == "BOOLEAN":
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            value = value.strip().lower() == "true"
        elif isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            value = bool(value)
        if not isinstance(value, bool):
            return None, bad
    elif t == "STRING":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return None, bad
    elif t == "COMBO":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return None, bad
        try:
            known = choices.allows(spec, inp, value)
        except Exception as exc:
            return None, ("exception_during_validation", f"Could not list choices for '{inp.name}': {exc}")
        if not known and inp.strict_choices:
            allowed = choices.get(spec, inp)
            shown = ", ".join(allowed[:20]) + (f" … ({len(allowed)} in all)" if len(allowed) > 20 else "")
            if callable(inp.choices):  # listed from disk (model files, input images): say what is here
                return None, (
                    "value_not_in_list",
                    f"Input '{inp.name}': '{value}' is not available here; available: {shown or 'none found'}",
                )
            return None, (
                "value_not_in_list",
                f"Input '{inp.name}': '{value}' is not among the choices [{shown or 'none available'}]",
            )
        return value, None
    if t in ("INT", "FLOAT"):
        if inp.min is not None and value < inp.min:
            return None, ("value_smaller_than_min", f"Input '{inp.name}': {value} is smaller than the minimum {inp.min}")
        if inp.max is not None and value > inp.max:
            return None, ("value_bigger_than_max", f"Input '{inp.name}': {value} is bigger than the maximum {inp.max}")
    return value, None


class _BadType(tuple):
    """The "wrong type" problem, with its message built only when it is reported."""

    def __new__(cls, name: str, t: str, value: Any):
        return super().__new__(cls, ("invalid_input_type", f"Input '{name}' expects {t}, got {type(value).__name__} {_short(value)}"))


def _literal_key(literals: dict[str, Any]) -> str:
    """Canonical text of a node's literals (its inputs are always read in its spec's order)."""
    for v in literals.values():
        kind = type(v)
        if kind is not int and kind is not str and kind is not float and kind is not bool and v is not None:
            return json.dumps(literals, sort_keys=True, default=repr)
    return repr(literals)


def _input_config(inp: InputSpec) -> dict[str, Any]:
    config: dict[str, Any] = {"type": inp.type}
    for key in ("default", "min", "max"):
        value = getattr(inp, key)
        if value is not None:
            config[key] = value
    return config


def _short(value: Any) -> str:
    """At most ~60 characters of ``value``, written only that far (it may be megabytes)."""
    return preview(value, 60)[0]


def _suggest(name: str, registry: NodeRegistry) -> str:
    import difflib

    known = list(registry.node_types) + list(registry.aliases)
    close = difflib.get_close_matches(name, known, n=3)
    return f"did you mean {', '.join(close)}? " + PLUGIN_HINT if close else PLUGIN_HINT


def _id_sort_key(node_id: str) -> tuple[int, str]:
    return (0, f"{int(node_id):012d}") if node_id.isdigit() else (1, node_id)
