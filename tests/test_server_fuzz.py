"""The fuzz campaign's quick budget, and a regression test for each class of bug it found.

The campaign (``fuzz_kit``: mutated example workflows and every request shape) runs against a real
loopback server served through ``make_runner``, as ``latentgraph serve`` serves: no 5xx, no hang,
no dropped connection, and every answer standard JSON (``NaN``/``Infinity`` refused) except the
files ``/view`` serves; afterwards the server still queues and runs a prompt. The CLI gets the same
mutations as files: ``latentgraph validate`` answers each with a structured report, never a
traceback or an internal error. ``bench/server_abuse.py --fuzz N`` runs the long budget.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import fuzz_kit
import pytest
from server_kit import Client, chain, run, serving

from latentgraph.testing import run_cli

#: Fixed seeds: a failure here replays exactly (``fuzz_kit.requests(SEED, n)``).
HTTP_SEED = 12
CLI_SEED = 12


async def _queue_still_works(client: Client) -> None:
    """Clear what the fuzz queued, then queue and run a prompt to the end (bounded)."""
    assert (await client.post("/queue", {"clear": True}))[0] == 200
    assert (await client.post("/interrupt", {}))[0] == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, queue = await client.get("/queue")
        assert status == 200 and set(queue) == {"queue_running", "queue_pending"}, queue
        if not queue["queue_running"] and not queue["queue_pending"]:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"the queue did not drain: {queue}")
    prompt_id = (await client.submit(chain(5)))["prompt_id"]
    while time.monotonic() < deadline:
        status, history = await client.get(f"/history/{prompt_id}")
        if status == 200 and prompt_id in history:
            assert history[prompt_id]["status"]["status_str"] == "success", history
            return
        await asyncio.sleep(0.1)
    pytest.fail("a prompt queued after the fuzz did not run")


def test_fuzz_campaign_quick_budget(lg_settings):
    async def go():
        async with serving(lg_settings, runner=True) as client:
            counts = await fuzz_kit.run_campaign(client.base, HTTP_SEED, 500, max_seconds=30)
            await _queue_still_works(client)
        return counts

    counts = run(go())
    summary = counts.summary()
    assert counts.requests >= 150 and counts.ws_sessions >= 5, summary
    assert counts.ok, "\n".join([str(summary), *counts.failures])
    assert counts.status_4xx > counts.requests / 2, summary  # the mutations mostly reach validation


def test_cli_validate_answers_mutated_files_with_structured_errors(lg_settings, tmp_path):
    api, editor = fuzz_kit.load_examples()
    mutator = fuzz_kit.Mutator(fuzz_kit.random.Random(CLI_SEED), api, editor)
    deadline = time.monotonic() + 10
    checked = 0
    for i in range(300):
        if time.monotonic() > deadline:
            break
        workflow = mutator.api_workflow() if i % 2 else mutator.editor_workflow()
        path = tmp_path / f"mutated{i}.json"
        path.write_bytes(fuzz_kit.dumps(workflow).encode("utf-8", "surrogatepass"))
        as_json = i % 3 != 0
        result = run_cli(lg_settings, "validate", path, *(["--json"] if as_json else []))
        what = f"{path.read_bytes()[:300]!r}: exit {result.exit_code}\n{result.stdout[:500]}\n{result.stderr[:500]}"
        assert result.exit_code in (0, 1), what
        assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, what
        if as_json:
            report = fuzz_kit.strict_json(result.stdout.encode())
            assert (report.get("error") or {}).get("type") != "internal_error", what
        else:
            assert "internal_error" not in result.stderr, what
        checked += 1
    assert checked >= 40


# -- regressions: one per class of bug the fuzz found -------------------------------------------
def test_a_broken_body_closes_the_connection_it_broke(lg_settings):
    """A body that breaks off (bad gzip, bad deflate) made aiohttp drop the keep-alive connection
    after a 400 that did not say ``Connection: close``: the client's next request on it failed."""

    async def go():
        async with serving(lg_settings, runner=True) as client:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
                for encoding in ("gzip", "deflate"):
                    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
                    async with session.post(client.url("/interrupt"), data=b"{}not compressed", headers=headers) as resp:
                        assert resp.status == 400, await resp.read()
                        assert fuzz_kit.strict_json(await resp.read())["error"]["type"] == "bad_request"
                        assert resp.headers.get("Connection", "").lower() == "close"
                    async with session.get(client.url("/queue")) as resp:  # same pool of one
                        assert resp.status == 200

    run(go())


@pytest.mark.parametrize("path", ["/queue", "/prompt", "/workflow/convert"])
def test_a_long_integer_and_deep_nesting_together_are_400(lg_settings, path):
    """The second parse (marking integer literals over Python's digit limit) was outside the
    ``RecursionError`` guard: a body with both a 5,000-digit integer and deep nesting was a 500."""
    body = ('{"zzz": ' + "9" * 5000 + ', "deep": ' + "[" * 50_000 + "]" * 50_000 + "}").encode()

    async def go():
        async with serving(lg_settings, runner=True) as client:
            async with client.session.post(client.url(path), data=body, headers={"Content-Type": "application/json"}) as resp:
                return resp.status, await resp.read()

    status, raw = run(go())
    assert status == 400, raw[:300]
    assert fuzz_kit.strict_json(raw)["error"]["extra_info"]["errors"][0]["type"] == "too_deep"


def test_cli_long_integer_and_deep_nesting_is_a_structured_error(lg_settings, tmp_path):
    path = tmp_path / "both.json"
    path.write_text('{"1": {"class_type": "SaveImage", "inputs": {"x": ' + "9" * 5000 + "}}, " + '"2": ' + "[" * 50_000 + "]" * 50_000 + "}")
    result = run_cli(lg_settings, "validate", path, "--json")
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert fuzz_kit.strict_json(result.stdout.encode())["error"]["type"] != "internal_error", result.stdout


@pytest.mark.parametrize("query", ["max_items=18446744073709551617", "offset=18446744073709551617", "max_items=" + "9" * 300 + "&offset=" + "9" * 300])
def test_history_counts_beyond_64_bits_are_not_a_500(lg_settings, query):
    """``max_items``/``offset`` went to SQLite as they came: past 2**63 an ``OverflowError`` (500)."""

    async def go():
        async with serving(lg_settings, runner=True) as client:
            prompt_id = (await client.submit(chain(1)))["prompt_id"]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (await client.get(f"/history/{prompt_id}"))[1] == {}:
                await asyncio.sleep(0.05)
            async with client.session.get(client.url(f"/history?{query}")) as resp:
                return prompt_id, resp.status, await resp.read()

    prompt_id, status, raw = run(go())
    assert status == 200, raw[:300]
    history = fuzz_kit.strict_json(raw)
    assert list(history) == ([] if "offset" in query else [prompt_id])
