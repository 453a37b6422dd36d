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
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from latentgraph.errors import ErrorDetail, ErrorReport
from latentgraph.node import InputSpec, NodeSpec
from latentgraph.workflow import LITERAL_LIST_KEY

if TYPE_CHECKING:
    from latentgraph.registry import NodeRegistry

#: The value that follows a seed widget in ``widgets_values``.
CONTROL_MODES = frozenset({"fixed", "increment", "decrement", "randomize"})
#: INT inputs the editor gives a control widget even when the node type does not say so.
SEED_NAMES = frozenset({"seed", "noise_seed"})
#: Values of an upload button widget (the editor appends it after the file COMBO).
UPLOAD_VALUES = frozenset({"image", "upload", "video", "audio"})
MODE_MUTED = 2
MODE_BYPASSED = 4
SUBGRAPH_INPUT_NODE = "-10"
SUBGRAPH_OUTPUT_NODE = "-20"
NOTE_TYPES = frozenset({"Note", "MarkdownNote"})
REROUTE = "Reroute"
PRIMITIVE = "PrimitiveNode"
#: ComfyUI's backend primitives (one value widget, output = that value): folded like PrimitiveNode
#: unless a plugin registers them.
VALUE_NODES = frozenset({"PrimitiveInt", "PrimitiveFloat", "PrimitiveBoolean", "PrimitiveString", "PrimitiveStringMultiline"})
GROUP_PREFIXES = ("workflow>", "workflow/")
#: The editor keeps random seeds within JavaScript's exact integers.
RANDOM_SEED_LIMIT = 2**50


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


# -- widgets --------------------------------------------------------------------------------------


def editor_widgets(spec: NodeSpec) -> tuple[InputSpec, ...]:
    """Widget inputs in the order the editor creates them: required ones, then optional ones."""
    widgets = [i for i in spec.inputs if i.is_widget and not _forced_input(i)]
    return tuple([i for i in widgets if i.required] + [i for i in widgets if not i.required])


def has_control(inp: InputSpec) -> bool:
    """Whether the editor puts a control_after_generate value after this widget."""
    return inp.control_after_generate or (inp.type == "INT" and inp.name in SEED_NAMES)


def apply_control(value: Any, mode: str | None, inp: InputSpec | None, rng: random.Random) -> Any:
    """The value a widget takes when its control mode is applied (as the editor does on queueing)."""
    if mode in (None, "fixed") or inp is None or inp.type not in ("INT", "FLOAT"):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
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


def _forced_input(inp: InputSpec) -> bool:
    return bool(inp.editor_options and inp.editor_options.get("forceInput"))


def _is_control(value: Any) -> bool:
    return isinstance(value, str) and value in CONTROL_MODES


def _has_upload_widget(spec: NodeSpec) -> bool:
    return any(i.type == "COMBO" for i in spec.inputs)


# -- links ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EditorLink:
    id: str
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int
    type: str = "*"


def parse_links(raw: Any) -> tuple[dict[str, EditorLink], list[str]]:
    """Links in array form, object form, or an object keyed by id; returns (links, problems)."""
    items: Iterable[Any]
    if raw is None:
        items = []
    elif isinstance(raw, dict):
        items = raw.values()
    elif isinstance(raw, list):
        items = raw
    else:
        return {}, [f"'links' must be a list, got {type(raw).__name__}"]
    links: dict[str, EditorLink] = {}
    problems: list[str] = []
    for item in items:
        link = _parse_link(item)
        if link is None:
            problems.append(f"unreadable link entry {str(item)[:80]}")
        else:
            links[link.id] = link
    return links, problems


def _parse_link(item: Any) -> EditorLink | None:
    try:
        if isinstance(item, (list, tuple)) and len(item) >= 5:
            lid, origin, oslot, target, tslot = item[:5]
            ltype = item[5] if len(item) > 5 else "*"
        elif isinstance(item, dict):
            lid, origin, oslot = item["id"], item["origin_id"], item["origin_slot"]
            target, tslot, ltype = item["target_id"], item["target_slot"], item.get("type", "*")
        else:
            return None
        if lid is None or origin is None or target is None:
            return None
        return EditorLink(str(lid), str(origin), int(oslot), str(target), int(tslot), str(ltype))
    except (KeyError, TypeError, ValueError):
        return None


def _types_compatible(a: str, b: str) -> bool:
    if a == b or a in ("*", "") or b in ("*", ""):
        return True
    return bool(set(a.split(",")) & set(b.split(",")))


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
    converter = _Converter(registry, apply_controls, rng or random.Random())
    working = copy.deepcopy(workflow) if apply_controls else workflow
    prompt = converter.run(working)
    return Conversion(prompt, converter.report, working if isinstance(working, dict) else {})


@dataclass(eq=False)
class _Widget:
    """A widget value, its control mode, and where it lives in the editor JSON (for write-back)."""

    value: Any
    control: str | None = None
    home: tuple[list[Any], int] | None = None


@dataclass(frozen=True, slots=True)
class _Source:
    exec_id: str
    slot: int


@dataclass(frozen=True, slots=True)
class _Value:
    widget: _Widget


@dataclass(eq=False)
class _Definition:
    """A subgraph definition (or a group node turned into one)."""

    id: str
    name: str
    nodes: list[dict[str, Any]]
    links: dict[str, EditorLink]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    #: A legacy group node: its widget values were already spread over the inner nodes.
    is_group: bool = False

    def node(self, node_id: str) -> dict[str, Any] | None:
        for node in self.nodes:
            if isinstance(node, dict) and str(node.get("id")) == node_id:
                return node
        return None


@dataclass(eq=False)
class _Scope:
    """One graph level: the root, or the inside of one subgraph instance."""

    prefix: tuple[str, ...]
    links: dict[str, EditorLink]
    entries: dict[str, _Entry] = field(default_factory=dict)
    instance: _Entry | None = None
    definition: _Definition | None = None


@dataclass(eq=False)
class _Entry:
    exec_id: str
    local_id: str
    node: dict[str, Any]
    scope: _Scope
    kind: str  # node | reroute | primitive | note | subgraph | unknown
    mode: int
    spec: NodeSpec | None = None
    definition: _Definition | None = None
    inner: _Scope | None = None
    #: Subgraph instances: values of promoted widgets, by subgraph input name.
    promoted: dict[str, _Widget] = field(default_factory=dict)
    #: Subgraph instances: values that replace inner nodes' widgets, by (inner id, widget name).
    overrides: dict[tuple[str, str], _Widget] = field(default_factory=dict)
    primitive: _Widget | None = None

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
        value = self.node.get("inputs")
        return value if isinstance(value, list) else []

    @property
    def active(self) -> bool:
        return self.mode not in (MODE_MUTED, MODE_BYPASSED)


class _Converter:
    def __init__(self, registry: NodeRegistry, apply_controls: bool, rng: random.Random) -> None:
        self.registry = registry
        self.apply_controls = apply_controls
        self.rng = rng
        self.report = ErrorReport()
        self.definitions: dict[str, _Definition] = {}
        self.groups: dict[str, Any] = {}
        self.prompt: dict[str, Any] = {}
        #: Keyed by the widget object itself (identity): ``id()`` keys were reused by later widgets.
        self._applied: dict[_Widget, Any] = {}
        self._reported: set[tuple[str, str]] = set()

    # -- entry point --------------------------------------------------------------------------
    def run(self, workflow: Any) -> dict[str, Any]:
        if not is_editor_workflow(workflow):
            self.report.error = ErrorDetail(
                "invalid_editor_workflow",
                "Not an editor-format workflow: expected an object with a 'nodes' list",
                details=f"got {type(workflow).__name__}" + (f" with keys {sorted(workflow)[:8]}" if isinstance(workflow, dict) else ""),
            )
            return {}
        links, problems = parse_links(workflow.get("links"))
        self._collect_definitions(workflow)
        extra = workflow.get("extra")
        groups = extra.get("groupNodes") if isinstance(extra, dict) else None
        self.groups = groups if isinstance(groups, dict) else {}
        root = _Scope((), links)
        self._populate(root, workflow["nodes"], ())
        self._emit(root)
        self._drop_links_to_missing_nodes()
        if problems:
            self.report.error = ErrorDetail(
                "invalid_editor_workflow", f"{len(problems)} unreadable link entr{'y' if len(problems) == 1 else 'ies'}", details="; ".join(problems[:5])
            )
        elif self.report.node_errors and self.report.error is None:
            count = sum(len(n.errors) for n in self.report.node_errors.values())
            self.report.error = ErrorDetail(
                "workflow_conversion_failed",
                "The editor workflow could not be converted to the API format",
                details=f"{count} problem(s) in {len(self.report.node_errors)} node(s)",
            )
        return self.prompt

    def _collect_definitions(self, graph: Mapping[str, Any]) -> None:
        defs = graph.get("definitions")
        subgraphs = defs.get("subgraphs") if isinstance(defs, dict) else None
        for raw in subgraphs if isinstance(subgraphs, list) else []:
            if not isinstance(raw, dict) or "id" not in raw:
                continue
            sid = str(raw["id"])
            if sid in self.definitions:
                continue
            links, problems = parse_links(raw.get("links"))
            if problems:
                self.report.error = ErrorDetail(
                    "invalid_editor_workflow", f"Subgraph '{raw.get('name', sid)}' has unreadable links", details="; ".join(problems[:5])
                )
            self.definitions[sid] = _Definition(
                sid,
                str(raw.get("name") or ""),
                [n for n in raw.get("nodes") or [] if isinstance(n, dict)],
                links,
                [i for i in raw.get("inputs") or [] if isinstance(i, dict)],
                [o for o in raw.get("outputs") or [] if isinstance(o, dict)],
            )
            self._collect_definitions(raw)  # nested definitions

    # -- building entries ---------------------------------------------------------------------
    def _populate(self, scope: _Scope, nodes: list[Any], stack: tuple[str, ...]) -> None:
        for raw in nodes:
            if not isinstance(raw, dict) or raw.get("id") is None:
                self.report.error = ErrorDetail("invalid_editor_workflow", "A node entry has no 'id'", details=str(raw)[:120])
                continue
            local = str(raw["id"])
            exec_id = ":".join((*scope.prefix, local))
            try:
                mode = int(raw.get("mode") or 0)
            except (TypeError, ValueError):
                mode = 0
            entry = _Entry(exec_id, local, raw, scope, "unknown", mode)
            if local in scope.entries:
                self._error(entry, "duplicate_node_id", f"Node id {local} appears twice")
                continue
            scope.entries[local] = entry
            self._classify(entry)
        for entry in list(scope.entries.values()):
            if entry.kind == "subgraph" and entry.active and entry.definition is not None:
                definition = entry.definition
                if definition.id in stack:
                    self._error(entry, "subgraph_recursion", f"Subgraph '{definition.name or definition.id}' contains itself")
                    continue
                self._promote(entry)
                entry.inner = _Scope((*scope.prefix, entry.local_id), definition.links, instance=entry, definition=definition)
                self._populate(entry.inner, definition.nodes, (*stack, definition.id))

    def _classify(self, entry: _Entry) -> None:
        node_type = entry.type
        if node_type in NOTE_TYPES:
            entry.kind = "note"
        elif node_type == REROUTE:
            entry.kind = "reroute"
        elif node_type == PRIMITIVE:
            entry.kind = "primitive"
        elif node_type in self.definitions:
            entry.kind, entry.definition = "subgraph", self.definitions[node_type]
        elif self._group_name(node_type) is not None:
            entry.kind = "subgraph"
            entry.definition = self._group_as_subgraph(entry, self._group_name(node_type) or "")
        elif (node_cls := self.registry.get(node_type)) is not None:
            entry.kind, entry.spec = "node", node_cls.spec
        elif node_type in VALUE_NODES:
            entry.kind = "primitive"
        elif entry.mode != MODE_MUTED:
            detail = "is the plugin that provides it installed and enabled? (`latentgraph plugins`)"
            if not node_type:
                detail = "the node has no 'type'"
            elif "-" in node_type and len(node_type) == 36:
                detail = "it looks like a subgraph id, but the workflow has no such entry in definitions.subgraphs"
            self._error(entry, "missing_node_type", f"Unknown node type '{node_type}'", details=detail)

    def _group_name(self, node_type: str) -> str | None:
        for prefix in GROUP_PREFIXES:
            if node_type.startswith(prefix) and node_type[len(prefix):] in self.groups:
                return node_type[len(prefix):]
        return None

    # -- emitting API nodes -------------------------------------------------------------------
    def _emit(self, scope: _Scope) -> None:
        for entry in scope.entries.values():
            if not entry.active:
                continue
            if entry.kind == "subgraph" and entry.inner is not None:
                self._emit(entry.inner)
            elif entry.kind == "node":
                self._emit_node(entry)

    def _emit_node(self, entry: _Entry) -> None:
        spec = entry.spec
        assert spec is not None
        widgets = self._widget_values(entry, spec)
        instance = entry.scope.instance
        if instance is not None:
            for (local, name), widget in instance.overrides.items():
                if local == entry.local_id and name in spec.input_by_name:
                    widgets[name] = widget
        values: dict[str, Any] = {name: _literal(self._final(w, spec.input_by_name.get(name))) for name, w in widgets.items()}
        for index, inp in enumerate(entry.inputs):
            if not isinstance(inp, dict) or inp.get("link") is None:
                continue
            name = _input_name(inp)
            if not name:
                continue
            resolved = self._resolve_input(entry, index, str(inp.get("type") or "*"), set())
            if isinstance(resolved, _Source):
                values[name] = [resolved.exec_id, resolved.slot]
            elif isinstance(resolved, _Value):
                values[name] = _literal(self._final(resolved.widget, spec.input_by_name.get(name)))
        order = {inp.name: i for i, inp in enumerate(spec.inputs)}
        inputs = dict(sorted(values.items(), key=lambda kv: order.get(kv[0], len(order))))
        self.prompt[entry.exec_id] = {"class_type": entry.type, "inputs": inputs, "_meta": {"title": entry.title}}

    def _drop_links_to_missing_nodes(self) -> None:
        """Inputs fed by nodes that were not converted (unknown types) are left out, like the editor does."""
        for node in self.prompt.values():
            for name, value in list(node["inputs"].items()):
                if isinstance(value, list) and value[0] not in self.prompt:  # literal lists are wrapped
                    del node["inputs"][name]

    def _widget_values(self, entry: _Entry, spec: NodeSpec) -> dict[str, _Widget]:
        order = editor_widgets(spec)
        raw = entry.node.get("widgets_values")
        if raw is None:
            return {w.name: _Widget(w.default) for w in order if w.default is not None}
        if isinstance(raw, dict):  # some nodes save their widgets by name
            return {name: _Widget(value) for name, value in raw.items() if name in spec.input_by_name}
        if not isinstance(raw, list):
            self._error(entry, "widget_count_mismatch", "'widgets_values' must be a list", details=f"got {type(raw).__name__}")
            return {}
        out: dict[str, _Widget] = {}
        pos = 0
        missing: list[str] = []
        for inp in order:
            if pos >= len(raw):
                if inp.required:
                    missing.append(inp.name)
                continue
            widget = _Widget(raw[pos], home=(raw, pos))
            pos += 1
            if has_control(inp) and pos < len(raw) and _is_control(raw[pos]):
                widget.control = raw[pos]
                pos += 1
            out[inp.name] = widget
        leftover = raw[pos:]
        if len(leftover) == 1 and leftover[0] in UPLOAD_VALUES and _has_upload_widget(spec):
            leftover = []
        if missing or leftover:
            expected = ", ".join(w.name + (" (+control_after_generate)" if has_control(w) else "") for w in order)
            self._error(
                entry,
                "widget_count_mismatch",
                f"{len(raw)} widget value(s) for {len(order)} widget(s) of {spec.name}"
                + (f"; missing {', '.join(missing)}" if missing else f"; {len(leftover)} left over"),
                details=f"expected: {expected or 'no widgets'}; got: {_short(raw)}",
                expected=[w.name for w in order],
                received=raw,
            )
        return out

    def _final(self, widget: _Widget, inp: InputSpec | None) -> Any:
        """The value a widget runs with: its stored value, or the control mode applied once."""
        if not self.apply_controls or widget.control in (None, "fixed"):
            return widget.value
        if widget not in self._applied:
            value = apply_control(widget.value, widget.control, inp, self.rng)
            self._applied[widget] = value
            if widget.home is not None:
                values, index = widget.home
                values[index] = value
        return self._applied[widget]

    # -- following links ----------------------------------------------------------------------
    def _resolve_input(self, entry: _Entry, index: int, want: str, visited: set[tuple[str, str, int]]) -> _Source | _Value | None:
        key = (entry.exec_id, "in", index)
        if key in visited:
            self._error(entry, "dependency_cycle", "Links loop back to this node through reroutes or bypassed nodes")
            return None
        visited.add(key)
        inputs = entry.inputs
        if not 0 <= index < len(inputs) or not isinstance(inputs[index], dict):
            return None
        inp = inputs[index]
        link_id = inp.get("link")
        if link_id is None:
            return None
        link = entry.scope.links.get(str(link_id))
        if link is None:
            self._dangling(entry, inp, f"input '{_input_name(inp)}' uses link {link_id}, which is not in the workflow's links")
            return None
        if link.origin_id == SUBGRAPH_INPUT_NODE and entry.scope.instance is not None:
            return self._resolve_subgraph_input(entry.scope, link.origin_slot, want, visited)
        origin = entry.scope.entries.get(link.origin_id)
        if origin is None:
            self._dangling(entry, inp, f"input '{_input_name(inp)}' is linked (link {link_id}) to node {link.origin_id}, which is not in the workflow")
            return None
        return self._resolve_output(origin, link.origin_slot, want, visited)

    def _resolve_output(self, entry: _Entry, slot: int, want: str, visited: set[tuple[str, str, int]]) -> _Source | _Value | None:
        key = (entry.exec_id, "out", slot)
        if key in visited:
            self._error(entry, "dependency_cycle", "Links loop back to this node through reroutes or bypassed nodes")
            return None
        visited.add(key)
        if entry.mode == MODE_MUTED:
            return None
        if entry.mode == MODE_BYPASSED:
            index = self._bypass_input(entry, slot, want)
            return None if index < 0 else self._resolve_input(entry, index, want, visited)
        if entry.kind == "reroute":
            return self._resolve_input(entry, 0, want, visited)
        if entry.kind == "primitive":
            widget = self._primitive_widget(entry)
            return None if widget is None else _Value(widget)
        if entry.kind == "subgraph":
            return self._resolve_subgraph_output(entry, slot, want, visited)
        if entry.kind == "note":
            return None
        return _Source(entry.exec_id, slot)

    def _bypass_input(self, entry: _Entry, slot: int, want: str) -> int:
        """Which input a bypassed node passes to output ``slot``: same index if its type fits,
        else the first input of exactly the wanted type, else the first compatible one."""
        types = [str(i.get("type") or "*") if isinstance(i, dict) else "*" for i in entry.inputs]
        if not types:
            return -1
        outputs = entry.node.get("outputs") if isinstance(entry.node.get("outputs"), list) else []
        if slot < len(outputs) and isinstance(outputs[slot], dict):
            out_type = str(outputs[slot].get("type") or "*")
        elif entry.spec is not None and slot < len(entry.spec.outputs):
            out_type = entry.spec.outputs[slot].type
        else:
            out_type = "*"
        if want in ("*", ""):
            return slot if slot < len(types) else 0
        if slot < len(types) and _types_compatible(types[slot], out_type) and _types_compatible(types[slot], want):
            return slot
        for i, t in enumerate(types):
            if t == want:
                return i
        for i, t in enumerate(types):
            if _types_compatible(t, out_type) and _types_compatible(t, want):
                return i
        return -1

    def _primitive_widget(self, entry: _Entry) -> _Widget | None:
        if entry.primitive is None:
            instance = entry.scope.instance
            override = instance.overrides.get((entry.local_id, "value")) if instance is not None else None
            values = entry.node.get("widgets_values")
            if override is not None:
                entry.primitive = override
            elif isinstance(values, list) and values:
                widget = _Widget(values[0], home=(values, 0))
                if len(values) > 1 and _is_control(values[1]):
                    widget.control = values[1]
                entry.primitive = widget
            elif isinstance(values, dict) and "value" in values:
                entry.primitive = _Widget(values["value"])
        return entry.primitive

    def _instance_input_index(self, instance: _Entry, slot: int) -> int | None:
        definition = instance.definition
        assert definition is not None
        if slot >= len(definition.inputs):
            return None
        name = definition.inputs[slot].get("name")
        for i, inp in enumerate(instance.inputs):
            if isinstance(inp, dict) and inp.get("name") == name:
                return i
        if len(instance.inputs) == len(definition.inputs):
            return slot
        return None

    def _resolve_subgraph_input(self, scope: _Scope, slot: int, want: str, visited: set[tuple[str, str, int]]) -> _Source | _Value | None:
        instance, definition = scope.instance, scope.definition
        assert instance is not None and definition is not None
        if not 0 <= slot < len(definition.inputs):
            self._error(instance, "dangling_link", f"A link inside the subgraph comes from its input {slot}, which does not exist")
            return None
        index = self._instance_input_index(instance, slot)
        if index is not None and instance.inputs[index].get("link") is not None:
            return self._resolve_input(instance, index, want, visited)
        widget = instance.promoted.get(str(definition.inputs[slot].get("name")))
        return None if widget is None else _Value(widget)

    def _resolve_subgraph_output(self, entry: _Entry, slot: int, want: str, visited: set[tuple[str, str, int]]) -> _Source | _Value | None:
        definition, inner = entry.definition, entry.inner
        if definition is None or inner is None:
            return None
        link = None
        if 0 <= slot < len(definition.outputs):
            for lid in definition.outputs[slot].get("linkIds") or []:
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
            return self._resolve_subgraph_input(inner, link.origin_slot, want, visited)
        origin = inner.entries.get(link.origin_id)
        if origin is None:
            self._error(entry, "dangling_link", f"Subgraph output {slot} is fed by node {link.origin_id}, which is not in the subgraph")
            return None
        return self._resolve_output(origin, link.origin_slot, want, visited)

    # -- subgraph widgets ---------------------------------------------------------------------
    def _promote(self, entry: _Entry) -> None:
        """Values shown on a subgraph instance: promoted inputs and proxied inner widgets."""
        definition = entry.definition
        assert definition is not None
        raw = entry.node.get("widgets_values")
        properties = entry.node.get("properties")
        proxies = properties.get("proxyWidgets") if isinstance(properties, dict) else None
        if definition.is_group:
            pass
        elif isinstance(raw, dict):
            entry.promoted = {str(k): _Widget(v) for k, v in raw.items()}
        elif isinstance(raw, list) and isinstance(proxies, list) and proxies:
            for i, proxy in enumerate(proxies):
                if i >= len(raw) or not isinstance(proxy, (list, tuple)) or len(proxy) < 2:
                    continue
                widget = _Widget(raw[i], home=(raw, i))
                if str(proxy[0]) == "-1":
                    entry.promoted[str(proxy[1])] = widget
                else:
                    entry.overrides[(str(proxy[0]), str(proxy[1]))] = widget
        elif isinstance(raw, list) and raw:
            pos = 0
            for slot, sub_input in enumerate(definition.inputs):
                target = self._promoted_target(entry, slot)
                if target is None:
                    continue
                if pos >= len(raw):
                    break
                widget = _Widget(raw[pos], home=(raw, pos))
                pos += 1
                if target is not True and has_control(target) and pos < len(raw) and _is_control(raw[pos]):
                    widget.control = raw[pos]
                    pos += 1
                entry.promoted[str(sub_input.get("name"))] = widget
            if pos < len(raw):
                self._error(
                    entry,
                    "widget_count_mismatch",
                    f"{len(raw)} widget value(s) for {pos} promoted widget(s) of subgraph '{definition.name or definition.id}'",
                    details=f"got: {_short(raw)}",
                    received=raw,
                )
        parent = entry.scope.instance
        if parent is not None:  # an outer instance may override this nested instance's widgets
            for (local, name), widget in parent.overrides.items():
                if local == entry.local_id:
                    entry.promoted[name] = widget

    def _promoted_target(self, entry: _Entry, slot: int) -> InputSpec | bool | None:
        """For a subgraph input shown as a widget: the inner widget input it feeds (``True`` when
        only the editor JSON says it is a widget); ``None`` when it is a plain connection."""
        definition = entry.definition
        assert definition is not None
        index = self._instance_input_index(entry, slot)
        marked = index is not None and isinstance(entry.inputs[index], dict) and "widget" in entry.inputs[index]
        for link in definition.links.values():
            if link.origin_id != SUBGRAPH_INPUT_NODE or link.origin_slot != slot:
                continue
            node = definition.node(link.target_id)
            if node is None:
                continue
            inputs = node.get("inputs") if isinstance(node.get("inputs"), list) else []
            target = next((i for i in inputs if isinstance(i, dict) and str(i.get("link")) == link.id), None)
            node_cls = self.registry.get(str(node.get("type", "")))
            spec_input = None
            if node_cls is not None and target is not None:
                spec_input = node_cls.spec.input_by_name.get(_input_name(target))
            if spec_input is not None and spec_input.is_widget:
                return spec_input
            if target is not None and "widget" in target:
                return True
        return True if marked else None

    # -- group nodes (legacy) -----------------------------------------------------------------
    def _group_as_subgraph(self, entry: _Entry, name: str) -> _Definition | None:
        """Turn one group node instance into a subgraph definition plus widget overrides."""
        group = self.groups.get(name)
        if not isinstance(group, dict) or not isinstance(group.get("nodes"), list):
            self._error(entry, "missing_node_type", f"Group node '{name}' has no definition in extra.groupNodes")
            return None
        nodes: list[dict[str, Any]] = []
        for index, raw in enumerate(group["nodes"]):
            node = dict(raw) if isinstance(raw, dict) else {}
            node["id"] = index
            node["inputs"] = [dict(i, link=None) for i in node.get("inputs") or [] if isinstance(i, dict)]
            nodes.append(node)
        links: dict[str, EditorLink] = {}
        linked_in: set[tuple[int, int]] = set()
        linked_out: set[tuple[int, int]] = set()
        for raw in group.get("links") or []:
            if not isinstance(raw, (list, tuple)) or len(raw) < 4 or raw[0] is None:
                continue
            try:
                src, src_slot, dst, dst_slot = (int(v) for v in raw[:4])
            except (TypeError, ValueError):
                continue
            lid = f"g{len(links)}"
            links[lid] = EditorLink(lid, str(src), src_slot, str(dst), dst_slot, str(raw[5]) if len(raw) > 5 else "*")
            if 0 <= dst < len(nodes) and 0 <= dst_slot < len(nodes[dst]["inputs"]):
                nodes[dst]["inputs"][dst_slot]["link"] = lid
            linked_in.add((dst, dst_slot))
            linked_out.add((src, src_slot))
        external = {
            (int(e[0]), int(e[1])) for e in group.get("external") or [] if isinstance(e, (list, tuple)) and len(e) >= 2
        }

        # Inputs: unlinked sockets node by node, then widgets turned into sockets.
        plain, converted = [], []
        for index, node in enumerate(nodes):
            for slot, inp in enumerate(node["inputs"]):
                if (index, slot) not in linked_in:
                    (converted if "widget" in inp else plain).append((index, slot, inp))
        outer_plain = [i for i in entry.inputs if isinstance(i, dict) and "widget" not in i]
        outer_widgets = {_input_name(i): i for i in entry.inputs if isinstance(i, dict) and "widget" in i}
        sub_inputs, outer_inputs = [], []
        for k, (index, slot, inp) in enumerate(plain + converted):
            lid = f"in{k}"
            links[lid] = EditorLink(lid, SUBGRAPH_INPUT_NODE, k, str(index), slot, str(inp.get("type") or "*"))
            nodes[index]["inputs"][slot]["link"] = lid
            sub_inputs.append({"name": lid, "type": inp.get("type", "*"), "linkIds": [lid]})
            outer = outer_plain[k] if k < len(outer_plain) else outer_widgets.get(_input_name(inp))
            outer_inputs.append({"name": lid, "type": inp.get("type", "*"), "link": outer.get("link") if outer else None})

        # Outputs: node by node, those not consumed inside the group (or marked external).
        sub_outputs = []
        for index, node in enumerate(nodes):
            node_cls = self.registry.get(str(node.get("type", "")))
            count = len(node_cls.spec.outputs) if node_cls is not None else len(node.get("outputs") or [])
            for slot in range(count):
                if (index, slot) in linked_out and (index, slot) not in external:
                    continue
                lid = f"out{len(sub_outputs)}"
                links[lid] = EditorLink(lid, str(index), slot, SUBGRAPH_OUTPUT_NODE, len(sub_outputs))
                sub_outputs.append({"name": lid, "linkIds": [lid]})

        # Widgets: the instance's values, node by node, replace the inner nodes' own.
        values = entry.node.get("widgets_values")
        values = values if isinstance(values, list) else []
        pos = 0
        for index, node in enumerate(nodes):
            node_type = str(node.get("type", ""))
            if node_type == PRIMITIVE:
                names: list[tuple[str, InputSpec | None]] = [("value", None)] if (index, 0) in linked_out else []
            elif (node_cls := self.registry.get(node_type)) is not None:
                converted_names = {_input_name(i) for i in node["inputs"] if "widget" in i}
                names = [(w.name, w) for w in editor_widgets(node_cls.spec) if w.name not in converted_names]
            else:
                continue  # reroutes and notes have no widgets; unknown types are reported inside
            for widget_name, spec_input in names:
                if pos >= len(values):
                    break
                widget = _Widget(values[pos], home=(values, pos))
                pos += 1
                seed_like = spec_input is None or has_control(spec_input)
                if seed_like and pos < len(values) and _is_control(values[pos]):
                    widget.control = values[pos]
                    pos += 1
                entry.overrides[(str(index), widget_name)] = widget
        entry.node = {**entry.node, "inputs": outer_inputs}
        return _Definition(f"group:{name}", name, nodes, links, sub_inputs, sub_outputs, is_group=True)

    # -- errors -------------------------------------------------------------------------------
    def _error(self, entry: _Entry, kind: str, message: str, details: str = "", **extra: Any) -> None:
        if (entry.exec_id, message) in self._reported:
            return
        self._reported.add((entry.exec_id, message))
        title = entry.title
        info = {"node_id": entry.exec_id, "node_title": title, "node_type": entry.type, **extra}
        self.report.add(entry.exec_id, entry.type, ErrorDetail(kind, f"{message} (node {entry.exec_id} '{title}')", details, info))
        self.report.node_errors[entry.exec_id].title = title

    def _dangling(self, entry: _Entry, inp: dict[str, Any], message: str) -> None:
        self._error(entry, "dangling_link", message[:1].upper() + message[1:], input_name=_input_name(inp))


def _input_name(inp: Mapping[str, Any]) -> str:
    widget = inp.get("widget")
    if isinstance(widget, dict) and widget.get("name"):
        return str(widget["name"])
    return str(inp.get("name") or "")


def _literal(value: Any) -> Any:
    """A literal list is wrapped so it is not read as a link."""
    return {LITERAL_LIST_KEY: value} if isinstance(value, list) else value


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the other way: API format → editor format -----------------------------------------------------


def api_to_editor(prompt: Mapping[str, Any], registry: NodeRegistry) -> tuple[dict[str, Any], ErrorReport]:
    """An editor-format file for an API-format workflow, laid out left to right by depth.

    Lets a headless workflow be opened in ComfyUI's editor; converting the result back gives the
    same API graph (ids that are not plain numbers are renumbered). Seeds get control "fixed".
    """
    report = ErrorReport()
    ids: dict[str, int] = {}
    taken = {int(k) for k in prompt if str(k).isdigit()}
    fresh = iter(i for i in range(1, 10**9) if i not in taken)
    for key in prompt:
        ids[str(key)] = int(key) if str(key).isdigit() else next(fresh)

    specs: dict[str, NodeSpec] = {}
    for key, node in prompt.items():
        node_cls = registry.get(str(node.get("class_type", ""))) if isinstance(node, dict) else None
        if node_cls is None:
            class_type = str(node.get("class_type", "")) if isinstance(node, dict) else ""
            report.add(str(key), class_type, ErrorDetail("missing_node_type", f"Unknown node type '{class_type}'"))
        else:
            specs[str(key)] = node_cls.spec
    if report:
        return {}, report

    def links_of(key: str) -> dict[str, tuple[str, int]]:
        found = {}
        for name, value in (prompt[key].get("inputs") or {}).items():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in specs:
                found[name] = (str(value[0]), int(value[1]))
        return found

    depth: dict[str, int] = {}

    def depth_of(key: str, seen: frozenset[str] = frozenset()) -> int:
        if key not in depth:
            parents = [src for src, _ in links_of(key).values() if src not in seen]
            depth[key] = 1 + max((depth_of(p, seen | {key}) for p in parents), default=-1)
        return depth[key]

    nodes: list[dict[str, Any]] = []
    by_key: dict[str, dict[str, Any]] = {}
    rows: dict[int, int] = {}
    for order, key in enumerate(sorted(specs, key=lambda k: (depth_of(k), ids[k]))):
        spec, entry = specs[key], prompt[key]
        values = entry.get("inputs") or {}
        linked = links_of(key)
        widgets: list[Any] = []
        trailing_absent = 0
        for inp in editor_widgets(spec):
            raw = values.get(inp.name, inp.default)
            if isinstance(raw, dict) and set(raw) == {LITERAL_LIST_KEY}:
                raw = raw[LITERAL_LIST_KEY]
            if inp.name in linked:
                raw = inp.default
            absent = inp.name not in values and not inp.required
            trailing_absent = trailing_absent + 1 if absent else 0
            widgets.append(raw)
            if has_control(inp):
                widgets.append("fixed")
                if absent:
                    trailing_absent += 1
        if trailing_absent:
            widgets = widgets[: len(widgets) - trailing_absent]
        inputs = [
            {"name": inp.name, "type": inp.type, "link": None}
            for inp in spec.inputs
            if not inp.is_widget or _forced_input(inp)
        ]
        inputs += [
            {"name": inp.name, "type": inp.type, "widget": {"name": inp.name}, "link": None}
            for inp in spec.inputs
            if inp.is_widget and not _forced_input(inp) and inp.name in linked
        ]
        for inp in spec.inputs:
            if not inp.is_widget and inp.name not in linked and inp.name in values and values[inp.name] is not None:
                report.add(key, spec.name, ErrorDetail("invalid_input_type", f"Input '{inp.name}' holds a value the editor cannot show"))
        column = depth_of(key)
        row = rows.get(column, 0)
        rows[column] = row + 1
        node = {
            "id": ids[key],
            "type": str(entry["class_type"]),
            "pos": [40 + 360 * column, 40 + 220 * row],
            "size": [320, 160],
            "flags": {},
            "order": order,
            "mode": 0,
            "inputs": inputs,
            "outputs": [
                {"name": out.label, "type": out.type, "links": [], "slot_index": i} for i, out in enumerate(spec.outputs)
            ],
            "properties": {"Node name for S&R": str(entry["class_type"])},
            "widgets_values": widgets,
        }
        meta = entry.get("_meta")
        if isinstance(meta, dict) and isinstance(meta.get("title"), str) and meta["title"]:
            node["title"] = meta["title"]
        nodes.append(node)
        by_key[key] = node

    links: list[list[Any]] = []
    for key in specs:
        target = by_key[key]
        for name, (src, slot) in links_of(key).items():
            source = by_key[src]
            if not 0 <= slot < len(source["outputs"]):
                report.add(key, specs[key].name, ErrorDetail("output_index_out_of_range", f"Input '{name}' is linked to a missing output {slot} of node {src}"))
                continue
            lid = len(links) + 1
            target_slot = next(i for i, e in enumerate(target["inputs"]) if e["name"] == name)
            target["inputs"][target_slot]["link"] = lid
            source["outputs"][slot]["links"].append(lid)
            links.append([lid, ids[src], slot, ids[key], target_slot, source["outputs"][slot]["type"]])
    editor = {
        "last_node_id": max((n["id"] for n in nodes), default=0),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
        "version": 0.4,
    }
    return editor, report
