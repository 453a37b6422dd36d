"""Editor format: links in every form, reroutes, primitives, notes, mute/bypass and link errors."""

from __future__ import annotations

import random

import pytest

from editor_kit import Editor, chain, convert, errors_of, inputs_of, registry  # noqa: F401 - registry is a fixture


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
