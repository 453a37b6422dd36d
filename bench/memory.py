"""What the model memory manager costs and keeps: two checkpoints alternating under device budgets.

Two tiny random SD1 checkpoints (different seeds) run txt2img in turn — ck0, ck1, ck0, ck1… with
a new seed each round, so the prompts and checkpoints come from the cache and KSampler and
VAEDecode run every time — on the CPU:

* ``none``    — no budget: the manager is inactive (what every CPU user gets);
* ``fits1``   — 1.4 × one checkpoint's weights: one checkpoint fits, two do not, so every switch
  evicts the other (least recently used first);
* ``partial`` — 0.6 × the UNet alone: the UNet runs partly loaded, the rest streamed module by
  module for each forward call.

With a budget on the CPU the "device copies" are clones of the masters, so the bytes are real
storages and the copying cost is real (a lower bound of a PCIe copy's). Reported per mode: median
seconds per alternation (two txt2img runs), peak and final resident bytes, weights copied
(loads), dropped (offloads) and streamed, and whether every picture equals the ``none`` run's.
Also the cost of the inactive manager on the hot path (``ctx.memory.use(...)`` with no budget).
Prints a table and one JSON line.

    python bench/memory.py [--rounds 4] [--steps 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def independent_bytes(modules) -> int:
    seen = {}
    for module in modules:
        for t in (*module.parameters(), *module.buffers()):
            seen[t.untyped_storage().data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def alternate(engine, settings, rounds: int, steps: int):
    from latentgraph.testing import output_images, txt2img

    times, pictures = [], []
    for i in range(rounds):
        start = time.perf_counter()
        for ck in ("ck0", "ck1"):
            wf = txt2img(f"{ck}.safetensors", seed=i, steps=steps, prompt=f"a star {ck}", filename_prefix=f"{ck}_{i}")
            result = engine.run(wf.to_api())
            assert result.status == "success", result
            pictures.append([np.asarray(im) for im in output_images(result, settings)])
        times.append(time.perf_counter() - start)
    return times, pictures


def inactive_use_ns(module, n: int = 200_000) -> float:
    from latentgraph.context import InterruptFlag
    from latentgraph.context import ExecutionContext
    from latentgraph.model_memory import ModelMemory
    from latentgraph.settings import Settings

    memory = ModelMemory()
    ctx = ExecutionContext(prompt_id="b", node_id="n", class_type="b", settings=Settings.from_env("/tmp", environ={}),
                           registry=None, sink=lambda e: None, interrupt=InterruptFlag(), extra={"model_memory": memory})
    start = time.perf_counter()
    for _ in range(n):
        with ctx.memory.use(module):
            pass
    return (time.perf_counter() - start) / n * 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="alternations per mode after a warm-up one")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from latentgraph.nodes.components import DiffusionModel
    from latentgraph.nodes.tiny_models import make_tiny_checkpoint
    from latentgraph.settings import Settings
    from latentgraph.testing import make_engine

    base = Path(tempfile.mkdtemp(prefix="lg-bench-memory-"))
    for seed in (0, 1):
        make_tiny_checkpoint(base / "models" / "checkpoints" / f"ck{seed}.safetensors", seed=seed)

    def settings(budget, name):
        return Settings.from_env(base, environ={}, device="cpu", device_budget=budget, output_dir=base / name)

    rows, reference, sizes = [], None, {}
    modes = [("none", None), ("fits1", 1.4), ("partial", 0.6)]
    for name, factor in modes:
        budget = None
        if factor is not None:
            budget = int(factor * (sizes["checkpoint"] if name == "fits1" else sizes["unet"]))
        s = settings(budget, name)
        engine = make_engine(s)
        alternate(engine, s, 1, args.steps)  # warm-up: loads both checkpoints into the cache
        if engine.memory.active:
            engine.memory.reset_peak()
        before = engine.memory.stats()
        times, pictures = alternate(engine, s, args.rounds, args.steps)
        stats = engine.memory.stats()
        if reference is None:
            reference = pictures
            for entry in engine.cache.entries():
                if entry.outputs and isinstance(entry.outputs[0], DiffusionModel):
                    unet, clip, vae = entry.outputs[0].unet, entry.outputs[1], entry.outputs[2]
                    sizes["checkpoint"] = independent_bytes([unet, vae.vae, *clip.encoders])
                    sizes["unet"] = independent_bytes([unet])
            sizes["unet_forward_ns_inactive_use"] = inactive_use_ns(unet)
        same = all(np.array_equal(a, b) for xs, ys in zip(reference, pictures) for a, b in zip(xs, ys))
        rows.append({
            "mode": name, "budget": budget, "s_per_alternation": statistics.median(times),
            "peak_resident": stats.peak, "resident_after": stats.resident,
            "loads": stats.loads - before.loads, "offloads": stats.offloads - before.offloads,
            "streamed": stats.streamed - before.streamed, "same_pictures": same,
            "cache_bytes_cpu": engine.cache.stats().bytes.get("cpu", 0),
        })
        engine.close()

    mb = 1 / 1e6
    print(f"two tiny SD1 checkpoints alternating on the CPU: checkpoint {sizes['checkpoint'] * mb:.2f} MB of weights,"
          f" UNet {sizes['unet'] * mb:.2f} MB; {args.rounds} alternations × 2 txt2img, {args.steps} steps")
    print(f"{'mode':8} {'budget MB':>9} {'s/alt':>7} {'peak MB':>8} {'after MB':>8} {'loads':>6} {'offl.':>6}"
          f" {'stream':>7} {'cache MB':>8} same")
    for r in rows:
        budget = "-" if r["budget"] is None else f"{r['budget'] * mb:.2f}"
        print(f"{r['mode']:8} {budget:>9} {r['s_per_alternation']:7.3f} {r['peak_resident'] * mb:8.2f}"
              f" {r['resident_after'] * mb:8.2f} {r['loads']:6d} {r['offloads']:6d} {r['streamed']:7d}"
              f" {r['cache_bytes_cpu'] * mb:8.2f} {r['same_pictures']}")
    print(f"inactive manager: ctx.memory.use(unet) costs {sizes['unet_forward_ns_inactive_use']:.0f} ns per call"
          " (one per sampling run, VAE call or prompt encoding)")
    print(json.dumps({"bench": "memory", "checkpoint_bytes": sizes["checkpoint"], "unet_bytes": sizes["unet"],
                      "inactive_use_ns": round(sizes["unet_forward_ns_inactive_use"], 1), "rows": rows}))
    return 0 if all(r["same_pictures"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
