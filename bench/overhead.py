"""How much does latentgraph add on top of diffusers for the same text-to-image run?

The same txt2img (tiny random SD1 checkpoint, 20 steps, euler with the ``simple`` schedule, cfg 7,
batch 1) four ways, in one process, interleaved, ``--repeats`` runs each. euler/simple is the
closest diffusers can run to ours: ``simple`` visits only trained σ's, so diffusers'
``EulerDiscreteScheduler`` given our integer timesteps makes the very same model calls (see
tests/test_parity.py; ComfyUI's default ``normal`` uses fractional timesteps diffusers cannot
match).

* ``engine``   — an API-format JSON workflow through ``latentgraph.engine.Engine`` (checkpoint and
  prompts served from its cache after a warm-up, as in a real session; KSampler, VAEDecode and
  PreviewImage run every time because the seed changes);
* ``nodes``    — KSampler + VAEDecode called directly (no engine);
* ``pipeline`` — diffusers' ``StableDiffusionPipeline`` on the very same UNet/VAE with the same
  prompt embeddings and our timesteps, ``output_type="pil"``;
* ``loop``     — a minimal hand-written diffusers loop (scheduler, batched CFG, VAE decode).

On a shared CPU the run-to-run noise (±15 %) is larger than the effect, so each run is split
into *model time* (inside ``UNet2DConditionModel.forward`` and ``AutoencoderKL.decode``, the same
work for every runner) and *framework time* (everything else: scheduler, guidance, engine,
image output). The headline overhead is the extra framework time per run relative to the
pipeline, over the pipeline's median run time — model time is excluded from the difference, so
the headline is not "the engine's run took X % longer". That wall-time comparison is printed too
(median total run times, and their difference), with the run-to-run noise band of each: the
spread (min…max) over the interleaved repeats of the paired per-repeat differences. A headline
inside the band of the wall-time difference means "not measurable on this machine", not "zero".
The tiny model makes every step cheap, so this is a worst case: with a real model the UNet
dominates. Prints a table and one JSON line. Target: engine ≤ 5 %.

    python bench/overhead.py [--steps 20] [--repeats 9] [--size 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

PROMPT, NEGATIVE = "a photo of a cat", "blurry"
SAMPLER, SCHEDULE = "euler", "simple"
#: ``leading`` only makes diffusers start from sqrt(1 + σ_max²)·ε as ComfyUI does; the timesteps
#: themselves are given.
EULER_OPTIONS = {"timestep_spacing": "leading"}


def workflow(ckpt: str, steps: int, size: int, seed: int) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0], "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": SAMPLER,
                "scheduler": SCHEDULE, "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }


@contextmanager
def model_timer(spent: list[float]):
    """Adds the wall time of every top-level UNet forward and VAE decode to ``spent[0]``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    originals = {(UNet2DConditionModel, "forward"): UNet2DConditionModel.forward,
                 (AutoencoderKL, "decode"): AutoencoderKL.decode}

    def timed(fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        return wrapper

    for (cls, name), fn in originals.items():
        setattr(cls, name, timed(fn))
    try:
        yield
    finally:
        for (cls, name), fn in originals.items():
            setattr(cls, name, fn)


def our_timesteps(registry, model, steps: int) -> list[int]:
    """The integer timesteps of our euler/simple run (every σ of ``simple`` is a trained one)."""
    from latentgraph.nodes.sampling.schedules import schedule_sigmas

    sigmas = schedule_sigmas(registry.schedulers[SCHEDULE], model.model_sampling, steps)
    return [int(t) for t in model.model_sampling.timestep(sigmas[:-1])]


def hand_loop(model, vae, pos, neg, timesteps: list[int], size: int, seed: int):
    """What a diffusers user writes by hand: no pipeline, no checks."""
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler.from_config(model.scheduler_config, **EULER_OPTIONS)
    scheduler.set_timesteps(timesteps=timesteps)
    generator = torch.Generator().manual_seed(seed)
    f = 2 ** (len(vae.vae.config.block_out_channels) - 1)
    latents = torch.randn(1, 4, size // f, size // f, generator=generator) * scheduler.init_noise_sigma
    embeddings = torch.cat([neg, pos])
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            uncond, cond = model.unet(x, t, encoder_hidden_states=embeddings, return_dict=False)[0].chunk(2)
            latents = scheduler.step(uncond + 7.0 * (cond - uncond), t, latents, generator=generator).prev_sample
        image = vae.vae.decode(latents / vae.scaling_factor).sample
    return ((image + 1) / 2).clamp(0, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = stable timings on shared CPUs)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from latentgraph import ExecutionContext, InterruptFlag, Settings
    from latentgraph.engine import Engine
    from latentgraph.nodes.conditioning import CLIPEncode
    from latentgraph.nodes.latents import EmptyLatent, VAEDecode
    from latentgraph.nodes.loaders import LoadCheckpoint
    from latentgraph.nodes.sampling.ksampler_nodes import KSampler
    from latentgraph.nodes.tiny_models import make_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(Path(tmp), environ={}, device="cpu")
        ckpt = settings.model_dirs("checkpoints")[0] / "tiny-sd1.safetensors"
        make_tiny_checkpoint(ckpt, arch="sd1", seed=0)
        engine = Engine.create(settings, entry_points=False)
        ctx = ExecutionContext(prompt_id="bench", node_id="n", class_type="bench", settings=engine.settings,
                               registry=engine.registry, sink=lambda event: None, interrupt=InterruptFlag(), extra={})
        model, clip, vae = LoadCheckpoint().execute(ctx, ckpt.name)
        pos = CLIPEncode().execute(ctx, clip, PROMPT)[0]
        neg = CLIPEncode().execute(ctx, clip, NEGATIVE)[0]
        pipe = StableDiffusionPipeline(
            vae=vae.vae, text_encoder=clip.encoders[0], tokenizer=clip.tokenizers[0], unet=model.unet,
            scheduler=EulerDiscreteScheduler.from_config(model.scheduler_config, **EULER_OPTIONS), safety_checker=None,
            feature_extractor=None, requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        empty = EmptyLatent().execute(ctx, args.size, args.size, 1)[0]
        timesteps = our_timesteps(engine.registry, model, args.steps)

        def run_engine(seed):
            result = engine.run(workflow(ckpt.name, args.steps, args.size, seed))
            assert result.ok, result.failure

        def run_nodes(seed):
            latent = KSampler().execute(ctx, model, seed, args.steps, 7.0, SAMPLER, SCHEDULE, pos, neg, empty, 1.0)[0]
            return latent, VAEDecode().execute(ctx, latent, vae)[0]

        def run_pipeline(seed, output_type="pil"):
            return pipe(
                prompt_embeds=pos[0][0], negative_prompt_embeds=neg[0][0], height=args.size, width=args.size,
                timesteps=timesteps, guidance_scale=7.0, generator=torch.Generator().manual_seed(seed),
                output_type=output_type,
            ).images

        def run_loop(seed):
            return hand_loop(model, vae, pos[0][0], neg[0][0], timesteps, args.size, seed)

        # Same result check: our latents (unscaled, as LATENTs are) against the pipeline's for one seed.
        ours = run_nodes(7)[0]["samples"] * vae.scaling_factor
        theirs = run_pipeline(7, output_type="latent")
        max_diff = (ours - theirs).abs().max().item()

        runners = {"engine": run_engine, "nodes": run_nodes, "pipeline": run_pipeline, "loop": run_loop}
        total: dict[str, list[float]] = {name: [] for name in runners}
        framework: dict[str, list[float]] = {name: [] for name in runners}
        for name, run in runners.items():  # warm-up (engine: loads and caches the checkpoint)
            run(0)
        spent = [0.0]
        with model_timer(spent):
            for i in range(args.repeats):
                for name, run in runners.items():
                    spent[0] = 0.0
                    start = time.perf_counter()
                    run(100 + i)
                    elapsed = time.perf_counter() - start
                    total[name].append(elapsed)
                    framework[name].append(elapsed - spent[0])

    med = {name: statistics.median(v) for name, v in total.items()}
    fw = {name: statistics.median(v) for name, v in framework.items()}
    base = med["pipeline"]
    overhead = {name: (fw[name] - fw["pipeline"]) / base for name in runners}
    # Paired per-repeat differences (runs i of two runners were interleaved, so they share the
    # machine's load): their spread is the noise band of each figure.
    paired_fw = {name: [(a - b) / base for a, b in zip(framework[name], framework["pipeline"])] for name in runners}
    paired_total = {name: [(a - b) / base for a, b in zip(total[name], total["pipeline"])] for name in runners}
    wall = {name: (med[name] - base) / base for name in runners}
    band = {name: (min(v), max(v)) for name, v in paired_fw.items()}
    wall_band = {name: (min(v), max(v)) for name, v in paired_total.items()}
    spread = {name: (max(v) - min(v)) / med[name] for name, v in total.items()}
    print(f"txt2img, tiny SD1, {args.steps} steps {SAMPLER}/{SCHEDULE} (diffusers: EulerDiscreteScheduler with our "
          f"timesteps) cfg 7, {args.size}x{args.size}, batch 1, "
          f"{args.threads} thread(s), median of {args.repeats} interleaved runs")
    print("overhead = (framework time − the pipeline's) / the pipeline's run time; model time (UNet forward, "
          "VAE decode) excluded. wall = (run time − the pipeline's) / the pipeline's run time. [band] = min…max "
          "of the paired per-repeat differences (run-to-run noise).")
    print(f"{'runner':<10} {'run s':>8} {'run spread':>11} {'framework ms':>13} {'framework ms/step':>18} "
          f"{'overhead [band]':>28} {'wall [band]':>28}")
    for name in runners:
        lo, hi = band[name]
        wlo, whi = wall_band[name]
        print(f"{name:<10} {med[name]:>8.4f} {spread[name]:>11.1%} {fw[name] * 1000:>13.1f} "
              f"{fw[name] * 1000 / args.steps:>18.2f} {overhead[name]:>+8.2%} [{lo:+.2%}…{hi:+.2%}] "
              f"{wall[name]:>+8.2%} [{wlo:+.2%}…{whi:+.2%}]")
    print(f"max |latent difference| nodes vs pipeline: {max_diff:.2e}")
    record = {
        "bench": "overhead",
        "steps": args.steps,
        "sampler": SAMPLER,
        "scheduler": SCHEDULE,
        "diffusers_scheduler": "EulerDiscreteScheduler(timesteps=ours)",
        "size": args.size,
        "threads": args.threads,
        "repeats": args.repeats,
        "median_run_seconds": {k: round(v, 5) for k, v in med.items()},
        "median_framework_seconds": {k: round(v, 5) for k, v in fw.items()},
        "headline": "engine_overhead: extra framework time vs the pipeline over its run time, model time excluded",
        "engine_overhead": round(overhead["engine"], 4),
        "engine_overhead_band": [round(v, 4) for v in band["engine"]],
        "engine_wall_difference": round(wall["engine"], 4),
        "engine_wall_difference_band": [round(v, 4) for v in wall_band["engine"]],
        "run_spread": {k: round(v, 4) for k, v in spread.items()},
        "nodes_overhead": round(overhead["nodes"], 4),
        "loop_overhead": round(overhead["loop"], 4),
        "max_latent_diff": max_diff,
        "target_met": overhead["engine"] <= 0.05,
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
