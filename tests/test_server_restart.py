"""A real ``latentgraph serve`` process killed with ``kill -9`` loses nothing it accepted."""

from __future__ import annotations

import asyncio

import aiohttp
from server_kit import chain, install_plugin, run, start_serve

from latentgraph.testing import WorkflowBuilder


async def _submit(session, base, prompt, client_id):
    async with session.post(base + "/prompt", json={"prompt": prompt, "client_id": client_id}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["prompt_id"]


async def _history(session, base, pid):
    async with session.get(f"{base}/history/{pid}") as resp:
        return (await resp.json()).get(pid)


async def _wait_history(session, base, pid, timeout=60):
    for _ in range(int(timeout / 0.1)):
        entry = await _history(session, base, pid)
        if entry is not None:
            return entry
        await asyncio.sleep(0.1)
    raise TimeoutError(pid)


def test_kill_9_with_a_pending_queue_then_restart(tmp_path):
    data = tmp_path / "data"
    install_plugin(data)
    server = start_serve(data)
    try:

        async def before_kill():
            async with aiohttp.ClientSession() as session:
                base = server.base
                done = await _submit(session, base, chain(1, steps=1), "r")
                await _wait_history(session, base, done)
                # The worker is busy with a long prompt; two more wait behind it.
                busy = await _submit(session, base, chain(2, steps=10_000, delay=0.01), "r")
                ws = await session.ws_connect(f"{base}/ws?clientId=r")
                while True:
                    msg = await ws.receive(timeout=30)
                    if msg.type == aiohttp.WSMsgType.TEXT and '"progress"' in msg.data and busy in msg.data:
                        break
                pending = await _submit(session, base, chain(3, steps=1), "r")
                wf = WorkflowBuilder()
                wf.add("SrvShow", id="1", value=wf.add("SrvNumber", id="2", value=42)[0])
                pending2 = await _submit(session, base, wf.to_api(), "r")
                await ws.close()
                return done, busy, pending, pending2

        done, busy, pending, pending2 = run(before_kill())
        server.kill9()

        # The long prompt runs again after the restart; we interrupt it to let the others run.
        server = start_serve(data)

        async def after_restart():
            async with aiohttp.ClientSession() as session:
                base = server.base
                entry = await _history(session, base, done)
                assert entry is not None and entry["status"]["status_str"] == "success"
                async with session.get(base + "/queue") as resp:
                    queue = await resp.json()
                ids = [i[1] for i in queue["queue_running"] + queue["queue_pending"]]
                assert ids == [busy, pending, pending2]  # accepted, never finished: all still there
                for _ in range(100):
                    async with session.post(base + "/interrupt", json={"prompt_id": busy}) as resp:
                        if (await resp.json())["interrupted"]:
                            break
                    await asyncio.sleep(0.05)
                busy_entry = await _wait_history(session, base, busy)
                # An interrupt is an error whose last message says so, as ComfyUI records it.
                assert busy_entry["status"]["status_str"] == "error"
                assert busy_entry["status"]["messages"][-1][0] == "execution_interrupted"
                first = await _wait_history(session, base, pending)
                second = await _wait_history(session, base, pending2)
                assert first["status"]["status_str"] == "success" and first["outputs"] == {"4": {"value": [14]}}
                assert second["outputs"] == {"1": {"value": [42]}}

        run(after_restart())
        assert server.terminate() == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()


def test_graceful_stop_keeps_the_running_prompt_queued(tmp_path):
    data = tmp_path / "data"
    install_plugin(data)
    server = start_serve(data)
    try:

        async def submit_long():
            async with aiohttp.ClientSession() as session:
                pid = await _submit(session, server.base, chain(5, steps=10_000, delay=0.01), "g")
                for _ in range(200):
                    async with session.get(server.base + "/queue") as resp:
                        if (await resp.json())["queue_running"]:
                            return pid
                    await asyncio.sleep(0.05)
                raise TimeoutError("never started")

        pid = run(submit_long())
        assert server.terminate() == 0  # SIGTERM: interrupt, keep queued, exit cleanly
        server = start_serve(data)

        async def check():
            async with aiohttp.ClientSession() as session:
                async with session.get(server.base + "/queue") as resp:
                    queue = await resp.json()
                assert pid in [i[1] for i in queue["queue_running"] + queue["queue_pending"]]
                assert await _history(session, server.base, pid) is None

        run(check())
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
