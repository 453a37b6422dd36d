"""Editor format: subgraphs (nested, promoted widgets, mute/bypass), group nodes, converted graphs running."""

from __future__ import annotations

from typing import Any

from latentgraph.engine import Engine
from editor_kit import Editor, chain, convert, errors_of, inputs_of, registry  # noqa: F401 - registry is a fixture


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
