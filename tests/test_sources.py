"""Workflows travel as API JSON, editor JSON, or inside PNGs; `latentgraph run` takes any of them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from latentgraph.cli import main
from latentgraph.pngmeta import read_workflow_from_png
from latentgraph.plugins import load_plugins
from latentgraph.settings import Settings
from latentgraph.sources import (
    WorkflowSourceError,
    apply_model_map,
    from_data,
    load_source,
    model_hint,
    model_names_in,
)

API = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}, "_meta": {"title": "Load Image"}},
    "2": {
        "class_type": "ImageScale",
        "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "width": 24, "height": 16, "crop": "center"},
        "_meta": {"title": "Upscale Image"},
    },
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "lg"}, "_meta": {"title": "Save Image"}},
}

EDITOR = {
    "last_node_id": 3,
    "last_link_id": 2,
    "nodes": [
        {"id": 1, "type": "LoadImage", "mode": 0, "title": "Load Image", "inputs": [],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}, {"name": "MASK", "type": "MASK", "links": None}],
         "widgets_values": ["in.png", "image"]},
        {"id": 2, "type": "ImageScale", "mode": 0, "title": "Upscale Image",
         "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}],
         "widgets_values": ["bilinear", 24, 16, "center"]},
        {"id": 3, "type": "SaveImage", "mode": 0, "title": "Save Image",
         "inputs": [{"name": "images", "type": "IMAGE", "link": 2}], "outputs": [], "widgets_values": ["lg"]},
    ],
    "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
    "groups": [],
    "config": {},
    "extra": {},
    "version": 0.4,
}


@pytest.fixture(scope="module")
def registry():
    return load_plugins(entry_points=False).registry


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    settings = Settings.from_env(tmp_path, environ={})
    settings.input_dir.mkdir(parents=True, exist_ok=True)
    pixels = bytes((x * 7 + y * 13) % 256 for y in range(20) for x in range(30) for _ in range(3))
    Image.frombytes("RGB", (30, 20), pixels).save(settings.input_dir / "in.png")
    return tmp_path


def run_cli(data_dir: Path, *args: str) -> int:
    return main([*args, "--data-dir", str(data_dir), "--no-plugins"])


def outputs(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "output").glob("*.png"))


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


# -- PNG round trips -----------------------------------------------------------------------------


def test_png_saved_by_saveimage_reruns_to_identical_bytes(data_dir, capsys):
    assert run_cli(data_dir, "run", str(write_json(data_dir / "api.json", API)), "--quiet") == 0
    (first,) = outputs(data_dir)
    assert run_cli(data_dir, "run", str(first), "--quiet") == 0  # a fresh engine: nothing cached
    second = [p for p in outputs(data_dir) if p != first]
    assert len(second) == 1
    assert second[0].read_bytes() == first.read_bytes()
    assert read_workflow_from_png(first)["prompt"] == API


def test_editor_workflow_runs_and_travels_in_its_png(data_dir):
    assert run_cli(data_dir, "run", str(write_json(data_dir / "editor.json", EDITOR)), "--quiet") == 0
    (first,) = outputs(data_dir)
    chunks = read_workflow_from_png(first)
    assert chunks["workflow"] == EDITOR  # re-embedded for the editor to load
    assert chunks["prompt"] == API  # the converted graph that ran
    assert run_cli(data_dir, "run", str(first), "--quiet") == 0
    second = [p for p in outputs(data_dir) if p != first]
    assert second[0].read_bytes() == first.read_bytes()


def test_editor_and_api_forms_give_the_same_image(data_dir):
    assert run_cli(data_dir, "run", str(write_json(data_dir / "api.json", API)), "--quiet") == 0
    assert run_cli(data_dir, "run", str(write_json(data_dir / "editor.json", EDITOR)), "--quiet") == 0
    a, b = outputs(data_dir)
    assert Image.open(a).tobytes() == Image.open(b).tobytes()


def comfy_png(**chunks: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def test_comfyui_png_prefers_the_prompt_chunk(registry):
    data = comfy_png(prompt=json.dumps(API), workflow=json.dumps(EDITOR), other=json.dumps({"k": 1}))
    loaded = load_source(data, registry)
    assert loaded.ok and loaded.kind == "png"
    assert loaded.prompt == API
    assert loaded.extra == {"workflow": EDITOR, "extra_pnginfo": {"other": {"k": 1}}}


def test_png_with_only_the_editor_workflow_is_converted(registry, tmp_path):
    path = tmp_path / "from-editor.png"
    path.write_bytes(comfy_png(workflow=json.dumps(EDITOR)))
    loaded = load_source(path, registry)
    assert loaded.ok and loaded.kind == "png-editor"
    assert loaded.prompt == API and loaded.extra["workflow"] == EDITOR


def test_png_without_workflow_and_other_images(registry, tmp_path):
    loaded = load_source(comfy_png(parameters="a1111 style text"), registry)
    assert not loaded.ok and "holds no workflow" in loaded.report.error.message
    assert "parameters" in loaded.report.error.details
    broken = load_source(comfy_png(prompt="{not json"), registry)
    assert not broken.ok and "not valid JSON" in broken.report.error.details
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4)).save(jpeg, format="JPEG")
    with pytest.raises(WorkflowSourceError, match="not a PNG"):
        load_source(jpeg.getvalue(), registry)
    with pytest.raises(WorkflowSourceError, match="not found"):
        load_source(tmp_path / "nope.json", registry)


def test_prompt_request_body_is_accepted(registry):
    body = {"prompt": API, "client_id": "x", "extra_data": {"extra_pnginfo": {"workflow": EDITOR}}}
    loaded = from_data(body, registry)
    assert loaded.prompt == API and loaded.extra == {"workflow": EDITOR}


def test_editor_conversion_errors_surface(registry):
    bad = json.loads(json.dumps(EDITOR))
    bad["nodes"][1]["type"] = "NotInstalled"
    loaded = from_data(bad, registry)
    assert not loaded.ok
    assert "Unknown node type 'NotInstalled' (node 2 'Upscale Image')" in loaded.report.format()


# -- the command line ------------------------------------------------------------------------------


def test_validate_and_convert_commands(data_dir, capsys):
    editor = write_json(data_dir / "editor.json", EDITOR)
    assert run_cli(data_dir, "validate", str(editor)) == 0
    out = data_dir / "api-out.json"
    assert run_cli(data_dir, "convert", str(editor), "-o", str(out)) == 0
    assert json.loads(out.read_text()) == API
    capsys.readouterr()
    assert run_cli(data_dir, "convert", str(editor)) == 0
    assert json.loads(capsys.readouterr().out) == API
    api_file = write_json(data_dir / "api.json", API)
    back = data_dir / "editor-out.json"
    assert run_cli(data_dir, "convert", str(api_file), "--to", "editor", "-o", str(back)) == 0
    assert json.loads(back.read_text())["nodes"][0]["widgets_values"] == ["in.png"]
    assert run_cli(data_dir, "convert", str(back), "-o", str(out)) == 0
    assert json.loads(out.read_text()) == API
    bad = json.loads(json.dumps(EDITOR))
    bad["nodes"][2]["widgets_values"] = ["lg", "extra", "values"]
    assert run_cli(data_dir, "convert", str(write_json(data_dir / "bad.json", bad))) == 1
    err = capsys.readouterr().err
    assert "widget_count_mismatch" in err and "node 3 'Save Image'" in err
    assert run_cli(data_dir, "validate", str(data_dir / "bad.json")) == 1


# -- model names -----------------------------------------------------------------------------------

CKPT_WORKFLOW = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SD15/v1-5-pruned-emaonly.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}},
}


@pytest.fixture
def model_dir(data_dir: Path) -> Path:
    folder = data_dir / "models" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "mine.safetensors").write_bytes(b"")
    return data_dir


def test_missing_model_lists_what_is_available(registry, model_dir, capsys):
    if registry.get("CheckpointLoaderSimple") is None:
        pytest.skip("loader nodes not registered")
    path = write_json(model_dir / "ckpt.json", CKPT_WORKFLOW)
    assert run_cli(model_dir, "validate", str(path)) == 1
    err = capsys.readouterr().err
    listed = err.split("'SD15/v1-5-pruned-emaonly.safetensors' is not available here; available: ")[1].split("  <")[0]
    assert "mine.safetensors" in listed.split(", ")  # the names, sorted as ComfyUI lists them
    assert "--map-model" in err
    assert run_cli(model_dir, "validate", str(path), "--map-model", "v1-5-pruned-emaonly=mine.safetensors") == 0
    assert run_cli(model_dir, "validate", str(path), "--map-model", "other.ckpt=mine.safetensors") == 2
    assert "model names in it: SD15/v1-5-pruned-emaonly.safetensors" in capsys.readouterr().err
    assert run_cli(model_dir, "validate", str(path), "--map-model", "no-equals-sign") == 2


def test_map_model_touches_only_loader_inputs(registry):
    if registry.get("CheckpointLoaderSimple") is None:
        pytest.skip("loader nodes not registered")
    prompt = json.loads(json.dumps(CKPT_WORKFLOW))
    prompt["9"]["inputs"]["filename_prefix"] = "v1-5-pruned-emaonly.safetensors"
    assert model_names_in(prompt, registry) == {"SD15/v1-5-pruned-emaonly.safetensors": [("4", "ckpt_name")]}
    apply_model_map(prompt, ["SD15/v1-5-pruned-emaonly.safetensors=mine.safetensors"], registry)
    assert prompt["4"]["inputs"]["ckpt_name"] == "mine.safetensors"
    assert prompt["9"]["inputs"]["filename_prefix"] == "v1-5-pruned-emaonly.safetensors"


def test_model_hint_only_for_model_inputs(registry, model_dir):
    if registry.get("CheckpointLoaderSimple") is None:
        pytest.skip("loader nodes not registered")
    from latentgraph.engine import Engine

    engine = Engine(registry, Settings.from_env(model_dir, environ={}))
    _graph, report = engine.check(CKPT_WORKFLOW)
    assert "--map-model 'SD15/v1-5-pruned-emaonly.safetensors=" in model_hint(report, CKPT_WORKFLOW, registry)
    fine = json.loads(json.dumps(CKPT_WORKFLOW))
    fine["4"]["inputs"]["ckpt_name"] = "mine.safetensors"
    fine["5"]["inputs"]["width"] = "wide"
    _graph, report = engine.check(fine)
    assert report and model_hint(report, fine, registry) is None


# -- the server ------------------------------------------------------------------------------------


def test_server_converts_editor_workflows(lg_settings):
    from server_kit import run, serving

    bad = json.loads(json.dumps(EDITOR))
    bad["nodes"][1]["widgets_values"] = ["bilinear"]
    lg_settings.input_dir.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "blue").save(lg_settings.input_dir / "in.png")

    async def go():
        async with serving(lg_settings) as client:
            status, body = await client.post("/workflow/convert", EDITOR)
            assert status == 200 and body == {"prompt": API}
            status, body = await client.post("/api/workflow/convert", {"workflow": EDITOR})
            assert status == 200 and body["prompt"] == API
            status, body = await client.post("/workflow/convert", bad)
            assert status == 400
            assert body["error"]["type"] == "workflow_conversion_failed"
            assert body["node_errors"]["2"]["errors"][0]["type"] == "widget_count_mismatch"
            assert body["node_errors"]["2"]["title"] == "Upscale Image"
            status, body = await client.post("/workflow/convert", {"hello": 1})
            assert status == 400 and body["error"]["type"] == "invalid_editor_workflow"
            status, body = await client.post("/workflow/convert", EDITOR)
            status, body = await client.post("/prompt", {"prompt": body["prompt"]})  # /prompt takes the API form
            assert status == 200 and body["node_errors"] == {} and body["prompt_id"]

    run(go())
