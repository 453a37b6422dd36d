"""The example plugin as a user gets it: pip-installed, found through its entry point, used by
KSampler, the CLI and the engine, and tested with latentgraph's own pytest fixtures.

The package is really built and installed (``pip install --no-deps --target``) into a temporary
folder put on the path, so the test neither needs nor changes anything installed.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentgraph.engine import Engine
from latentgraph.object_info import object_info
from latentgraph.testing import WorkflowBuilder, assert_success, output_images

EXAMPLE = Path(__file__).resolve().parents[1] / "plugins" / "example"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A folder holding the installed example distribution (package + dist-info entry points)."""
    root = tmp_path_factory.mktemp("example-plugin")
    source = root / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = root / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (target / "latentgraph_example").is_dir()
    return target


@pytest.fixture
def on_path(installed, monkeypatch):
    monkeypatch.syspath_prepend(str(installed))
    return installed


def env_with(installed: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(installed), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def test_entry_point_discovery_and_ksampler_lists_the_sampler(on_path, lg_settings):
    engine = Engine.create(lg_settings, entry_points=True, allow=["example"])
    info = engine.host.plugins["example"]
    assert (info.source, info.version, info.errors) == ("entrypoint", "0.1.0", [])
    assert info.location == "latentgraph_example.plugin"
    assert info.nodes == ["InvertImage", "BlendImages", "BlendLatents"]
    assert info.hooks == ["register_nodes", "register_samplers", "register_schedulers"]
    ksampler = object_info(engine.registry, engine.settings)["KSampler"]["input"]["required"]
    assert "euler_midpoint" in ksampler["sampler_name"][0] and "euler" in ksampler["sampler_name"][0]
    assert "linspace" in ksampler["scheduler"][0]
    assert engine.registry.owners["BlendImages"] == "example"


def test_allow_list_can_disable_it(on_path, lg_settings):
    engine = Engine.create(lg_settings, entry_points=True, allow=["-example"])
    info = engine.host.plugins["example"]
    assert info.enabled is False and info.nodes == []
    assert "InvertImage" not in engine.registry and "euler_midpoint" not in engine.registry.samplers
    assert "KSampler" in engine.registry  # the built-ins always load


def test_workflow_with_its_nodes_through_the_engine(on_path, lg_settings, lg_input_image):
    engine = Engine.create(lg_settings, entry_points=True, allow=["example"])
    name = lg_input_image("in.png", size=(6, 6), color=(255, 200, 0))
    wf = WorkflowBuilder()
    img = wf.add("LoadImage", image=name)
    inv = wf.add("InvertImage", image=img[0])
    blend = wf.add("BlendImages", image1=img[0], image2=inv[0], blend_factor=1.0, blend_mode="multiply")
    wf.add("SaveImage", images=blend[0], filename_prefix="ex")
    [out] = output_images(assert_success(engine.run(wf.to_api())), lg_settings)
    # (255,200,0) × (0,55,255) / 255
    assert np.abs(np.asarray(out)[0, 0].astype(int) - [0, 43, 0]).max() <= 1


def test_workflow_with_its_nodes_through_the_cli(installed, tmp_path):
    (tmp_path / "input").mkdir()
    Image.new("RGB", (5, 3), (10, 20, 30)).save(tmp_path / "input" / "in.png")
    wf = WorkflowBuilder()
    inv = wf.add("InvertImage", image=wf.add("LoadImage", image="in.png")[0])
    wf.add("SaveImage", images=inv[0], filename_prefix="cli")
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(wf.to_api()))
    env = env_with(installed)
    env.pop("LATENTGRAPH_PLUGINS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "latentgraph.cli", "run", str(path), "--data-dir", str(tmp_path), "--json", "--quiet"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    [file] = json.loads(proc.stdout)["files"]
    with Image.open(file) as img:
        assert img.size == (5, 3) and img.getpixel((0, 0)) == (245, 235, 225)

    listing = subprocess.run(
        [sys.executable, "-m", "latentgraph.cli", "plugins", "--json", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    plugins = {p["name"]: p for p in json.loads(listing.stdout)}
    assert plugins["example"]["source"] == "entrypoint" and plugins["example"]["version"] == "0.1.0"
    assert plugins["example"]["nodes"] == ["InvertImage", "BlendImages", "BlendLatents"]


def test_workflow_with_its_nodes_through_the_server(on_path, lg_settings, lg_input_image):
    import asyncio

    from plugin_server import fetch_image, run_prompt, serving_engine

    engine = Engine.create(lg_settings, entry_points=True, allow=["example"])
    name = lg_input_image("in.png", size=(4, 2), color=(0, 100, 200))
    wf = WorkflowBuilder()
    wf.add("SaveImage", images=wf.add("InvertImage", image=wf.add("LoadImage", image=name)[0])[0], filename_prefix="srv")

    async def go():
        async with serving_engine(engine) as client:
            status, plugins = await client.get("/plugins")
            assert {p["name"]: p for p in plugins}["example"]["nodes"] == ["InvertImage", "BlendImages", "BlendLatents"]
            status, info = await client.get("/object_info/KSampler")
            assert "euler_midpoint" in info["KSampler"]["input"]["required"]["sampler_name"][0]
            msgs = await run_prompt(client, wf.to_api())
            outputs = {d["node"]: d["output"] for kind, d in msgs if kind == "executed"}
            image = await fetch_image(client, outputs["3"]["images"][0])
            assert image.size == (4, 2) and image.convert("RGB").getpixel((0, 0)) == (255, 155, 54)  # 255·(1 − 200/255) truncated, as ComfyUI saves

    asyncio.run(asyncio.wait_for(go(), 120))


@pytest.mark.slow
def test_its_own_test_suite_passes_with_the_shipped_pytest_fixtures(installed):
    """What a plugin author runs in their CI: fixtures come from latentgraph's pytest11 entry point.

    The example test in docs/plugins.md ("Testing") runs along with them.
    """
    tests = installed.parent / "src" / "tests"
    docs = (EXAMPLE.parents[1] / "docs" / "plugins.md").read_text().split("## Testing", 1)[1]
    [example] = [b for b in re.findall(r"```python\n(.*?)```", docs, flags=re.S) if "def test_" in b]
    (tests / "test_from_docs.py").write_text(example)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning", str(tests)],
        capture_output=True, text=True, env=env_with(installed, HF_HUB_OFFLINE="1"), timeout=600,
        cwd=installed.parent / "src",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
