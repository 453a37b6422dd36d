"""Dispatch benchmark: what a user pays per node for a chain of trivial nodes.

Headline (issue 16): ``Engine.run`` on the workflow's JSON text, end to end (parse, validate,
plan, execute) with the garbage collector on, for a first run and an identical re-run (every node
served from the cache). Targets: re-run ≤ 10 µs/node, first run ≤ 30 µs/node, linear to 30k.

Second table (the earlier figures, issue 2): validation and execution timed apart, GC off.

Run: ``python bench/dispatch.py [--sizes 1000 10000 30000] [--repeat 3]``; prints the tables and
one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time

from latentgraph import In, Node, NodeResult, NodeSpec, Out, Settings, hookimpl
from latentgraph.engine import Engine

TARGET_RERUN_US, TARGET_FIRST_US = 10.0, 30.0


class Inc(Node):
    spec = NodeSpec(name="BenchInc", inputs=(In("x", "INT"), In("by", "INT", default=1)), outputs=(Out("INT"),))

    def execute(self, ctx, x, by):
        return (x + by,)


class Start(Node):
    spec = NodeSpec(name="BenchStart", inputs=(In("value", "INT", default=0),), outputs=(Out("INT"),))

    def execute(self, ctx, value):
        return (value,)


class Sink(Node):
    spec = NodeSpec(name="BenchSink", inputs=(In("x", "INT"),), output_node=True)

    def execute(self, ctx, x):
        return NodeResult(ui={"value": [x]})


class BenchPlugin:
    @hookimpl
    def register_nodes(self):
        return [Inc, Start, Sink]


def chain(n: int) -> dict:
    wf = {"0": {"class_type": "BenchStart", "inputs": {"value": 0}}}
    for i in range(1, n - 1):
        wf[str(i)] = {"class_type": "BenchInc", "inputs": {"x": [str(i - 1), 0], "by": 1}}
    wf[str(n - 1)] = {"class_type": "BenchSink", "inputs": {"x": [str(n - 2), 0]}}
    return wf


def end_to_end(engine: Engine, n: int) -> dict:
    """The headline: JSON text → ``Engine.run``, twice, the collector on as in a real process."""
    text = json.dumps(chain(n))
    engine.cache.clear()
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    first = engine.run(text)
    t1, c1 = time.perf_counter(), time.process_time()
    again = engine.run(text)
    t2, c2 = time.perf_counter(), time.process_time()
    assert first.outputs[str(n - 1)] == {"value": [n - 2]}, first.outputs
    assert again.executed == [] and len(again.cached) == n
    per = 1e6 / n
    return {"nodes": n, "first_run_us_per_node": (t1 - t0) * per, "rerun_us_per_node": (t2 - t1) * per,
            "first_run_cpu_us_per_node": (c1 - c0) * per, "rerun_cpu_us_per_node": (c2 - c1) * per}


def parts(engine: Engine, n: int) -> dict:
    """The earlier figures: validation and execution of a dict, timed apart, GC off (CPU time). The first
    validation is a full one; the second finds the workflow remembered (``Engine.memo``)."""
    wf = chain(n)
    engine.cache.clear()
    forget = getattr(getattr(engine, "memo", None), "forget", lambda: None)  # (absent before the memo)
    forget()
    gc.collect()
    gc.disable()
    clock = time.process_time  # CPU time: GC off, this row shows the work itself
    try:
        t0 = clock()
        graph = engine.validate(wf)
        t1 = clock()
        first = engine.run(graph)
        t2 = clock()
        graph2 = engine.validate(wf)
        t3 = clock()
        again = engine.run(graph2)
        t4 = clock()
    finally:
        gc.enable()
    assert first.outputs[str(n - 1)] == {"value": [n - 2]}, first.outputs
    assert again.executed == [] and len(again.cached) == n
    return {
        "nodes": n,
        "validate_us_per_node": (t1 - t0) / n * 1e6,
        "first_run_us_per_node": (t2 - t1) / n * 1e6,
        "cached_validate_us_per_node": (t3 - t2) / n * 1e6,
        "cached_run_us_per_node": (t4 - t3) / n * 1e6,
    }


def best(runs: list[dict]) -> dict:
    return {k: min(r[k] for r in runs) if k != "nodes" else runs[0][k] for k in runs[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 30000])
    parser.add_argument("--repeat", type=int, default=3, help="best of N")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(tmp, environ={})
        engine = Engine.create(settings, builtins=False, entry_points=False, extra_plugins=[("bench", BenchPlugin())])
        headline = [best([end_to_end(engine, n) for _ in range(args.repeat)]) for n in args.sizes]
        split = [best([parts(engine, n) for _ in range(args.repeat)]) for n in args.sizes]
        engine.close()
    print(f"Engine.run end to end (JSON text → parse, validate, plan, execute), GC on; µs per node, best of {args.repeat}")
    print(f"(wall clock; CPU time of this process beside it: on a shared machine the steadier figure)")
    print(f"{'nodes':>7} {'first run':>10} {'re-run':>8} {'first cpu':>10} {'re-run cpu':>11}"
          f"   targets: first ≤ {TARGET_FIRST_US:g}, re-run ≤ {TARGET_RERUN_US:g}")
    for r in headline:
        print(f"{r['nodes']:>7} {r['first_run_us_per_node']:>10.2f} {r['rerun_us_per_node']:>8.2f}"
              f" {r['first_run_cpu_us_per_node']:>10.2f} {r['rerun_cpu_us_per_node']:>11.2f}")
    print(f"\nparts, GC off (validate a dict, then run the graph); CPU µs per node, best of {args.repeat}")
    print(f"{'nodes':>7} {'validate':>10} {'first run':>10} {'re-validate':>12} {'cached run':>11}   (re-validate: remembered)")
    for r in split:
        print(
            f"{r['nodes']:>7} {r['validate_us_per_node']:>10.2f} {r['first_run_us_per_node']:>10.2f} "
            f"{r['cached_validate_us_per_node']:>12.2f} {r['cached_run_us_per_node']:>11.2f}"
        )
    rounded = [[{k: round(v, 3) for k, v in r.items()} for r in rows] for rows in (headline, split)]
    print(json.dumps({"bench": "dispatch", "end_to_end": rounded[0], "parts_gc_off": rounded[1]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
