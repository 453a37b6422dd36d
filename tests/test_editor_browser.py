"""The web editor in a real headless Chromium against a real ``latentgraph serve``.

Needs the system's Chromium (``apt-get install chromium``) and Python playwright (``pip install
playwright``; no browser download: the system one is used). Without them every test here is
skipped with a message saying what to install.

``LATENTGRAPH_EDITOR_SCREENSHOTS=DIR`` also writes the README's screenshots
(``editor_running.png``, ``editor_result.png``) into DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = next((p for p in (os.environ.get("LATENTGRAPH_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p and Path(p).is_file()), None)
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

try:
    import comfyui_frontend_package  # noqa: F401
except ImportError:  # pragma: no cover
    comfyui_frontend_package = None

_MISSING = [what for what, ok in (
    ("chromium (apt-get install -y chromium)", CHROMIUM),
    ("playwright (pip install playwright)", sync_playwright),
    ("comfyui-frontend-package (pip install comfyui-frontend-package==1.35.9)", comfyui_frontend_package),
) if not ok]
if _MISSING:
    message = "EDITOR BROWSER TESTS SKIPPED: missing " + ", ".join(_MISSING)
    print(f"\n*** {message} ***", file=sys.stderr)
    warnings.warn(message, stacklevel=1)
    pytest.skip(message, allow_module_level=True)

pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[1]
DEMO = "latentgraph-demo-shapes.safetensors"
APP = "window.comfyAPI.app.app"
EXECUTION = "document.getElementById('vue-app').__vue_app__.config.globalProperties.$pinia._s.get('execution')"
SCREENSHOTS = os.environ.get("LATENTGRAPH_EDITOR_SCREENSHOTS")
WAIT_MS = 60_000


@dataclass
class Server:
    proc: subprocess.Popen
    base: str
    data_dir: Path


def start_server(data_dir: Path, *extra: str):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    log = open(data_dir / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "latentgraph.cli", "serve", "--data-dir", str(data_dir), "--port", "0", "--no-plugins",
         *extra],
        stdout=subprocess.PIPE, stderr=log, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        base = None
        while time.monotonic() < deadline and base is None:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"serve exited {proc.returncode}: {(data_dir / 'serve.log').read_text()}")
            if "serving on " in line:
                base = line.strip().split("serving on ", 1)[1]
        assert base, "latentgraph serve did not start"
        yield Server(proc, base, data_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from start_server(tmp_path_factory.mktemp("editor-data"))


#: The token of the server started with --auth-token (a browser sends it as the Basic password).
TOKEN = "editor-secret"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    yield from start_server(tmp_path_factory.mktemp("editor-auth-data"), "--auth-token", TOKEN)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@dataclass
class Watched:
    """Everything that went wrong on a page: failed requests, HTTP errors, console errors."""

    page: object
    problems: list[str] = field(default_factory=list)
    frames: list[dict] = field(default_factory=list)

    def check(self) -> None:
        assert not self.problems, "\n".join(self.problems)


def open_editor(browser, server: Server, **context: object) -> Watched:
    page = browser.new_context(viewport={"width": 1400, "height": 860}, **context).new_page()
    watched = Watched(page)

    def on_response(response):
        if response.status >= 400:
            watched.problems.append(f"HTTP {response.status} {response.request.method} {response.url}")

    def on_frame(payload):
        if isinstance(payload, str):
            watched.frames.append(json.loads(payload))

    page.on("response", on_response)
    page.on("requestfailed", lambda r: watched.problems.append(f"failed {r.method} {r.url}: {r.failure}"))
    page.on("console", lambda m: watched.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: watched.problems.append(f"page error: {e}"))
    page.on("websocket", lambda ws: ws.on("framereceived", on_frame))
    page.goto(server.base + "/")
    page.wait_for_function(f"() => {APP}?.graph?.nodes?.length > 0", timeout=WAIT_MS)
    page.wait_for_load_state("networkidle")
    return watched


def editor_workflow(tmp_path: Path) -> Path:
    """Our txt2img editor twin as someone else would share it: their checkpoint, a fixed seed."""
    wf = json.loads((REPO / "workflows/editor/txt2img.json").read_text())
    for node in wf["nodes"]:
        if node["type"] == "LoadCheckpoint":
            node["widgets_values"] = ["v1-5-pruned-emaonly.safetensors"]
        if node["type"] == "KSampler":
            node["widgets_values"][1] = "fixed"
    path = tmp_path / "shared_txt2img.json"
    path.write_text(json.dumps(wf))
    return path


def choose_combo(page, node_id: int, widget: str, value: str) -> None:
    """Click a node's combo widget on the canvas and pick ``value`` from its menu, as a user does."""
    x, y = page.evaluate(
        f"""([id, name]) => {{
            const app = {APP}, node = app.graph.getNodeById(id), w = node.widgets.find(w => w.name === name);
            const rect = app.canvas.canvas.getBoundingClientRect();
            const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + node.size[0] / 2, node.pos[1] + w.y + 10]);
            return [x + rect.left, y + rect.top];
        }}""",
        [node_id, widget],
    )
    page.mouse.click(x, y)
    page.locator(".litemenu-entry", has_text=value).first.click()


def load_shared_workflow_on_the_demo_model(page, tmp_path: Path) -> None:
    """Open a workflow shared with someone else's checkpoint and switch it to the demo model."""
    page.set_input_files("#comfy-file-input", str(editor_workflow(tmp_path)))
    page.wait_for_function(f"() => {APP}.graph.nodes.some(n => n.type === 'LoadCheckpoint')", timeout=WAIT_MS)
    assert page.evaluate(f"() => {APP}.graph.getNodeById(4).widgets[0].value") == "v1-5-pruned-emaonly.safetensors"
    choose_combo(page, 4, "ckpt_name", DEMO)
    assert page.evaluate(f"() => {APP}.graph.getNodeById(4).widgets[0].value") == DEMO


def test_editor_runs_the_demo_model(browser, server, tmp_path):
    watched = open_editor(browser, server)
    page = watched.page
    default_types = page.evaluate(f"() => {APP}.graph.nodes.map(n => n.type).sort()")
    assert default_types == sorted(["CheckpointLoaderSimple", "CLIPTextEncode", "CLIPTextEncode", "EmptyLatentImage",
                                    "KSampler", "VAEDecode", "SaveImage"])  # the pinned frontend's default graph
    # ComfyUI's names are our aliases: the editor knows every node of its default graph as core
    badges = page.evaluate(f"() => {APP}.graph.nodes.map(n => n.constructor.nodeData?.python_module)")
    assert all(b and b.split(".")[0] == "nodes" for b in badges), badges

    load_shared_workflow_on_the_demo_model(page, tmp_path)
    page.mouse.click(700, 600)  # the empty canvas: then "." fits the whole graph in view
    page.keyboard.press(".")

    page.get_by_role("button", name="Run").first.click()
    running: set[str] = set()
    shot_taken = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ids = page.evaluate(f"() => [...{EXECUTION}.executingNodeIds]")
        running.update(map(str, ids))
        if "3" in ids and SCREENSHOTS and not shot_taken:
            page.screenshot(path=str(Path(SCREENSHOTS) / "editor_running.png"))
            shot_taken = True
        if page.evaluate(f"() => ({APP}.graph.getNodeById(9).imgs || []).some(i => i.complete && i.naturalWidth > 0)"):
            break
        page.wait_for_timeout(40)
    else:
        raise AssertionError(f"no image on the Save node; ran {sorted(running)}")
    assert "3" in running, f"the KSampler was never highlighted as running: {sorted(running)}"
    states = [f["data"] for f in watched.frames if f["type"] == "progress_state"]
    assert any(s["nodes"].get("3", {}).get("state") == "running" for s in states)
    src = page.evaluate(f"() => {APP}.graph.getNodeById(9).imgs[0].src")
    assert "/view?" in src and "type=output" in src
    name = src.split("filename=", 1)[1].split("&", 1)[0]
    assert (server.data_dir / "output" / name).is_file()
    if SCREENSHOTS:
        page.wait_for_timeout(300)
        page.screenshot(path=str(Path(SCREENSHOTS) / "editor_result.png"))
    watched.check()


def test_a_setting_persists_to_the_next_page_load(browser, server):
    watched = open_editor(browser, server)
    page = watched.page
    before = page.evaluate(f"() => {APP}.ui.settings.getSettingValue('Comfy.LinkRenderMode')")
    wanted = 0 if before != 0 else 2  # "Straight" or "Spline"
    page.evaluate(f"(v) => {APP}.ui.settings.setSettingValueAsync('Comfy.LinkRenderMode', v)", wanted)
    page.wait_for_load_state("networkidle")
    watched.check()
    stored = json.loads((server.data_dir / "user/default/comfy.settings.json").read_text())
    assert stored["Comfy.LinkRenderMode"] == wanted

    again = open_editor(browser, server)  # a new browser context: nothing kept client-side
    assert again.page.evaluate(f"() => {APP}.ui.settings.getSettingValue('Comfy.LinkRenderMode')") == wanted
    again.check()


def test_a_workflow_saved_in_the_editor_is_listed_after_reload(browser, server):
    watched = open_editor(browser, server)
    page = watched.page
    page.mouse.click(700, 600)
    page.keyboard.press("Control+s")
    dialog_input = page.locator(".p-dialog input").first
    dialog_input.wait_for(timeout=WAIT_MS)
    dialog_input.fill("my saved graph")
    dialog_input.press("Enter")
    saved = server.data_dir / "user/default/workflows/my saved graph.json"
    deadline = time.monotonic() + 30
    while not saved.is_file() and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert saved.is_file()
    assert {n["type"] for n in json.loads(saved.read_text())["nodes"]} >= {"KSampler", "SaveImage"}
    watched.check()

    again = open_editor(browser, server)
    page = again.page
    page.keyboard.press("w")  # the workflows sidebar
    page.get_by_text("my saved graph").first.wait_for(timeout=WAIT_MS)
    again.check()


def test_the_editor_loads_and_connects_behind_the_auth_token(browser, auth_server):
    """With ``--auth-token`` the browser answers the server's Basic challenge (the token as the
    password): the editor's page, its API calls and its websocket all get through.

    Not covered: running a prompt from the page. Under playwright's credential handling the
    page's POST and later websocket events were lost intermittently while the server ran the
    prompt to completion (seen in its history); that is left to investigate."""
    assert browser.new_context().request.get(auth_server.base + "/").status == 401  # no credentials
    watched = open_editor(browser, auth_server, http_credentials={"username": "me", "password": TOKEN})
    page = watched.page
    page.wait_for_function(f"() => {APP}.api.socket?.readyState === 1", timeout=WAIT_MS)
    assert any(f["type"] == "status" for f in watched.frames), "no status message came over the websocket"
    assert page.evaluate("async () => (await fetch('/api/object_info/KSampler')).status") == 200
    watched.check()
