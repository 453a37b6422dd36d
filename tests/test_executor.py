"""Executor and cache behaviour a user notices: what runs, what is reused, what is kept."""

import threading

import pytest

from graph_nodes import GraphTestPlugin
from latentgraph.cache import Cache
from latentgraph.context import InterruptFlag
from latentgraph.events import (
    EventLog,
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSucceeded,
    NodeFinished,
    NodeProgress,
    NodesCached,
    NodeStarted,
)
from latentgraph.testing import WorkflowBuilder


@pytest.fixture
def engine(lg_engine):
    return lg_engine(GraphTestPlugin(), builtins=False)


def two_branches():
    """1 → 2 → 3(Show) and 4 → 5 → 6(Show): two independent branches."""
    wf = WorkflowBuilder()
    a = wf.add("Const", value=1)
    b = wf.add("Add", a=a[0], b=10)
    wf.add("Show", value=b[0])
    c = wf.add("Const", value=2)
    d = wf.add("Add", a=c[0], b=20)
    wf.add("Show", value=d[0])
    return wf


def test_runs_in_dependency_order_and_returns_ui(engine):
    result = engine.run(two_branches().to_api())
    assert result.ok
    assert sorted(result.executed) == ["1", "2", "3", "4", "5", "6"]
    assert result.executed.index("1") < result.executed.index("2") < result.executed.index("3")
    assert result.outputs == {"3": {"value": [11]}, "6": {"value": [22]}}


def test_identical_rerun_executes_nothing_and_replays_outputs(engine):
    wf = two_branches().to_api()
    engine.run(wf)
    log = EventLog()
    again = engine.run(wf, sink=log)
    assert again.executed == []
    assert sorted(again.cached) == ["1", "2", "3", "4", "5", "6"]
    assert again.outputs == {"3": {"value": [11]}, "6": {"value": [22]}}
    assert not log.of(NodeStarted)
    assert sorted(log.of(NodesCached)[0].nodes) == ["1", "2", "3", "4", "5", "6"]


def test_editing_one_input_reruns_exactly_that_node_and_descendants(engine):
    wf = two_branches()
    engine.run(wf.to_api())
    wf.set("2", b=11)
    result = engine.run(wf.to_api())
    assert result.executed == ["2", "3"]
    assert result.outputs["3"] == {"value": [12]}
    wf.set("4", value=3)
    result = engine.run(wf.to_api())
    assert result.executed == ["4", "5", "6"]


def test_equivalent_values_hit_the_cache(engine):
    wf = two_branches()
    engine.run(wf.to_api())
    wf.set("2", b="10")  # coerced to the same int
    assert engine.run(wf.to_api()).executed == []


def test_nondeterministic_nodes_always_rerun(engine):
    wf = WorkflowBuilder()
    r = wf.add("Random")
    s = wf.add("Add", a=r[0], b=0)
    wf.add("Show", value=s[0])
    first = engine.run(wf.to_api())
    second = engine.run(wf.to_api())
    assert first.executed == second.executed == ["1", "2", "3"]


def test_eviction_under_small_byte_budget(lg_engine):
    cache = Cache({"cpu": 300 * 1024})
    engine = lg_engine(GraphTestPlugin(), builtins=False, cache=cache)
    wf = WorkflowBuilder()
    blobs = [wf.add("Blob", kib=100, tag=tag) for tag in range(4)]
    for blob in blobs:
        wf.add("Show", value=wf.add("Size", latent=blob[0])[0])
    engine.run(wf.to_api())
    stats = cache.stats()
    assert 0 < stats.bytes["cpu"] <= 300 * 1024
    assert stats.evictions == 1
    # consume the blobs directly: the least recently used one was evicted and runs again
    direct = WorkflowBuilder()
    again = [direct.add("Blob", kib=100, tag=tag) for tag in range(4)]
    for blob in again:
        direct.add("Show", value=blob[0])
    result = engine.run(direct.to_api())
    assert result.executed[0] == again[0].id
    assert again[3].id not in result.executed


def test_value_larger_than_budget_is_not_cached_but_run_succeeds(lg_engine):
    cache = Cache({"cpu": 10 * 1024})
    engine = lg_engine(GraphTestPlugin(), builtins=False, cache=cache)
    wf = WorkflowBuilder()
    blob = wf.add("Blob", kib=64, tag=1)
    size = wf.add("Size", latent=blob[0])
    wf.add("Show", value=size[0])
    result = engine.run(wf.to_api())
    assert result.outputs["3"] == {"value": [65536]}
    assert cache.stats().rejected == 1
    assert cache.stats().bytes.get("cpu", 0) == 0


def test_storage_shared_by_entries_counts_once_and_frees_with_its_last_holder():
    torch = pytest.importorskip("torch")
    base = torch.zeros(1024)  # 4 KiB
    cache = Cache({"cpu": 6 * 1024})
    cache.put(b"base", (base,))
    cache.put(b"clone", ({"shared": base[:10], "own": torch.zeros(256)},))  # a view of base + 1 KiB
    assert b"base" in cache and b"clone" in cache and cache.stats().evictions == 0
    assert cache.stats().bytes["cpu"] == 5 * 1024
    cache.put(b"other", (torch.zeros(512),))  # 7 KiB held: evicting "base" frees nothing, "clone" must go too
    assert b"other" in cache and len(cache) == 1
    assert cache.stats().bytes["cpu"] == 2 * 1024
    cache.put(b"other", (torch.zeros(512),))  # replacing an entry swaps its bytes
    assert cache.stats().bytes["cpu"] == 2 * 1024


def test_cache_stats_are_observable(engine):
    wf = two_branches().to_api()
    engine.run(wf)
    engine.run(wf)
    stats = engine.cache.stats()
    assert stats.entries == 6
    assert stats.hits >= 2  # both output nodes served on the re-run
    assert stats.misses >= 6


def test_intermediate_values_released_after_last_consumer(lg_engine):
    """With no cache room, a blob must be freed once its consumer ran (peak = one blob)."""
    import gc
    import weakref

    from graph_nodes import Blob, Size

    refs = []

    class TrackBlob(Blob):
        def execute(self, ctx, kib, tag):
            out = super().execute(ctx, kib, tag)
            refs.append(weakref.ref(out[0]["samples"]))
            return out

    class Alive(Size):
        def execute(self, ctx, latent):
            gc.collect()
            return (sum(r() is not None for r in refs),)

    from latentgraph import NodeSpec, hookimpl
    from dataclasses import replace

    TrackBlob.spec = replace(Blob.spec, name="TrackBlob")
    Alive.spec = replace(Size.spec, name="Alive")

    class P:
        @hookimpl
        def register_nodes(self):
            return [TrackBlob, Alive]

    engine = lg_engine(GraphTestPlugin(), P(), builtins=False, cache=Cache({"cpu": 1024}))
    wf = WorkflowBuilder()
    prev = None
    for _ in range(3):  # each blob waits for the previous sum, so the order is forced
        b = wf.add("TrackBlob", kib=64, tag=0 if prev is None else prev[0])
        alive = wf.add("Alive", latent=b[0])
        prev = wf.add("Add", a=alive[0], b=0 if prev is None else prev[0])
    wf.add("Show", value=prev[0])
    result = engine.run(wf.to_api())
    # at each Alive only the blob it consumes is alive, so the running sum is 1, 2, 3 (not 1, 3, 6)
    assert result.outputs[list(result.outputs)[0]] == {"value": [3]}


def test_events_in_order(engine):
    wf = WorkflowBuilder()
    c = wf.add("Const", value=1)
    s = wf.add("Steps", value=c[0], steps=3)
    wf.add("Show", value=s[0])
    log = EventLog()
    engine.run(wf.to_api(), sink=log, prompt_id="p1")
    kinds = [type(e).__name__ for e in log]
    assert kinds[0] == "ExecutionStarted" and kinds[-1] == "ExecutionSucceeded"
    assert [e.value for e in log.of(NodeProgress)] == [1, 2, 3]
    assert all(e.prompt_id == "p1" for e in log)
    finished = log.of(NodeFinished)
    assert [e.node_id for e in finished] == ["1", "2", "3"]
    assert finished[-1].ui == {"value": [4]}
    assert log.of(ExecutionSucceeded)[0].outputs == {"3": {"value": [4]}}
    assert isinstance(log[0], ExecutionStarted)


def test_interrupt_during_a_long_node(engine):
    wf = WorkflowBuilder()
    c = wf.add("Const", value=1)
    s = wf.add("Steps", value=c[0], steps=50)
    wf.add("Show", value=s[0])
    flag = InterruptFlag()
    log = EventLog()

    def sink(event):
        log(event)
        if isinstance(event, NodeProgress) and event.value == 5:
            flag.set()

    result = engine.run(wf.to_api(), sink=sink, interrupt=flag)
    assert result.status == "interrupted"
    assert result.interrupted_at == "2"
    assert max(e.value for e in log.of(NodeProgress)) == 5
    assert log.of(ExecutionInterrupted)[0].node_id == "2"
    # the finished part stays cached: a resumed run starts at the interrupted node
    resumed = engine.run(wf.to_api())
    assert resumed.executed == ["2", "3"]


def test_interrupt_before_start_runs_nothing(engine):
    flag = InterruptFlag()
    flag.set()
    result = engine.run(two_branches().to_api(), interrupt=flag)
    assert result.status == "interrupted" and result.executed == []


def test_error_then_fix_then_resume(engine):
    wf = WorkflowBuilder()
    a = wf.add("Const", value=4)
    b = wf.add("Add", a=a[0], b=1)
    f = wf.add("Fail", value=b[0], fail=True)
    wf.add("Show", value=f[0])
    log = EventLog()
    result = engine.run(wf.to_api(), sink=log)
    assert result.status == "error"
    assert (result.failure.node_id, result.failure.class_type, result.failure.input_name) == ("3", "Fail", "fail")
    assert "asked to fail" in result.failure.message
    assert log.of(ExecutionFailed)[0].failure is result.failure
    wf.set("3", fail=False)
    fixed = engine.run(wf.to_api())
    assert fixed.executed == ["3", "4"]  # 1 and 2 were kept from the failed run
    assert fixed.outputs["4"] == {"value": [5]}


def test_exception_names_node_and_keeps_traceback(engine):
    wf = WorkflowBuilder()
    a = wf.add("Const", value=4)
    b = wf.add("Boom", value=a[0])
    wf.add("Show", value=b[0])
    result = engine.run(wf.to_api())
    assert result.failure.node_id == "2" and result.failure.class_type == "Boom"
    assert result.failure.exception_type.endswith("RuntimeError")
    assert any("kaboom" in line for line in result.failure.traceback)


def test_wrong_number_of_outputs_is_a_node_error(engine):
    wf = WorkflowBuilder()
    a = wf.add("Const", value=4)
    b = wf.add("BadReturn", value=a[0])
    wf.add("Show", value=b[1])
    result = engine.run(wf.to_api())
    assert result.failure.node_id == "2"
    assert "declared output" in result.failure.message


def test_engine_cache_shared_across_threads(engine):
    wf = two_branches().to_api()
    results = []
    t = threading.Thread(target=lambda: results.append(engine.run(wf)))
    t.start()
    t.join()
    assert engine.run(wf).executed == []
