"""ComfyUI V3 custom-node files (``comfy_api.latest``) dropped into the plugins folder load and run.

The fixture files are tests/plugin_fixtures/comfy_v3_*.py; several V3 nodes are twins of the V1
nodes in comfy_style_nodes.py and must give the same results through the same engine.
"""

import asyncio
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from graph_nodes import GraphTestPlugin
from latentgraph.errors import WorkflowInvalid
from latentgraph.object_info import object_info
from latentgraph.registry import RegistrationError
from latentgraph.testing import WorkflowBuilder, assert_failed, assert_success, output_images

FIXTURES = Path(__file__).parent / "plugin_fixtures"


def plugins_folder(root: Path, *names: str) -> Path:
    folder = root / "plugins"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(FIXTURES / name, folder / name)
    return folder


@pytest.fixture
def engine(lg_engine, lg_settings):
    folder = plugins_folder(lg_settings.base_dir, "comfy_v3_nodes.py", "comfy_style_nodes.py")
    return lg_engine(GraphTestPlugin(), plugins_dir=folder)


def test_extension_registers_every_node_of_its_list(engine):
    info = engine.host.plugins["comfy_v3_nodes"]
    assert info.errors == [] and info.source == "plugins-dir"
    assert sorted(info.nodes) == sorted([
        "GradientV3", "PosterizeV3", "MultiplyV3", "PickWord", "ShowTextV3", "LazySwitchV3", "SplitWords",
        "JoinWordsV3", "PosterizedGradient", "ExpandWithoutAsking", "SlowUpper", "WhoAmIV3", "PreviewGradient",
        "RepeatTextV3", "StampedTextV3", "MeanColour", "ShowColour",
    ])
    assert "RGB_TRIPLE" in engine.registry.types  # io.Custom("RGB_TRIPLE") became a connection type


def test_object_info_looks_like_comfyuis_for_the_same_node(engine):
    info = object_info(engine.registry, engine.settings)
    grad = info["GradientV3"]
    # what ComfyUI 0.8.0 lists for this schema (its V1 view of a V3 node), ours after it
    assert grad["input"]["required"]["width"] == ["INT", {"default": 64, "min": 8, "max": 4096}]
    assert grad["input"]["required"]["direction"][0] == ["horizontal", "vertical"]
    assert grad["input"]["required"]["invert"] == ["BOOLEAN", {"default": False}]
    assert grad["input"]["optional"]["gamma"] == ["FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}]
    assert grad["input_order"] == {"required": ["width", "height", "direction", "invert"], "optional": ["gamma"]}
    assert (grad["output"], grad["output_name"], grad["output_is_list"]) == (["IMAGE", "MASK"], ["image", "mask"], [False, False])
    assert (grad["display_name"], grad["category"]) == ("Gradient (V3)", "image/generate")
    assert grad["description"] == "A grey ramp and the same ramp as a mask."
    assert grad["python_module"] == "custom_nodes.comfy_v3_nodes" and grad["output_node"] is False
    # an unnamed output is named by its type; list outputs and output nodes are flagged
    assert info["PosterizeV3"]["output_name"] == ["IMAGE"]
    assert info["PosterizeV3"]["display_name"] == "PosterizeV3"
    assert info["SplitWords"]["output_is_list"] == [True]
    assert info["ShowTextV3"]["output_node"] is True
    assert info["ShowTextV3"]["input"]["required"]["text"] == ["STRING", {"forceInput": True}]
    assert info["LazySwitchV3"]["input"]["required"]["on_true"] == ["*", {"lazy": True}]
    assert info["PosterizeV3"]["input"]["required"]["levels"][1]["tooltip"] == "levels per channel"
    # hidden values are not inputs
    assert list(info["WhoAmIV3"]["input"]["required"]) == ["label"]


def run_pair(engine, v1: dict, v3: dict):
    return engine.run(v1), engine.run(v3)


def test_v3_twins_give_the_same_images_as_their_v1_twins(engine, lg_settings):
    results = {}
    for grad_type, poster_type in (("MakeGradient", "ImagePosterize"), ("GradientV3", "PosterizeV3")):
        wf = WorkflowBuilder()
        grad = wf.add(grad_type, width=24, height=12, direction="vertical", invert=True, gamma=2.0)
        poster = wf.add(poster_type, image=grad[0], levels=3)
        wf.add("SaveImage", images=poster[0], filename_prefix=grad_type)
        wf.add("SaveImage", images=wf.add("MaskToImage", mask=grad[1])[0], filename_prefix=grad_type + "_mask")
        result = engine.run(wf.to_api())
        assert_success(result)
        results[grad_type] = [np.asarray(img) for img in output_images(result, lg_settings)]
    v1, v3 = results["MakeGradient"], results["GradientV3"]
    assert len(v1) == len(v3) == 2
    assert v1[0].shape == (12, 24, 3)
    for a, b in zip(v1, v3):
        assert np.array_equal(a, b)
    assert len(np.unique(v1[0])) == 3  # posterized to three levels: the pictures are not blank


def test_math_node_and_text_preview(engine):
    wf = WorkflowBuilder()
    product = wf.add("MultiplyV3", a=2.5, b=-4.0)
    wf.add("Show", value=product[0])
    assert engine.run(wf.to_api()).outputs["2"] == {"value": [-10.0]}
    wf.set(product, b=11.0)  # above max=10.0
    with pytest.raises(WorkflowInvalid, match="bigger than the maximum"):
        engine.run(wf.to_api())


def test_combo_choices_are_declared_again_at_each_validation(engine):
    module = sys.modules["latentgraph_plugin_comfy_v3_nodes"]
    wf = WorkflowBuilder()
    word = wf.add("PickWord", word="quince")
    wf.add("ShowTextV3", text=word[0])
    with pytest.raises(WorkflowInvalid, match="'quince' is not available here"):
        engine.run(wf.to_api())
    module.WORDS.append("quince")
    try:
        result = engine.run(wf.to_api())
        assert result.outputs["2"] == {"text": ["quince"]}
        assert "quince" in object_info(engine.registry, engine.settings)["PickWord"]["input"]["required"]["word"][0]
    finally:
        module.WORDS.remove("quince")


def test_lazy_switch_evaluates_only_the_branch_it_needs(engine):
    wf = WorkflowBuilder()
    good = wf.add("Text", text="chosen", mode="plain", shout=False)
    bad = wf.add("Fail", value=1, fail=True)  # would fail the prompt if it ran
    switch = wf.add("LazySwitchV3", switch=True, on_true=good[0], on_false=bad[0])
    wf.add("Show", value=switch[0])
    result = engine.run(wf.to_api())
    assert_success(result)
    assert result.outputs["4"] == {"value": ["chosen"]}
    assert "2" not in result.executed
    wf.set(switch, switch=False)
    assert_failed(engine.run(wf.to_api()), node_id="2")


def test_list_output_runs_nodes_after_it_per_item_and_input_list_gets_all(engine):
    wf = WorkflowBuilder()
    words = wf.add("SplitWords", text="red green blue")
    upper = wf.add("Text", text=words[0], mode="upper", shout=False)  # once per word
    wf.add("ShowTextV3", text=upper[0])
    joined = wf.add("JoinWordsV3", words=upper[0], separator=" & ")
    wf.add("ShowTextV3", text=joined[0])
    result = engine.run(wf.to_api())
    assert_success(result)
    assert result.outputs["3"] == {"text": ["RED", "GREEN", "BLUE"]}
    assert result.outputs["5"] == {"text": ["RED & GREEN & BLUE"]}


def test_expansion_runs_the_subgraph_in_the_nodes_place(engine, lg_settings):
    wf = WorkflowBuilder()
    wf.add("SaveImage", images=wf.add("PosterizedGradient", width=20, height=10, levels=2)[0], filename_prefix="x")
    direct = WorkflowBuilder()
    grad = direct.add("GradientV3", width=20, height=10, direction="horizontal", invert=False)
    direct.add("SaveImage", images=direct.add("PosterizeV3", image=grad[0], levels=2)[0], filename_prefix="y")
    expanded, plain = engine.run(wf.to_api()), engine.run(direct.to_api())
    assert_success(expanded)
    [a], [b] = output_images(expanded, lg_settings), output_images(plain, lg_settings)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and sorted(set(np.asarray(a).ravel())) == [0, 255]

    refused = WorkflowBuilder()
    refused.add("Show", value=refused.add("ExpandWithoutAsking", x=1)[0])
    failure = assert_failed(engine.run(refused.to_api()), node_id="1", plugin="comfy_v3_nodes")
    assert "enable_expand=True" in failure.message


def test_async_nodes_overlap_on_the_event_loop(engine):
    wf = WorkflowBuilder()
    for i in range(4):
        wf.add("ShowTextV3", text=wf.add("SlowUpper", text=f"t{i}", seconds=0.3)[0])
    start = time.perf_counter()
    result = engine.run(wf.to_api())
    elapsed = time.perf_counter() - start
    assert_success(result)
    assert sorted(result.outputs[n]["text"][0] for n in ("2", "4", "6", "8")) == ["T0", "T1", "T2", "T3"]
    assert elapsed < 1.0  # four 0.3 s waits, run together rather than one after another (1.2 s)


def test_hidden_values_match_the_v1_twin(engine):
    outputs = {}
    for who in ("WhoAmI", "WhoAmIV3"):
        wf = WorkflowBuilder()
        wf.add(who, id="42", label="x")
        wf.add("Const", value=1)
        editor = {"last_node_id": 42, "nodes": []}
        outputs[who] = engine.run(wf.to_api(), extra={"workflow": editor}).outputs["42"]["text"]
    label, unique_id, classes, workflow = outputs["WhoAmIV3"]
    assert (label, unique_id, classes) == ("x", "42", "Const,WhoAmIV3")
    assert workflow == repr({"last_node_id": 42, "nodes": []})
    assert outputs["WhoAmI"][:2] == outputs["WhoAmIV3"][:2]


def test_validate_inputs_matches_the_v1_twin(engine):
    for node in ("RepeatText", "RepeatTextV3"):
        wf = WorkflowBuilder()
        rep = wf.add(node, text="", times=2)
        wf.add("ShowText", text=rep[0])
        with pytest.raises(WorkflowInvalid) as err:
            engine.run(wf.to_api())
        [(node_id, detail)] = err.value.report.all_errors()
        assert node_id == "1" and detail.type == "custom_validation_failed"
        assert detail.message == "text must not be empty"
        wf.set(rep, text="ab", times=50)  # above max=5, but validate_inputs names `times`: it decides
        assert engine.run(wf.to_api()).outputs["2"] == {"text": ["ab" * 50]}
        wf.set(rep, times=500)
        with pytest.raises(WorkflowInvalid, match="times=500 is too many"):
            engine.run(wf.to_api())


def test_fingerprint_inputs_keeps_the_cache_until_it_changes(engine):
    wf = WorkflowBuilder()
    text = wf.add("StampedTextV3", text="hi", stamp="a")
    wf.add("ShowTextV3", text=text[0])
    first = engine.run(wf.to_api())
    again = engine.run(wf.to_api())
    assert first.executed == ["1", "2"]
    assert again.executed == [] and again.outputs == first.outputs
    wf.set(text, stamp="b")
    changed = engine.run(wf.to_api())
    assert changed.executed == ["1", "2"] and changed.outputs != first.outputs


def test_custom_type_connects_two_v3_nodes(engine):
    wf = WorkflowBuilder()
    grad = wf.add("GradientV3", width=8, height=8, direction="horizontal", invert=False)
    wf.add("ShowColour", rgb=wf.add("MeanColour", image=grad[0])[0])
    assert engine.run(wf.to_api()).outputs["3"] == {"text": ["(0.5, 0.5, 0.5)"]}
    wf.add("ShowColour", id="9", rgb=grad[0])
    with pytest.raises(WorkflowInvalid, match="expects RGB_TRIPLE"):
        engine.run(wf.to_api())


def test_preview_image_through_the_server(engine):
    from plugin_server import fetch_image, run_prompt, serving_engine

    wf = WorkflowBuilder()
    grad = wf.add("GradientV3", width=16, height=8, direction="horizontal", invert=False)
    wf.add("PreviewGradient", images=wf.add("PosterizeV3", image=grad[0], levels=2)[0])

    async def go():
        async with serving_engine(engine) as client:
            status, info = await client.get("/object_info/PreviewGradient")
            assert status == 200 and info["PreviewGradient"]["output_node"] is True
            msgs = await run_prompt(client, wf.to_api())
            assert any(kind == "execution_success" for kind, _ in msgs), msgs
            [output] = [d["output"] for kind, d in msgs if kind == "executed" and d["node"] == "3"]
            assert output["animated"] == [False]
            [item] = output["images"]
            assert item["type"] == "temp" and item["filename"].endswith(".png")
            image = await fetch_image(client, item)
            assert image.size == (16, 8)
            assert sorted(set(np.asarray(image.convert("L")).ravel().tolist())) == [0, 255]

    asyncio.run(asyncio.wait_for(go(), 120))
