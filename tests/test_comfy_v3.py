"""ComfyUI V3 custom-node files (``comfy_api.latest``) dropped into the plugins folder load and run.

The fixture files are tests/plugin_fixtures/comfy_v3_*.py; several V3 nodes are twins of the V1
nodes in comfy_style_nodes.py and must give the same results through the same engine.
"""

import asyncio
import shutil
import sys
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
        "JoinWordsV3", "PosterizedGradient", "PosterizeTimes", "GateV3", "ExpandWithoutAsking", "SlowUpper", "WhoAmIV3", "PreviewGradient",
        "RepeatTextV3", "StampedTextV3", "MeanColour", "ShowColour",
    ])
    assert "RGB_TRIPLE" in engine.registry.types  # io.Custom("RGB_TRIPLE") became a connection type


#: ComfyUI 0.8.0's /object_info entry for GradientV3 (recorded with its own comfy_api from the
#: same define_schema; python_module is set by its custom-node loader).
COMFYUI_GRADIENT_V3 = {
    "input": {
        "required": {
            "width": ["INT", {"default": 64, "min": 8, "max": 4096}],
            "height": ["INT", {"default": 64, "min": 8, "max": 4096}],
            "direction": ["COMBO", {"multiselect": False, "options": ["horizontal", "vertical"]}],
            "invert": ["BOOLEAN", {"default": False}],
        },
        "optional": {"gamma": ["FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}]},
    },
    "input_order": {"required": ["width", "height", "direction", "invert"], "optional": ["gamma"]},
    "output": ["IMAGE", "MASK"], "output_is_list": [False, False], "output_name": ["image", "mask"],
    "name": "GradientV3", "display_name": "Gradient (V3)", "description": "A grey ramp and the same ramp as a mask.",
    "category": "image/generate", "output_node": False,
}


def test_object_info_looks_like_comfyuis_for_the_same_node(engine):
    info = object_info(engine.registry, engine.settings)
    grad = info["GradientV3"]
    ours, theirs = grad["input"], COMFYUI_GRADIENT_V3["input"]
    for section in ("required", "optional"):
        assert list(ours[section]) == list(theirs[section])
        for name, (kind, options) in theirs[section].items():
            if kind == "COMBO":  # we list choices V1-style, [choices, {}]; the editor reads both forms
                assert ours[section][name][0] == options["options"]
            else:
                assert ours[section][name] == [kind, options]
    for key in ("input_order", "output", "output_is_list", "output_name", "name", "display_name", "description",
                "category", "output_node"):
        assert grad[key] == COMFYUI_GRADIENT_V3[key], key
    assert grad["python_module"] == "custom_nodes.comfy_v3_nodes"
    # recorded the same way: an unnamed output is named by its type, list outputs and output
    # nodes are flagged, force_input/lazy/tooltip are options
    assert info["PosterizeV3"]["output_name"] == ["IMAGE"]
    assert info["SplitWords"]["output_is_list"] == [True]
    assert info["ShowTextV3"]["output_node"] is True
    assert info["ShowTextV3"]["input"]["required"]["text"][1]["forceInput"] is True
    assert info["LazySwitchV3"]["input"]["required"]["on_true"] == ["*", {"lazy": True}]
    assert info["PosterizeV3"]["input"]["required"]["levels"] == [
        "INT", {"tooltip": "levels per channel", "default": 4, "min": 2, "max": 256, "step": 1}]
    # hidden values are not inputs
    assert list(info["WhoAmIV3"]["input"]["required"]) == ["label"]


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


def test_expansion_with_comfyuis_graph_builder(engine, lg_settings):
    """A node built on ``comfy_execution.graph_utils.GraphBuilder`` (latentgraph's stand-in) expands
    into its loop: three posterize passes, as if wired by hand."""
    wf = WorkflowBuilder()
    wf.add("SaveImage", images=wf.add("PosterizeTimes", width=24, height=8, levels=3, times=3)[0], filename_prefix="loop")
    direct = WorkflowBuilder()
    image = direct.add("GradientV3", width=24, height=8, direction="horizontal", invert=False)[0]
    for _ in range(3):
        image = direct.add("PosterizeV3", image=image, levels=3)[0]
    direct.add("SaveImage", images=image, filename_prefix="chain")
    looped, chained = engine.run(wf.to_api()), engine.run(direct.to_api())
    [a], [b] = output_images(assert_success(looped), lg_settings), output_images(assert_success(chained), lg_settings)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert len(set(np.asarray(a).ravel())) == 3


def test_execution_blocker_skips_what_follows_and_a_message_fails_the_reader(engine, lg_settings):
    """ComfyUI's ExecutionBlocker: a closed gate runs nothing after it (SaveImage saves nothing, the
    prompt succeeds, the other branch still saves); with a reason the node reading it fails with it."""

    def gated(open_: bool, reason: str = "") -> dict:
        wf = WorkflowBuilder()
        grad = wf.add("GradientV3", id="1", width=8, height=8, direction="horizontal", invert=False)
        gate = wf.add("GateV3", id="2", image=grad[0], open=open_, reason=reason)
        wf.add("SaveImage", id="3", images=wf.add("PosterizeV3", id="4", image=gate[0], levels=2)[0], filename_prefix="gated")
        wf.add("SaveImage", id="5", images=grad[0], filename_prefix="always")
        return wf.to_api()

    closed = assert_success(engine.run(gated(False)))
    assert set(closed.outputs) == {"5"} and {"3", "4"} <= set(closed.executed)
    assert [f.name for f in lg_settings.output_dir.glob("gated*")] == []
    opened = assert_success(engine.run(gated(True)))
    assert set(opened.outputs) == {"3", "5"} and len(list(lg_settings.output_dir.glob("gated*"))) == 1
    failure = assert_failed(engine.run(gated(False, "review the gradient first")), node_id="4")
    assert failure.message.startswith("Execution Blocked: review the gradient first")


def test_async_nodes_overlap_on_the_event_loop(engine):
    events = sys.modules["latentgraph_plugin_comfy_v3_nodes"].ASYNC_EVENTS
    events.clear()
    wf = WorkflowBuilder()
    for i in range(4):
        wf.add("ShowTextV3", text=wf.add("SlowUpper", text=f"t{i}", seconds=0.3)[0])
    result = engine.run(wf.to_api())
    assert_success(result)
    assert sorted(result.outputs[n]["text"][0] for n in ("2", "4", "6", "8")) == ["T0", "T1", "T2", "T3"]
    # all four were waiting at once: every start comes before the first end
    assert [kind for kind, _ in events] == ["start"] * 4 + ["end"] * 4


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


def test_broken_v3_files_are_reported_and_the_rest_loads(lg_engine, lg_settings):
    folder = plugins_folder(lg_settings.base_dir, "comfy_v3_partly_broken.py", "comfy_v3_bad_entrypoint.py",
                            "comfy_v3_wrong_api.py", "comfy_v3_nodes.py")
    engine = lg_engine(GraphTestPlugin(), plugins_dir=folder)
    broken = engine.host.plugins["comfy_v3_partly_broken"]
    assert sorted(broken.nodes) == ["Blocker", "HalveV1", "Negate"]
    errors = "\n".join(broken.errors)
    assert "'SchemaRaises': define_schema() is unusable: RuntimeError: cannot describe myself" in errors
    assert "'SameIdTwice': define_schema() is unusable: ValueError: input ids must be unique: ['a'] repeat" in errors
    assert "'NoExecute': no execute() class method" in errors
    assert "'NotASchema': define_schema() is unusable: TypeError: define_schema() returned dict, not io.Schema" in errors
    assert len(broken.errors) == 4
    entry = engine.host.plugins["comfy_v3_bad_entrypoint"]
    assert entry.nodes == []
    assert entry.errors == ["register_nodes: comfy_entrypoint raised ConnectionError: could not reach the model server"]
    wrong = engine.host.plugins["comfy_v3_wrong_api"]
    assert wrong.nodes == [] and "No module named 'comfy_api.input_impl'" in wrong.errors[0]
    assert "comfy_api provides the V3 node API" in wrong.errors[0]
    assert engine.host.plugins["comfy_v3_nodes"].errors == []  # the good file is untouched

    info = object_info(engine.registry, engine.settings)
    assert info["Negate"]["display_name"] == "Negate (V3)" and "NegateV3" not in info
    wf = WorkflowBuilder()
    neg = wf.add("Negate", x=3.0)
    wf.add("Show", value=wf.add("HalveV1", x=neg[0])[0])
    assert engine.run(wf.to_api()).outputs["3"] == {"value": [-1.5]}

    blocked = WorkflowBuilder()
    blocked.add("Show", value=blocked.add("Blocker", x=1.0)[0])
    failure = assert_failed(engine.run(blocked.to_api()), node_id="2")  # the node that reads the blocked value
    assert "Execution Blocked: x must be reviewed first" in failure.message
    assert failure.exception_type.endswith("ExecutionBlocked")


def test_entrypoint_can_be_read_while_an_event_loop_runs(lg_settings):
    """The server loads plugins from inside its loop; the async entrypoint must still run."""
    from latentgraph.plugins.comfy_v3 import extension_nodes, install_comfy_api_alias
    from latentgraph.plugins.host import _import_path

    install_comfy_api_alias()
    module = _import_path("v3_in_loop", plugins_folder(lg_settings.base_dir, "comfy_v3_nodes.py") / "comfy_v3_nodes.py")

    async def inside_a_loop():
        return extension_nodes(module)

    try:
        names = [cls.__name__ for cls in asyncio.run(inside_a_loop())]
    finally:
        sys.modules.pop("latentgraph_plugin_v3_in_loop", None)
    assert names[:3] == ["GradientV3", "PosterizeV3", "MultiplyV3"] and len(names) == 19


def test_comfy_api_names_one_set_of_classes_and_only_after_loading(engine):
    import comfy_api
    import comfy_api.v0_0_2
    from comfy_api.latest import io, ui

    from latentgraph.plugins.comfy_api.latest import io as our_io

    assert comfy_api.latest.io is io is our_io and comfy_api.v0_0_2.io is io
    assert ui.PreviewText("x").as_dict() == {"text": ("x",)}
    # a fresh interpreter that imports latentgraph but loads no plugins folder has no comfy_api
    import subprocess

    code = "import importlib.util, latentgraph.plugins, latentgraph.plugins.comfy_v3; print(importlib.util.find_spec('comfy_api'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"


# -- the io declarations, unit by unit --------------------------------------------------------------
class Enumerated(__import__("enum").Enum):
    small = "s"
    large = "l"


def test_declarations_translate_like_their_v1_forms():
    from latentgraph.plugins.comfy_api.latest import io
    from latentgraph.plugins.comfy_v3 import adapt_v3_class

    class Everything(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(
                node_id="Everything",
                inputs=[
                    io.Int.Input("seed", default=0, min=0, max=2**32, control_after_generate=True,
                                 display_name="Seed", display_mode=io.NumberDisplay.slider),
                    io.Float.Input("cfg", default=7.5, step=0.5, round=0.01),
                    io.String.Input("prompt", multiline=True, placeholder="say it", default=""),
                    io.Boolean.Input("flag", default=True, label_on="yes", label_off="no"),
                    io.Combo.Input("size", options=Enumerated, default=Enumerated.large),
                    io.Combo.Input("count", options=[1, 2, 4]),
                    io.Model.Input("model", optional=True, tooltip="the model"),
                    io.Sigmas.Input("sigmas", lazy=True),
                    io.Custom("MY_THING").Input("thing"),
                    io.AnyType.Input("anything"),
                    io.MatchType.Input("picture", template=io.MatchType.Template("t", [io.Image, io.Mask])),
                ],
                outputs=[io.Latent.Output(display_name="samples"), io.Int.Output("count", is_output_list=True)],
                hidden=[io.Hidden.unique_id, io.Hidden.dynprompt],
            )

        @classmethod
        def execute(cls, **kwargs):
            return io.NodeOutput(None, [])

    spec = adapt_v3_class(Everything).spec
    seed, cfg, prompt, flag, size, count, sigmas, thing, anything, picture, model = spec.inputs  # required first
    assert (seed.type, seed.default, seed.min, seed.max, seed.control_after_generate) == ("INT", 0, 0, 2**32, True)
    assert seed.editor_options == {"display_name": "Seed", "display": "slider"}
    assert (cfg.step, cfg.editor_options) == (0.5, {"round": 0.01})
    assert (prompt.multiline, prompt.default, prompt.editor_options) == (True, "", {"placeholder": "say it"})
    assert (flag.default, flag.editor_options) == (True, {"label_on": "yes", "label_off": "no"})
    assert size.resolve_choices(None, None) == ["s", "l"] and size.default == "l"
    assert count.resolve_choices(None, None) == ["1", "2", "4"] and count.default == "1"
    assert (model.type, model.required, model.tooltip) == ("MODEL", False, "the model")
    assert sigmas.lazy and sigmas.type == "SIGMAS" and thing.type == "MY_THING"
    assert (anything.type, picture.type) == ("*", "IMAGE,MASK")
    assert [(o.type, o.name, o.is_list) for o in spec.outputs] == [("LATENT", "samples", False), ("INT", "count", True)]
    assert (spec.category, spec.output_node, spec.deterministic, spec.input_is_list) == ("sd", False, True, False)
    node_type = adapt_v3_class(Everything, "Renamed")
    assert node_type.spec.name == "Renamed" and node_type.hidden_inputs == {"unique_id": "UNIQUE_ID", "dynprompt": "DYNPROMPT"}


@pytest.mark.parametrize(
    ("returned", "outputs", "ui", "expand"),
    [
        ("node_output", (1, 2), {"text": ("t",)}, None),
        ("tuple", (1, 2), None, None),
        ("dict", (1, 2), {"a": [1]}, None),
        ("none", (), None, None),
    ],
)
def test_what_execute_may_return(returned, outputs, ui, expand):
    from latentgraph.plugins.comfy_adapter import to_node_result
    from latentgraph.plugins.comfy_api.latest import io

    value = {
        "node_output": io.NodeOutput(1, 2, ui={"text": ("t",)}),
        "tuple": (1, 2),
        "dict": {"result": (1, 2), "ui": {"a": [1]}},
        "none": None,
    }[returned]
    result = to_node_result(value, len(outputs))
    assert (result.outputs, result.ui, result.expand) == (outputs, ui, expand)
    with pytest.raises(TypeError, match="returned 1 value"):
        to_node_result(io.NodeOutput(1), 2)


def test_not_a_v3_class_is_refused():
    from latentgraph.plugins.comfy_v3 import adapt_v3_class

    with pytest.raises(RegistrationError, match="is not an io.ComfyNode class"):
        adapt_v3_class(object, "X")


def test_mask_preview_and_multi_combo_in_a_plugin_object(lg_engine, lg_settings):
    """V3 classes adapted by hand and registered by a plugin object (no file needed)."""
    from latentgraph import hookimpl
    from latentgraph.plugins.comfy_api.latest import io, ui
    from latentgraph.plugins.comfy_v3 import adapt_v3_class

    class MaskPreview(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="HalfMaskPreview", is_output_node=True, inputs=[io.Int.Input("size", default=4)])

        @classmethod
        def execute(cls, size):
            mask = torch.zeros(1, size, size)
            mask[:, :, size // 2:] = 1.0
            return io.NodeOutput(ui=ui.PreviewMask(mask))

    class Tags(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="Tags", inputs=[io.MultiCombo.Input("tags", options=["a", "b", "c"])],
                             outputs=[io.String.Output()])

        @classmethod
        def execute(cls, tags):
            return io.NodeOutput(",".join(tags) if isinstance(tags, list) else tags)

    class Pack:
        @hookimpl
        def register_nodes(self):
            return [adapt_v3_class(MaskPreview), adapt_v3_class(Tags)]

    engine = lg_engine(GraphTestPlugin(), Pack())
    wf = WorkflowBuilder()
    wf.add("HalfMaskPreview", size=6)
    result = engine.run(wf.to_api())
    assert result.outputs["1"]["animated"] == [False]
    [image] = output_images(result, lg_settings)
    grey = np.asarray(image.convert("L"))
    assert grey.shape == (6, 6) and grey[:, :3].max() == 0 and grey[:, 3:].min() == 255

    # one choice passes; a list (MultiCombo's real value) is refused by our one-value COMBO (docs)
    wf = WorkflowBuilder()
    wf.add("Show", value=wf.add("Tags", tags="b")[0])
    assert engine.run(wf.to_api()).outputs["2"] == {"value": ["b"]}
    wf.set("1", tags=["a", "c"])
    with pytest.raises(WorkflowInvalid, match="tags"):
        engine.run(wf.to_api())
