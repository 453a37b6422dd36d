"""Acceptance: editor-format files run headless and give the same image as their API twins.

Every example workflow ``workflows/<name>.json`` (API format) has an editor-format twin
``workflows/editor/<name>.json``; the twin converts to the same API graph and renders the same
pixels. A ComfyUI-saved default workflow runs with our tiny checkpoint via ``--map-model``, and the
PNG it writes re-runs to identical bytes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from PIL import Image

from optional_packages import missing_package

from latentgraph.cli import main
from latentgraph.editor_format import convert_editor_workflow
from latentgraph.engine import Engine
from latentgraph.pngmeta import read_workflow_from_png
from latentgraph.settings import Settings
from test_editor_format import COMFY_DEFAULT

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "workflows"
EXAMPLES = sorted(WORKFLOWS.glob("*.json"))


def fresh_engine(base: Path) -> Engine:
    return Engine.create(Settings.from_env(base, environ={}, device="cpu"), entry_points=False)


def pixels(engine: Engine, result) -> list[bytes]:
    out = []
    for node_id in sorted(result.outputs):
        for item in result.outputs[node_id].get("images", []):
            folder = {"output": engine.settings.output_dir, "temp": engine.settings.temp_dir}[item["type"]]
            with Image.open(folder / item["subfolder"] / item["filename"]) as img:
                out.append(img.tobytes())
    return out


def fewer_steps(prompt: dict, steps: int = 3) -> dict:
    """The same change on both forms keeps the comparison fair and the test quick."""
    out = copy.deepcopy(prompt)
    for node in out.values():
        if isinstance(node["inputs"].get("steps"), int):
            node["inputs"]["steps"] = min(node["inputs"]["steps"], steps)
    return out


def strip_meta(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


@pytest.mark.skipif(not EXAMPLES, reason="no example workflows in workflows/ yet")
@pytest.mark.parametrize("api_path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_workflow_has_an_editor_twin_giving_the_same_image(api_path, tmp_path):
    twin = WORKFLOWS / "editor" / api_path.name
    assert twin.is_file(), (
        f"{api_path.name} has no editor twin; write one with "
        f"`latentgraph convert workflows/{api_path.name} --to editor -o workflows/editor/{api_path.name}`"
    )
    api = json.loads(api_path.read_text())
    if reason := missing_package(api):
        pytest.skip(reason)
    editor = json.loads(twin.read_text())
    engine = fresh_engine(tmp_path / "a")
    conversion = convert_editor_workflow(editor, engine.registry)
    assert conversion.ok, conversion.report.format()
    assert strip_meta(conversion.prompt) == strip_meta(api)
    for base in (tmp_path / "a", tmp_path / "b"):  # example inputs (LoadImage) live next to the workflows
        for image in (WORKFLOWS / "input").glob("*") if (WORKFLOWS / "input").is_dir() else []:
            target = Settings.from_env(base, environ={}).input_dir / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(image.read_bytes())
    from_api = engine.run(fewer_steps(api))
    assert from_api.status == "success", from_api.failure
    other = fresh_engine(tmp_path / "b")
    from_editor = other.run(fewer_steps(conversion.prompt), extra={"workflow": editor})
    assert from_editor.status == "success", from_editor.failure
    assert pixels(engine, from_api) == pixels(other, from_editor)


def test_someone_elses_comfyui_workflow_runs_with_my_checkpoint_and_its_png_reruns(tmp_path, capsys):
    """The editor file ComfyUI saves by default names a checkpoint we don't have: map it to ours."""
    editor = tmp_path / "default.json"
    editor.write_text(json.dumps(COMFY_DEFAULT))
    args = ["--data-dir", str(tmp_path), "--no-plugins", "--quiet"]
    small = ["--set", "5.width=64", "--set", "5.height=64", "--set", "3.steps=3"]
    assert main(["validate", str(editor), "--data-dir", str(tmp_path), "--no-plugins"]) == 1
    assert "--map-model" in capsys.readouterr().err
    mapped = ["--map-model", "v1-5-pruned-emaonly.safetensors=tiny-sd1.safetensors"]
    assert main(["run", str(editor), *mapped, *small, *args]) == 0
    (first,) = sorted((tmp_path / "output").glob("*.png"))
    chunks = read_workflow_from_png(first)
    assert chunks["workflow"] == COMFY_DEFAULT
    assert chunks["prompt"]["4"]["inputs"]["ckpt_name"] == "tiny-sd1.safetensors"
    assert chunks["prompt"]["3"]["inputs"]["seed"] == 156680208700286

    assert main(["run", str(first), *args]) == 0  # a new engine: nothing cached
    second = [p for p in sorted((tmp_path / "output").glob("*.png")) if p != first]
    assert len(second) == 1 and second[0].read_bytes() == first.read_bytes()

    # The same graph written in the API format renders the same pixels.
    api = json.loads(json.dumps(chunks["prompt"]))
    engine = fresh_engine(tmp_path / "api")
    result = engine.run(api)
    assert result.status == "success", result.failure
    with Image.open(first) as img:
        assert pixels(engine, result) == [img.tobytes()]


def test_seed_control_applied_on_request_changes_the_seed_and_is_recorded(tmp_path):
    editor = copy.deepcopy(COMFY_DEFAULT)
    for node in editor["nodes"]:
        if node["type"] == "KSampler":
            node["widgets_values"] = [41, "increment", 2, 7.0, "euler", "normal", 1.0]
        if node["type"] == "CheckpointLoaderSimple":
            node["widgets_values"] = ["tiny-sd1.safetensors"]
        if node["type"] == "EmptyLatentImage":
            node["widgets_values"] = [64, 64, 1]
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(editor))
    args = ["--data-dir", str(tmp_path), "--no-plugins", "--quiet"]
    assert main(["run", str(path), "--apply-seed-control", *args]) == 0
    (png,) = sorted((tmp_path / "output").glob("*.png"))
    chunks = read_workflow_from_png(png)
    assert chunks["prompt"]["3"]["inputs"]["seed"] == 42
    ksampler = next(n for n in chunks["workflow"]["nodes"] if n["type"] == "KSampler")
    assert ksampler["widgets_values"][:2] == [42, "increment"]
