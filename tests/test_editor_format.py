"""Editor-format workflows (what ComfyUI's web editor saves) convert to the API graph a user meant."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph_nodes import GraphTestPlugin
from latentgraph import In, Node, NodeSpec, Out, hookimpl
from latentgraph.editor_format import api_to_editor, convert_editor_workflow, detect_format
from latentgraph.engine import Engine
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


# -- format detection --------------------------------------------------------------------------------


def test_detect_format():
    assert detect_format({"nodes": [], "links": []}) == "editor"
    assert detect_format({"1": {"class_type": "Const", "inputs": {}}}) == "api"
    assert detect_format([1, 2]) == "unknown"
    assert detect_format({"1": {"inputs": {}}}) == "unknown"


# -- widgets -----------------------------------------------------------------------------------------


def test_widgets_map_positionally_skipping_control_value(registry):
    ed = Editor()
    ed.node(1, "Seeded", widgets=[42, "randomize", 7], outputs=["INT"], title="my seed")
    ed.node(2, "Text", widgets=["hi", "upper", True], outputs=["STRING"])
    ed.node(3, "Show", inputs=[("value", "*")])
    ed.link(1, 0, 3, "value")
    result = convert(registry, ed.json())
    assert result.ok, result.report.format()
    assert result.prompt["1"] == {"class_type": "Seeded", "inputs": {"seed": 42, "offset": 7}, "_meta": {"title": "my seed"}}
    assert inputs_of(result.prompt, "2") == {"text": "hi", "mode": "upper", "shout": True}
    assert result.prompt["3"]["_meta"]["title"] == "Show"  # untitled nodes get the type's title


def test_control_value_is_optional_for_old_workflows(registry):
    ed = Editor()
    ed.node(1, "Seeded", widgets=[42, 7], outputs=["INT"])
    result = convert(registry, ed.json())
    assert result.ok and inputs_of(result.prompt, "1") == {"seed": 42, "offset": 7}


@pytest.mark.parametrize(
    "mode, expected", [("fixed", 500), ("increment", 501), ("decrement", 499)]
)
def test_control_modes_applied_only_when_asked(registry, mode, expected):
    ed = Editor()
    ed.node(1, "Seeded", widgets=[500, mode, 0], outputs=["INT"])
    assert inputs_of(convert(registry, ed.json()).prompt, "1")["seed"] == 500
    applied = convert(registry, ed.json(), apply_controls=True)
    assert inputs_of(applied.prompt, "1")["seed"] == expected
    # the value that ran is written back, so a saved image embeds a workflow that reproduces it
    assert applied.workflow["nodes"][0]["widgets_values"][:2] == [expected, mode]


def test_control_applied_to_every_seeded_node(registry):
    ed = Editor()
    for i in range(1, 30):
        ed.node(i, "Seeded", widgets=[i * 10, "increment", 0], outputs=["INT"])
    applied = convert(registry, ed.json(), apply_controls=True)
    assert all(inputs_of(applied.prompt, str(i))["seed"] == i * 10 + 1 for i in range(1, 30))
    assert [n["widgets_values"][0] for n in applied.workflow["nodes"]] == [i * 10 + 1 for i in range(1, 30)]


def test_randomize_stays_in_range_and_is_clamped(registry):
    ed = Editor()
    ed.node(1, "Seeded", widgets=[1000, "randomize", 0], outputs=["INT"])
    ed.node(2, "Seeded", widgets=[1000, "increment", 0], outputs=["INT"])
    seeds = {inputs_of(convert(registry, ed.json(), apply_controls=True, rng=random.Random(i)).prompt, "1")["seed"] for i in range(20)}
    assert len(seeds) > 10 and all(0 <= s <= 1000 for s in seeds)
    assert inputs_of(convert(registry, ed.json(), apply_controls=True).prompt, "2")["seed"] == 1000  # max


def test_list_values_and_dict_widgets(registry):
    ed = Editor()
    ed.node(1, "Text", widgets=[["a", "b"], "plain", False], outputs=["STRING"])
    ed.node(2, "Text", widgets={"text": "by name", "mode": "upper", "shout": False}, outputs=["STRING"])
    ed.node(3, "Text", outputs=["STRING"])  # no widgets_values: the editor shows the defaults
    result = convert(registry, ed.json())
    assert inputs_of(result.prompt, "1")["text"] == {"__value__": ["a", "b"]}
    assert inputs_of(result.prompt, "2") == {"text": "by name", "mode": "upper", "shout": False}
    assert inputs_of(result.prompt, "3") == {"text": "", "mode": "plain", "shout": False}


def test_optional_trailing_widgets_may_be_missing(registry):
    ed = Editor()
    ed.node(1, "Add", widgets=[1, 2], outputs=["INT"])  # scale (optional) not saved
    result = convert(registry, ed.json())
    assert result.ok and inputs_of(result.prompt, "1") == {"a": 1, "b": 2}


@pytest.mark.parametrize("values, words", [([1, 2, 3, 4], "left over"), ([1], "missing b")])
def test_widget_count_mismatch_names_node(registry, values, words):
    ed = Editor()
    ed.node(7, "Add", widgets=values, outputs=["INT"], title="adder")
    result = convert(registry, ed.json())
    assert not result.ok
    (node_id, kind, message), = errors_of(result.report)
    assert node_id == "7" and kind == "widget_count_mismatch"
    assert words in message and "node 7 'adder'" in message
    assert result.report.node_errors["7"].title == "adder"
    assert "expected: a, b, scale" in result.report.node_errors["7"].errors[0].details


def test_unhashable_leftover_widget_value_reported(registry):
    ed = Editor()
    ed.node(7, "Add", widgets=[1, 2, 3, [4]], outputs=["INT"])
    result = convert(registry, ed.json())
    (node_id, kind, message), = errors_of(result.report)
    assert node_id == "7" and kind == "widget_count_mismatch" and "1 left over" in message


def test_upload_button_value_is_ignored(registry):
    ed = Editor()
    ed.node(1, "LoadImage", widgets=["example.png", "image"], outputs=["IMAGE", "MASK"])
    result = convert(registry, ed.json())
    assert result.ok and inputs_of(result.prompt, "1") == {"image": "example.png"}


# -- links -------------------------------------------------------------------------------------------


def chain(form: str) -> dict[str, Any]:
    ed = Editor(form)
    ed.node(1, "Blob", widgets=[2, 5], outputs=["LATENT"])
    ed.node(2, "Size", inputs=[("latent", "LATENT")], outputs=["INT"])
    ed.node(3, "Show", inputs=[("value", "*")])
    ed.link(1, 0, 2, "latent", "LATENT")
    ed.link(2, 0, 3, "value", "INT")
    return ed.json()


@pytest.mark.parametrize("form", ["array", "object", "keyed"])
def test_links_in_every_form(registry, form):
    result = convert(registry, chain(form))
    assert result.ok, result.report.format()
    assert inputs_of(result.prompt, "2") == {"latent": ["1", 0]}
    assert inputs_of(result.prompt, "3") == {"value": ["2", 0]}


def test_input_entry_not_target_slot_decides(registry):
    """The editor compresses widget sockets out of target_slot; the input's own link id is what counts."""
    wf = chain("array")
    wf["links"][0][4] = 5  # a stale target_slot
    assert inputs_of(convert(registry, wf).prompt, "2") == {"latent": ["1", 0]}


def test_reroutes_collapse(registry):
    ed = Editor()
    ed.node(1, "Blob", widgets=[2, 5], outputs=["LATENT"])
    ed.node(10, "Reroute", inputs=[("", "*")], outputs=["LATENT"])
    ed.node(11, "Reroute", inputs=[("", "*")], outputs=["LATENT"])
    ed.node(2, "Size", inputs=[("latent", "LATENT")], outputs=["INT"])
    ed.node(3, "Show", inputs=[("value", "*")])
    ed.link(1, 0, 10, "")
    ed.link(10, 0, 11, "")
    ed.link(11, 0, 2, "latent")
    ed.link(11, 0, 3, "value")  # a reroute fans out
    result = convert(registry, ed.json())
    assert result.ok
    assert set(result.prompt) == {"1", "2", "3"}
    assert inputs_of(result.prompt, "2") == {"latent": ["1", 0]}
    assert inputs_of(result.prompt, "3") == {"value": ["1", 0]}


def test_widget_converted_to_input_takes_linked_value(registry):
    ed = Editor()
    ed.node(1, "Const", widgets=[5], outputs=["INT"])
    ed.node(2, "Add", widgets=[0, 3, 1.0], inputs=[("a", "INT", True)], outputs=["INT"])
    ed.link(1, 0, 2, "a")
    result = convert(registry, ed.json())
    assert inputs_of(result.prompt, "2") == {"a": ["1", 0], "b": 3, "scale": 1.0}


def test_primitive_value_folds_into_every_target(registry):
    ed = Editor()
    ed.node(5, "PrimitiveNode", widgets=[300, "randomize"], outputs=["INT"], title="shared seed")
    ed.node(1, "Seeded", widgets=[0, "fixed", 1], inputs=[("seed", "INT", True)], outputs=["INT"])
    ed.node(2, "Seeded", widgets=[0, "fixed", 2], inputs=[("seed", "INT", True)], outputs=["INT"])
    ed.nodes[0]["outputs"][0]["widget"] = {"name": "seed"}
    ed.link(5, 0, 1, "seed")
    ed.link(5, 0, 2, "seed")
    result = convert(registry, ed.json())
    assert "5" not in result.prompt
    assert inputs_of(result.prompt, "1") == {"seed": 300, "offset": 1}
    assert inputs_of(result.prompt, "2") == {"seed": 300, "offset": 2}
    applied = convert(registry, ed.json(), apply_controls=True, rng=random.Random(3))
    seed = inputs_of(applied.prompt, "1")["seed"]
    assert inputs_of(applied.prompt, "2")["seed"] == seed  # one random value, shared
    assert applied.workflow["nodes"][0]["widgets_values"][0] == seed


def test_comfyui_backend_primitives_fold_like_primitive_nodes(registry):
    ed = Editor()
    ed.node(5, "PrimitiveInt", widgets=[12, "fixed"], outputs=["INT"])
    ed.node(6, "PrimitiveString", widgets=["hello"], outputs=["STRING"])
    ed.node(1, "Add", widgets=[0, 1], inputs=[("a", "INT", True)], outputs=["INT"])
    ed.node(2, "Text", widgets=["", "plain", False], inputs=[("text", "STRING", True)], outputs=["STRING"])
    ed.link(5, 0, 1, "a")
    ed.link(6, 0, 2, "text")
    result = convert(registry, ed.json())
    assert result.ok and set(result.prompt) == {"1", "2"}
    assert inputs_of(result.prompt, "1") == {"a": 12, "b": 1}
    assert inputs_of(result.prompt, "2")["text"] == "hello"


def test_notes_dropped(registry):
    ed = Editor()
    ed.node(1, "Note", widgets=["remember to..."])
    ed.node(2, "MarkdownNote", widgets=["# title"])
    ed.node(3, "Const", widgets=[1], outputs=["INT"])
    result = convert(registry, ed.json())
    assert result.ok and set(result.prompt) == {"3"}


# -- muted and bypassed nodes ------------------------------------------------------------------------


def test_muted_node_removed_with_its_links(registry):
    ed = Editor()
    ed.node(1, "Blob", widgets=[2, 5], outputs=["LATENT"], mode=2)
    ed.node(2, "Size", inputs=[("latent", "LATENT")], outputs=["INT"])
    ed.node(3, "Add", widgets=[1, 2, 1.0], inputs=[("a", "INT", True)], outputs=["INT"])
    ed.link(1, 0, 2, "latent")
    ed.node(4, "Const", widgets=[9], outputs=["INT"], mode=2)
    ed.link(4, 0, 3, "a")
    result = convert(registry, ed.json())
    assert result.ok
    assert "1" not in result.prompt and "4" not in result.prompt
    assert inputs_of(result.prompt, "2") == {}  # validation will report the missing input
    assert inputs_of(result.prompt, "3") == {"a": 1, "b": 2, "scale": 1.0}  # the widget's own value stays


def test_bypassed_node_passes_matching_input_through(registry):
    ed = Editor()
    ed.node(1, "Blob", widgets=[2, 5], outputs=["LATENT"])
    ed.node(2, "Blob", widgets=[3, 6], outputs=["LATENT"])
    ed.node(3, "Mix", widgets=[0.5], inputs=[("a", "LATENT"), ("b", "LATENT")], outputs=["LATENT"], mode=4)
    ed.node(4, "Size", inputs=[("latent", "LATENT")], outputs=["INT"], mode=4)  # nothing of type INT to pass
    ed.node(5, "Size", inputs=[("latent", "LATENT")], outputs=["INT"])
    ed.node(6, "Add", widgets=[8, 1], inputs=[("a", "INT", True)], outputs=["INT"])
    ed.node(7, "Show", inputs=[("value", "*")])
    ed.link(1, 0, 3, "a")
    ed.link(2, 0, 3, "b")
    ed.link(3, 0, 5, "latent")
    ed.link(3, 0, 4, "latent")
    ed.link(4, 0, 6, "a", "INT")
    ed.link(4, 0, 7, "value", "INT")
    result = convert(registry, ed.json())
    assert result.ok
    assert set(result.prompt) == {"1", "2", "5", "6", "7"}
    assert inputs_of(result.prompt, "5") == {"latent": ["1", 0]}  # Mix's first LATENT input
    assert inputs_of(result.prompt, "6") == {"a": 8, "b": 1}  # no INT to pass on: the widget value stays
    # an input that takes anything gets the bypassed node's same-index input (through both bypasses)
    assert inputs_of(result.prompt, "7") == {"value": ["1", 0]}


def test_bypass_prefers_exact_type(registry):
    ed = Editor()
    ed.node(1, "Const", widgets=[4], outputs=["INT"])
    ed.node(2, "Blob", widgets=[1, 1], outputs=["LATENT"])
    # a bypassed Mix whose inputs are (INT-typed socket, LATENT): the LATENT output takes input 1
    ed.node(3, "Mix", widgets=[0.5], inputs=[("a", "INT"), ("b", "LATENT")], outputs=["LATENT"], mode=4)
    ed.node(4, "Size", inputs=[("latent", "LATENT")], outputs=["INT"])
    ed.link(1, 0, 3, "a")
    ed.link(2, 0, 3, "b")
    ed.link(3, 0, 4, "latent")
    assert inputs_of(convert(registry, ed.json()).prompt, "4") == {"latent": ["2", 0]}


# -- problems ----------------------------------------------------------------------------------------


def test_unknown_node_type_names_node_and_title(registry):
    ed = Editor()
    ed.node(4, "FancyUpscaler", widgets=[2], outputs=["IMAGE"], title="my upscaler")
    ed.node(5, "FancyUpscaler", widgets=[2], outputs=["IMAGE"], mode=2)  # muted: never sent, no error
    result = convert(registry, ed.json())
    assert errors_of(result.report) == [("4", "missing_node_type", "Unknown node type 'FancyUpscaler' (node 4 'my upscaler')")]
    info = result.report.node_errors["4"].errors[0].extra_info
    assert info["node_title"] == "my upscaler" and info["node_type"] == "FancyUpscaler"
    assert result.report.to_dict()["error"]["type"] == "workflow_conversion_failed"


def test_dangling_links_reported(registry):
    ed = Editor()
    ed.node(2, "Size", inputs=[("latent", "LATENT")], outputs=["INT"], title="sizer")
    ed.node(3, "Show", inputs=[("value", "*")])
    ed.nodes[0]["inputs"][0]["link"] = 99  # no such link
    ed.link(8, 0, 3, "value")  # from a node that is not there
    result = convert(registry, ed.json())
    found = errors_of(result.report)
    assert [(n, k) for n, k, _ in found] == [("2", "dangling_link"), ("3", "dangling_link")]
    assert "link 99" in found[0][2] and "'sizer'" in found[0][2]
    assert "node 8" in found[1][2]
    assert result.report.node_errors["2"].errors[0].extra_info["input_name"] == "latent"


def test_not_an_editor_workflow(registry):
    result = convert(registry, {"foo": 1})
    assert result.report.error.type == "invalid_editor_workflow"


def test_unreadable_links_reported(registry):
    wf = chain("array")
    wf["links"].append(["x"])
    result = convert(registry, wf)
    assert result.report.error.type == "invalid_editor_workflow" and "unreadable link" in result.report.error.message


# -- subgraphs ---------------------------------------------------------------------------------------

SUB_ID = "5b7a6f1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
NESTED_ID = "0f0e0d0c-0b0a-4909-8807-060504030201"


def subgraph_workflow() -> dict[str, Any]:
    """A subgraph 'add then size': inputs (latent LATENT, b INT widget) → output INT = size + b.

    It contains a nested subgraph wrapping Size, so ids nest as "<outer>:<inner>:<node>".
    """
    nested = {
        "id": NESTED_ID,
        "name": "just size",
        "inputNode": {"id": -10, "bounding": [0, 0, 10, 10]},
        "outputNode": {"id": -20, "bounding": [0, 0, 10, 10]},
        "inputs": [{"id": "i0", "name": "latent", "type": "LATENT", "linkIds": [1]}],
        "outputs": [{"id": "o0", "name": "INT", "type": "INT", "linkIds": [2]}],
        "widgets": [],
        "nodes": [
            {"id": 2, "type": "Size", "mode": 0, "inputs": [{"name": "latent", "type": "LATENT", "link": 1}], "outputs": [{"name": "INT", "type": "INT", "links": [2]}]},
        ],
        "links": [
            {"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "LATENT"},
            {"id": 2, "origin_id": 2, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "INT"},
        ],
    }
    outer = {
        "id": SUB_ID,
        "name": "add then size",
        "inputNode": {"id": -10, "bounding": [0, 0, 10, 10]},
        "outputNode": {"id": -20, "bounding": [0, 0, 10, 10]},
        "inputs": [
            {"id": "a", "name": "latent", "type": "LATENT", "linkIds": [10]},
            {"id": "b", "name": "b", "type": "INT", "linkIds": [11]},
        ],
        "outputs": [{"id": "c", "name": "sum", "type": "INT", "linkIds": [13]}],
        "widgets": [],
        "nodes": [
            {"id": 3, "type": NESTED_ID, "mode": 0, "inputs": [{"name": "latent", "type": "LATENT", "link": 10}], "outputs": [{"name": "INT", "type": "INT", "links": [12]}]},
            {
                "id": 4,
                "type": "Add",
                "mode": 0,
                "inputs": [
                    {"name": "a", "type": "INT", "widget": {"name": "a"}, "link": 12},
                    {"name": "b", "type": "INT", "widget": {"name": "b"}, "link": 11},
                ],
                "outputs": [{"name": "sum", "type": "INT", "links": [13]}],
                "widgets_values": [0, 0, 1.0],
            },
        ],
        "links": [
            {"id": 10, "origin_id": -10, "origin_slot": 0, "target_id": 3, "target_slot": 0, "type": "LATENT"},
            {"id": 11, "origin_id": -10, "origin_slot": 1, "target_id": 4, "target_slot": 1, "type": "INT"},
            {"id": 12, "origin_id": 3, "origin_slot": 0, "target_id": 4, "target_slot": 0, "type": "INT"},
            {"id": 13, "origin_id": 4, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "INT"},
        ],
    }
    ed = Editor()
    ed.node(1, "Blob", widgets=[2, 5], outputs=["LATENT"])
    for node_id, b in ((7, 10), (8, 20)):
        ed.node(node_id, SUB_ID, widgets=[b], inputs=[("latent", "LATENT"), ("b", "INT", True)], outputs=["INT"], title=f"instance {b}")
        ed.link(1, 0, node_id, "latent")
    ed.node(9, "Show", inputs=[("value", "*")])
    ed.node(6, "Const", widgets=[100], outputs=["INT"])
    ed.node(12, "Show", inputs=[("value", "*")])
    ed.link(7, 0, 9, "value")
    ed.link(8, 0, 12, "value")
    wf = ed.json()
    wf["definitions"] = {"subgraphs": [outer, nested]}
    return wf


def test_subgraph_expanded_with_nested_ids(registry):
    result = convert(registry, subgraph_workflow())
    assert result.ok, result.report.format()
    p = result.prompt
    assert set(p) == {"1", "7:3:2", "7:4", "8:3:2", "8:4", "9", "6", "12"}
    assert inputs_of(p, "7:3:2") == {"latent": ["1", 0]}
    assert inputs_of(p, "7:4") == {"a": ["7:3:2", 0], "b": 10, "scale": 1.0}  # promoted widget value
    assert inputs_of(p, "8:4") == {"a": ["8:3:2", 0], "b": 20, "scale": 1.0}
    assert inputs_of(p, "9") == {"value": ["7:4", 0]}
    assert inputs_of(p, "12") == {"value": ["8:4", 0]}


def test_promoted_widgets_without_instance_sockets(registry):
    """Older saves list only the connection inputs on the instance; widget values still map in order."""
    wf = subgraph_workflow()
    for instance in wf["nodes"][1:3]:
        instance["inputs"] = instance["inputs"][:1]
    wf["nodes"][2]["widgets_values"] = []  # no value: the inner widget keeps its own
    p = convert(registry, wf).prompt
    assert inputs_of(p, "7:4")["b"] == 10
    assert inputs_of(p, "8:4")["b"] == 0


def test_unreadable_instance_input_entry_leaves_input_unlinked(registry):
    wf = subgraph_workflow()
    wf["nodes"][1]["inputs"][0] = None  # instance 7's latent socket is not an object
    p = convert(registry, wf).prompt
    assert "latent" not in inputs_of(p, "7:3:2")
    assert inputs_of(p, "8:3:2")["latent"] == ["1", 0]


def test_malformed_nested_graphs_do_not_raise(registry):
    """Editor JSON from the wild may hold anything; a value that makes no sense is skipped."""
    wf = chain("array")
    wf["nodes"][1]["mode"] = 4  # a bypassed Size, its output read from a slot that cannot exist
    wf["links"][1][2] = -5
    assert "value" not in inputs_of(convert(registry, wf).prompt, "3")

    wf = subgraph_workflow()
    wf["definitions"]["subgraphs"][1]["nodes"] = 1  # the nested subgraph's nodes are not a list
    assert "7:3:2" not in convert(registry, wf).prompt

    wf = chain("array")
    wf["nodes"][0]["type"] = "workflow>g"
    group = {"nodes": [{"type": "Blob", "inputs": 3, "widgets_values": [2, 5]}], "links": 7, "external": [["x", 0], None]}
    wf["extra"]["groupNodes"] = {"g": group}
    p = convert(registry, wf).prompt
    assert inputs_of(p, "1:0") == {"kib": 2, "tag": 5} and inputs_of(p, "2") == {"latent": ["1:0", 0]}


def test_subgraph_input_linked_from_outside_overrides_widget(registry):
    wf = subgraph_workflow()
    ed = Editor()
    ed.nodes, ed.links, ed.last_link = wf["nodes"], wf["links"], 10
    ed.link(6, 0, 8, "b")
    result = convert(registry, wf)
    assert inputs_of(result.prompt, "8:4")["b"] == ["6", 0]


def test_subgraph_runs_like_the_flat_graph(registry, lg_settings):
    engine = Engine(registry, lg_settings)
    result = engine.run(convert(registry, subgraph_workflow()).prompt)
    assert result.outputs["9"] == {"value": [2 * 1024 + 10]}
    assert result.outputs["12"] == {"value": [2 * 1024 + 20]}


def test_proxy_widgets_override_inner_values(registry):
    wf = subgraph_workflow()
    instance = wf["nodes"][1]
    instance["properties"]["proxyWidgets"] = [["4", "scale"], ["-1", "b"]]
    instance["widgets_values"] = [2.0, 33]
    p = convert(registry, wf).prompt
    assert inputs_of(p, "7:4") == {"a": ["7:3:2", 0], "b": 33, "scale": 2.0}


def test_muted_and_bypassed_subgraph_instances(registry):
    wf = subgraph_workflow()
    wf["nodes"][1]["mode"] = 2
    wf["nodes"][2]["mode"] = 4
    p = convert(registry, wf).prompt
    assert not any(k.startswith(("7:", "8:")) for k in p)
    assert inputs_of(p, "9") == {}
    # a bypassed instance passes its same-index input on to an input that accepts anything
    assert inputs_of(p, "12") == {"value": ["1", 0]}


def test_missing_subgraph_definition_reported(registry):
    wf = subgraph_workflow()
    wf["definitions"]["subgraphs"] = wf["definitions"]["subgraphs"][:1]
    result = convert(registry, wf)
    assert [(n, k) for n, k, _ in errors_of(result.report)] == [("7:3", "missing_node_type"), ("8:3", "missing_node_type")]
    assert "definitions.subgraphs" in result.report.node_errors["7:3"].errors[0].details


def test_subgraph_containing_itself_reported(registry):
    wf = subgraph_workflow()
    wf["definitions"]["subgraphs"][1]["nodes"][0]["type"] = NESTED_ID
    result = convert(registry, wf)
    assert "subgraph_recursion" in {k for _, k, _ in errors_of(result.report)}


# -- group nodes (the editor's older way of packing nodes) -------------------------------------------


def test_group_node_expanded(registry):
    group = {
        "nodes": [
            {"id": -1, "type": "Blob", "index": 0, "inputs": [], "outputs": [{"name": "LATENT", "type": "LATENT", "links": []}], "widgets_values": [1, 0]},
            {"id": -1, "type": "Mix", "index": 1, "inputs": [{"name": "a", "type": "LATENT", "link": None}, {"name": "b", "type": "LATENT", "link": None}], "outputs": [{"name": "LATENT", "type": "LATENT", "links": []}], "widgets_values": [0.5]},
            {"id": -1, "type": "Seeded", "index": 2, "inputs": [], "outputs": [{"name": "INT", "type": "INT", "links": []}], "widgets_values": [0, "fixed", 0]},
        ],
        "links": [[0, 0, 1, 0, 7, "LATENT"]],
        "external": [],
    }
    ed = Editor()
    ed.node(1, "Blob", widgets=[3, 1], outputs=["LATENT"])
    ed.node(2, "workflow>blend", widgets=[4, 2, 0.25, 77, "increment", 5], inputs=[("b", "LATENT")], outputs=["LATENT", "INT"])
    ed.node(3, "Size", inputs=[("latent", "LATENT")], outputs=["INT"])
    ed.node(4, "Show", inputs=[("value", "*")])
    ed.link(1, 0, 2, "b")
    ed.link(2, 0, 3, "latent")
    ed.link(2, 1, 4, "value")
    wf = ed.json()
    wf["extra"]["groupNodes"] = {"blend": group}
    result = convert(registry, wf)
    assert result.ok, result.report.format()
    p = result.prompt
    assert inputs_of(p, "2:0") == {"kib": 4, "tag": 2}
    assert inputs_of(p, "2:1") == {"a": ["2:0", 0], "b": ["1", 0], "weight": 0.25}
    assert inputs_of(p, "2:2") == {"seed": 77, "offset": 5}
    assert inputs_of(p, "3") == {"latent": ["2:1", 0]}
    assert inputs_of(p, "4") == {"value": ["2:2", 0]}
    applied = convert(registry, wf, apply_controls=True)
    assert inputs_of(applied.prompt, "2:2")["seed"] == 78


# -- end to end and a realistic ComfyUI file ---------------------------------------------------------


def test_converted_workflow_runs(registry, lg_settings):
    ed = Editor("object")
    ed.node(1, "Const", widgets=[2], outputs=["INT"])
    ed.node(10, "Reroute", inputs=[("", "*")], outputs=["INT"])
    ed.node(2, "Add", widgets=[0, 3, 1.0], inputs=[("a", "INT", True)], outputs=["INT"])
    ed.node(3, "Show", inputs=[("value", "*")])
    ed.link(1, 0, 10, "")
    ed.link(10, 0, 2, "a")
    ed.link(2, 0, 3, "value")
    result = Engine(registry, lg_settings).run(convert(registry, ed.json()).prompt)
    assert result.status == "success" and result.outputs == {"3": {"value": [5]}}


COMFY_DEFAULT = {
    "last_node_id": 9,
    "last_link_id": 9,
    "nodes": [
        {"id": 7, "type": "CLIPTextEncode", "pos": [413, 389], "size": [425, 180], "flags": {}, "order": 3, "mode": 0,
         "inputs": [{"name": "clip", "type": "CLIP", "link": 5}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [6], "slot_index": 0}],
         "properties": {"Node name for S&R": "CLIPTextEncode"}, "widgets_values": ["text, watermark"]},
        {"id": 6, "type": "CLIPTextEncode", "pos": [415, 186], "size": [422, 164], "flags": {}, "order": 2, "mode": 0,
         "inputs": [{"name": "clip", "type": "CLIP", "link": 3}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [4], "slot_index": 0}],
         "properties": {"Node name for S&R": "CLIPTextEncode"}, "widgets_values": ["a bottle with a galaxy inside"]},
        {"id": 5, "type": "EmptyLatentImage", "pos": [473, 609], "size": [315, 106], "flags": {}, "order": 0, "mode": 0,
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [2], "slot_index": 0}],
         "properties": {"Node name for S&R": "EmptyLatentImage"}, "widgets_values": [512, 512, 1]},
        {"id": 3, "type": "KSampler", "pos": [863, 186], "size": [315, 262], "flags": {}, "order": 4, "mode": 0,
         "inputs": [{"name": "model", "type": "MODEL", "link": 1}, {"name": "positive", "type": "CONDITIONING", "link": 4},
                    {"name": "negative", "type": "CONDITIONING", "link": 6}, {"name": "latent_image", "type": "LATENT", "link": 2}],
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7], "slot_index": 0}],
         "properties": {"Node name for S&R": "KSampler"}, "widgets_values": [156680208700286, "randomize", 20, 8, "euler", "normal", 1]},
        {"id": 8, "type": "VAEDecode", "pos": [1209, 188], "size": [210, 46], "flags": {}, "order": 5, "mode": 0,
         "inputs": [{"name": "samples", "type": "LATENT", "link": 7}, {"name": "vae", "type": "VAE", "link": 8}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [9], "slot_index": 0}], "properties": {"Node name for S&R": "VAEDecode"}},
        {"id": 9, "type": "SaveImage", "pos": [1451, 189], "size": [210, 58], "flags": {}, "order": 6, "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 9}], "properties": {}, "widgets_values": ["ComfyUI"]},
        {"id": 4, "type": "CheckpointLoaderSimple", "pos": [26, 474], "size": [315, 98], "flags": {}, "order": 1, "mode": 0,
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1], "slot_index": 0}, {"name": "CLIP", "type": "CLIP", "links": [3, 5], "slot_index": 1},
                     {"name": "VAE", "type": "VAE", "links": [8], "slot_index": 2}],
         "properties": {"Node name for S&R": "CheckpointLoaderSimple"}, "widgets_values": ["v1-5-pruned-emaonly.safetensors"]},
    ],
    "links": [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"], [4, 6, 0, 3, 1, "CONDITIONING"],
              [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"], [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"], [9, 8, 0, 9, 0, "IMAGE"]],
    "groups": [],
    "config": {},
    "extra": {},
    "version": 0.4,
}


def test_comfyui_default_workflow(registry):
    if registry.get("KSampler") is None:
        pytest.skip("SD nodes not registered")
    result = convert(registry, COMFY_DEFAULT)
    assert result.ok, result.report.format()
    strip = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in result.prompt.items()}
    assert strip == {
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a bottle with a galaxy inside", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": 156680208700286, "steps": 20, "cfg": 8, "sampler_name": "euler",
                                                   "scheduler": "normal", "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0], "denoise": 1}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "ComfyUI"}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    }


# -- property: random editor twins of random API graphs convert back to them ------------------------


@st.composite
def api_graph_and_editor_twin(draw):
    """An API graph of test nodes, and an editor file for it with reroutes, primitives, bypassed
    pass-throughs, notes, a muted dead end, and links written in a random form."""
    form = draw(st.sampled_from(["array", "object", "keyed"]))
    ed = Editor(form)
    api: dict[str, Any] = {}
    ints: list[str] = []  # nodes with an INT output 0
    latents: list[str] = []
    extra_id = iter(range(1000, 2000))
    small = st.integers(-50, 50)

    def feed(src: str, dst: int, name: str, link_type: str) -> None:
        """Link src→dst, maybe through reroutes or a bypassed pass-through node."""
        how = draw(st.sampled_from(["direct", "reroute", "bypass"]))
        current = int(src)
        if how == "reroute":
            for _ in range(draw(st.integers(1, 2))):
                rid = next(extra_id)
                ed.node(rid, "Reroute", inputs=[("", "*")], outputs=[link_type])
                ed.link(current, 0, rid, "", link_type)
                current = rid
        elif how == "bypass":
            bid = next(extra_id)
            if link_type == "INT":
                ed.node(bid, "Add", widgets=[0, 0, 1.0], inputs=[("a", "INT", True)], outputs=["INT"], mode=4)
                ed.link(current, 0, bid, "a", link_type)
            else:
                ed.node(bid, "Mix", widgets=[0.5], inputs=[("a", "LATENT"), ("b", "LATENT")], outputs=["LATENT"], mode=4)
                ed.link(current, 0, bid, "a", link_type)
            current = bid
        ed.link(current, 0, dst, name, link_type)

    count = draw(st.integers(1, 6))
    for i in range(1, count + 1):
        choices = ["Const", "Blob", "Seeded", "Text"] + (["Add"] if ints else []) + (["Size", "Mix"] if latents else [])
        kind = draw(st.sampled_from(choices))
        title = f"n{i}"
        if kind == "Const":
            v = draw(small)
            prim = draw(st.booleans())
            node = ed.node(i, "Const", widgets=[0 if prim else v], inputs=[("value", "INT", True)] if prim else [], outputs=["INT"], title=title)
            if prim:
                pid = next(extra_id)
                ed.node(pid, "PrimitiveNode", widgets=[v, "fixed"], outputs=["INT"])
                ed.link(pid, 0, i, "value", "INT")
            api[str(i)] = {"value": v}
            ints.append(str(i))
        elif kind == "Seeded":
            seed, offset = draw(st.integers(0, 1000)), draw(small)
            control = draw(st.sampled_from([[], ["fixed"], ["randomize"]]))
            ed.node(i, "Seeded", widgets=[seed, *control, offset], outputs=["INT"], title=title)
            api[str(i)] = {"seed": seed, "offset": offset}
            ints.append(str(i))
        elif kind == "Blob":
            kib, tag = draw(st.integers(1, 4)), draw(small)
            ed.node(i, "Blob", widgets=[kib, tag], outputs=["LATENT"], title=title)
            api[str(i)] = {"kib": kib, "tag": tag}
            latents.append(str(i))
        elif kind == "Text":
            text, mode, shout = draw(st.text(max_size=8)), draw(st.sampled_from(["plain", "upper"])), draw(st.booleans())
            ed.node(i, "Text", widgets=[text, mode, shout], outputs=["STRING"], title=title)
            api[str(i)] = {"text": text, "mode": mode, "shout": shout}
        elif kind == "Add":
            src = draw(st.sampled_from(ints))
            b = draw(small)
            with_scale = draw(st.booleans())
            ed.node(i, "Add", widgets=[0, b, 2.0] if with_scale else [0, b], inputs=[("a", "INT", True)], outputs=["INT"], title=title)
            feed(src, i, "a", "INT")
            api[str(i)] = {"a": [src, 0], "b": b, **({"scale": 2.0} if with_scale else {})}
            ints.append(str(i))
        elif kind == "Size":
            src = draw(st.sampled_from(latents))
            ed.node(i, "Size", inputs=[("latent", "LATENT")], outputs=["INT"], title=title)
            feed(src, i, "latent", "LATENT")
            api[str(i)] = {"latent": [src, 0]}
            ints.append(str(i))
        else:  # Mix
            a, b, w = draw(st.sampled_from(latents)), draw(st.sampled_from(latents)), draw(st.sampled_from([0.0, 0.25, 1.0]))
            ed.node(i, "Mix", widgets=[w], inputs=[("a", "LATENT"), ("b", "LATENT")], outputs=["LATENT"], title=title)
            feed(a, i, "a", "LATENT")
            feed(b, i, "b", "LATENT")
            api[str(i)] = {"a": [a, 0], "b": [b, 0], "weight": w}
            latents.append(str(i))
        api[str(i)] = {"class_type": kind, "inputs": api[str(i)], "_meta": {"title": title}}
    if draw(st.booleans()):
        ed.node(next(extra_id), "Note", widgets=["notes are not run"])
    if ints and draw(st.booleans()):  # a muted consumer: dropped without a trace
        mid = next(extra_id)
        ed.node(mid, "Show", inputs=[("value", "*")], mode=2)
        ed.link(int(ints[0]), 0, mid, "value", "INT")
    order = draw(st.permutations(range(len(ed.nodes))))
    ed.nodes = [ed.nodes[k] for k in order]  # node order in the file does not matter
    return api, ed.json()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(api_graph_and_editor_twin())
def test_random_editor_twins_convert_to_their_api_graph(registry, case):
    api, editor = case
    result = convert(registry, copy.deepcopy(editor))
    assert result.ok, result.report.format()
    assert result.prompt == api, json.dumps(editor)[:2000]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(api_graph_and_editor_twin())
def test_api_to_editor_and_back(registry, case):
    api, _editor = case
    editor, report = api_to_editor(api, registry)
    assert not report, report.format()
    assert convert(registry, editor).prompt == api


def test_api_to_editor_renumbers_and_reports(registry):
    api = {
        "a": {"class_type": "Blob", "inputs": {"kib": 1, "tag": 2}},
        "2": {"class_type": "Size", "inputs": {"latent": ["a", 0]}},
        "3": {"class_type": "Show", "inputs": {"value": ["2", 0]}},
    }
    editor, report = api_to_editor(api, registry)
    assert not report
    back = convert(registry, editor).prompt
    (blob_id,) = [k for k, v in back.items() if v["class_type"] == "Blob"]
    assert blob_id not in ("a", "2", "3") and back["2"]["inputs"] == {"latent": [blob_id, 0]}
    _, report = api_to_editor({"1": {"class_type": "Nope", "inputs": {}}}, registry)
    assert report.node_errors["1"].errors[0].type == "missing_node_type"


def test_api_to_editor_reports_unreadable_links(registry):
    api = {"1": {"class_type": "Blob", "inputs": ["kib"]}, "2": {"class_type": "Size", "inputs": {"latent": ["1", "x"]}}}
    _, report = api_to_editor(api, registry)
    assert [e.type for e in report.node_errors["2"].errors] == ["invalid_input_type"]
