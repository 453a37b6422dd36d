"""Exactly-once outputs across crashes, and no crash loop: a real ``latentgraph serve`` killed
with ``kill -9`` while a prompt runs after saving an image.

A re-run writes the same files (no orphans, the names a client was told stay true); a prompt
the process died running ``--max-prompt-crashes`` times ends in history as an error instead of
killing the server again on every start.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import torch
from PIL import Image
from server_kit import Client, chain, install_plugin, run, start_serve

from latentgraph.context import ExecutionContext, InterruptFlag
from latentgraph.nodes.images import save_images
from latentgraph.output_names import EXTRA_KEY
from latentgraph.server.worker import PromptOutputNames
from latentgraph.server.store import QueueItem, Store

#: Saves an image (node 2), then runs a ~4 s node: the test kills the server in between.
SAVE_THEN_WAIT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "src.png"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "crash/img"}},
    "3": {"class_type": "SrvNumber", "inputs": {"value": 1}},
    "4": {"class_type": "SrvWait", "inputs": {"value": ["3", 0], "steps": 400, "delay": 0.01, "preview": False}},
    "5": {"class_type": "SrvShow", "inputs": {"value": ["4", 0]}},
}


def _data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    install_plugin(data)
    (data / "input").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), (200, 30, 90)).save(data / "input" / "src.png")
    return data


def _files(data: Path) -> list[str]:
    """Every file under output/, hidden ones included."""
    root = data / "output"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _names(images: list[dict]) -> list[str]:
    return [f"{i['subfolder']}/{i['filename']}" if i["subfolder"] else i["filename"] for i in images]


async def _saved_then_kill_point(client: Client, pid: str | None, client_id: str) -> tuple[str, list[str]]:
    """Submit (when ``pid`` is None) or just watch the prompt; return once node 2 has announced
    its files and node 4 is running."""
    ws = await client.ws(client_id)  # a reconnect replays what the running prompt sent so far
    if pid is None:
        pid = (await client.submit(SAVE_THEN_WAIT, client_id))["prompt_id"]
    saved = await ws.until("executed", node="2", prompt_id=pid)
    await ws.until("progress", node="4", prompt_id=pid)
    await ws.ws.close()
    return pid, _names(saved["output"]["images"])


async def _history(client: Client, pid: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = await client.get(f"/history/{pid}")
        if body:
            return body[pid]
        await asyncio.sleep(0.1)
    raise TimeoutError(pid)


def _with_server(data: Path, *args: str):
    server = start_serve(data, *args)

    def call(fn):
        async def go():
            async with aiohttp.ClientSession() as session:
                return await fn(Client(server.base, session))

        return run(go())

    return server, call


def test_a_rerun_after_kill_9_rewrites_the_same_files(tmp_path):
    data = _data_dir(tmp_path)
    server, call = _with_server(data)
    try:
        pid, first = call(lambda c: _saved_then_kill_point(c, None, "once"))
        assert first == ["crash/img_00001_.png"] and _files(data) == first
        server.kill9()
        server, call = _with_server(data)
        pid, second = call(lambda c: _saved_then_kill_point(c, pid, "once"))
        assert second == first  # the re-run announces (and writes) the same file
        entry = call(lambda c: _history(c, pid))
        assert entry["status"]["status_str"] == "success"
        assert _names(entry["outputs"]["2"]["images"]) == first
        assert _files(data) == first  # nothing orphaned, no temporary file left
        assert server.terminate() == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def test_a_prompt_that_keeps_killing_the_server_is_failed_not_rerun(tmp_path):
    data = _data_dir(tmp_path)
    crashes = 2
    server, call = _with_server(data, "--max-prompt-crashes", str(crashes))
    try:
        announced: set[str] = set()
        pid = None
        for _ in range(crashes):
            pid, names = call(lambda c, pid=pid: _saved_then_kill_point(c, pid, "loop"))
            announced.update(names)
            server.kill9()
            server, call = _with_server(data, "--max-prompt-crashes", str(crashes))

        async def outcome(client: Client):
            entry = await _history(client, pid)
            # The server is up and serves the next prompt.
            ws = await client.ws("next")
            nxt = (await client.submit(chain(3, steps=1), "next"))["prompt_id"]
            msgs = await ws.until_done(nxt)
            return entry, [k for k, _ in msgs]

        entry, next_kinds = call(outcome)
        status = entry["status"]
        assert status["status_str"] == "error" and status["completed"] is False
        assert [m[0] for m in status["messages"]] == ["execution_start", "execution_cached", "execution_error"]
        error = status["messages"][-1][1]
        assert error["exception_type"] == "latentgraph.server.PromptCrashLoop"
        assert f"died {crashes} times" in error["exception_message"] and "--max-prompt-crashes" in error["exception_message"]
        # What clients were told about is what history references, and all that is on disk.
        assert announced == {"crash/img_00001_.png"}
        assert set(_names(entry["outputs"]["2"]["images"])) == announced
        assert entry["meta"]["2"]["real_node_id"] == "2"
        assert _files(data) == sorted(announced)
        assert "execution_success" in next_kinds
        assert server.terminate() == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def test_reserved_names_survive_a_crash_at_any_point_of_a_write(lg_settings, tmp_path):
    """SaveImage's naming with the server's ledger, crash points simulated: a name reserved but
    never written, a temporary file left half-written, a finished file written again."""
    settings = lg_settings
    store = Store(tmp_path / "q.db")
    store.enqueue(QueueItem("p", 0, {}))
    store.enqueue(QueueItem("q", 1, {}))

    def save(prompt_id: str, shade: float) -> list[str]:
        ctx = ExecutionContext(
            prompt_id=prompt_id, node_id="9", class_type="SaveImage", settings=settings, registry=None,
            sink=lambda e: None, interrupt=InterruptFlag(), extra={EXTRA_KEY: PromptOutputNames(store, prompt_id)},
        )
        images = torch.full((2, 8, 8, 3), shade)
        return _names(save_images(ctx, images, "x/img", settings.output_dir, "output", 1).ui["images"])

    first = save("p", 0.2)
    assert first == ["x/img_00001_.png", "x/img_00002_.png"]
    folder = settings.output_dir / "x"
    # Crash points: a half-written temporary file, and the second name reserved but not written.
    (folder / ".img_00001_.png.999999.partial").write_bytes(b"half")
    (folder / "img_00002_.png").unlink()
    store.reserve_name("p", "9\x1foutput\x1f1", "output", "x/img_00002_.png", written=False)
    again = save("p", 0.8)
    assert again == first
    assert sorted(p.name for p in folder.iterdir()) == ["img_00001_.png", "img_00002_.png"]
    assert Image.open(folder / "img_00001_.png").getpixel((0, 0))[0] == int(0.8 * 255)  # replaced
    # Another prompt counts on: ComfyUI's visible naming is kept.
    assert save("q", 0.5) == ["x/img_00003_.png", "x/img_00004_.png"]
    # Died between creating a file and confirming it: the same bytes are adopted, not duplicated.
    store.reserve_name("q", "9\x1foutput\x1f0", "output", "x/img_00003_.png", written=False)
    assert save("q", 0.5) == ["x/img_00003_.png", "x/img_00004_.png"]
    assert len(list(folder.iterdir())) == 4
