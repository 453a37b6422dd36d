"""API format → editor format, so a headless workflow can be opened in ComfyUI's editor.

The inverse of the editor conversion for what the API format can say: every node gets its widget
values in the editor's positional order and is placed in a column by its depth in the graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from latentgraph.editor_links import as_int
from latentgraph.editor_widgets import editor_widgets, has_control, shown_as_widget
from latentgraph.errors import ErrorDetail, ErrorReport
from latentgraph.node import NodeSpec
from latentgraph.workflow import LITERAL_LIST_KEY

if TYPE_CHECKING:
    from latentgraph.registry import NodeRegistry


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
        class_type = str(node.get("class_type", "")) if isinstance(node, dict) else ""
        node_cls = registry.get(class_type) if isinstance(node, dict) else None
        if node_cls is None:
            report.add(str(key), class_type, ErrorDetail("missing_node_type", f"Unknown node type '{class_type}'"))
        else:
            specs[str(key)] = node_cls.spec
    if report:
        return {}, report

    def inputs_of(key: str) -> dict[str, Any]:
        inputs = prompt[key].get("inputs")
        return inputs if isinstance(inputs, dict) else {}

    def links_of(key: str) -> dict[str, tuple[str, int]]:
        found = {}
        for name, value in inputs_of(key).items():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in specs:
                slot = as_int(value[1])
                if slot is not None:  # else not a link: reported below as a value the editor cannot show
                    found[name] = (str(value[0]), slot)
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
        values = inputs_of(key)
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
            if not shown_as_widget(inp)
        ]
        inputs += [
            {"name": inp.name, "type": inp.type, "widget": {"name": inp.name}, "link": None}
            for inp in spec.inputs
            if shown_as_widget(inp) and inp.name in linked
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
