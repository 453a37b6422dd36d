"""Every example workflow in workflows/ runs as it is, and a seed gives the same PNG twice."""

import json
import shutil
from pathlib import Path

import pytest

from optional_packages import missing_package

from latentgraph import Settings
from latentgraph.engine import Engine

WORKFLOWS = Path(__file__).parent.parent / "workflows"
NAMES = sorted(p.stem for p in WORKFLOWS.glob("*.json"))


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    data = tmp_path_factory.mktemp("examples")
    shutil.copytree(WORKFLOWS / "input", data / "input")
    return Engine.create(Settings.from_env(data, environ={}, device="cpu"), entry_points=False)


def test_the_examples_exist():
    assert {"txt2img", "img2img", "addnoise_img2img", "sdxl_txt2img", "lora"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_example_runs_as_is(engine, name):
    wf = json.loads((WORKFLOWS / f"{name}.json").read_text())
    if reason := missing_package(wf):
        pytest.skip(reason)
    result = engine.run(wf)
    assert result.ok, result.failure and result.failure.message
    (images,) = [ui["images"] for ui in result.outputs.values()]
    path = engine.settings.output_dir / images[0]["subfolder"] / images[0]["filename"]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_workflow_and_seed_give_byte_identical_png(engine):
    wf = json.loads((WORKFLOWS / "txt2img.json").read_text())
    wf["9"]["inputs"]["filename_prefix"] = "repeat"
    files = []
    for _ in range(2):
        engine.cache.clear()  # run everything again, not from cache
        result = engine.run(wf)
        image = result.outputs["9"]["images"][0]
        files.append((engine.settings.output_dir / image["filename"]).read_bytes())
    assert files[0] == files[1]
    wf["3"]["inputs"]["seed"] += 1
    engine.cache.clear()
    image = engine.run(wf).outputs["9"]["images"][0]
    assert (engine.settings.output_dir / image["filename"]).read_bytes() != files[0]


def test_cli_finds_a_workflows_own_input_folder(tmp_path, capsys):
    """`latentgraph run workflows/img2img.json` needs no --data-dir: the picture sits beside it."""
    from PIL import Image

    from latentgraph.cli import main

    data = tmp_path / "home"
    args = ["--data-dir", str(data), "--no-plugins", "--quiet", "--set", "3.steps=2", "--json"]
    assert main(["run", str(WORKFLOWS / "img2img.json"), *args]) == 0
    (made,) = json.loads(capsys.readouterr().out)["files"]
    assert Path(made).is_relative_to(data / "output")

    # The data dir's own input folder comes first; a missing picture names what is there.
    (data / "input").mkdir()
    Image.new("RGB", (64, 64), (0, 180, 0)).save(data / "input" / "shapes.png")
    assert main(["run", str(WORKFLOWS / "img2img.json"), *args, "--set", "3.denoise=0.01"]) == 0
    (made,) = json.loads(capsys.readouterr().out)["files"]
    r, g, b = Image.open(made).convert("RGB").getpixel((0, 0))
    assert g > 100 and g > 2 * max(r, b)  # green in → green out (not the red circle on blue)
    assert main(["run", str(WORKFLOWS / "img2img.json"), *args, "--set", "input image.image=nope.png"]) == 1
    assert "nope.png" in capsys.readouterr().out
