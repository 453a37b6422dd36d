"""``--workers ray``: a real local Ray cluster (2 CPU actors), a real loopback server, websockets.

Skipped (loudly) without the optional ``ray`` extra. One cluster for the module: the actors are
named and detached, so each test's server adopts them warm, as a restarted server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

ray = pytest.importorskip(
    "ray", reason="ray is not installed: the cluster tests need the optional extra (pip install 'latentgraph[ray]')"
)

import server_nodes  # noqa: E402
from server_kit import Client, chain, run  # noqa: E402

from latentgraph.server import ServerConfig, create_app  # noqa: E402
from latentgraph.server.app import STATE  # noqa: E402
from latentgraph.server.cluster import ClusterConfig  # noqa: E402
from latentgraph.server.ray_worker import EngineSpec  # noqa: E402
from latentgraph.server.store import Store  # noqa: E402

NAMESPACE = "latentgraph-test"
TINY = Path(__file__).resolve().parent.parent / "nodes" / "data" / "models" / "checkpoints" / "tiny-sd1.safetensors"
PROBE_PLUGIN = '''
from latentgraph import In, Node, NodeResult, NodeSpec, hookimpl


class ClusterModelProbe(Node):
    spec = NodeSpec(name="ClusterModelProbe", inputs=(In("model", "MODEL"),), output_node=True)

    def execute(self, ctx, model):
        return NodeResult(ui={"loaded": [type(model).__name__]})


@hookimpl
def register_nodes():
    return [ClusterModelProbe]
'''


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    plugins = base / "plugins"
    plugins.mkdir()
    shutil.copy(Path(server_nodes.__file__), plugins / "server_nodes.py")
    (plugins / "cluster_probe.py").write_text(PROBE_PLUGIN)
    checkpoints = base / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in ("a.safetensors", "b.safetensors"):
        shutil.copy(TINY, checkpoints / name)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 * 1024, namespace=NAMESPACE,
             log_to_driver=False, configure_logging=False)
    try:
        yield base
    finally:
        ray.shutdown()


def spec_of(base: Path) -> EngineSpec:
    return EngineSpec(base_dir=str(base), plugins_dir=str(base / "plugins"), entry_points=False,
                      overrides={"device": "cpu"})


@contextlib.asynccontextmanager
async def serving(base: Path, *, cluster: bool, db: str | None = None, max_attempts: int = 3):
    spec = spec_of(base)
    engine = spec.build()
    store = Store(base / (db or f"queue-{uuid.uuid4().hex[:8]}.sqlite3"))
    config = ServerConfig(cluster=ClusterConfig(spec=spec, count=2, namespace=NAMESPACE, max_attempts=max_attempts)
                          if cluster else None)
    app = create_app(engine, store, config)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Client(str(server.make_url("")).rstrip("/"), session), app[STATE].worker
    finally:
        await server.close()
        store.close()
        engine.close()


async def ready(dispatcher, n: int = 2, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sum(s.healthy for s in dispatcher.slots.values()) < n:
        assert time.monotonic() < deadline, f"workers not ready: {dispatcher.workers()}"
        await asyncio.sleep(0.2)


def normalized(messages, prompt_id):
    """Messages without timestamps, the prompt id replaced: comparable across servers."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k != "timestamp"}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return "PID" if value == prompt_id else value
    return [(kind, clean(data)) for kind, data in messages]


def probe(ckpt: str) -> dict:
    return {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
            "2": {"class_type": "ClusterModelProbe", "inputs": {"model": ["1", 0]}}}


async def all_done(ws, prompt_ids, timeout: float) -> None:
    """Wait for ``executing {node: null}`` of every prompt, in whatever order they finish."""
    def finished():
        return {m[1].get("prompt_id") for m in ws.messages if m[0] == "executing" and m[1].get("node") is None}

    deadline = time.monotonic() + timeout
    while not set(prompt_ids) <= finished():
        assert time.monotonic() < deadline, f"not done: {set(prompt_ids) - finished()}"
        with contextlib.suppress(TimeoutError):
            await ws.receive(max(0.1, deadline - time.monotonic()))


async def submit_and_wait(client: Client, ws, prompt: dict, timeout: float = 60, **extra) -> tuple[str, list]:
    pid = (await client.submit(prompt, ws.client_id, **extra))["prompt_id"]
    return pid, await ws.until_done(pid, timeout)


def test_events_and_history_match_single_process(data_dir):
    prompt = chain(5, steps=3, preview=True)

    async def once(cluster: bool):
        async with serving(data_dir, cluster=cluster) as (client, worker):
            if cluster:
                await ready(worker)
            ws = await client.ws("c1")
            pid, messages = await submit_and_wait(client, ws, prompt, extra_data={"preview_method": "auto"})
            _, history = await client.get(f"/history/{pid}")
            return normalized(messages, pid), history[pid], len(ws.frames)

    local, local_history, local_frames = run(once(False))
    remote, remote_history, remote_frames = run(once(True))
    assert remote == local
    assert [m[0] for m in remote][-2:] == ["execution_success", "executing"]
    assert remote_history["outputs"] == local_history["outputs"] == {"4": {"value": [18]}}
    assert remote_history["status"]["status_str"] == "success"
    assert local_frames >= 1 and remote_frames >= 1  # previews rendered on the worker, sent from here


def test_model_affinity_routes_to_the_worker_holding_the_checkpoint(data_dir):
    async def main():
        async with serving(data_dir, cluster=True) as (client, dispatcher):
            await ready(dispatcher)
            ws = await client.ws("aff")
            ran: dict[str, list[str]] = {"a.safetensors": [], "b.safetensors": []}
            for ckpt in ["a.safetensors", "b.safetensors"] * 3:
                pid, messages = await submit_and_wait(client, ws, probe(ckpt))
                assert messages[-2][0] == "execution_success", messages
                ran[ckpt].append(dispatcher.routes[pid][-1])
            await asyncio.sleep(0.3)  # the last report
            return ran, dispatcher.workers()

    ran, reports = run(main())
    assert len(set(ran["a.safetensors"])) == 1 and len(set(ran["b.safetensors"])) == 1, ran
    holder_a, holder_b = ran["a.safetensors"][0], ran["b.safetensors"][0]
    assert holder_a != holder_b
    by_name = {r["name"]: r for r in reports}
    assert "a.safetensors" in by_name[holder_a]["models"] and "b.safetensors" not in by_name[holder_a]["models"]
    assert "b.safetensors" in by_name[holder_b]["models"] and "a.safetensors" not in by_name[holder_b]["models"]
    assert by_name[holder_a]["model_loads"] == 1 and by_name[holder_b]["model_loads"] == 1  # each loaded once


def test_interrupt_reaches_the_worker(data_dir):
    async def main():
        async with serving(data_dir, cluster=True) as (client, dispatcher):
            await ready(dispatcher)
            ws = await client.ws("int")
            pid = (await client.submit(chain(1, steps=200, delay=0.05), "int"))["prompt_id"]
            await ws.until("progress", 60, prompt_id=pid)
            status, _ = await client.post("/interrupt", {"prompt_id": pid})
            assert status == 200
            data = await ws.until("execution_interrupted", 10, prompt_id=pid)
            await ws.until_done(pid, 10)
            _, history = await client.get(f"/history/{pid}")
            return data, history[pid]

    data, history = run(main())
    assert data["node_id"] == "3"
    assert history["status"]["status_str"] == "error"


def test_worker_killed_mid_prompt_is_retried_and_the_worker_rejoins(data_dir):
    async def main():
        async with serving(data_dir, cluster=True) as (client, dispatcher):
            await ready(dispatcher)
            ws = await client.ws("kill")
            pid = (await client.submit(chain(2, steps=30, delay=0.1), "kill"))["prompt_id"]
            await ws.until("progress", 60, prompt_id=pid)
            victim = dispatcher.routes[pid][-1]
            ray.kill(ray.get_actor(victim, namespace=NAMESPACE), no_restart=False)
            messages = await ws.until_done(pid, 60)
            _, history = await client.get("/history")
            # the restarted actor answers again and gets work
            await ready(dispatcher, 2, timeout=60)
            busy = [(await client.submit(chain(i, steps=10, delay=0.1), "kill"))["prompt_id"] for i in range(2)]
            await all_done(ws, busy, 60)  # they run side by side: either may finish first
            return pid, victim, messages, history, [dispatcher.routes[p][-1] for p in busy], dict(dispatcher.losses)

    pid, victim, messages, history, busy_on, losses = run(main())
    assert losses[pid] == [victim]
    assert [m[0] for m in messages][-2:] == ["execution_success", "executing"]
    assert list(history) == [pid]  # exactly once in history, nothing else
    assert history[pid]["outputs"] == {"4": {"value": [2 + 10 + 30]}}
    assert sorted(busy_on) == sorted({*busy_on}) and victim in busy_on, busy_on  # the rejoined worker ran one


def test_workers_flag_parsing():
    from latentgraph.server.cluster import parse_workers

    assert parse_workers("ray") is None
    assert parse_workers("ray://10.0.0.1:6379") == "10.0.0.1:6379"
    assert parse_workers("ray://head:10001") == "ray://head:10001"
    with pytest.raises(ValueError, match=re.escape("'ray' or 'ray://ADDRESS'")):
        parse_workers("dask://x")


def test_a_prompt_losing_its_worker_too_often_fails_with_a_clear_error(data_dir):
    async def main():
        async with serving(data_dir, cluster=True, max_attempts=1) as (client, dispatcher):
            await ready(dispatcher)
            ws = await client.ws("lost")
            pid = (await client.submit(chain(3, steps=30, delay=0.1), "lost"))["prompt_id"]
            await ws.until("progress", 60, prompt_id=pid)
            ray.kill(ray.get_actor(dispatcher.routes[pid][-1], namespace=NAMESPACE), no_restart=False)
            error = await ws.until("execution_error", 30, prompt_id=pid)
            await ws.until_done(pid, 10)
            _, history = await client.get(f"/history/{pid}")
            _, queue = await client.get("/queue")
            await ready(dispatcher, 2, timeout=60)  # leave the cluster whole for the next test
            return error, history[pid], queue

    error, history, queue = run(main())
    assert error["exception_type"] == "latentgraph.server.WorkerLost"
    assert "lost 1 times" in error["exception_message"] and "limit 1" in error["exception_message"]
    assert history["status"]["status_str"] == "error"
    assert queue == {"queue_running": [], "queue_pending": []}


def test_a_restarted_server_resumes_dispatching_to_the_live_cluster(data_dir):
    db = f"queue-restart-{uuid.uuid4().hex[:6]}.sqlite3"

    async def first():
        async with serving(data_dir, cluster=True, db=db) as (client, dispatcher):
            await ready(dispatcher)
            ws = await client.ws("r")
            long = (await client.submit(chain(4, steps=40, delay=0.1), "r"))["prompt_id"]
            queued = [(await client.submit(chain(i, steps=1), "r"))["prompt_id"] for i in range(3)]
            await ws.until("progress", 60, prompt_id=long)
            return [long, *queued]  # the server stops here, mid-prompt

    async def second(pids):
        async with serving(data_dir, cluster=True, db=db) as (client, dispatcher):
            deadline = time.monotonic() + 60
            while True:
                _, history = await client.get("/history")
                if all(p in history for p in pids) or time.monotonic() > deadline:
                    return history
                await asyncio.sleep(0.2)

    pids = run(first())
    history = run(second(pids))
    assert all(history[p]["status"]["status_str"] == "success" for p in pids), history
    assert history[pids[0]]["outputs"] == {"4": {"value": [4 + 10 + 40]}}
