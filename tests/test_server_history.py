"""``/history`` and ``/queue`` entries shaped as ComfyUI's, on a real loopback server: status_str
values, offset counted from the oldest, ``meta``, ``extra_data.create_time``, and secrets that
are never stored nor returned."""

from __future__ import annotations

import time

from server_kit import chain, run, serving

from latentgraph.testing import WorkflowBuilder

SECRET = "sk-comfy-" + "7e1f" * 12


def failing() -> dict:
    wf = WorkflowBuilder()
    boom = wf.add("SrvBoom", id="2", value=wf.add("SrvNumber", id="1", value=1)[0], fail=True)
    wf.add("SrvShow", id="3", value=boom[0])
    return wf.to_api()


def test_status_str_is_success_or_error_and_an_interrupt_is_an_error(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("h")
            ok = (await client.submit(chain(1), "h"))["prompt_id"]
            bad = (await client.submit(failing(), "h"))["prompt_id"]
            long = (await client.submit(chain(2, steps=5000, delay=0.01), "h"))["prompt_id"]
            await ws.until("progress", prompt_id=long)
            status, body = await client.post("/interrupt", {"prompt_id": long})
            assert body["interrupted"] is True
            await ws.until_done(long)
            history = (await client.get("/history"))[1]
            shapes = {
                pid: (e["status"]["status_str"], e["status"]["completed"], [m[0] for m in e["status"]["messages"]])
                for pid, e in history.items()
            }
            assert shapes == {
                ok: ("success", True, ["execution_start", "execution_cached", "execution_success"]),
                bad: ("error", False, ["execution_start", "execution_cached", "execution_error"]),
                long: ("error", False, ["execution_start", "execution_cached", "execution_interrupted"]),
            }
            interrupted = history[long]["status"]["messages"][-1][1]
            assert interrupted["node_id"] == "3" and interrupted["node_type"] == "SrvWait"
            assert interrupted["executed"] == ["1", "2"] and isinstance(interrupted["timestamp"], int)
            # meta: one entry per output node, as ComfyUI's execution records it.
            assert history[ok]["meta"] == {
                "4": {"node_id": "4", "display_node": "4", "parent_node": None, "real_node_id": "4"}
            }
            assert history[bad]["outputs"] == {} and history[bad]["meta"] == {}

    run(go())


def test_offset_counts_from_the_oldest_entry(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("o")
            ids = [(await client.submit(chain(v), "o"))["prompt_id"] for v in range(4)]
            await ws.until_done(ids[-1])

            async def listing(query: str) -> list[str]:
                status, body = await client.get("/history" + query)
                assert status == 200, body
                return list(body)

            assert await listing("") == ids
            assert await listing("?offset=0") == ids
            assert await listing("?offset=1") == ids[1:]
            assert await listing("?max_items=2&offset=1") == ids[1:3]
            assert await listing("?max_items=2&offset=3") == ids[3:]
            assert await listing("?offset=9") == []
            assert await listing("?max_items=2") == ids[2:]  # no offset: the newest, oldest first

    run(go())


def test_create_time_is_stamped_at_acceptance(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("t")
            before = int(time.time() * 1000)
            stamped = (await client.submit(chain(1), "t"))["prompt_id"]
            after = int(time.time() * 1000)
            given = (await client.submit(chain(2), "t", extra_data={"create_time": 1234}))["prompt_id"]
            await ws.until_done(given)
            history = (await client.get("/history"))[1]
            created = history[stamped]["prompt"][3]["create_time"]
            assert isinstance(created, int) and before <= created <= after
            assert history[given]["prompt"][3]["create_time"] == 1234

    run(go())


def test_secrets_are_never_stored_nor_returned(lg_settings):
    secrets = {"api_key_comfy_org": SECRET, "auth_token_comfy_org": SECRET + "-token"}

    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("s")
            busy = (await client.submit(chain(1, steps=5000, delay=0.01), "s"))["prompt_id"]
            await ws.until("progress", prompt_id=busy)
            pid = (await client.submit(chain(7), "s", extra_data={**secrets, "keep": "me"}))["prompt_id"]
            status, queue = await client.get("/queue")
            pending = {item[1]: item for item in queue["queue_pending"]}
            assert set(pending[pid][3]) == {"keep", "client_id", "create_time"}
            assert SECRET not in str(queue)
            await client.post("/interrupt", {"prompt_id": busy})
            await ws.until_done(pid)
            status, history = await client.get(f"/history/{pid}")
            assert history[pid]["status"]["status_str"] == "success"
            assert set(history[pid]["prompt"][3]) == {"keep", "client_id", "create_time"}
            for path in ("/history", f"/history/{pid}", "/queue"):
                status, body = await client.get(path)
                assert SECRET not in str(body), path

    run(go())
    files = [p for p in lg_settings.base_dir.iterdir() if p.name.startswith("queue.sqlite3")]
    assert files and all(SECRET.encode() not in p.read_bytes() for p in files)
