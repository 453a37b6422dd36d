"""Utility nodes (nodes/utility/): primitives, switch, PreviewAny, strings, SaveImageWebsocket."""

from __future__ import annotations

import pytest
import torch

from latentgraph import ExecutionContext, InterruptFlag, NodeInputError, Settings
from latentgraph.events import ImageSent, NodeProgress
from latentgraph.nodes.utility import strings
from latentgraph.nodes.utility.primitives import ComfySwitchNode, PreviewAny, preview_text
from latentgraph.nodes.utility.strings import RegexExtract, RegexReplace, StringConcatenate, StringSubstring
from latentgraph.nodes.utility.websocket import SaveImageWebsocket
from latentgraph.plugins import load_plugins
from latentgraph.testing import assert_invalid, assert_success, make_engine


@pytest.fixture
def engine(tmp_path):
    return make_engine(Settings.from_env(tmp_path / "d", environ={}, device="cpu"))


def test_primitives_and_switch_through_engine(engine):
    prompt = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 7}},
        "2": {"class_type": "PrimitiveFloat", "inputs": {"value": 1.5}},
        "3": {"class_type": "PrimitiveBoolean", "inputs": {"value": True}},
        "4": {"class_type": "ComfySwitchNode", "inputs": {"switch": ["3", 0], "on_false": ["2", 0], "on_true": ["1", 0]}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
        "6": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a\nb"}},
        "7": {"class_type": "StringLength", "inputs": {"string": ["6", 0]}},
        "8": {"class_type": "PreviewAny", "inputs": {"source": ["7", 0]}},
        "9": {"class_type": "PrimitiveString", "inputs": {"value": "x"}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["9", 0]}},
    }
    result = assert_success(engine.run(prompt))
    assert result.outputs["5"] == {"text": ["7"]}
    assert result.outputs["8"] == {"text": ["3"]}
    assert result.outputs["10"] == {"text": ["x"]}
    prompt["1"]["inputs"]["value"] = 2**63  # past ComfyUI's int64 bound
    assert_invalid(engine, prompt, node_id="1", error_type="value_bigger_than_max")


def test_switch_picks_branch():
    node = ComfySwitchNode()
    assert node.execute(None, True, on_false="f", on_true="t") == ("t",)
    assert node.execute(None, False, on_false="f", on_true="t") == ("f",)


def test_preview_text_forms():
    assert preview_text(None) == "None"
    assert preview_text("hi") == "hi"
    assert preview_text(True) == "True" and preview_text(2.5) == "2.5"
    assert preview_text({"a": [1, 2]}) == '{\n    "a": [\n        1,\n        2\n    ]\n}'
    assert preview_text(torch.tensor([1.0])).startswith("tensor(")
    assert PreviewAny().execute(None, 3).ui == {"text": ["3"]}


@pytest.mark.parametrize(
    "mode, expected", [("UPPERCASE", "HELLO WORLD"), ("lowercase", "hello world"), ("Capitalize", "Hello world"),
                       ("Title Case", "Hello World")],
)
def test_case_converter(mode, expected):
    assert strings.convert_case("hELLO wORLD", mode) == expected


def test_simple_string_nodes():
    assert StringConcatenate().execute(None, "a", "b", ", ") == ("a, b",)
    assert StringSubstring().execute(None, "abcdef", 1, -1) == ("bcde",)
    assert strings.trim("  x  ", "Left") == "x  " and strings.trim("  x  ", "Right") == "  x"
    assert strings.trim("  x  ", "Both") == "x"
    assert strings.StringReplace().execute(None, "a-b-c", "-", "+") == ("a+b+c",)
    assert strings.StringContains().execute(None, "Hello", "hell", False) == (True,)
    assert strings.StringContains().execute(None, "Hello", "hell", True) == (False,)
    assert strings.compare("Hello", "he", "Starts With", False) and not strings.compare("Hello", "he", "Starts With", True)
    assert strings.compare("Hello", "LO", "Ends With", False) and strings.compare("a", "a", "Equal", True)


def test_regex_nodes():
    flags = strings.regex_flags(True, False, False)
    assert strings.regex_match("Cat", "cat", flags) and not strings.regex_match("Cat", "cat", 0)
    assert strings.regex_match("x", "(", 0) is False  # invalid pattern: no match
    text = "a1b22c333"
    assert RegexExtract().execute(None, text, r"\d+", "First Match") == ("1",)
    assert RegexExtract().execute(None, text, r"\d+", "All Matches") == ("1\n22\n333",)
    assert RegexExtract().execute(None, text, r"([a-z])(\d+)", "All Matches") == ("a\nb\nc",)
    assert RegexExtract().execute(None, text, r"([a-z])(\d+)", "First Group", group_index=2) == ("1",)
    assert RegexExtract().execute(None, text, r"([a-z])(\d+)", "All Groups", group_index=1) == ("a\nb\nc",)
    assert RegexExtract().execute(None, text, r"([a-z])", "First Group", group_index=3) == ("",)
    assert RegexExtract().execute(None, text, r"(", "First Match") == ("",)
    assert RegexReplace().execute(None, "aAa", "a", "x") == ("xxx",)  # case-insensitive by default
    assert RegexReplace().execute(None, "aAa", "a", "x", case_insensitive=False, count=1) == ("xAa",)
    with pytest.raises(NodeInputError):
        RegexReplace().execute(None, "a", "(", "x")


def test_save_image_websocket_sends_each_image(tmp_path):
    settings = Settings.from_env(tmp_path, environ={}, device="cpu")
    events = []
    ctx = ExecutionContext(prompt_id="p", node_id="1", class_type="SaveImageWebsocket", settings=settings,
                           registry=load_plugins(entry_points=False).registry, sink=events.append,
                           interrupt=InterruptFlag(), extra={})
    images = torch.zeros(2, 4, 5, 3)
    images[1, ..., 0] = 1.0
    result = SaveImageWebsocket().execute(ctx, images)
    assert result.outputs == () and not result.ui
    sent = [e for e in events if isinstance(e, ImageSent)]
    assert [e.format for e in sent] == ["PNG", "PNG"]
    assert sent[0].image.size == (5, 4) and sent[1].image.getpixel((0, 0)) == (255, 0, 0)
    progress = [e for e in events if isinstance(e, NodeProgress)]
    assert [(e.value, e.max, e.preview) for e in progress] == [(1, 2, None), (2, 2, None)]
    assert not any(settings.output_dir.rglob("*.png")) if settings.output_dir.exists() else True
