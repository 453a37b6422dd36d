"""The websocket/HTTP protocol against a real server on a loopback port, with real clients."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from server_kit import Client, chain, install_plugin, run, serving, start_serve

from latentgraph.server.previews import decode_frame, decode_metadata_frame
from latentgraph.testing import WorkflowBuilder


def kinds(messages):
    return [kind for kind, _ in messages]


def test_full_run_sends_every_event_in_order(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("alice")
            assert ws.sid == "alice"
            reply = await client.submit(chain(1, steps=3, preview=True), "alice")
            assert set(reply) == {"prompt_id", "number", "node_errors"} and reply["node_errors"] == {}
            pid = reply["prompt_id"]
            msgs = await ws.until_done(pid)
            # progress_state (the editor's per-node states) is pinned in test_server_editor_routes.py
            msgs = [m for m in msgs if m[0] != "progress_state"]
            assert kinds(msgs) == [
                "execution_start",
                "execution_cached",
                "executing",
                "executing",
                "executing",
                "progress",
                "progress",
                "progress",
                "executing",
                "executed",
                "execution_success",
                "executing",
            ]
            assert msgs[1][1]["nodes"] == []
            assert [d["node"] for k, d in msgs if k == "executing"] == ["1", "2", "3", "4", None]
            assert [(d["value"], d["max"], d["node"]) for k, d in msgs if k == "progress"] == [(1, 3, "3"), (2, 3, "3"), (3, 3, "3")]
            executed = msgs[9][1]
            assert executed["node"] == "4" and executed["output"] == {"value": [14]}
            assert all(d["prompt_id"] == pid for _, d in msgs)
            # Previews are opt-in, as in ComfyUI: this client never asked, so no binary frame.
            assert ws.frames == []
            # The outcome is already in history when the client hears about it.
            status, history = await client.get(f"/history/{pid}")
            entry = history[pid]
            assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
            assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
            assert entry["outputs"] == {"4": {"value": [14]}}
            assert entry["prompt"][1] == pid and entry["prompt"][2]["4"]["class_type"] == "SrvShow"
            status, prompt_info = await client.get("/api/prompt")
            assert prompt_info == {"exec_info": {"queue_remaining": 0}}

    run(go())


def test_identical_resubmit_is_all_cached_and_edit_reruns_only_descendants(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("bob")
            first = await client.submit(chain(5, steps=4), "bob")
            await ws.until_done(first["prompt_id"])

            again = await client.submit(chain(5, steps=4), "bob")
            msgs = await ws.until_done(again["prompt_id"])
            cached = next(d for k, d in msgs if k == "execution_cached")
            assert sorted(cached["nodes"]) == ["1", "2", "3", "4"]
            assert "progress" not in kinds(msgs)
            assert [d["node"] for k, d in msgs if k == "executing"] == [None]
            # The cached output is shown again, as ComfyUI does.
            assert [d["output"] for k, d in msgs if k == "executed"] == [{"value": [19]}]

            edited = chain(5, steps=4, b=11)  # node 2 changes: 2, 3, 4 re-run, 1 is reused
            third = await client.submit(edited, "bob")
            msgs = await ws.until_done(third["prompt_id"])
            assert next(d for k, d in msgs if k == "execution_cached")["nodes"] == ["1"]
            assert [d["node"] for k, d in msgs if k == "executing"] == ["2", "3", "4", None]
            assert [d["output"] for k, d in msgs if k == "executed"] == [{"value": [20]}]

    run(go())


async def _frames_of_one_run(client, ws, extra_data=None):
    """Binary frames ``ws`` receives during one fresh (uncached) run of a previewing prompt."""
    fresh = time.monotonic_ns() % 10**8
    body = {"prompt": chain(fresh, steps=3, preview=True), "client_id": ws.client_id}
    if extra_data is not None:
        body["extra_data"] = extra_data
    status, reply = await client.post("/prompt", body)
    assert status == 200, reply
    ws.frames.clear()
    await ws.until_done(reply["prompt_id"])
    return reply["prompt_id"], list(ws.frames)


def test_previews_are_opt_in_per_prompt_and_framed_by_feature_flags(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            plain = await client.ws("plain")
            # The server's default is none: nothing asked, no frame; "default" and unknown
            # values mean the server default, as in ComfyUI.
            for extra in (None, {"preview_method": "default"}, {"preview_method": "bogus"}, {"preview_method": "none"}):
                _, frames = await _frames_of_one_run(client, plain, extra)
                assert frames == [], extra
            # Asked for: legacy frames (type 1, JPEG) to a client that sent no feature flags.
            for method in ("auto", "latent2rgb", "taesd"):  # taesd falls back to latent→RGB
                _, frames = await _frames_of_one_run(client, plain, {"preview_method": method})
                assert frames, method
                event, fmt, image = decode_frame(frames[0])
                assert (event, fmt) == (1, 1) and image[:3] == b"\xff\xd8\xff"
            # A client that negotiates supports_preview_metadata (ComfyUI's frontend does) gets
            # type-4 frames that name the node, and the server's flags in answer.
            rich = await client.ws("rich")
            await rich.ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
            flags = await rich.until("feature_flags")
            assert flags["supports_preview_metadata"] is True and flags["max_upload_size"] > 0
            pid, frames = await _frames_of_one_run(client, rich, {"preview_method": "auto"})
            assert frames
            metadata, image = decode_metadata_frame(frames[0])
            assert metadata == {
                "node_id": "3", "prompt_id": pid, "display_node_id": "3", "parent_node_id": None,
                "real_node_id": "3", "image_type": "image/jpeg",
            }
            assert image[:3] == b"\xff\xd8\xff"
            # Only the first message negotiates; later ones (and junk) are ignored.
            late = await client.ws("late")
            await late.ws.send_str("[[[[" * 5000)
            await late.ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
            _, frames = await _frames_of_one_run(client, late, {"preview_method": "auto"})
            assert frames and decode_frame(frames[0])[:2] == (1, 1)
            assert "feature_flags" not in kinds(late.messages)

    run(go())


def test_serve_preview_method_sets_the_default(tmp_path):
    """``latentgraph serve --preview-method auto``: previews unless a prompt says none."""
    data = tmp_path / "data"
    install_plugin(data)
    server = start_serve(data, "--preview-method", "auto")
    try:

        async def go():
            async with aiohttp.ClientSession() as session:
                client = Client(server.base, session)
                ws = await client.ws("cli")
                _, frames = await _frames_of_one_run(client, ws)
                assert frames and decode_frame(frames[0])[:2] == (1, 1)
                _, frames = await _frames_of_one_run(client, ws, {"preview_method": "none"})
                assert frames == []

        run(go())
        assert server.terminate() == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def test_interrupt_mid_run_then_keep_serving(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("carol")
            long = await client.submit(chain(1, steps=500, delay=0.01), "carol")
            pid = long["prompt_id"]
            await ws.until("progress", prompt_id=pid)
            # An interrupt aimed at another prompt does nothing.
            status, body = await client.post("/interrupt", {"prompt_id": "someone-else"})
            assert status == 200 and body["interrupted"] is False
            status, body = await client.post("/api/interrupt", {"prompt_id": pid})
            assert body["interrupted"] is True
            msgs = await ws.until_done(pid)
            final = [k for k, _ in msgs if k.startswith("execution_") and k not in ("execution_start", "execution_cached")]
            assert final == ["execution_interrupted"]
            data = next(d for k, d in msgs if k == "execution_interrupted")
            assert data["node_id"] == "3" and data["node_type"] == "SrvWait" and data["executed"] == ["1", "2"]
            # the first progress was consumed above; under load none may follow before the interrupt
            progress = [d["value"] for k, d in msgs if k == "progress"]
            assert len(progress) < 499
            status, history = await client.get(f"/history/{pid}")
            # As ComfyUI records it: an error, whose last message is the interrupt.
            entry_status = history[pid]["status"]
            assert entry_status["status_str"] == "error" and entry_status["completed"] is False
            assert [m[0] for m in entry_status["messages"]] == ["execution_start", "execution_cached", "execution_interrupted"]
            # Nothing running: an interrupt is a no-op and does not leak into the next prompt.
            status, body = await client.post("/interrupt")
            assert body["interrupted"] is False
            nxt = await client.submit(chain(2, steps=2), "carol")
            msgs = await ws.until_done(nxt["prompt_id"])
            assert "execution_success" in kinds(msgs)

    run(go())


def test_node_error_is_reported_and_server_keeps_serving(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("dave")
            wf = WorkflowBuilder()
            n = wf.add("SrvNumber", id="1", value=3)
            boom = wf.add("SrvBoom", id="2", value=n[0], fail=True)
            wf.add("SrvShow", id="3", value=boom[0])
            reply = await client.submit(wf.to_api(), "dave")
            msgs = await ws.until_done(reply["prompt_id"])
            error = next(d for k, d in msgs if k == "execution_error")
            assert error["node_id"] == "2" and error["node_type"] == "SrvBoom"
            assert "asked to fail" in error["exception_message"]
            assert error["exception_type"].endswith("NodeInputError") and error["executed"] == ["1"]
            assert any("asked to fail" in line for line in error["traceback"])
            assert "execution_success" not in kinds(msgs)
            status, history = await client.get(f"/history/{reply['prompt_id']}")
            entry = history[reply["prompt_id"]]
            assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
            assert entry["status"]["messages"][-1][0] == "execution_error"

            ok = await client.submit(chain(7), "dave")
            assert "execution_success" in kinds(await ws.until_done(ok["prompt_id"]))

    run(go())


def test_invalid_prompts_get_400_with_node_errors(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            wf = WorkflowBuilder()
            wf.add("SrvShow", id="1", value=["9", 0])  # links to a missing node
            wf.add("NoSuchNode", id="2")
            status, body = await client.post("/prompt", {"prompt": wf.to_api(), "client_id": "x"})
            assert status == 400
            assert body["error"]["type"]
            assert set(body["node_errors"]) <= {"1", "2"} and body["node_errors"]
            status, body = await client.post("/prompt", {"client_id": "x"})
            assert status == 400 and body["error"]["type"] == "no_prompt"
            status, body = await client.post("/prompt", data=b"{not json", headers={"Content-Type": "application/json"})
            assert status == 400 and body["error"]["type"] == "invalid_json"
            status, body = await client.post("/prompt", {"prompt": chain(1), "number": "soon"})
            assert status == 400
            reply = await client.submit(chain(1), prompt_id="mine-1")
            assert reply["prompt_id"] == "mine-1"
            status, body = await client.post("/prompt", {"prompt": chain(1), "prompt_id": "mine-1"})
            assert status == 400 and body["error"]["type"] == "duplicate_prompt_id"
            status, body = await client.get("/no/such/route")
            assert status == 404 and body["error"]["type"] == "not_found"

    run(go())


def test_two_clients_get_only_their_own_execution_events(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            a = await client.ws("client-a")
            b = await client.ws("client-b")
            pa = (await client.submit(chain(100, steps=3), "client-a"))["prompt_id"]
            pb = (await client.submit(chain(200, steps=3), "client-b"))["prompt_id"]
            await a.until_done(pa)
            await b.until_done(pb)
            for ws, mine, other in ((a, pa, pb), (b, pb, pa)):
                ids = {d.get("prompt_id") for k, d in ws.messages if k != "status"}
                assert ids == {mine}, ids
                assert ws.of(other) == []
            # Both saw queue status changes (those go to everyone).
            assert sum(k == "status" for k, _ in a.messages) >= 2

    run(go())


def test_reconnecting_client_picks_up_its_running_prompt(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("erin")
            pid = (await client.submit(chain(1, steps=100, delay=0.02), "erin"))["prompt_id"]
            await ws.until("progress", prompt_id=pid)
            await ws.ws.close()
            await asyncio.sleep(0.1)
            again = await client.ws("erin", read_status=False)
            first = await again.receive()
            assert first[0] == "status" and first[1]["sid"] == "erin"
            msgs = await again.until_done(pid)
            got = kinds(msgs)
            assert got[:2] == ["execution_start", "execution_cached"]
            assert got[-2:] == ["execution_success", "executing"]
            assert [d["node"] for k, d in msgs if k == "executing"] == ["1", "2", "3", "4", None]
            values = [d["value"] for k, d in msgs if k == "progress"]
            assert values == sorted(values) and values[-1] == 100
            # A different client reconnecting sees nothing of erin's prompt.
            other = await client.ws("frank")
            await asyncio.sleep(0.05)
            assert other.of(pid) == []

    run(go())


def test_queue_priority_listing_and_deletion(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("gina")
            blocker = (await client.submit(chain(1, steps=300, delay=0.01), "gina"))["prompt_id"]
            await ws.until("progress", prompt_id=blocker)
            p1 = (await client.submit(chain(2), "gina"))["prompt_id"]
            p2 = (await client.submit(chain(3), "gina"))["prompt_id"]
            p3 = (await client.submit(chain(4), "gina", front=True))
            assert p3["number"] < 0
            p4 = (await client.submit(chain(5), "gina", number=-1000))["prompt_id"]
            status, queue = await client.get("/queue")
            assert [item[1] for item in queue["queue_running"]] == [blocker]
            assert [item[1] for item in queue["queue_pending"]] == [p4, p3["prompt_id"], p1, p2]
            running = queue["queue_running"][0]
            assert len(running) == 5 and running[2]["4"]["class_type"] == "SrvShow" and running[4] == ["4"]
            status, body = await client.post("/queue", {"delete": [p1]})
            assert body["deleted"] == 1
            status, body = await client.get("/prompt")
            assert body["exec_info"]["queue_remaining"] == 4
            status, body = await client.post("/queue", {"delete": [blocker]})  # running: not deleted
            assert body["deleted"] == 0
            await client.post("/queue", {"clear": True})
            status, queue = await client.get("/api/queue")
            assert queue["queue_pending"] == []
            await client.post("/interrupt")
            await ws.until_done(blocker)
            status, hist = await client.get("/history?max_items=1")
            assert list(hist) == [blocker]

    run(go())


def test_history_listing_and_clearing(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("hal")
            ids = []
            for v in range(3):
                ids.append((await client.submit(chain(v), "hal"))["prompt_id"])
            await ws.until_done(ids[-1])
            status, hist = await client.get("/history")
            assert list(hist) == ids
            status, hist = await client.get("/history?max_items=2")
            assert list(hist) == ids[1:]
            status, hist = await client.get("/history?max_items=1&offset=1")
            assert list(hist) == ids[1:2]
            status, body = await client.get("/history?max_items=abc")
            assert status == 400
            await client.post("/history", {"delete": [ids[0]]})
            status, hist = await client.get(f"/history/{ids[0]}")
            assert hist == {}
            await client.post("/api/history", {"clear": True})
            status, hist = await client.get("/history")
            assert hist == {}

    run(go())


def test_extra_pnginfo_workflow_reaches_the_nodes(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("ivy")
            wf = WorkflowBuilder()
            wf.add("SrvExtra", id="1", value=1)
            editor = {"nodes": [{"id": 1}], "links": []}
            reply = await client.submit(wf.to_api(), "ivy", extra_data={"extra_pnginfo": {"workflow": editor}})
            msgs = await ws.until_done(reply["prompt_id"])
            output = next(d for k, d in msgs if k == "executed")["output"]
            assert output == {"workflow": [editor], "client_id": ["ivy"]}

    run(go())


def test_prompt_without_client_id_is_broadcast(lg_settings):
    """ComfyUI sends a prompt's events to everyone when it has no client id."""

    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("watcher")
            pid = (await client.submit(chain(3)))["prompt_id"]
            msgs = await ws.until_done(pid)
            assert "execution_success" in kinds(msgs)

    run(go())


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_event_loop_stays_responsive_while_a_prompt_runs(lg_settings, prefix):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("jay")
            pid = (await client.submit(chain(1, steps=100, delay=0.01), "jay"))["prompt_id"]
            await ws.until("progress", prompt_id=pid)
            loop = asyncio.get_running_loop()
            for _ in range(5):
                start = loop.time()
                status, body = await client.get(prefix + "/queue")
                assert status == 200 and body["queue_running"][0][1] == pid
                assert loop.time() - start < 0.5
            await client.post("/interrupt", {"prompt_id": pid})
            await ws.until_done(pid)

    run(go())


def test_a_queued_prompt_that_no_longer_validates_ends_as_an_error(lg_settings):
    """Accepted earlier (say, before a restart), but its node type is gone now: recorded, not lost."""
    from latentgraph.server.store import QueueItem, Store

    store = Store(lg_settings.base_dir / "queue.sqlite3")
    store.enqueue(QueueItem("stale", store.assign_number(), {"1": {"class_type": "GoneNode", "inputs": {}}}, client_id="kim"))

    async def go():
        async with serving(lg_settings, store=store) as client:
            for _ in range(100):
                status, history = await client.get("/history/stale")
                if history:
                    break
                await asyncio.sleep(0.05)
            status_ = history["stale"]["status"]
            assert status_["status_str"] == "error"
            error = status_["messages"][-1]
            assert error[0] == "execution_error" and "GoneNode" in error[1]["exception_message"]
            status, body = await client.get("/prompt")
            assert body["exec_info"]["queue_remaining"] == 0

    try:
        run(go())
    finally:
        store.close()


def test_save_image_websocket_sends_full_size_pngs_without_previews(lg_settings):
    """SaveImageWebsocket's pictures reach the client that queued the prompt as PNG frames
    (type 1, format 2 — also to a client with supports_preview_metadata, as ComfyUI's
    server.send_image frames UNENCODED_PREVIEW_IMAGE), whatever the preview setting, and nothing
    is written to the output folder."""
    import io

    from PIL import Image

    async def go():
        async with serving(lg_settings) as client:
            for name, rich in (("legacy", False), ("rich", True)):
                ws = await client.ws(name)
                if rich:
                    await ws.ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
                    await ws.until("feature_flags")
                wf = WorkflowBuilder()
                image = wf.add("EmptyImage", width=8, height=4, batch_size=2, color=0xFF0000)
                wf.add("SaveImageWebsocket", images=image[0])
                pid = (await client.submit(wf.to_api(), name))["prompt_id"]
                await ws.until_done(pid)
                assert len(ws.frames) == 2
                for frame in ws.frames:
                    event, fmt, data = decode_frame(frame)
                    assert (event, fmt) == (1, 2)
                    picture = Image.open(io.BytesIO(data))
                    assert picture.format == "PNG" and picture.size == (8, 4)
                    assert picture.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
            assert not list(lg_settings.output_dir.rglob("*.png")) if lg_settings.output_dir.exists() else True

    run(go())
