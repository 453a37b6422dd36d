"""ForwardNoise is the forward process q(x_t | x0) of the model's schedule, and samplers continue it.

LATENTs carry unscaled VAE latents in σ form (``z0 + σ·ε`` in VAE units, ComfyUI's convention);
in the model's space, divided by sqrt(1 + σ²), that is the variance-preserving
sqrt(ᾱ)·x0 + sqrt(1 − ᾱ)·ε of the training schedule — the statistics checked here.
"""

from __future__ import annotations

import math

import pytest
import torch

from tiny_sd import make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.errors import NodeInputError
from latentgraph.nodes.latents import VAEEncode
from latentgraph.nodes.sampling.forward_noise import NOISE_KEY, ForwardNoise
from latentgraph.nodes.sampling.ksampler_nodes import KSampler, KSamplerAdvanced

SEED = 99
SCALE = 0.18215  # SD1's VAE scaling factor: model space = unscaled latent × SCALE


def sd1_alphas_cumprod() -> torch.Tensor:
    """SD1's training schedule, computed here independently of diffusers and of the core."""
    betas = torch.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def sd1_sigma(t: float) -> float:
    """σ at a (fractional) timestep, log σ interpolated between trained steps (ComfyUI's rule)."""
    log_sigmas = (((1 - sd1_alphas_cumprod()) / sd1_alphas_cumprod()) ** 0.5).log()
    low, high = math.floor(t), math.ceil(t)
    w = t - low
    return math.exp((1 - w) * float(log_sigmas[low]) + w * float(log_sigmas[high]))


@pytest.fixture(scope="module")
def sd():
    return tiny_sd("sd1", seed=3)


@pytest.fixture(scope="module")
def image_latent(sd):
    ctx, _ = make_ctx()
    pixels = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(5))
    return VAEEncode().execute(ctx, pixels, sd.vae)[0]


def same_run(a: dict, b: dict) -> bool:
    """Two runs agree to float32 rounding: the random tiny UNet makes latents of size ~100, and
    scaling in and out of the model's space costs a few ulps."""
    x, y = a["samples"], b["samples"]
    return (x - y).abs().max().item() <= 1e-6 * y.abs().max().item() + 1e-5


def forward_noise(sd, latent, steps, sampler_name="euler", scheduler="normal", denoise=1.0, seed=SEED):
    ctx, _ = make_ctx(class_type="ForwardNoise")
    return ForwardNoise().execute(ctx, sd.model, latent, seed, steps, sampler_name, scheduler, denoise)[0]


# "normal" spaces timesteps evenly from 999 to 0; dpm_2 (which drops the penultimate σ) gets one
# step more first. The start timestep is the one a KSampler with these settings starts at.
@pytest.mark.parametrize(("sampler_name", "points"), [("euler", 4), ("dpm_2", 5)])
@pytest.mark.parametrize(("steps", "denoise", "start"), [(4, 1.0, 0), (3, 0.75, 1), (2, 0.5, 2), (1, 0.25, 3)])
def test_forward_noise_statistics_follow_the_training_schedule(sd, sampler_name, points, steps, denoise, start):
    t = float(torch.linspace(999, 0, points)[start])
    sigma = sd1_sigma(t)
    alpha_bar = 1.0 / (1.0 + sigma**2)
    x0 = torch.full((16, 4, 64, 64), 0.8 / SCALE)  # 0.8 in the model's space
    noisy = forward_noise(sd, {"samples": x0}, steps, sampler_name, denoise=denoise)["samples"]
    vp = noisy * SCALE / math.sqrt(1.0 + sigma**2)
    assert vp.mean().item() == pytest.approx(math.sqrt(alpha_bar) * 0.8, abs=5e-3)
    # From the top σ (a run from pure noise) the noise is scaled by sqrt(1 + σ²), not σ: unit
    # variance in VP form, as the UNet saw it in training at t = 999 (ComfyUI's rule).
    expected_var = 1.0 if start == 0 else 1.0 - alpha_bar
    assert vp.var().item() == pytest.approx(expected_var, rel=1e-2, abs=1e-3)


def test_noise_is_the_seeds_noise_times_sigma_in_vae_units(sd):
    alpha_bar = float(sd1_alphas_cumprod()[999])
    assert math.sqrt(1.0 - alpha_bar) == pytest.approx(0.9977, abs=1e-4)
    sigma_max = math.sqrt((1 - alpha_bar) / alpha_bar)
    x0 = torch.zeros(2, 4, 32, 32)
    noisy = forward_noise(sd, {"samples": x0}, 10)["samples"]  # denoise 1: the schedule's first step, t = 999
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(SEED))
    assert torch.allclose(noisy, noise * math.sqrt(1.0 + sigma_max**2) / SCALE, rtol=1e-5, atol=1e-4)
    # the clean latent is added as it is: x0 + (the same noise)
    ones = forward_noise(sd, {"samples": torch.ones(2, 4, 32, 32)}, 10)["samples"]
    assert torch.allclose(ones - noisy, torch.ones_like(noisy), atol=1e-4)


@pytest.mark.parametrize(("sampler_name", "scheduler"), [("euler", "normal"),
                                                          ("euler_ancestral", "normal"),
                                                          ("dpmpp_2m", "karras"), ("ddim", "normal"), ("heun", "karras"),
                                                          ("dpm_2", "normal")])
def test_forward_noise_then_sampler_equals_sampler_with_denoise(sd, image_latent, sampler_name, scheduler):
    ctx, _ = make_ctx()
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    steps, denoise = 6, 0.6
    direct = KSampler().execute(ctx, sd.model, SEED, steps, 5.0, sampler_name, scheduler, pos, neg, image_latent, denoise)[0]
    noisy = forward_noise(sd, image_latent, steps, sampler_name, scheduler, denoise)
    assert NOISE_KEY in noisy
    via = KSampler().execute(ctx, sd.model, SEED, steps, 5.0, sampler_name, scheduler, pos, neg, noisy, denoise)[0]
    assert same_run(via, direct)
    # The sampler may also be told the whole schedule and where to start: the same run.
    total = int(steps / denoise)
    advanced = KSamplerAdvanced().execute(ctx, sd.model, "disable", SEED, total, 5.0, sampler_name, scheduler, pos, neg,
                                          noisy, total - steps, 10000, "disable")[0]
    assert same_run(advanced, direct)


def test_sampler_refuses_noise_from_another_schedule(sd, image_latent):
    ctx, _ = make_ctx()
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    noisy = forward_noise(sd, image_latent, 6, "euler", "karras", 0.6)
    with pytest.raises(NodeInputError) as err:
        KSampler().execute(ctx, sd.model, SEED, 6, 5.0, "euler", "normal", pos, neg, noisy, 0.6)
    assert err.value.input_name == "latent_image" and "σ=" in str(err.value)


def test_advanced_sampler_without_noise_refuses_the_wrong_start_step(sd, image_latent):
    ctx, _ = make_ctx()
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    noisy = forward_noise(sd, image_latent, 6, "euler", "karras", 0.6)  # step 4 of 10
    with pytest.raises(NodeInputError) as err:  # the right schedule, the wrong step
        KSamplerAdvanced().execute(ctx, sd.model, "disable", SEED, 10, 5.0, "euler", "karras", pos, neg, noisy, 2, 10000, "disable")
    assert err.value.input_name == "latent_image" and "already noisy" in str(err.value)


def test_forward_noise_record_is_dropped_when_samples_change(sd, image_latent):
    ctx, _ = make_ctx()
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    noisy = forward_noise(sd, image_latent, 6, "euler", "karras", 0.6)
    edited = {**noisy, "samples": noisy["samples"] * 0.5}  # a custom node copied the dict and edited it
    # Treated as a plain latent again: noise is added, no complaint about the schedule.
    out = KSampler().execute(ctx, sd.model, SEED, 6, 5.0, "euler", "normal", pos, neg, edited, 0.6)[0]
    assert NOISE_KEY not in out


def test_old_addnoise_form_resolves_to_forward_noise():
    """Workflows saved with latentgraph's old AddNoise (samples, steps …) still find their node;
    ComfyUI's AddNoise form (noise, sigmas, latent_image) is not taken for it."""
    ctx, _ = make_ctx()
    old = {"model": None, "samples": None, "noise_seed": 0, "steps": 20, "sampler_name": "euler", "scheduler": "normal",
           "denoise": 1.0}
    assert ctx.registry.get("AddNoise", old) is ForwardNoise
    comfy = ctx.registry.get("AddNoise", {"model": None, "noise": None, "sigmas": None, "latent_image": None})
    assert comfy is not ForwardNoise


def test_old_addnoise_workflow_runs_through_the_engine(lg_engine, tiny_checkpoint):
    """An API workflow with the old-form AddNoise validates and runs, giving ForwardNoise's latent."""
    from latentgraph.testing import WorkflowBuilder, assert_success

    def build(class_type: str) -> dict:
        wf = WorkflowBuilder()
        ckpt = wf.add("CheckpointLoaderSimple", ckpt_name=tiny_checkpoint.name)
        latent = wf.add("EmptyLatentImage", width=32, height=32, batch_size=1)
        wf.add(class_type, title="noise", model=ckpt[0], samples=latent[0], noise_seed=3, steps=4, sampler_name="euler",
               scheduler="karras", denoise=0.5)
        wf.add("PreviewImage", images=wf.add("VAEDecode", samples=wf.node("noise")[0], vae=ckpt[2])[0])
        return wf.to_api()

    engine = lg_engine()
    old = assert_success(engine.run(build("AddNoise")))
    new = assert_success(engine.run(build("ForwardNoise")))
    assert old.ok and new.ok


def test_two_stage_advanced_sampling_equals_one_run(sd):
    """Base model to step 4 with leftover noise, then the rest: the same as one run (Euler)."""
    ctx, _ = make_ctx()
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    empty = {"samples": torch.zeros(1, 4, 8, 8)}
    run = KSamplerAdvanced().execute
    full = run(ctx, sd.model, "enable", SEED, 8, 5.0, "euler", "normal", pos, neg, empty, 0, 10000, "disable")[0]
    first = run(ctx, sd.model, "enable", SEED, 8, 5.0, "euler", "normal", pos, neg, empty, 0, 4, "enable")[0]
    second = run(ctx, sd.model, "disable", SEED, 8, 5.0, "euler", "normal", pos, neg, first, 4, 10000, "disable")[0]
    assert NOISE_KEY not in second
    assert same_run(second, full)


def test_ending_early_without_leftover_noise_finishes_clean(sd):
    ctx, _ = make_ctx()
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    empty = {"samples": torch.zeros(1, 4, 8, 8)}
    run = KSamplerAdvanced().execute
    leftover = run(ctx, sd.model, "enable", SEED, 8, 5.0, "euler", "normal", pos, neg, empty, 0, 4, "enable")[0]
    clean = run(ctx, sd.model, "enable", SEED, 8, 5.0, "euler", "normal", pos, neg, empty, 0, 4, "disable")[0]
    assert NOISE_KEY not in clean
    assert not torch.allclose(clean["samples"], leftover["samples"])
    # The same first three steps, then the fourth goes to σ = 0: running steps 0-3 with leftover
    # noise and then step 3 alone without must give the same latent.
    three = run(ctx, sd.model, "enable", SEED, 8, 5.0, "euler", "normal", pos, neg, empty, 0, 3, "enable")[0]
    last = run(ctx, sd.model, "disable", SEED, 8, 5.0, "euler", "normal", pos, neg, three, 3, 4, "disable")[0]
    assert same_run(last, clean)


LEGACY = __import__("pathlib").Path(__file__).parent / "data" / "legacy"


def test_files_saved_with_the_old_addnoise_still_convert_and_validate():
    """The example as saved before ComfyUI's AddNoise took the name (API and editor format, kept
    verbatim in tests/data/legacy): both resolve the old node to ForwardNoise and validate."""
    import json

    from latentgraph.editor_format import convert_editor_workflow
    from latentgraph.validation import validate
    from latentgraph.workflow import parse_workflow

    ctx, _ = make_ctx()
    editor = json.loads((LEGACY / "addnoise_img2img_editor.json").read_text())
    conversion = convert_editor_workflow(editor, ctx.registry)
    assert not conversion.report, conversion.report.to_dict()
    api = json.loads((LEGACY / "addnoise_img2img_api.json").read_text())
    for prompt in (api, conversion.prompt):
        noise_nodes = [n for n in prompt.values() if n["class_type"] == "AddNoise"]
        assert noise_nodes and "samples" in noise_nodes[0]["inputs"]
        workflow, report = parse_workflow(prompt)
        graph, report = validate(workflow, ctx.registry, ctx.settings, report=report)
        # files (checkpoint, picture) are not in this test's data dir; the graph itself is sound
        problems = [(node_id, e.message) for node_id, e in report.all_errors()]
        assert all(prompt[node_id]["class_type"] in ("LoadImage", "LoadCheckpoint") for node_id, _ in problems), problems
        noise = next(n for n in prompt.values() if n["class_type"] == "AddNoise")
        assert ctx.registry.get("AddNoise", noise["inputs"]) is ForwardNoise
