"""Editor format: detection and widget values (positions, controls, counts)."""

from __future__ import annotations

import random

import pytest

from latentgraph.editor_format import detect_format
from editor_kit import Editor, convert, errors_of, inputs_of, registry  # noqa: F401 - registry is a fixture


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
