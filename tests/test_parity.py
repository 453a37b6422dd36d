"""Parity with diffusers' own pipelines where diffusers can be given our noise levels.

Our samplers are k-diffusion/ComfyUI functions in σ space; diffusers' are scheduler objects. A
comparison means something only when the diffusers scheduler visits the same σ's, calls the UNet
at the same timesteps and starts from the same noisy latent. We round σ → t to the nearest
trained timestep (nearest in log σ); diffusers' Euler/Heun pass the fractional t of a σ between
trained ones, and its own spacings differ from ComfyUI's, so the comparable cases are:

* ``dpmpp_2m`` / ``karras``: ``DPMSolverMultistepScheduler(use_karras_sigmas=True)`` builds the
  same Karras σ's (ρ 7 over the trained σ_min..σ_max) and *rounds* t; its VP start
  (``init_noise_sigma`` 1) is our sqrt(1 + σ_max²)·ε; DPM-Solver++(2M) with a first-order last
  step is k-diffusion's dpmpp_2m.
* ``euler`` and ``heun`` / ``simple``: every σ of ``simple`` is a trained σ, so
  ``set_timesteps(timesteps=our integer t)`` gives diffusers exactly our σ's and t's. Their config
  gets ``timestep_spacing="leading"``, which with custom timesteps only makes the start
  ``sqrt(1 + σ_max²)·ε`` as ours (ComfyUI's) is.
* ``ddim`` / ``ddim_uniform``: ComfyUI's ddim is Euler in σ space, which is DDIM (η 0) in VP
  form; ``ddim_uniform`` is DDIM's "leading" spacing with ``steps_offset`` 1, and
  ``set_alpha_to_one=True`` makes diffusers' last step end at σ = 0 as ours does. Text-to-image
  from ddim_uniform starts at σ(t_0)·ε, not diffusers' unit noise, so that start is handed to the
  pipeline as ``latents`` (the run after it is compared).

No longer comparable (removed, see docs/sampling.md): ``euler``/``normal`` (fractional t and
σ interpolated linearly in diffusers), ``dpmpp_2m``/``normal`` and ``ddim``/``normal`` (diffusers
spaces these timesteps differently and its DPM/DDIM take no custom σ's), ``euler_ancestral``
(diffusers' scheduler takes no custom schedule and draws its step noise from the pipeline's
generator after the initial noise; ours draws from its own).

Tolerance, fixed before measuring: the algorithms and noise levels are the same, so only float32
rounding of different but equivalent arithmetic separates the two (σ form vs VP form, CFG on x0
vs on ε, Karras σ's in float32 vs float64). We allow 1e-5 of the latent's largest magnitude
(≈100 float32 ulps) + 1e-5, compared in the model's latent space (ours × scaling factor, which is
what ``output_type="latent"`` returns).

img2img: diffusers' ``strength`` s with N steps runs the last int(N·s) steps of an N-step
schedule = ``KSampler(steps=int(N·s), denoise=s)``; the init latent is given to both (ours
unscaled, as LATENTs are).
"""

from __future__ import annotations

import math

import pytest
import torch

from tiny_sd import TOKENIZER_DIR, make_ctx, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.nodes.latents import EmptyLatent
from latentgraph.nodes.sampling.ksampler_nodes import KSampler
from latentgraph.nodes.sampling.schedules import schedule_sigmas

SEED = 1234
CFG = 7.0
PROMPT, NEGATIVE = "a photo of a red cat", "blurry"

#: (sampler_name, scheduler) → the diffusers scheduler class, its options, custom timesteps?
CASES = {
    ("dpmpp_2m", "karras"): ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, False),
    ("euler", "simple"): ("EulerDiscreteScheduler", {"timestep_spacing": "leading"}, True),
    ("heun", "simple"): ("HeunDiscreteScheduler", {"timestep_spacing": "leading"}, True),
    ("ddim", "ddim_uniform"): ("DDIMScheduler", {"timestep_spacing": "leading", "steps_offset": 1, "set_alpha_to_one": True}, False),
}
#: Heun counts model calls in diffusers' img2img step arithmetic; its strength cut is not ours.
IMG2IMG_CASES = [c for c in CASES if c[0] != "heun"]


def same_latents(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Max difference, asserted against the tolerance in the module docstring."""
    diff = (ours - theirs).abs().max().item()
    report = f"max |diff| {diff:.3g}, max |latent| {theirs.abs().max():.3g}"
    print(report)
    assert diff <= 1e-5 * theirs.abs().max().item() + 1e-5, report
    return diff


def diffusers_scheduler(model, sampler_name, scheduler):
    import diffusers

    cls_name, options, _ = CASES[(sampler_name, scheduler)]
    return getattr(diffusers, cls_name).from_config(model.scheduler_config, **options)


def custom_timesteps(model, sampler_name, scheduler, steps):
    """Our schedule's timesteps, for schedulers that take them (``None`` for the others)."""
    if not CASES[(sampler_name, scheduler)][2]:
        return None
    ctx, _ = make_ctx()
    sigmas = schedule_sigmas(ctx.registry.schedulers[scheduler], model.model_sampling, steps)
    return [int(t) for t in model.model_sampling.timestep(sigmas[:-1])]


def start_latents(model, sampler_name, scheduler, steps, shape):
    """For ddim_uniform text-to-image only: our start σ(t₀)·ε in VP form, handed to the pipeline."""
    if scheduler != "ddim_uniform":
        return None
    ctx, _ = make_ctx()
    sigma = float(schedule_sigmas(ctx.registry.schedulers[scheduler], model.model_sampling, steps)[0])
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(SEED))
    return noise * sigma / math.sqrt(1 + sigma**2)


@pytest.fixture(scope="module")
def sd1():
    from transformers import CLIPTokenizer

    sd = tiny_sd("sd1", seed=0)
    return sd, CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)


@pytest.fixture(scope="module")
def sdxl():
    from transformers import CLIPTokenizer

    sd = tiny_sd("sdxl", seed=0)
    tok = CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)
    return sd, tok


def sd1_pipeline(cls_name, sd, tokenizer, scheduler):
    import diffusers

    pipe = getattr(diffusers, cls_name)(
        vae=sd.vae.vae, text_encoder=sd.text_encoders[0], tokenizer=tokenizer, unet=sd.model.unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd1_conditioning(pipe):
    with torch.no_grad():
        pos, neg = pipe.encode_prompt(PROMPT, torch.device("cpu"), 1, True, NEGATIVE)
    return pos, neg


def ksampler(sd, pos, neg, latent, sampler_name, scheduler, steps, denoise=1.0):
    """Our KSampler, output in the model's latent space (as diffusers' ``output_type="latent"``)."""
    ctx, _ = make_ctx()
    out = KSampler().execute(ctx, sd.model, SEED, steps, CFG, sampler_name, scheduler, pos, neg, latent, denoise)
    return out[0]["samples"] * sd.vae.scaling_factor


def steps_or_timesteps(model, sampler_name, scheduler, steps) -> dict:
    timesteps = custom_timesteps(model, sampler_name, scheduler, steps)
    return {"timesteps": timesteps} if timesteps is not None else {"num_inference_steps": steps}


@pytest.mark.parametrize(("sampler_name", "scheduler"), list(CASES))
def test_txt2img_matches_stable_diffusion_pipeline(sd1, sampler_name, scheduler):
    sd, tokenizer = sd1
    pipe = sd1_pipeline("StableDiffusionPipeline", sd, tokenizer, diffusers_scheduler(sd.model, sampler_name, scheduler))
    pos, neg = sd1_conditioning(pipe)
    expected = pipe(
        prompt=PROMPT, negative_prompt=NEGATIVE, height=16, width=16, guidance_scale=CFG,
        generator=torch.Generator().manual_seed(SEED), output_type="latent",
        latents=start_latents(sd.model, sampler_name, scheduler, 8, (1, 4, 8, 8)),
        **steps_or_timesteps(sd.model, sampler_name, scheduler, 8),
    ).images
    ctx, _ = make_ctx()
    empty = EmptyLatent().execute(ctx, 16, 16, 1)[0]
    ours = ksampler(sd, [(pos, {})], [(neg, {})], empty, sampler_name, scheduler, 8)
    assert ours.shape == expected.shape == (1, 4, 8, 8)
    same_latents(ours, expected)


@pytest.mark.parametrize(("sampler_name", "scheduler"), IMG2IMG_CASES)
def test_img2img_matches_img2img_pipeline(sd1, sampler_name, scheduler):
    sd, tokenizer = sd1
    pipe = sd1_pipeline(
        "StableDiffusionImg2ImgPipeline", sd, tokenizer, diffusers_scheduler(sd.model, sampler_name, scheduler)
    )
    pos, neg = sd1_conditioning(pipe)
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(7))  # in the model's space
    steps, strength = 10, 0.6
    expected = pipe(
        prompt=PROMPT, negative_prompt=NEGATIVE, image=init, strength=strength,
        guidance_scale=CFG, generator=torch.Generator().manual_seed(SEED), output_type="latent",
        **steps_or_timesteps(sd.model, sampler_name, scheduler, steps),
    ).images
    ours = ksampler(sd, [(pos, {})], [(neg, {})], {"samples": init / sd.vae.scaling_factor}, sampler_name, scheduler,
                    int(steps * strength), denoise=strength)
    same_latents(ours, expected)


@pytest.mark.parametrize(("sampler_name", "scheduler"), list(CASES))
def test_sdxl_txt2img_matches_sdxl_pipeline(sdxl, sampler_name, scheduler):
    import diffusers

    sd, tokenizer = sdxl
    pipe = diffusers.StableDiffusionXLPipeline(
        vae=sd.vae.vae, text_encoder=sd.text_encoders[0], text_encoder_2=sd.text_encoders[1], tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=sd.model.unet, scheduler=diffusers_scheduler(sd.model, sampler_name, scheduler),
    ).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        pos, neg, pooled, neg_pooled = pipe.encode_prompt(
            PROMPT, device=torch.device("cpu"), num_images_per_prompt=1, do_classifier_free_guidance=True,
            negative_prompt=NEGATIVE,
        )
    expected = pipe(
        prompt_embeds=pos, negative_prompt_embeds=neg, pooled_prompt_embeds=pooled,
        negative_pooled_prompt_embeds=neg_pooled, height=16, width=16,
        guidance_scale=CFG, generator=torch.Generator().manual_seed(SEED), output_type="latent",
        latents=start_latents(sd.model, sampler_name, scheduler, 8, (1, 4, 8, 8)),
        **steps_or_timesteps(sd.model, sampler_name, scheduler, 8),
    ).images
    ctx, _ = make_ctx()
    empty = EmptyLatent().execute(ctx, 16, 16, 1)[0]
    ours = ksampler(sd, [(pos, {"pooled_output": pooled})], [(neg, {"pooled_output": neg_pooled})], empty,
                    sampler_name, scheduler, 8)
    same_latents(ours, expected)


@pytest.mark.parametrize(("sampler_name", "scheduler"), [("euler", "simple"), ("dpmpp_2m", "karras")])
def test_v_prediction_txt2img_matches_pipeline(sampler_name, scheduler):
    from transformers import CLIPTokenizer

    sd = tiny_sd("sd1", seed=0, prediction_type="v_prediction")
    tokenizer = CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)
    pipe = sd1_pipeline("StableDiffusionPipeline", sd, tokenizer, diffusers_scheduler(sd.model, sampler_name, scheduler))
    pos, neg = sd1_conditioning(pipe)
    expected = pipe(
        prompt_embeds=pos, negative_prompt_embeds=neg, height=16, width=16,
        guidance_scale=CFG, generator=torch.Generator().manual_seed(SEED), output_type="latent",
        **steps_or_timesteps(sd.model, sampler_name, scheduler, 6),
    ).images
    ctx, _ = make_ctx()
    ours = ksampler(sd, [(pos, {})], [(neg, {})], EmptyLatent().execute(ctx, 16, 16, 1)[0], sampler_name, scheduler, 6)
    same_latents(ours, expected)
