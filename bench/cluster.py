"""Cluster benchmark for ``latentgraph serve --workers ray``: throughput with 1, 2, 4 workers and
model affinity versus round-robin.

Starts a local Ray cluster (4 CPU slots, loopback only) and, per scenario, a real server app
(``create_app`` with a ``ClusterConfig``: what ``--workers ray --worker-count N`` builds) on a
free loopback port, its own temporary data dir (the test nodes plugin, the shipped demo and
tiny SD1 checkpoints copied in). Each scenario uses its own Ray namespace and kills its actors
afterwards, so no worker is adopted warm by the next one. A websocket client submits the prompts
in one burst and waits for every ``executing {node: null}``; timing starts after the workers
answer and have each run one warm-up prompt.

- **sleep**: ``SrvWait`` of 5 × 0.1 s per prompt: scheduling only, no CPU. Scaling efficiency is
  ``rate(N) / (N × rate(1))``.
- **demo**: the demo model (``latentgraph-demo-shapes``), 64×64, few steps. Real compute: on a
  machine with C cores more than C workers cannot scale (``cpus`` is in the JSON line).
- **affinity**: 3 workers, the demo model and ``tiny-sd1`` alternating (A, B, A, B, …), with the
  dispatcher's affinity routing and with round-robin. Round-robin is not a server option: the
  bench replaces the dispatcher's ``choose`` method on that server instance with a cycle over
  the healthy workers (server code unchanged). Model loads are the sum of the workers' own
  ``model_loads`` reports (a model file a worker had not run before).

Prints a table and one JSON line.

    python bench/cluster.py [--sleep-prompts 16] [--demo-prompts 32] [--demo-steps 10] [--affinity-prompts 12]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "nodes" / "data" / "models" / "checkpoints"
DEMO = "latentgraph-demo-shapes.safetensors"
TINY = "tiny-sd1.safetensors"


def sleep_prompt(value: int, steps: int = 5, delay: float = 0.1) -> dict:
    return {
        "1": {"class_type": "SrvNumber", "inputs": {"value": value}},
        "2": {"class_type": "SrvWait", "inputs": {"value": ["1", 0], "steps": steps, "delay": delay, "preview": False}},
        "3": {"class_type": "SrvShow", "inputs": {"value": ["2", 0]}},
    }


def model_prompt(ckpt: str, seed: int, steps: int) -> dict:
    return {
        "4": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": ckpt}},
        "6": {"class_type": "CLIPEncode", "inputs": {"text": "a red circle on a blue background", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatent", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {
            "model": ["4", 0], "seed": seed, "steps": steps, "cfg": 6.0, "sampler_name": "euler",
            "scheduler": "normal", "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0],
            "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "bench"}},
    }


def make_data_dir(base: Path) -> None:
    plugins = base / "plugins"
    plugins.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "server_nodes.py", plugins / "server_nodes.py")
    checkpoints = base / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in (DEMO, TINY):  # copies: a symlink resolves outside the model folder and is refused
        shutil.copy(CHECKPOINTS / name, checkpoints / name)


@contextlib.asynccontextmanager
async def serving(base: Path, workers: int, namespace: str):
    import ray

    from latentgraph.server import ServerConfig, create_app
    from latentgraph.server.app import STATE
    from latentgraph.server.cluster import ACTOR_PREFIX, ClusterConfig
    from latentgraph.server.ray_worker import EngineSpec
    from latentgraph.server.store import Store

    spec = EngineSpec(base_dir=str(base), plugins_dir=str(base / "plugins"), entry_points=False,
                      overrides={"device": "cpu"})
    engine = spec.build()
    store = Store(base / f"queue-{namespace}.sqlite3")
    app = create_app(engine, store, ServerConfig(cluster=ClusterConfig(spec=spec, count=workers, namespace=namespace)))
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    dispatcher = app[STATE].worker
    try:
        deadline = time.monotonic() + 180
        while sum(s.healthy for s in dispatcher.slots.values()) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers not ready: {dispatcher.workers()}")
            await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as session:
            yield str(server.make_url("")).rstrip("/"), session, dispatcher
    finally:
        await server.close()
        store.close()
        engine.close()
        for i in range(workers):  # free the CPU slots: the next scenario starts cold
            with contextlib.suppress(Exception):
                ray.kill(ray.get_actor(f"{ACTOR_PREFIX}{i}", namespace=namespace), no_restart=True)
        await asyncio.sleep(1.0)


async def burst(base: str, session: aiohttp.ClientSession, prompts: list[dict], timeout: float) -> tuple[float, list[str], int]:
    """Submit every prompt back to back; wait until all are over. (wall s, prompt ids, errors)."""
    client_id = f"bench-{uuid.uuid4().hex[:8]}"
    ws = await session.ws_connect(f"{base}/ws?clientId={client_id}", max_msg_size=0)
    done: set[str] = set()
    errors = 0
    started = time.perf_counter()
    pids = []
    for prompt in prompts:
        async with session.post(f"{base}/prompt", json={"prompt": prompt, "client_id": client_id}) as resp:
            reply = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"rejected: {reply}")
            pids.append(reply["prompt_id"])
    deadline = time.monotonic() + timeout
    while not set(pids) <= done:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"timed out: {len(set(pids) - done)} of {len(pids)} prompts not done")
        try:
            msg = await ws.receive(timeout=remaining)
        except asyncio.TimeoutError:
            continue
        if msg.type != aiohttp.WSMsgType.TEXT:
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                raise RuntimeError("websocket closed")
            continue
        data = json.loads(msg.data)
        kind, body = data["type"], data["data"]
        if kind == "execution_error":
            errors += 1
        if kind == "executing" and body.get("node") is None:
            done.add(body.get("prompt_id"))
    wall = time.perf_counter() - started
    await ws.close()
    return wall, pids, errors


async def throughput(base_dir: Path, kind: str, workers: int, count: int, steps: int, timeout: float) -> dict:
    namespace = f"lg-bench-{kind}-{workers}-{uuid.uuid4().hex[:6]}"
    if kind == "sleep":
        warm = [sleep_prompt(10_000 + i, steps=1, delay=0.0) for i in range(workers)]
        timed = [sleep_prompt(i) for i in range(count)]
    else:
        warm = [model_prompt(DEMO, 10_000 + i, steps) for i in range(workers)]
        timed = [model_prompt(DEMO, i, steps) for i in range(count)]
    async with serving(base_dir, workers, namespace) as (base, session, dispatcher):
        await burst(base, session, warm, timeout)  # each worker runs one: engines and models warm
        wall, pids, errors = await burst(base, session, timed, timeout)
        used = {dispatcher.routes[p][-1] for p in pids}
    return {"scenario": kind, "workers": workers, "prompts": count, "wall_s": round(wall, 2),
            "prompts_per_s": round(count / wall, 3), "workers_used": len(used), "errors": errors}


async def affinity(base_dir: Path, policy: str, count: int, steps: int, timeout: float, workers: int = 3) -> dict:
    namespace = f"lg-bench-aff-{policy}-{uuid.uuid4().hex[:6]}"
    prompts = [model_prompt((DEMO, TINY)[i % 2], i, steps) for i in range(count)]
    async with serving(base_dir, workers, namespace) as (base, session, dispatcher):
        if policy == "round-robin":
            turn = itertools.count()

            def choose(item, slots):  # replaces the affinity policy on this instance only
                ordered = sorted(slots, key=lambda s: s.index)
                return ordered[next(turn) % len(ordered)]

            dispatcher.choose = choose
        wall, pids, errors = await burst(base, session, prompts, timeout)
        await asyncio.sleep(0.5)
        for slot in dispatcher.slots.values():  # the final reports
            slot.probe()
        reports = dispatcher.workers()
        per_worker = {r["name"].rsplit("-", 1)[-1]: r.get("model_loads", 0) for r in reports}
        ckpt_workers = {ck: sorted({dispatcher.routes[p][-1].rsplit("-", 1)[-1] for p, pr in zip(pids, prompts)
                                    if pr["4"]["inputs"]["ckpt_name"] == ck}) for ck in (DEMO, TINY)}
    return {"scenario": f"affinity/{policy}", "workers": workers, "prompts": count, "wall_s": round(wall, 2),
            "prompts_per_s": round(count / wall, 3), "model_loads": sum(per_worker.values()),
            "loads_per_worker": per_worker, "demo_on": ckpt_workers[DEMO], "tiny_on": ckpt_workers[TINY],
            "errors": errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="worker counts of the throughput scenarios")
    parser.add_argument("--sleep-prompts", type=int, default=16)
    parser.add_argument("--demo-prompts", type=int, default=32)
    parser.add_argument("--demo-steps", type=int, default=10)
    parser.add_argument("--affinity-prompts", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=120.0, help="per burst")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",")]

    try:
        import ray
    except ImportError:
        print("bench/cluster.py needs Ray: pip install 'latentgraph[ray]'", file=sys.stderr)
        return 2
    logging.getLogger("latentgraph").setLevel(logging.ERROR)
    ray.init(num_cpus=max(4, *counts), include_dashboard=False, object_store_memory=80 * 2**20,
             _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
    rows: list[dict] = []
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="lg-bench-cluster-") as tmp:
            base_dir = Path(tmp)
            make_data_dir(base_dir)
            for kind, count in (("sleep", args.sleep_prompts), ("demo", args.demo_prompts)):
                for n in counts:
                    rows.append(asyncio.run(throughput(base_dir, kind, n, count, args.demo_steps, args.timeout)))
                    print(f"  {rows[-1]}", file=sys.stderr, flush=True)
            for policy in ("affinity", "round-robin"):
                rows.append(asyncio.run(affinity(base_dir, policy, args.affinity_prompts, args.demo_steps, args.timeout)))
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        ray.shutdown()

    for row in rows:  # scaling efficiency against the same scenario's one-worker rate
        one = next((r for r in rows if r["scenario"] == row["scenario"] and r["workers"] == 1), None)
        if one is not None and row["scenario"] in ("sleep", "demo"):
            row["efficiency"] = round(row["prompts_per_s"] / (row["workers"] * one["prompts_per_s"]), 2)

    header = f"{'scenario':<22}{'workers':>8}{'prompts':>8}{'wall s':>8}{'prompts/s':>10}{'effic.':>8}{'loads':>7}  routing"
    print(header)
    for r in rows:
        route = f"demo→{','.join(r['demo_on'])} tiny→{','.join(r['tiny_on'])}" if "demo_on" in r else f"{r['workers_used']} used"
        print(f"{r['scenario']:<22}{r['workers']:>8}{r['prompts']:>8}{r['wall_s']:>8}{r['prompts_per_s']:>10}"
              f"{str(r.get('efficiency', '')):>8}{str(r.get('model_loads', '')):>7}  {route}")
    summary = {
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "ray": ray.__version__,
        "demo_steps": args.demo_steps,
        "total_s": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    for r in rows:
        key = r["scenario"].replace("/", "_").replace("-", "_")
        summary[f"{key}_{r['workers']}_prompts_per_s"] = r["prompts_per_s"]
        if "efficiency" in r:
            summary[f"{key}_{r['workers']}_efficiency"] = r["efficiency"]
        if "model_loads" in r:
            summary[f"{key}_model_loads"] = r["model_loads"]
    print(json.dumps(summary))
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
