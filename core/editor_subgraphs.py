"""Subgraph definitions and legacy group nodes, and the widget values shown on their instances.

Both are graphs inside a node. A group node (``workflow>Name``, defined in ``extra.groupNodes``) is
rewritten into a subgraph definition, so the converter expands and follows links through one kind
of nested graph. What differs per instance is which widget values replace the inner nodes' own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from latentgraph.editor_graph import (
    GROUP_PREFIXES,
    PRIMITIVE,
    SUBGRAPH_INPUT_NODE,
    SUBGRAPH_OUTPUT_NODE,
    Definition,
    Entry,
    Problems,
    Widget,
    as_list,
    node_inputs,
    short,
)
from latentgraph.editor_links import EditorLink, as_int, input_name, parse_links
from latentgraph.editor_widgets import editor_widgets, has_control, take_widget
from latentgraph.node import InputSpec, NodeSpec

if TYPE_CHECKING:
    from latentgraph.registry import NodeRegistry


class Subgraphs:
    """The nested graphs one workflow defines, by the node type that instantiates them."""

    def __init__(self, workflow: Mapping[str, Any], registry: NodeRegistry, problems: Problems) -> None:
        self.registry = registry
        self.problems = problems
        self.definitions: dict[str, Definition] = {}
        self._collect_definitions(workflow)
        extra = workflow.get("extra")
        groups = extra.get("groupNodes") if isinstance(extra, dict) else None
        self.groups: dict[str, Any] = groups if isinstance(groups, dict) else {}

    def instantiates(self, node_type: str) -> bool:
        return node_type in self.definitions or self._group_name(node_type) is not None

    def definition_for(self, entry: Entry) -> Definition | None:
        """The definition an instance expands to (for a group node: built, with its widget values)."""
        if entry.type in self.definitions:
            return self.definitions[entry.type]
        name = self._group_name(entry.type)
        return None if name is None else self._group_as_subgraph(entry, name)

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
                self.problems.workflow(
                    "invalid_editor_workflow", f"Subgraph '{raw.get('name', sid)}' has unreadable links", details="; ".join(problems[:5])
                )
            self.definitions[sid] = Definition(
                sid,
                str(raw.get("name") or ""),
                [n for n in as_list(raw.get("nodes")) if isinstance(n, dict)],
                links,
                [i for i in as_list(raw.get("inputs")) if isinstance(i, dict)],
                [o for o in as_list(raw.get("outputs")) if isinstance(o, dict)],
            )
            self._collect_definitions(raw)  # nested definitions

    def _group_name(self, node_type: str) -> str | None:
        for prefix in GROUP_PREFIXES:
            if node_type.startswith(prefix) and node_type[len(prefix):] in self.groups:
                return node_type[len(prefix):]
        return None

    def _spec(self, node: Mapping[str, Any]) -> NodeSpec | None:
        node_cls = self.registry.get(str(node.get("type", "")))
        return None if node_cls is None else node_cls.spec

    # -- group nodes (legacy) -----------------------------------------------------------------
    def _group_as_subgraph(self, entry: Entry, name: str) -> Definition | None:
        """Turn one group node instance into a subgraph definition plus widget overrides."""
        group = self.groups.get(name)
        if not isinstance(group, dict) or not isinstance(group.get("nodes"), list):
            self.problems.node(entry, "missing_node_type", f"Group node '{name}' has no definition in extra.groupNodes")
            return None
        nodes: list[dict[str, Any]] = []
        for index, raw in enumerate(group["nodes"]):
            node = dict(raw) if isinstance(raw, dict) else {}
            node["id"] = index
            node["inputs"] = [dict(i, link=None) for i in node_inputs(node) if isinstance(i, dict)]
            nodes.append(node)
        links: dict[str, EditorLink] = {}
        linked_in: set[tuple[int, int]] = set()
        linked_out: set[tuple[int, int]] = set()
        for raw in as_list(group.get("links")):
            if not isinstance(raw, (list, tuple)) or len(raw) < 4 or raw[0] is None:
                continue
            numbers = [as_int(v) for v in raw[:4]]
            if None in numbers:
                continue
            src, src_slot, dst, dst_slot = numbers
            lid = f"g{len(links)}"
            links[lid] = EditorLink(lid, str(src), src_slot, str(dst), dst_slot, str(raw[5]) if len(raw) > 5 else "*")
            if 0 <= dst < len(nodes) and 0 <= dst_slot < len(nodes[dst]["inputs"]):
                nodes[dst]["inputs"][dst_slot]["link"] = lid
            linked_in.add((dst, dst_slot))
            linked_out.add((src, src_slot))
        external: set[tuple[int, int]] = set()  # outputs used inside that still leave the group
        for raw in as_list(group.get("external")):
            if isinstance(raw, list) and len(raw) >= 2:
                pair = (as_int(raw[0]), as_int(raw[1]))
                if None not in pair:
                    external.add(pair)

        # Inputs: unlinked sockets node by node, then widgets turned into sockets.
        plain, converted = [], []
        for index, node in enumerate(nodes):
            for slot, inp in enumerate(node["inputs"]):
                if (index, slot) not in linked_in:
                    (converted if "widget" in inp else plain).append((index, slot, inp))
        outer_plain = [i for i in entry.inputs if isinstance(i, dict) and "widget" not in i]
        outer_widgets = {input_name(i): i for i in entry.inputs if isinstance(i, dict) and "widget" in i}
        sub_inputs, outer_inputs = [], []
        for k, (index, slot, inp) in enumerate(plain + converted):
            lid = f"in{k}"
            links[lid] = EditorLink(lid, SUBGRAPH_INPUT_NODE, k, str(index), slot, str(inp.get("type") or "*"))
            nodes[index]["inputs"][slot]["link"] = lid
            sub_inputs.append({"name": lid, "type": inp.get("type", "*"), "linkIds": [lid]})
            outer = outer_plain[k] if k < len(outer_plain) else outer_widgets.get(input_name(inp))
            outer_inputs.append({"name": lid, "type": inp.get("type", "*"), "link": outer.get("link") if outer else None})

        # Outputs: node by node, those not consumed inside the group (or marked external).
        sub_outputs = []
        for index, node in enumerate(nodes):
            spec = self._spec(node)
            count = len(spec.outputs) if spec is not None else len(as_list(node.get("outputs")))
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
            if str(node.get("type", "")) == PRIMITIVE:
                names: list[tuple[str, InputSpec | None]] = [("value", None)] if (index, 0) in linked_out else []
            elif (spec := self._spec(node)) is not None:
                converted_names = {input_name(i) for i in node["inputs"] if "widget" in i}
                names = [(w.name, w) for w in editor_widgets(spec) if w.name not in converted_names]
            else:
                continue  # reroutes and notes have no widgets; unknown types are reported inside
            for widget_name, spec_input in names:
                if pos >= len(values):
                    break
                widget, pos = take_widget(values, pos, spec_input is None or has_control(spec_input))
                entry.overrides[(str(index), widget_name)] = widget
        entry.node = {**entry.node, "inputs": outer_inputs}
        return Definition(f"group:{name}", name, nodes, links, sub_inputs, sub_outputs, is_group=True)

    # -- widgets shown on an instance ---------------------------------------------------------
    def promote(self, entry: Entry) -> None:
        """Values shown on a subgraph instance: promoted inputs and proxied inner widgets."""
        definition = entry.definition
        assert definition is not None
        raw = entry.node.get("widgets_values")
        properties = entry.node.get("properties")
        proxies = properties.get("proxyWidgets") if isinstance(properties, dict) else None
        if definition.is_group:
            pass
        elif isinstance(raw, dict):
            entry.promoted = {str(k): Widget(v) for k, v in raw.items()}
        elif isinstance(raw, list) and isinstance(proxies, list) and proxies:
            for i, proxy in enumerate(proxies):
                if i >= len(raw) or not isinstance(proxy, (list, tuple)) or len(proxy) < 2:
                    continue
                widget = Widget(raw[i], home=(raw, i))
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
                widget, pos = take_widget(raw, pos, target is not True and has_control(target))
                entry.promoted[str(sub_input.get("name"))] = widget
            if pos < len(raw):
                self.problems.node(
                    entry,
                    "widget_count_mismatch",
                    f"{len(raw)} widget value(s) for {pos} promoted widget(s) of subgraph '{definition.label}'",
                    details=f"got: {short(raw)}",
                    received=raw,
                )
        entry.promoted.update(entry.instance_overrides())  # an outer instance may override a nested one

    def _promoted_target(self, entry: Entry, slot: int) -> InputSpec | bool | None:
        """For a subgraph input shown as a widget: the inner widget input it feeds (``True`` when
        only the editor JSON says it is a widget); ``None`` when it is a plain connection."""
        definition = entry.definition
        assert definition is not None
        index = entry.subgraph_input_index(slot)
        marked = index is not None and "widget" in entry.inputs[index]
        for link in definition.links.values():
            if link.origin_id != SUBGRAPH_INPUT_NODE or link.origin_slot != slot:
                continue
            node = definition.node(link.target_id)
            if node is None:
                continue
            target = next((i for i in node_inputs(node) if isinstance(i, dict) and str(i.get("link")) == link.id), None)
            spec = self._spec(node)
            spec_input = None
            if spec is not None and target is not None:
                spec_input = spec.input_by_name.get(input_name(target))
            if spec_input is not None and spec_input.is_widget:
                return spec_input
            if target is not None and "widget" in target:
                return True
        return True if marked else None
