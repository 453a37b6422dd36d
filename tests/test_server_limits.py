"""Error size and work are linear in the request, and nothing big stalls other clients.

On a real loopback server: a dependency cycle is named once, every error report is bounded
(count and size) and says what it left out, a prompt over the node limit is refused, and a
big validation leaves a concurrent ``GET /queue`` answering.
"""

from __future__ import annotations

import asyncio
import json
import time

from server_kit import run, serving

from latentgraph.errors import LIMITS
from latentgraph.server.routes_prompt import MAX_PROMPT_NODES

#: The bar for any error answer, whatever the prompt: a 4k-node cycle once answered 312 MB.
MAX_ERROR_BYTES = 64 * 1024


def cycle(nodes: int) -> dict:
    """``nodes`` SrvAdd nodes in one cycle (1 → 2 → … → 1), shown by one output."""
    prompt = {str(i): {"class_type": "SrvAdd", "inputs": {"a": [str(i % nodes + 1), 0], "b": 1}} for i in range(1, nodes + 1)}
    prompt["show"] = {"class_type": "SrvShow", "inputs": {"value": ["1", 0]}}
    return prompt


def all_wrong(nodes: int, value: object = "not a number") -> dict:
    """A chain of ``nodes`` SrvAdd nodes, each with a wrong literal, all needed by one output."""
    prompt = {str(i): {"class_type": "SrvAdd", "inputs": {"a": [str(i + 1), 0], "b": value}} for i in range(1, nodes)}
    prompt[str(nodes)] = {"class_type": "SrvNumber", "inputs": {"value": value}}
    prompt["show"] = {"class_type": "SrvShow", "inputs": {"value": ["1", 0]}}
    return prompt


async def post_raw(client, body: dict) -> tuple[int, bytes]:
    async with client.session.post(client.url("/prompt"), json=body) as resp:
        return resp.status, await resp.read()


def test_a_4k_node_cycle_is_named_once_in_a_small_answer(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            status, raw = await post_raw(client, {"prompt": cycle(4000)})
            assert status == 400
            assert len(raw) < MAX_ERROR_BYTES, len(raw)
            assert raw.count(b"cycle through nodes") == 1
            body = json.loads(raw)
            errors = [e for n in body["node_errors"].values() for e in n["errors"]]
            assert {e["type"] for e in errors} == {"dependency_cycle"}
            named = [e for e in errors if "cycle" in e["extra_info"]]
            assert len(named) == 1 and named[0]["extra_info"]["cycle_length"] == 4000
            assert named[0]["extra_info"]["cycle"][:3] == ["1", "2", "3"]
            assert all(e["extra_info"]["cycle_of"] == "1" for e in errors if e is not named[0])
            omitted = body["error"]["extra_info"]["omitted"]
            assert omitted == {"node_errors": 4000 - len(body["node_errors"]), "errors": 4000 - len(errors)}
            assert "show" not in body["node_errors"]

    run(go())


def test_node_errors_are_capped_and_the_rest_counted(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            status, raw = await post_raw(client, {"prompt": all_wrong(1000)})
            assert status == 400 and len(raw) < MAX_ERROR_BYTES, (status, len(raw))
            body = json.loads(raw)
            listed = list(body["node_errors"])
            assert listed == [str(i) for i in range(1, LIMITS.max_nodes + 1)]  # the first, in workflow order
            assert body["error"]["type"] == "prompt_outputs_failed_validation"
            assert body["error"]["extra_info"]["omitted"] == {"node_errors": 1000 - len(listed), "errors": 1000 - len(listed)}
            assert f"{len(listed)} of 1000 nodes" in body["error"]["details"]

    run(go())


def test_echoed_values_and_names_are_clipped(lg_settings):
    """Megabytes sent in a value, a class type or a node id come back as a few hundred bytes."""
    long_id = "n" * 50_000
    prompt = {
        "1": {"class_type": "SrvNumber", "inputs": {"value": "9" * 1_000_000}},
        "2": {"class_type": "SrvNumber", "inputs": {"value": {"__value__": [[[[1.5] * 1000] * 10] * 10]}}},
        long_id: {"class_type": "Unknown" + "x" * 500_000, "inputs": {}},
        "show1": {"class_type": "SrvShow", "inputs": {"value": ["1", 0]}},
        "show2": {"class_type": "SrvShow", "inputs": {"value": ["2", 0]}},
    }

    async def go():
        async with serving(lg_settings) as client:
            status, raw = await post_raw(client, {"prompt": prompt})
            assert status == 400 and len(raw) < 8 * LIMITS.max_text, (status, len(raw))
            body = json.loads(raw)
            big = body["node_errors"]["1"]["errors"][0]
            assert big["extra_info"]["input_name"] == "value"
            assert isinstance(big["extra_info"]["received_value"], str) and big["extra_info"]["received_value"].endswith("…")
            assert len(big["message"]) < 200
            nested = body["node_errors"]["2"]["errors"][0]["extra_info"]["received_value"]
            assert isinstance(nested, str) and nested.startswith("[[[[1.5, 1.5")
            (unknown_id,) = [k for k in body["node_errors"] if k.startswith("nnn")]
            assert len(unknown_id) < 300
            assert body["node_errors"][unknown_id]["errors"][0]["type"] == "missing_node_type"

    run(go())


def test_a_prompt_over_the_node_limit_is_refused_naming_the_limit(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            status, body = await client.post("/prompt", {"prompt": cycle(MAX_PROMPT_NODES)})  # + its output node
            assert status == 400
            assert body["error"]["type"] == "prompt_too_large"
            assert body["error"]["extra_info"] == {"field": "prompt", "nodes": MAX_PROMPT_NODES + 1, "limit": MAX_PROMPT_NODES}
            status, queue = await client.get("/queue")
            assert queue == {"queue_running": [], "queue_pending": []}

    run(go())


def test_a_big_validation_does_not_block_a_concurrent_queue_read(lg_settings):
    """While an 8k-node cycle is validated and answered (it once took seconds of JSON encoding on
    the event loop), every ``GET /queue`` from another client answers within a second."""

    async def go():
        async with serving(lg_settings) as client:
            big = asyncio.create_task(post_raw(client, {"prompt": cycle(8000)}))
            waits: list[float] = []
            async with type(client.session)() as other:
                for _ in range(500):  # bounded; ends when the big request does
                    start = time.monotonic()
                    async with other.get(client.url("/queue")) as resp:
                        assert resp.status == 200
                        await resp.read()
                    waits.append(time.monotonic() - start)
                    if big.done():
                        break
                    await asyncio.sleep(0.02)
            status, raw = await big
            assert status == 400 and len(raw) < MAX_ERROR_BYTES
            assert len(waits) >= 2, "the big request finished before any concurrent read: not a test"
            assert max(waits) < 1.0, waits

    run(go())


def test_a_body_of_millions_of_tiny_values_is_refused_before_parsing(lg_settings):
    """JSON parsing holds the GIL: a 16 MiB body of empty lists once stalled every client for
    seconds. Such a body is counted (brackets, commas) and refused with 413 before it is parsed."""

    async def go():
        async with serving(lg_settings) as client:
            flood = {"prompt": {"1": {"class_type": "X", "inputs": {"v": [[]] * 300_000}}}}
            status, body = await client.post("/prompt", flood)
            assert status == 413
            assert body["error"]["extra_info"]["reason"] == "too_many_values"
            status, queue = await client.get("/queue")
            assert status == 200 and queue["queue_pending"] == []

    run(go())
