"""ComfyUI custom-node files dropped into the plugins folder load and run in our engine."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from graph_nodes import GraphTestPlugin
from latentgraph.errors import WorkflowInvalid
from latentgraph.object_info import object_info
from latentgraph.plugins.comfy_adapter import adapt_comfy_class, to_node_result
from latentgraph.registry import RegistrationError
from latentgraph.testing import WorkflowBuilder, assert_failed, assert_success, output_images

FIXTURES = Path(__file__).parent / "plugin_fixtures"


def levels(image) -> list[int]:
    return sorted(set(np.asarray(image.convert("L")).ravel().tolist()))


def plugins_folder(root: Path, *names: str) -> Path:
    folder = root / "plugins"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(FIXTURES / name, folder / name)
    return folder


@pytest.fixture
def engine(lg_engine, lg_settings):
    folder = plugins_folder(lg_settings.base_dir, "comfy_style_nodes.py")
    return lg_engine(GraphTestPlugin(), plugins_dir=folder)


def test_pack_is_described_like_comfyui_describes_it(engine):
    info = object_info(engine.registry, engine.settings)
    grad = info["MakeGradient"]
    assert grad["display_name"] == "Gradient"
    assert grad["category"] == "image/generate"
    assert grad["input"]["required"]["direction"][0] == ["horizontal", "vertical"]
    assert grad["input"]["required"]["width"] == ["INT", {"default": 64, "min": 8, "max": 4096}]
    assert "gamma" in grad["input"]["optional"]
    assert grad["output"] == ["IMAGE", "MASK"] and grad["output_name"] == ["image", "mask"]
    assert grad["plugin"] == "comfy_style_nodes"
    assert info["ShowStats"]["output_node"] is True
    assert info["ImagePosterize"]["input"]["required"]["levels"][1]["tooltip"] == "levels per channel"
    # a custom type used by the pack became a connection type
    assert "LATENT_STATS" in engine.registry.types
    plugin = engine.host.plugins["comfy_style_nodes"]
    assert plugin.errors == [] and "WhoAmI" in plugin.nodes and plugin.source == "plugins-dir"


def test_comfy_nodes_feed_builtin_save_image(engine, lg_settings):
    wf = WorkflowBuilder()
    grad = wf.add("MakeGradient", width=32, height=16, direction="horizontal", invert=False)
    poster = wf.add("ImagePosterize", image=grad[0], levels=3)
    wf.add("SaveImage", images=poster[0], filename_prefix="poster")
    result = engine.run(wf.to_api())
    assert_success(result)
    [image] = output_images(result, lg_settings)
    assert image.size == (32, 16)
    assert levels(image) == [0, 127, 255]  # 255·0.5 truncated, as ComfyUI saves


def test_builtin_latent_feeds_comfy_node_with_custom_type_and_ui(engine):
    wf = WorkflowBuilder()
    latent = wf.add("EmptyLatentImage", width=64, height=128, batch_size=2)
    stats = wf.add("LatentStatsV1", samples=latent[0])
    wf.add("ShowStats", stats=stats[0])
    result = engine.run(wf.to_api())
    assert_success(result)
    assert result.outputs["3"] == {"text": ["shape=[2, 4, 16, 8] mean=0.000"]}


def test_custom_type_is_checked_like_any_type(engine):
    wf = WorkflowBuilder()
    latent = wf.add("EmptyLatentImage", width=64, height=64, batch_size=1)
    wf.add("ShowStats", stats=latent[0])
    with pytest.raises(WorkflowInvalid) as err:
        engine.run(wf.to_api())
    assert "expects LATENT_STATS" in str(err.value)


def test_is_changed_nan_means_never_cached(engine):
    wf = WorkflowBuilder()
    rnd = wf.add("RandomInt", high=10**9)
    wf.add("Show", value=rnd[0])
    first = engine.run(wf.to_api())
    second = engine.run(wf.to_api())
    assert first.executed == ["1", "2"] and second.executed == ["1", "2"]


def test_is_changed_value_keeps_cache_until_it_changes(engine):
    wf = WorkflowBuilder()
    text = wf.add("StampedText", text="hi", stamp="a")
    wf.add("ShowText", text=text[0])
    first = engine.run(wf.to_api())
    again = engine.run(wf.to_api())
    assert again.executed == [] and again.outputs == first.outputs
    wf.set(text, stamp="b")
    changed = engine.run(wf.to_api())
    assert changed.executed == ["1", "2"] and changed.outputs != first.outputs


def test_validate_inputs_reports_custom_problem_and_owns_range_check(engine):
    wf = WorkflowBuilder()
    rep = wf.add("RepeatText", text="", times=2)
    wf.add("ShowText", text=rep[0])
    with pytest.raises(WorkflowInvalid) as err:
        engine.run(wf.to_api())
    [(node_id, detail)] = err.value.report.all_errors()
    assert node_id == "1" and detail.type == "custom_validation_failed"
    assert detail.message == "text must not be empty"
    # times=50 is above INPUT_TYPES' max of 5, but VALIDATE_INPUTS names `times`: it decides
    wf.set(rep, text="ab", times=50)
    result = engine.run(wf.to_api())
    assert result.outputs["2"] == {"text": ["ab" * 50]}
    wf.set(rep, times=500)
    with pytest.raises(WorkflowInvalid, match="times=500 is too many"):
        engine.run(wf.to_api())


def test_hidden_inputs_come_from_the_prompt(engine):
    wf = WorkflowBuilder()
    wf.add("WhoAmI", id="42", label="x")
    wf.add("Const", value=1)
    editor = {"last_node_id": 42, "nodes": []}
    result = engine.run(wf.to_api(), extra={"workflow": editor})
    label, unique_id, classes, workflow = result.outputs["42"]["text"]
    assert (label, unique_id, classes) == ("x", "42", "Const,WhoAmI")
    assert workflow == repr(editor)


def test_input_is_list_gets_lists(engine):
    wf = WorkflowBuilder()
    a = wf.add("Text", text="left", mode="plain", shout=False)
    b = wf.add("Text", text="right", mode="plain", shout=False)
    joined = wf.add("JoinTexts", first=a[0], second=b[0], separator=" & ")
    wf.add("ShowText", text=joined[0])
    result = engine.run(wf.to_api())
    assert_success(result)
    assert result.outputs["4"] == {"text": ["left & right"]}


def test_partly_broken_pack_loads_what_it_can(lg_engine, lg_settings):
    folder = plugins_folder(lg_settings.base_dir, "comfy_partly_broken.py", "comfy_needs_comfy.py", "comfy_style_nodes.py")
    engine = lg_engine(plugins_dir=folder)
    broken = engine.host.plugins["comfy_partly_broken"]
    assert sorted(broken.nodes) == ["Explode", "Halve", "ListMaker"]  # list outputs are supported (issue 16)
    errors = "\n".join(broken.errors)
    assert "'BadInputs': INPUT_TYPES() raised RuntimeError: cannot list my inputs" in errors
    assert "'NoFunction': FUNCTION 'missing' is not a method" in errors
    # it may not replace the built-in SaveImage
    assert "node type 'SaveImage' is already registered by plugin 'latentgraph'" in errors
    assert engine.registry.owners["SaveImage"] == "latentgraph"
    needs = engine.host.plugins["comfy_needs_comfy"]
    assert needs.nodes == [] and "No module named 'folder_paths'" in needs.errors[0]
    assert "ComfyUI's own modules are not available" in needs.errors[0]
    # the other pack and the built-ins are untouched
    assert engine.host.plugins["comfy_style_nodes"].errors == []

    wf = WorkflowBuilder()
    grad = wf.add("MakeGradient", width=8, height=8, direction="vertical", invert=True)
    half = wf.add("Halve", image=grad[0])
    wf.add("PreviewImage", images=half[0])
    assert_success(engine.run(wf.to_api()))


def test_runtime_error_fails_only_its_prompt_and_names_the_pack(lg_engine, lg_settings):
    engine = lg_engine(plugins_dir=plugins_folder(lg_settings.base_dir, "comfy_partly_broken.py", "comfy_style_nodes.py"))
    wf = WorkflowBuilder()
    grad = wf.add("MakeGradient", width=8, height=8, direction="vertical", invert=False)
    boom = wf.add("Explode", image=grad[0])
    wf.add("PreviewImage", images=boom[0])
    failure = assert_failed(engine.run(wf.to_api()), node_id="2", plugin="comfy_partly_broken")
    assert "this custom node always fails" in failure.message and "comfy_partly_broken" in failure.message
    wf.set("2", image=grad[0])
    wf.nodes["2"]["class_type"] = "Halve"
    assert_success(engine.run(wf.to_api()))


def test_comfy_pack_as_a_package_folder_with_relative_imports(lg_engine, lg_settings):
    pack = lg_settings.base_dir / "plugins" / "my_pack"
    pack.mkdir(parents=True)
    shutil.copy(FIXTURES / "comfy_style_nodes.py", pack / "nodes.py")
    (pack / "__init__.py").write_text(
        "from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS\n"
        "__all__ = ['NODE_CLASS_MAPPINGS', 'NODE_DISPLAY_NAME_MAPPINGS']\n"
    )
    engine = lg_engine(plugins_dir=pack.parent)
    info = engine.host.plugins["my_pack"]
    assert info.errors == [] and "MakeGradient" in info.nodes and info.source == "plugins-dir"
    wf = WorkflowBuilder()
    wf.add("PreviewImage", images=wf.add("MakeGradient", width=8, height=8, direction="vertical", invert=False)[0])
    assert_success(engine.run(wf.to_api()))


# -- the adapter's translation rules, unit by unit ------------------------------------------------
class Plain:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01, "round": 0.001}),
                             "n": ("INT",), "flag": ("BOOLEAN", {"default": True, "label_on": "yes"}),
                             "mode": ("COMBO", {"options": ["a", "b"], "default": "b"}),
                             "seed": ("INT", {"default": 0, "control_after_generate": True}),
                             "size": ([64, 128],), "anything": ("*",)}}

    RETURN_TYPES = (["a", "b"], "SIGMAS")
    FUNCTION = "go"

    def go(self, **kw):
        return ("a", None)


def test_input_and_output_translation():
    node = adapt_comfy_class("Plain", Plain)
    spec = node.spec
    x, n, flag, mode, seed, size, anything = spec.inputs
    assert (x.type, x.default, x.min, x.max, x.step) == ("FLOAT", 0.5, 0.0, 1.0, 0.01)
    assert (n.type, n.default, n.required) == ("INT", None, True)
    assert (flag.type, flag.default) == ("BOOLEAN", True)
    assert mode.type == "COMBO" and mode.resolve_choices(None, None) == ["a", "b"] and mode.default == "b"
    assert seed.control_after_generate
    assert size.resolve_choices(None, None) == ["64", "128"]
    assert anything.type == "*"
    assert [o.type for o in spec.outputs] == ["COMBO", "SIGMAS"]
    assert spec.category == "custom" and spec.deterministic and not spec.output_node


def test_combo_choices_are_read_again_each_time():
    class Files:
        seen = ["a.png"]

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"file": (list(cls.seen),)}}

        RETURN_TYPES = ()
        FUNCTION = "f"

        def f(self, file):
            return ()

    node = adapt_comfy_class("Files", Files)
    assert node.spec.inputs[0].resolve_choices(None, None) == ["a.png"]
    Files.seen.append("b.png")
    assert node.spec.inputs[0].resolve_choices(None, None) == ["a.png", "b.png"]


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({"INPUT_TYPES": classmethod(lambda c: {"required": {"x": (42,)}}), "RETURN_TYPES": (), "FUNCTION": "f"}, "type 42"),
        ({"INPUT_TYPES": classmethod(lambda c: []), "RETURN_TYPES": (), "FUNCTION": "f"}, "must return a dict"),
        ({"RETURN_TYPES": (), "FUNCTION": "f"}, "no INPUT_TYPES"),
        ({"INPUT_TYPES": classmethod(lambda c: {}), "RETURN_TYPES": (3,), "FUNCTION": "f"}, "RETURN_TYPES entry 3"),
    ],
)
def test_bad_declarations_are_refused_with_the_reason(declaration, message):
    cls = type("Bad", (), {"f": lambda self: (), **declaration})
    with pytest.raises(RegistrationError, match=message):
        adapt_comfy_class("Bad", cls)


def test_return_values_ui_result_and_expand():
    assert to_node_result([1, 2], 2).outputs == (1, 2)
    r = to_node_result({"ui": {"text": ["t"]}, "result": ("v",)}, 1)
    assert r.outputs == ("v",) and r.ui == {"text": ["t"]}
    assert to_node_result({"ui": {"a": [1]}}, 0).outputs == ()
    expanded = to_node_result({"expand": {"a": {"class_type": "X", "inputs": {}}}, "result": (["a", 0],)}, 1)
    assert expanded.expand == {"a": {"class_type": "X", "inputs": {}}} and expanded.outputs == (["a", 0],)
    with pytest.raises(TypeError, match="returned 1 value"):
        to_node_result((1,), 2)


def test_comfy_pack_runs_through_the_cli_from_the_default_plugins_folder(tmp_path):
    plugins_folder(tmp_path, "comfy_style_nodes.py")  # <data dir>/plugins, found without --plugins-dir
    wf = WorkflowBuilder()
    grad = wf.add("MakeGradient", width=16, height=8, direction="vertical", invert=False)
    wf.add("SaveImage", images=wf.add("ImagePosterize", image=grad[0], levels=2)[0], filename_prefix="cli")
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(wf.to_api()))
    proc = subprocess.run(
        [sys.executable, "-m", "latentgraph.cli", "run", str(path), "--data-dir", str(tmp_path), "--json", "--quiet"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "LATENTGRAPH_PLUGINS": "comfy_style_nodes"},
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "success" and summary["executed"] == ["1", "2", "3"]
    [file] = summary["files"]
    with Image.open(file) as img:
        assert img.size == (16, 8)
        assert levels(img) == [0, 255]


def test_comfy_pack_runs_through_the_server(engine):
    import asyncio

    from plugin_server import fetch_image, run_prompt, serving_engine

    wf = WorkflowBuilder()
    grad = wf.add("MakeGradient", width=16, height=8, direction="horizontal", invert=True)
    wf.add("SaveImage", images=wf.add("ImagePosterize", image=grad[0], levels=2)[0], filename_prefix="srv")
    wf.add("WhoAmI", id="who", label="server")

    async def go():
        async with serving_engine(engine) as client:
            status, info = await client.get("/object_info/MakeGradient")
            assert status == 200 and info["MakeGradient"]["display_name"] == "Gradient"
            msgs = await run_prompt(client, wf.to_api())
            assert any(kind == "execution_success" for kind, _ in msgs), msgs
            outputs = {d["node"]: d["output"] for kind, d in msgs if kind == "executed"}
            image = await fetch_image(client, outputs["3"]["images"][0])
            assert image.size == (16, 8) and levels(image) == [0, 255]
            assert outputs["who"]["text"][:2] == ["server", "who"]

    asyncio.run(asyncio.wait_for(go(), 120))


def test_editor_options_reach_object_info_and_force_input_is_a_socket(engine):
    from latentgraph.editor_widgets import editor_widgets

    info = object_info(engine.registry, engine.settings)
    assert info["ShowText"]["input"]["required"]["text"] == ["STRING", {"forceInput": True}]
    # the editor draws no widget for it, so editor-format workflows are read the same way
    assert [i.name for i in editor_widgets(engine.registry.node_types["ShowText"].spec)] == []
    assert [i.name for i in editor_widgets(engine.registry.node_types["StampedText"].spec)] == ["text", "stamp"]
