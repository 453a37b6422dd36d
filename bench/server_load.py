"""Load benchmark for ``latentgraph serve``: many websocket clients, many small prompts.

Starts a real server (a subprocess on a free loopback port, its own temporary data dir with a
plugin of cheap pure-Python nodes), connects ``--clients`` websocket clients, and has them
submit ``--prompts`` prompts in total, each client as fast as its previous POST returns. Checks
that every prompt completes, that each client receives the full event sequence of each of its
prompts in order and nothing of anyone else's. Prints a table and one JSON line.

Two phases of ``--prompts`` each: "burst" (every client submits back to back: the server's peak
intake; by Little's law its latency is about clients / intake rate) and "paced" (Poisson
arrivals at ``--rate`` prompts/s in total: the submit latency a client sees under a sustained
load the worker keeps up with).

    python bench/server_load.py [--clients 50] [--prompts 1000] [--rate 150] [--url http://127.0.0.1:8188]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

PLUGIN = '''
from latentgraph import In, Node, NodeResult, NodeSpec, Out, hookimpl

class BenchNumber(Node):
    spec = NodeSpec(name="BenchNumber", inputs=(In("value", "INT", default=0, min=0, max=10**12),), outputs=(Out("INT"),))
    def execute(self, ctx, value):
        return (value,)

class BenchAdd(Node):
    spec = NodeSpec(name="BenchAdd", inputs=(In("a", "INT"), In("b", "INT", default=0)), outputs=(Out("INT"),))
    def execute(self, ctx, a, b):
        ctx.progress(1, 1)
        return (a + b,)

class BenchShow(Node):
    spec = NodeSpec(name="BenchShow", inputs=(In("value", "INT"),), output_node=True)
    def execute(self, ctx, value):
        return NodeResult(ui={"value": [value]})

@hookimpl
def register_nodes():
    return [BenchNumber, BenchAdd, BenchShow]
'''

#: What a client must see for each of its prompts, in this order.
EXPECTED = [
    ("execution_start", None),
    ("execution_cached", None),
    ("executing", "1"),
    ("executing", "2"),
    ("progress", "2"),
    ("executing", "3"),
    ("executed", "3"),
    ("execution_success", None),
    ("executing", None),
]


def prompt(value: int) -> dict:
    return {
        "1": {"class_type": "BenchNumber", "inputs": {"value": value}},
        "2": {"class_type": "BenchAdd", "inputs": {"a": ["1", 0], "b": 1}},
        "3": {"class_type": "BenchShow", "inputs": {"value": ["2", 0]}},
    }


@dataclass
class ClientRun:
    client_id: str
    latencies: list[float] = field(default_factory=list)
    prompt_ids: list[str] = field(default_factory=list)
    messages: list[tuple[str, dict]] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    rejected: int = 0


async def run_client(base: str, index: int, count: int, interval: float, timeout: float, tag: str) -> ClientRun:
    """One client: submits ``count`` prompts, ``interval`` seconds apart on average (0 = back to back)."""
    run = ClientRun(f"bench-{tag}-{index}")
    rng = random.Random(index)
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"{base}/ws?clientId={run.client_id}", max_msg_size=0)
        finished = asyncio.Event()

        async def reader():
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                kind, body = data["type"], data["data"]
                if kind == "status":
                    continue
                run.messages.append((kind, body))
                if kind == "executing" and body.get("node") is None:
                    run.done.add(body.get("prompt_id"))
                    if len(run.done) >= count and len(run.prompt_ids) == count:
                        finished.set()

        task = asyncio.create_task(reader())
        if interval:
            await asyncio.sleep(rng.uniform(0, interval))
        for j in range(count):
            if interval and j:
                await asyncio.sleep(rng.expovariate(1 / interval))  # Poisson arrivals
            body = {"prompt": prompt(index * 1_000_000 + j + (500_000 if tag == "paced" else 0)), "client_id": run.client_id}
            start = time.perf_counter()
            async with session.post(f"{base}/prompt", json=body) as resp:
                reply = await resp.json()
            run.latencies.append(time.perf_counter() - start)
            if resp.status != 200:
                run.rejected += 1
                continue
            run.prompt_ids.append(reply["prompt_id"])
        if len(run.done) >= count:
            finished.set()
        try:
            await asyncio.wait_for(finished.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        await ws.close()
        task.cancel()
    return run


def check(run: ClientRun) -> tuple[int, int, int]:
    """(lost or out-of-order prompts, misrouted messages, incomplete prompts)."""
    mine = set(run.prompt_ids)
    misrouted = sum(1 for _, body in run.messages if body.get("prompt_id") not in mine)
    per_prompt: dict[str, list[tuple[str, str | None]]] = {pid: [] for pid in run.prompt_ids}
    for kind, body in run.messages:
        pid = body.get("prompt_id")
        if pid in per_prompt and kind != "progress_state":  # per-node states: the editor's, not counted here
            node = body.get("node") if kind in ("executing", "progress", "executed") else None
            per_prompt[pid].append((kind, node))
    broken = sum(1 for seq in per_prompt.values() if seq != EXPECTED)
    incomplete = len(mine - run.done)
    return broken, misrouted, incomplete


def start_server(data_dir: Path, extra_args: list[str]) -> tuple[subprocess.Popen, str]:
    plugins = data_dir / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "bench_nodes.py").write_text(PLUGIN)
    env = {**os.environ, "LATENTGRAPH_PLUGINS": "bench_nodes"}
    log = open(data_dir / "serve.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "latentgraph.cli", "serve", "--data-dir", str(data_dir), "--port", "0", *extra_args],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    for line in proc.stdout:
        if "serving on " in line:
            return proc, line.strip().split("serving on ", 1)[1]
    raise RuntimeError(f"server did not start: {(data_dir / 'serve.log').read_text()}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def bench(base: str, clients: int, prompts: int, timeout: float, rate: float = 0.0) -> dict:
    """``rate`` 0: every client submits back to back (closed loop, the server's peak intake);
    otherwise Poisson arrivals at ``rate`` prompts/s in total (an open-loop, sustainable load)."""
    per_client = [prompts // clients + (1 if i < prompts % clients else 0) for i in range(clients)]
    interval = clients / rate if rate else 0.0
    tag = "paced" if rate else "burst"
    started = time.perf_counter()
    runs = await asyncio.gather(*(run_client(base, i, n, interval, timeout, tag) for i, n in enumerate(per_client)))
    wall = time.perf_counter() - started
    latencies = [x for r in runs for x in r.latencies]
    broken = misrouted = incomplete = rejected = 0
    for r in runs:
        b, m, i = check(r)
        broken, misrouted, incomplete, rejected = broken + b, misrouted + m, incomplete + i, rejected + r.rejected
    completed = sum(len(r.done & set(r.prompt_ids)) for r in runs)
    return {
        "mode": f"paced {rate:g}/s" if rate else "burst",
        "clients": clients,
        "prompts": prompts,
        "completed": completed,
        "rejected": rejected,
        "incomplete": incomplete,
        "broken_sequences": broken,
        "misrouted_messages": misrouted,
        "submit_p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "submit_p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "submit_max_ms": round(max(latencies) * 1000, 2) if latencies else None,
        "prompts_per_s": round(completed / wall, 1),
        "wall_s": round(wall, 2),
        "ok": completed == prompts and broken == 0 and misrouted == 0 and rejected == 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--url", help="use a running server (it must have the bench_nodes plugin)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--rate",
        type=float,
        default=150.0,
        help="prompts/s of the second, paced phase (0 skips it); the first phase submits back to back",
    )
    parser.add_argument("--queue-sync", choices=["full", "normal"], default="full", help="the server's --queue-sync")
    args = parser.parse_args(argv)

    proc = None
    results = []
    with tempfile.TemporaryDirectory(prefix="lg-bench-") as tmp:
        base = args.url
        if base is None:
            proc, base = start_server(Path(tmp), ["--queue-sync", args.queue_sync])
        try:
            for rate in (0.0, args.rate) if args.rate else (0.0,):
                results.append(asyncio.run(bench(base.rstrip("/"), args.clients, args.prompts, args.timeout, rate)))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    keys = list(results[0])
    width = max(len(k) for k in keys)
    print(f"{'':<{width}}  " + "  ".join(f"{r['mode']:>14}" for r in results))
    for key in keys[1:]:
        print(f"{key:<{width}}  " + "  ".join(f"{str(r[key]):>14}" for r in results))
    summary = {
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "queue_sync": args.queue_sync if args.url is None else None,
        "phases": results,
    }
    summary.update({f"{r['mode'].split()[0]}_{k}": r[k] for r in results for k in ("submit_p50_ms", "submit_p99_ms", "prompts_per_s")})
    print(json.dumps(summary))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
