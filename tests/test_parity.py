"""Parity with diffusers' own pipelines: same components, same seed → the same final latents.

The pipeline gets the scheduler a diffusers user would build for the sampler/schedule
(``XScheduler.from_config(model_config, …)``), so these tests check both our sampling loop and
our name → scheduler mapping. Text conditioning is encoded once by the pipeline's own
``encode_prompt`` (real CLIP tokenizer, tiny text encoder) and given to both sides.

img2img: diffusers' ``strength`` s with N steps runs the last int(N·s) steps of an N-step
schedule; ComfyUI's KSampler runs ``steps`` steps of a ``steps/denoise`` schedule, so
``KSampler(steps=int(N·s), denoise=s)`` is the same run. Noise is added by the forward process
in VP form and converted to the scheduler's space (see ``denoise``), which differs from
``scheduler.add_noise`` only by float rounding (~1e-6).
"""

from __future__ import annotations

import pytest
import torch

from tiny_sd import TOKENIZER_DIR, make_ctx, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.nodes.latents import EmptyLatent
from latentgraph.nodes.sampler_nodes import KSampler

TOLERANCE = 1e-4
SEED = 1234
CFG = 7.0
PROMPT, NEGATIVE = "a photo of a red cat", "blurry"

#: (sampler_name, scheduler) → how a diffusers user builds that scheduler.
CASES = {
    ("euler", "normal"): ("EulerDiscreteScheduler", {}),
    ("euler_ancestral", "normal"): ("EulerAncestralDiscreteScheduler", {}),
    ("dpmpp_2m", "normal"): ("DPMSolverMultistepScheduler", {}),
    ("dpmpp_2m", "karras"): ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    ("ddim", "normal"): ("DDIMScheduler", {}),
}


def diffusers_scheduler(model, sampler_name, scheduler):
    import diffusers

    cls_name, options = CASES[(sampler_name, scheduler)]
    return getattr(diffusers, cls_name).from_config(model.scheduler_config, **options)


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

    return getattr(diffusers, cls_name)(
        vae=sd.vae.vae, text_encoder=sd.text_encoders[0], tokenizer=tokenizer, unet=sd.model.unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).to("cpu")


def sd1_conditioning(pipe):
    with torch.no_grad():
        pos, neg = pipe.encode_prompt(PROMPT, torch.device("cpu"), 1, True, NEGATIVE)
    return pos, neg


def ksampler(sd, pos, neg, latent, sampler_name, scheduler, steps, denoise=1.0):
    ctx, _ = make_ctx()
    out = KSampler().execute(ctx, sd.model, SEED, steps, CFG, sampler_name, scheduler, pos, neg, latent, denoise)
    return out[0]["samples"]


@pytest.mark.parametrize(("sampler_name", "scheduler"), list(CASES))
def test_txt2img_matches_stable_diffusion_pipeline(sd1, sampler_name, scheduler):
    sd, tokenizer = sd1
    pipe = sd1_pipeline("StableDiffusionPipeline", sd, tokenizer, diffusers_scheduler(sd.model, sampler_name, scheduler))
    pos, neg = sd1_conditioning(pipe)
    expected = pipe(
        prompt=PROMPT, negative_prompt=NEGATIVE, height=16, width=16, num_inference_steps=8, guidance_scale=CFG,
        generator=torch.Generator().manual_seed(SEED), output_type="latent",
    ).images
    ctx, _ = make_ctx()
    empty = EmptyLatent().execute(ctx, 16, 16, 1)[0]
    ours = ksampler(sd, [(pos, {})], [(neg, {})], empty, sampler_name, scheduler, 8)
    assert ours.shape == expected.shape == (1, 4, 8, 8)
    assert (ours - expected).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize(("sampler_name", "scheduler"), list(CASES))
def test_img2img_matches_img2img_pipeline(sd1, sampler_name, scheduler):
    sd, tokenizer = sd1
    pipe = sd1_pipeline(
        "StableDiffusionImg2ImgPipeline", sd, tokenizer, diffusers_scheduler(sd.model, sampler_name, scheduler)
    )
    pos, neg = sd1_conditioning(pipe)
    init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    steps, strength = 10, 0.6
    expected = pipe(
        prompt=PROMPT, negative_prompt=NEGATIVE, image=init, strength=strength, num_inference_steps=steps,
        guidance_scale=CFG, generator=torch.Generator().manual_seed(SEED), output_type="latent",
    ).images
    ours = ksampler(sd, [(pos, {})], [(neg, {})], {"samples": init.clone()}, sampler_name, scheduler,
                    int(steps * strength), denoise=strength)
    assert (ours - expected).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize(("sampler_name", "scheduler"), list(CASES))
def test_sdxl_txt2img_matches_sdxl_pipeline(sdxl, sampler_name, scheduler):
    import diffusers

    sd, tokenizer = sdxl
    pipe = diffusers.StableDiffusionXLPipeline(
        vae=sd.vae.vae, text_encoder=sd.text_encoders[0], text_encoder_2=sd.text_encoders[1], tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=sd.model.unet, scheduler=diffusers_scheduler(sd.model, sampler_name, scheduler),
    ).to("cpu")
    with torch.no_grad():
        pos, neg, pooled, neg_pooled = pipe.encode_prompt(
            PROMPT, device=torch.device("cpu"), num_images_per_prompt=1, do_classifier_free_guidance=True,
            negative_prompt=NEGATIVE,
        )
    expected = pipe(
        prompt_embeds=pos, negative_prompt_embeds=neg, pooled_prompt_embeds=pooled,
        negative_pooled_prompt_embeds=neg_pooled, height=16, width=16, num_inference_steps=8,
        guidance_scale=CFG, generator=torch.Generator().manual_seed(SEED), output_type="latent",
    ).images
    ctx, _ = make_ctx()
    empty = EmptyLatent().execute(ctx, 16, 16, 1)[0]
    ours = ksampler(sd, [(pos, {"pooled_output": pooled})], [(neg, {"pooled_output": neg_pooled})], empty,
                    sampler_name, scheduler, 8)
    assert (ours - expected).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize(("sampler_name", "scheduler"), [("euler", "normal"), ("ddim", "normal")])
def test_v_prediction_txt2img_matches_pipeline(sampler_name, scheduler):
    from transformers import CLIPTokenizer

    sd = tiny_sd("sd1", seed=0, prediction_type="v_prediction")
    tokenizer = CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)
    pipe = sd1_pipeline("StableDiffusionPipeline", sd, tokenizer, diffusers_scheduler(sd.model, sampler_name, scheduler))
    pos, neg = sd1_conditioning(pipe)
    expected = pipe(
        prompt_embeds=pos, negative_prompt_embeds=neg, height=16, width=16, num_inference_steps=6,
        guidance_scale=CFG, generator=torch.Generator().manual_seed(SEED), output_type="latent",
    ).images
    ctx, _ = make_ctx()
    ours = ksampler(sd, [(pos, {})], [(neg, {})], EmptyLatent().execute(ctx, 16, 16, 1)[0], sampler_name, scheduler, 6)
    assert (ours - expected).abs().max().item() <= TOLERANCE
