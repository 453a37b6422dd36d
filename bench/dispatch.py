"""Dispatch benchmark: a chain of trivial nodes, first run and fully cached re-run.

Targets (issue 2): first run ≤ 30 µs/node, cached re-run ≤ 5 µs/node, both linear in N.
Run: ``python bench/dispatch.py [--sizes 1000 10000 30000]``; prints a table and one JSON line.
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


def measure(engine: Engine, n: int) -> dict:
    wf = chain(n)
    engine.cache.clear()
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        graph = engine.validate(wf)
        t1 = time.perf_counter()
        first = engine.run(graph)
        t2 = time.perf_counter()
        graph2 = engine.validate(wf)
        t3 = time.perf_counter()
        again = engine.run(graph2)
        t4 = time.perf_counter()
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 30000])
    parser.add_argument("--repeat", type=int, default=3, help="best of N")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(tmp, environ={})
        engine = Engine.create(settings, builtins=False, entry_points=False, extra_plugins=[("bench", BenchPlugin())])
        rows = []
        for n in args.sizes:
            runs = [measure(engine, n) for _ in range(args.repeat)]
            rows.append({k: min(r[k] for r in runs) if k != "nodes" else n for k in runs[0]})
    header = f"{'nodes':>7} {'validate':>10} {'first run':>10} {'re-validate':>12} {'cached run':>11}   (µs per node, best of {args.repeat})"
    print(header)
    for r in rows:
        print(
            f"{r['nodes']:>7} {r['validate_us_per_node']:>10.2f} {r['first_run_us_per_node']:>10.2f} "
            f"{r['cached_validate_us_per_node']:>12.2f} {r['cached_run_us_per_node']:>11.2f}"
        )
    print(json.dumps({"bench": "dispatch", "rows": [{k: round(v, 3) for k, v in r.items()} for r in rows]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
