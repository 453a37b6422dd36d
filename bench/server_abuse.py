"""Abuse benchmark for ``latentgraph serve``: the worst requests within the limits, and what a
well-behaved client sees meanwhile.

Starts a real server (a subprocess on a free loopback port, its own temporary data dir with the
cheap nodes of ``bench/server_load.py``), then for each attack below sends the request over and
over (bounded in count and time) while another client polls ``GET /queue`` (``--probes``
requests, ``--probe-gap`` apart). Prints a table and one JSON line: each attack's request size,
status, response size and time, the probe's p50/p99/max; the worst attack; and the fuzz counts
(``--fuzz N``: ``tests/fuzz_kit.py``'s campaign, its long budget, run after the attacks).

Attacks (each one the worst of its class we can build within the server's limits):

- ``cycle``: a dependency cycle through ``MAX_PROMPT_NODES`` nodes (the answer must name it
  once: kilobytes, not the 312 MB a 4k-node cycle once produced);
- ``max_errors``: a prompt of ``MAX_PROMPT_NODES`` nodes just under the body limit, every node
  wrong and echoing a long value (validation work and the error report's size);
- ``deep_json``: the body limit filled with values nested just under the depth limit;
- ``json_values``: the body limit filled with empty lists (the most objects per byte);
- ``multipart``: an upload of 80k tiny form fields (refused after the parts limit);
- ``history``: ``GET /history`` of ``--history-mb`` MB of stored prompts.

    python bench/server_abuse.py [--probes 200] [--probe-gap 0.01] [--history-mb 64] [--only cycle,history] [--fuzz 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_load import percentile, start_server  # noqa: E402  (a sibling script, not a package)

from latentgraph.server.app import ServerConfig  # noqa: E402
from latentgraph.server.routes_prompt import MAX_PROMPT_NODES  # noqa: E402

BODY_LIMIT = ServerConfig().max_body_bytes
#: The JSON nesting the server accepts (latentgraph.standard_json.MAX_DEPTH where it exists).
try:
    from latentgraph.standard_json import MAX_DEPTH  # noqa: E402
except ImportError:  # an older tree: Python's own recursion limit is the bound
    MAX_DEPTH = 100
#: The probe's target: p99 of ``GET /queue`` under attack.
TARGET_P99_MS = 100.0


@dataclass
class Attack:
    name: str
    method: str
    path: str
    #: keyword arguments of ``session.request`` (``data``/``headers``), built once.
    request: dict[str, Any]
    size: int
    #: run once before the attack (filling history…)
    setup: Callable[[str], Any] | None = None


@dataclass
class Outcome:
    name: str
    request_bytes: int
    status: int = 0
    response_bytes: int = 0
    response_ms: float = 0.0
    sent: int = 0
    probe_ms: list[float] = field(default_factory=list)
    note: str = ""

    def row(self) -> dict[str, Any]:
        p = self.probe_ms
        return {
            "attack": self.name,
            "request_bytes": self.request_bytes,
            "status": self.status,
            "response_bytes": self.response_bytes,
            "response_ms": round(self.response_ms, 1),
            "attacks_sent": self.sent,
            "probes": len(p),
            "probe_p50_ms": round(statistics.median(p), 2) if p else None,
            "probe_p99_ms": round(percentile(p, 99), 2) if p else None,
            "probe_max_ms": round(max(p), 2) if p else None,
            "note": self.note,
        }


# -- the requests -----------------------------------------------------------------------------
def _json_request(body: Any) -> tuple[dict[str, Any], int]:
    data = json.dumps(body, separators=(",", ":")).encode()
    return {"data": data, "headers": {"Content-Type": "application/json"}}, len(data)


def cycle_attack(nodes: int = MAX_PROMPT_NODES) -> Attack:
    prompt = {str(i): {"class_type": "BenchAdd", "inputs": {"a": [str(i % (nodes - 1) + 1), 0], "b": 1}} for i in range(1, nodes)}
    prompt["show"] = {"class_type": "BenchShow", "inputs": {"value": ["1", 0]}}
    request, size = _json_request({"prompt": prompt})
    return Attack(f"cycle ({nodes} nodes)", "POST", "/prompt", request, size)


def max_errors_attack(nodes: int = MAX_PROMPT_NODES, limit: int = BODY_LIMIT) -> Attack:
    """Every node: an INT input given a long string (wrong type, echoed), linked to a missing node."""
    per_node = (limit - 4096) // nodes
    text = "x" * max(1, per_node - 120)
    prompt = {str(i): {"class_type": "BenchAdd", "inputs": {"a": text, "b": ["missing", 0]}} for i in range(1, nodes)}
    prompt["show"] = {"class_type": "BenchShow", "inputs": {"value": ["1", 0]}}
    for i in range(2, nodes):  # every node is needed: each one's error is found and counted
        prompt[str(i - 1)]["inputs"]["b"] = [str(i), 0]
    request, size = _json_request({"prompt": prompt})
    return Attack(f"max_errors ({nodes} nodes)", "POST", "/prompt", request, size)


def deep_json_attack(limit: int = BODY_LIMIT, depth: int = MAX_DEPTH) -> Attack:
    """Values nested to the depth limit: body → prompt → node → inputs → value → ``__value__`` → …"""
    levels = max(1, depth - 6)
    deep = "[" * levels + "]" * levels
    value = '{"__value__":' + deep + "}"
    node = '{"class_type":"BenchShow","inputs":{"value":' + value + "}}"
    count = min(MAX_PROMPT_NODES, (limit - 4096) // (len(node) + 12))
    data = ('{"prompt":{' + ",".join(f'"{i}":{node}' for i in range(count)) + "}}").encode()
    return Attack(f"deep_json ({count}×{levels} levels)", "POST", "/prompt", {"data": data, "headers": {"Content-Type": "application/json"}}, len(data))


def json_values_attack(limit: int = BODY_LIMIT) -> Attack:
    """The body limit filled with the cheapest JSON values to write and the dearest to build:
    empty lists in ``extra_data`` (~5M Python objects from one ``json.loads``)."""
    count = (limit - 4096) // 3
    head = json.dumps({"prompt": _valid_prompt(0)}, separators=(",", ":"))[:-1]
    data = (head + ',"extra_data":{"x":[' + ",".join(["[]"] * count) + "]}}").encode()
    return Attack(f"json_values ({count} lists)", "POST", "/prompt", {"data": data, "headers": {"Content-Type": "application/json"}}, len(data))


def multipart_attack(fields: int = 80_000) -> Attack:
    boundary = "benchboundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n' for i in range(fields)]
    data = ("".join(parts) + f"--{boundary}--\r\n").encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return Attack(f"multipart ({fields} fields)", "POST", "/upload/image", {"data": data, "headers": headers}, len(data))


def history_attack(megabytes: int) -> Attack:
    """``GET /history`` after ``megabytes`` MB of prompts ran (each 1 MB of ``extra_data``)."""

    async def fill(base: str) -> None:
        blob = "y" * (1024 * 1024 - 512)
        async with aiohttp.ClientSession() as session:
            ids = []
            for i in range(megabytes):
                body = {"prompt": _valid_prompt(i), "extra_data": {"blob": blob}}
                async with session.post(f"{base}/prompt", json=body) as resp:
                    ids.append((await resp.json())["prompt_id"])
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # bounded: the worker runs them in a few seconds
                async with session.get(f"{base}/prompt") as resp:
                    if (await resp.json())["exec_info"]["queue_remaining"] == 0:
                        return
                await asyncio.sleep(0.2)

    return Attack(f"history ({megabytes} MB)", "GET", "/history", {}, 0, setup=fill)


def _valid_prompt(value: int) -> dict:
    return {
        "1": {"class_type": "BenchNumber", "inputs": {"value": value}},
        "2": {"class_type": "BenchShow", "inputs": {"value": ["1", 0]}},
    }


# -- running them -------------------------------------------------------------------------------
async def probe(base: str, count: int, gap: float, stop: asyncio.Event) -> list[float]:
    """A well-behaved client: ``GET /queue`` ``count`` times (or until ``stop``), ``gap`` apart."""
    latencies = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            if stop.is_set():
                break
            start = time.perf_counter()
            async with session.get(f"{base}/queue") as resp:
                await resp.read()
            latencies.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(gap)
    return latencies


async def run_attack(base: str, attack: Attack, probes: int, gap: float, max_seconds: float, max_sends: int) -> Outcome:
    """Send ``attack`` back to back (at most ``max_sends`` times, ``max_seconds``) while probing."""
    if attack.setup is not None:
        await attack.setup(base)
    out = Outcome(attack.name, attack.size)
    stop = asyncio.Event()
    timeout = aiohttp.ClientTimeout(total=max_seconds + 60)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def attacker() -> None:
            deadline = time.monotonic() + max_seconds
            times = []
            while out.sent < max_sends and time.monotonic() < deadline and not stop.is_set():
                start = time.perf_counter()
                try:
                    async with session.request(attack.method, base + attack.path, **attack.request) as resp:
                        body = await resp.read()
                        out.status, out.response_bytes = resp.status, len(body)
                except aiohttp.ClientError as exc:  # the server may close an upload it refused early
                    out.status, out.note = -1, f"{type(exc).__name__}"
                times.append((time.perf_counter() - start) * 1000)
                out.sent += 1
            out.response_ms = max(times) if times else 0.0
            stop.set()

        task = asyncio.create_task(attacker())
        await asyncio.sleep(0.05)  # the first attack request is on its way
        out.probe_ms = await probe(base, probes, gap, stop)
        stop.set()
        await task
    return out


async def baseline(base: str, probes: int, gap: float) -> Outcome:
    out = Outcome("none (baseline)", 0)
    out.probe_ms = await probe(base, probes, gap, asyncio.Event())
    return out


def fuzz_counts(base: str, count: int = 0, seed: int = 0) -> dict[str, Any] | None:
    """The fuzz campaign of ``tests/fuzz_kit.py`` (its long budget): ``count`` mutated requests
    (and ``count // 20`` websocket sessions) against ``base``; its counts (requests, 2xx, 4xx,
    5xx, hangs, dropped, non-JSON, the slowest request) and up to 20 failures. None if ``count`` is 0."""
    if count <= 0:
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import fuzz_kit  # a test helper, not a package module

    counts = asyncio.run(fuzz_kit.run_campaign(base, seed, count))
    return {**counts.summary(), "seed": seed, "ok": counts.ok, "failures": counts.failures}


ATTACKS = {
    "cycle": lambda args: cycle_attack(),
    "max_errors": lambda args: max_errors_attack(),
    "deep_json": lambda args: deep_json_attack(),
    "multipart": lambda args: multipart_attack(),
    "history": lambda args: history_attack(args.history_mb),
    "json_values": lambda args: json_values_attack(),
}


async def settle(base: str, timeout: float = 120.0) -> None:
    """Between attacks: wait (bounded) until nothing is queued, then clear history, so each attack
    is measured alone (an accepted attack prompt would otherwise weigh on every later ``/queue``)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with session.get(f"{base}/prompt") as resp:
                if (await resp.json())["exec_info"]["queue_remaining"] == 0:
                    break
            await asyncio.sleep(0.2)
        async with session.post(f"{base}/history", json={"clear": True}) as resp:
            await resp.read()


async def bench(base: str, args: argparse.Namespace) -> list[Outcome]:
    results = [await baseline(base, args.probes, args.probe_gap)]
    for name in args.only.split(","):
        attack = ATTACKS[name](args)
        results.append(await run_attack(base, attack, args.probes, args.probe_gap, args.max_seconds, args.max_sends))
        await settle(base)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=200, help="GET /queue requests per attack")
    parser.add_argument("--probe-gap", type=float, default=0.01, help="seconds between probes")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="per attack")
    parser.add_argument("--max-sends", type=int, default=200, help="attack requests per attack, at most")
    parser.add_argument("--history-mb", type=int, default=64)
    parser.add_argument("--only", default=",".join(ATTACKS), help=f"comma-separated, of {', '.join(ATTACKS)}")
    parser.add_argument("--fuzz", type=int, default=2000, metavar="N", help="fuzz requests after the attacks (0: none)")
    parser.add_argument("--fuzz-seed", type=int, default=0)
    parser.add_argument("--url", help="use a running server (it must have the bench_nodes plugin)")
    args = parser.parse_args(argv)

    proc = None
    with tempfile.TemporaryDirectory(prefix="lg-abuse-") as tmp:
        base = args.url
        if base is None:
            proc, base = start_server(Path(tmp), ["--queue-sync", "normal"])
        try:
            results = asyncio.run(bench(base.rstrip("/"), args))
            fuzz = fuzz_counts(base.rstrip("/"), args.fuzz, args.fuzz_seed)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    rows = [r.row() for r in results]
    keys = [k for k in rows[0] if k != "attack"]
    width = max(len(r["attack"]) for r in rows)
    print(f"{'attack':<{width}}  " + "  ".join(f"{k:>14}" for k in keys))
    for r in rows:
        print(f"{r['attack']:<{width}}  " + "  ".join(f"{str(r[k]):>14}" for k in keys))
    attacks = rows[1:]
    worst = max(attacks, key=lambda r: (r["probe_p99_ms"] or 0)) if attacks else None
    p99 = max((r["probe_p99_ms"] or 0) for r in attacks) if attacks else None
    summary = {
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "baseline_p99_ms": rows[0]["probe_p99_ms"],
        "worst_attack": worst["attack"] if worst else None,
        "worst_request_bytes": worst["request_bytes"] if worst else None,
        "worst_response_bytes": worst["response_bytes"] if worst else None,
        "worst_response_ms": worst["response_ms"] if worst else None,
        "concurrent_p99_ms": p99,
        "target_p99_ms": TARGET_P99_MS,
        "ok": p99 is not None and p99 < TARGET_P99_MS and all(r["status"] != 500 for r in attacks) and (fuzz is None or fuzz["ok"]),
        "attacks": attacks,
        "fuzz": fuzz,
    }
    if fuzz is not None:
        shown = ("requests", "status_2xx", "status_4xx", "status_5xx", "hangs", "dropped", "non_json", "ws_sessions", "ws_non_json", "seconds")
        print("fuzz (seed %d): " % fuzz["seed"] + ", ".join(f"{k} {fuzz[k]}" for k in shown) + f"; slowest {fuzz['slowest_ms']} ms")
        for failure in fuzz["failures"]:
            print("  fuzz failure:", failure[:300])
    print(json.dumps(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
