"""Shared pieces of the editor-format tests: test nodes, a registry, an editor-graph builder."""

from __future__ import annotations

from typing import Any

import pytest

from graph_nodes import GraphTestPlugin
from latentgraph import In, Node, NodeSpec, Out, hookimpl
from latentgraph.editor_format import convert_editor_workflow
from latentgraph.plugins import load_plugins


class Seeded(Node):
    spec = NodeSpec(
        name="Seeded",
        inputs=(
            In("seed", "INT", default=0, min=0, max=1000, control_after_generate=True),
            In("offset", "INT", default=0, min=-1000, max=1000),
        ),
        outputs=(Out("INT"),),
    )

    def execute(self, ctx, seed, offset):
        return (seed + offset,)


class Mix(Node):
    spec = NodeSpec(
        name="Mix",
        inputs=(In("a", "LATENT"), In("b", "LATENT"), In("weight", "FLOAT", default=0.5, min=0.0, max=1.0)),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, a, b, weight):
        return ({"samples": a["samples"] * (1 - weight) + b["samples"] * weight},)


class EditorTestPlugin:
    @hookimpl
    def register_nodes(self):
        return [Seeded, Mix]


PLUGINS = [("graph_nodes", GraphTestPlugin()), ("editor_nodes", EditorTestPlugin())]


@pytest.fixture(scope="module")
def registry():
    return load_plugins(entry_points=False, extra=PLUGINS).registry


# -- a small editor-JSON builder, shaped like what the editor saves ---------------------------------


class Editor:
    """Builds editor-format JSON; ``form`` picks how links are written: array, object, or keyed."""

    def __init__(self, form: str = "array") -> None:
        self.form = form
        self.nodes: list[dict[str, Any]] = []
        self.links: list[Any] = []
        self.last_link = 0

    def node(self, node_id, node_type, widgets=None, inputs=(), outputs=(), mode=0, title=None, **extra):
        node = {
            "id": node_id,
            "type": node_type,
            "pos": [0, 0],
            "size": [200, 100],
            "flags": {},
            "order": len(self.nodes),
            "mode": mode,
            "inputs": [
                {"name": name, "type": t, "link": None, **({"widget": {"name": name}} if is_widget else {})}
                for name, t, is_widget in (i if len(i) == 3 else (*i, False) for i in inputs)
            ],
            "outputs": [{"name": t, "type": t, "links": []} for t in outputs],
            "properties": {"Node name for S&R": node_type},
            **extra,
        }
        if widgets is not None:
            node["widgets_values"] = widgets
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def link(self, src, slot, dst, input_name, link_type="*"):
        self.last_link += 1
        lid = self.last_link
        source = self._find(src)
        target = self._find(dst)
        entry = next(i for i in target["inputs"] if i["name"] == input_name)
        entry["link"] = lid
        target_slot = target["inputs"].index(entry)
        if source is not None:
            source["outputs"][slot]["links"].append(lid)
        if self.form == "array":
            self.links.append([lid, src, slot, dst, target_slot, link_type])
        else:
            self.links.append(
                {"id": lid, "origin_id": src, "origin_slot": slot, "target_id": dst, "target_slot": target_slot, "type": link_type}
            )
        return lid

    def _find(self, node_id):
        return next((n for n in self.nodes if n["id"] == node_id), None)

    def json(self) -> dict[str, Any]:
        links: Any = self.links
        if self.form == "keyed":
            links = {str(link["id"]): link for link in self.links}
        return {
            "last_node_id": max((n["id"] for n in self.nodes if isinstance(n["id"], int)), default=0),
            "last_link_id": self.last_link,
            "nodes": self.nodes,
            "links": links,
            "groups": [{"title": "a group box", "bounding": [0, 0, 10, 10]}],
            "config": {},
            "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
            "version": 0.4,
        }


def convert(registry, workflow, **kw):
    return convert_editor_workflow(workflow, registry, **kw)


def inputs_of(prompt, node_id):
    return prompt[node_id]["inputs"]


def errors_of(report):
    return [(node_id, err.type, err.message) for node_id, err in report.all_errors() if node_id is not None]


def chain(form: str) -> dict[str, Any]:
    ed = Editor(form)
    ed.node(1, "Blob", widgets=[2, 5], outputs=["LATENT"])
    ed.node(2, "Size", inputs=[("latent", "LATENT")], outputs=["INT"])
    ed.node(3, "Show", inputs=[("value", "*")])
    ed.link(1, 0, 2, "latent", "LATENT")
    ed.link(2, 0, 3, "value", "INT")
    return ed.json()
