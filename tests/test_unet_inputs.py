"""Conditioning that changes the UNet's inputs: instruct-pix2pix and inpainting channels, unCLIP's
image embedding, GLIGEN's grounding — parity with diffusers' own pipelines on tiny random models.

Tolerance as in tests/test_controlnet.py, fixed before measuring: 1e-4 of the latent's largest
magnitude + 1e-5 (same algorithms, float32 arithmetic in another order). All runs use
``dpmpp_2m`` / ``karras``, whose σ's and rounded timesteps diffusers' DPM-Solver++ reproduces (see
tests/test_parity.py). Where ComfyUI's semantics and the pipeline's differ the test says how the
case was made comparable.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from test_controlnet import close
from test_parity import SEED, diffusers_scheduler
from tiny_sd import CPU, SD1_SCHEDULER, TOKENIZER_DIR, make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.errors import NodeInputError
from latentgraph.nodes.components import DiffusionModel, TextEncoder
from latentgraph.nodes.latent.inpaint import InpaintModelConditioning
from latentgraph.nodes.latents import EmptyLatent
from latentgraph.nodes.sampling import cond_items, guidance
from latentgraph.nodes.sampling.ksampler_nodes import KSampler
from latentgraph.nodes.text.image_conditioning import InstructPixToPixConditioning, unCLIPConditioning

CFG, STEPS, SIZE = 5.0, 6, 16
SAMPLER = ("dpmpp_2m", "karras")
PROMPT, NEGATIVE = "a photo of a red cat", "blurry"


@pytest.fixture(scope="module")
def sd1():
    from transformers import CLIPTokenizer

    return tiny_sd("sd1", seed=0), CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)


def variant(sd, seed: int = 5, **config) -> DiffusionModel:
    """A tiny UNet like the sd1 one with some config changed (random weights), as a MODEL."""
    from diffusers import UNet2DConditionModel

    base = {k: v for k, v in sd.model.unet.config.items() if not k.startswith("_")}
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**{**base, **config}).eval()
    return DiffusionModel(unet=unet, scheduler_config=sd.model.scheduler_config, arch="sd1", device=CPU,
                          dtype=torch.float32, info=dict(sd.model.info))


def picture(seed: int = 3, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(batch, SIZE, SIZE, 3)
    img[:, 4:12, 2:10] = torch.tensor([0.9, 0.2, 0.1])
    return (img + 0.2 * torch.rand(img.shape, generator=g)).clamp(0, 1)


def pipe_of(cls_name, sd, tokenizer, unet, **parts):
    import diffusers

    defaults = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    if cls_name == "StableUnCLIPImg2ImgPipeline":
        defaults = {}
    pipe = getattr(diffusers, cls_name)(
        vae=sd.vae.vae, text_encoder=sd.text_encoders[0], tokenizer=tokenizer, unet=unet,
        scheduler=diffusers_scheduler(sd.model, *SAMPLER), **{**defaults, **parts},
    ).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompts(pipe):
    """Prompt and negative embeddings as diffusers' SD pipeline encodes them (not every pipeline
    has ``encode_prompt``)."""
    parts = SimpleNamespace(vae=SimpleNamespace(vae=pipe.vae), text_encoders=[pipe.text_encoder],
                            model=SimpleNamespace(scheduler_config=SD1_SCHEDULER))
    sd_pipe = pipe_of("StableDiffusionPipeline", parts, pipe.tokenizer, pipe.unet)
    with torch.no_grad():
        return sd_pipe.encode_prompt(PROMPT, CPU, 1, True, NEGATIVE)


def start_noise() -> torch.Tensor:
    """Our KSampler's initial noise for seed SEED (unit variance), handed to the pipelines."""
    return torch.randn(1, 4, SIZE // 2, SIZE // 2, generator=torch.Generator().manual_seed(SEED))


def ksampler(model, pos, neg, latent=None, cfg=CFG):
    ctx, _ = make_ctx()
    latent = latent or EmptyLatent().execute(ctx, SIZE, SIZE, 1)[0]
    out = KSampler().execute(ctx, model, SEED, STEPS, cfg, *SAMPLER, pos, neg, latent, 1.0)[0]
    return out["samples"] * 0.18215


# -- instruct-pix2pix ------------------------------------------------------------------------------------
def test_instruct_pix2pix_matches_pipeline_with_image_guidance_1(sd1):
    """ComfyUI's InstructPixToPixConditioning puts the picture into both sides of plain CFG: that is
    the pipeline's three-way guidance with image_guidance_scale 1 (the image-free branch cancels)."""
    sd, tokenizer = sd1
    model = variant(sd, in_channels=8)
    pipe = pipe_of("StableDiffusionInstructPix2PixPipeline", sd, tokenizer, model.unet)
    pos, neg = prompts(pipe)
    image = picture()
    expected = pipe(prompt_embeds=pos, negative_prompt_embeds=neg, image=image.movedim(-1, 1), guidance_scale=CFG,
                    image_guidance_scale=1.0, num_inference_steps=STEPS, latents=start_noise(),
                    output_type="latent").images
    ctx, _ = make_ctx()
    p, n, latent = InstructPixToPixConditioning().execute(ctx, [(pos, {})], [(neg, {})], sd.vae, image)
    ours = ksampler(model, p, n, latent)
    without = ksampler(model, [(pos, {})], [(neg, {})], latent)
    assert (without - expected).abs().max() > 0.05, "the picture should change the result"
    close(ours, expected)


def test_instruct_pix2pix_three_way_guidance_through_dual_cfg_guider(sd1):
    """image_guidance_scale ≠ 1: DualCFGGuider(cond1 = prompt + picture, cond2 = negative + picture,
    negative without picture → zeros) is the pipeline's text / image / unconditional guidance."""
    from latentgraph.nodes.sampling.custom_nodes import KSamplerSelect, SamplerCustomAdvanced
    from latentgraph.nodes.sampling.guider_nodes import DualCFGGuider, RandomNoise
    from latentgraph.nodes.sampling.schedules import schedule_sigmas

    sd, tokenizer = sd1
    model = variant(sd, in_channels=8)
    pipe = pipe_of("StableDiffusionInstructPix2PixPipeline", sd, tokenizer, model.unet)
    pos, neg = prompts(pipe)
    image = picture()
    expected = pipe(prompt_embeds=pos, negative_prompt_embeds=neg, image=image.movedim(-1, 1), guidance_scale=CFG,
                    image_guidance_scale=1.7, num_inference_steps=STEPS, latents=start_noise(),
                    output_type="latent").images
    ctx, _ = make_ctx()
    p, n, latent = InstructPixToPixConditioning().execute(ctx, [(pos, {})], [(neg, {})], sd.vae, image)
    (guider,) = DualCFGGuider().execute(ctx, model, p, n, [(neg, {})], CFG, 1.7, "regular")
    sigmas = schedule_sigmas(ctx.registry.schedulers[SAMPLER[1]], model.model_sampling, STEPS)
    (noise,) = RandomNoise().execute(ctx, SEED)
    (sampler,) = KSamplerSelect().execute(ctx, SAMPLER[0])
    out = SamplerCustomAdvanced().execute(ctx, noise, guider, sampler, sigmas, latent)[0]
    close(out["samples"] * 0.18215, expected)


# -- inpainting models -----------------------------------------------------------------------------------
def test_inpainting_model_matches_inpaint_pipeline(sd1):
    """A 9-channel UNet reads [latent, mask, masked-picture latent]. The pipeline keeps no noise
    mask for such UNets and starts from pure noise, so ours runs with noise_mask off from an empty
    latent. The mask is on the latent grid, where bilinear+round and nearest resizing agree."""
    sd, tokenizer = sd1
    model = variant(sd, in_channels=9)
    pipe = pipe_of("StableDiffusionInpaintPipeline", sd, tokenizer, model.unet)
    pos, neg = prompts(pipe)
    image = picture()
    mask = torch.zeros(1, SIZE, SIZE)
    mask[:, 6:14, 8:16] = 1.0
    ctx, _ = make_ctx()
    p, n, _latent = InpaintModelConditioning().execute(ctx, [(pos, {})], [(neg, {})], sd.vae, image, mask, False)
    masked = p[0][1]["concat_latent_image"] * 0.18215
    expected = pipe(prompt_embeds=pos, negative_prompt_embeds=neg, image=image.movedim(-1, 1), mask_image=mask[:, None],
                    masked_image_latents=masked, height=SIZE, width=SIZE, strength=1.0, guidance_scale=CFG,
                    num_inference_steps=STEPS, latents=start_noise(), output_type="latent").images
    ours = ksampler(model, p, n)
    blank = ksampler(model, [(pos, {})], [(neg, {})])  # no concat: "repaint everything" (mask 1, blank picture)
    assert (blank - expected).abs().max() > 0.05, "the mask and picture should change the result"
    close(ours, expected)


def test_self_attention_guidance_runs_its_extra_pass_with_the_inpainting_channels(sd1):
    """SAG's extra UNet pass re-uses the negative's recorded inputs, extra channels included: with
    blur 0 that pass reproduces the negative exactly, so the result equals the unpatched run (a
    pass without the 5 channels would not even fit the 9-channel UNet)."""
    from latentgraph.nodes.models.self_attention import SelfAttentionGuidance

    sd, _ = sd1
    model = variant(sd, in_channels=9)
    ctx, _ = make_ctx()
    pos, neg = random_conditioning("sd1", seed=1), random_conditioning("sd1", seed=2)
    mask = torch.zeros(1, SIZE, SIZE)
    mask[:, 6:14, 8:16] = 1.0
    p, n, _latent = InpaintModelConditioning().execute(ctx, pos, neg, sd.vae, picture(), mask, False)
    (sag,) = SelfAttentionGuidance().execute(None, model, scale=3.0, blur_sigma=0.0)
    close(ksampler(sag, p, n), ksampler(model, p, n))


def test_ksampler_hands_an_inpainting_model_the_runs_latent_and_noise_mask(sd1):
    """Through KSampler (not by calling the preparation directly): a LATENT with a noise mask and
    conditioning without concat_* samples exactly as conditioning that carries that latent and mask."""
    sd, _ = sd1
    model = variant(sd, in_channels=9)
    ctx, _ = make_ctx()
    latent = torch.randn(1, 4, SIZE // 2, SIZE // 2, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(1, 1, SIZE // 2, SIZE // 2)
    mask[..., 2:6, 1:7] = 1.0
    pos, neg = random_conditioning("sd1", seed=1), random_conditioning("sd1", seed=2)
    carried = {"concat_latent_image": latent, "concat_mask": mask}
    with_concat = [[(e, {**x, **carried}) for e, x in side] for side in (pos, neg)]
    masked = {"samples": latent, "noise_mask": mask}
    got = KSampler().execute(ctx, model, SEED, STEPS, CFG, *SAMPLER, pos, neg, masked, 0.8)[0]["samples"]
    want = KSampler().execute(ctx, model, SEED, STEPS, CFG, *SAMPLER, *with_concat, masked, 0.8)[0]["samples"]
    blank = KSampler().execute(ctx, model, SEED, STEPS, CFG, *SAMPLER, pos, neg, {"samples": latent}, 0.8)[0]["samples"]
    assert torch.equal(got, want)
    assert (got - blank).abs().max() > 0.05


def test_inpainting_model_without_concat_reads_the_runs_latent_and_noise_mask(sd1):
    """ComfyUI's fallback: no concat_* in the conditioning → the run's noise mask and input latent."""
    from latentgraph.nodes.sampling.run import process_latent_in
    from latentgraph.nodes.sampling.unet_inputs import BLANK_INPAINT_LATENT, RunInputs, prepare

    sd, _ = sd1
    model = variant(sd, in_channels=9)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 0.7
    run = RunInputs(seed=0, latent=process_latent_in(model, latent), noise_mask=mask)
    got = prepare(model, "positive", {}, (1, 4, 8, 8), 2, run).concat
    assert torch.equal(got[:, :1], mask.round()) and torch.allclose(got[:, 1:], latent * 0.18215)
    blank = prepare(model, "positive", {}, (2, 4, 8, 8), 2, None).concat
    assert blank.shape == (2, 5, 8, 8) and bool((blank[:, 0] == 1).all())
    assert torch.allclose(blank[0, 1:, 0, 0], torch.tensor(BLANK_INPAINT_LATENT))


# -- unCLIP -------------------------------------------------------------------------------------------------
def tiny_clip_vision(seed: int = 2):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from latentgraph.nodes.text.clip_vision import ClipVision

    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                              image_size=16, patch_size=4, projection_dim=24, hidden_act="gelu")
    model = CLIPVisionModelWithProjection(config).eval()
    return ClipVision(model=model, image_size=16, device=CPU, dtype=torch.float32)


def unclip_model(sd, width: int = 24) -> DiffusionModel:
    return variant(sd, seed=7, class_embed_type="projection", projection_class_embeddings_input_dim=2 * width)


def test_unclip_matches_stable_unclip_img2img_pipeline(sd1):
    """CLIPVisionEncode → unCLIPConditioning → our guidance against StableUnCLIPImg2ImgPipeline given
    the same image embedding: noise level round(999·0.1) = 100 with the noise ComfyUI draws (seed −
    10), the negative's class embedding zeros in both."""
    from diffusers import DDPMScheduler
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer

    from latentgraph.nodes.text.clip_vision import CLIPVisionEncode

    sd, tokenizer = sd1
    model = unclip_model(sd)
    vision = tiny_clip_vision()
    ctx, _ = make_ctx()
    (encoded,) = CLIPVisionEncode().execute(ctx, vision, picture(), "center")
    pipe = pipe_of("StableUnCLIPImg2ImgPipeline", sd, tokenizer, model.unet, feature_extractor=None,
                   image_encoder=vision.model, image_normalizer=StableUnCLIPImageNormalizer(24),
                   image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"))
    pos, neg = prompts(pipe)
    expected = pipe(prompt_embeds=pos, negative_prompt_embeds=neg, image_embeds=encoded.image_embeds, noise_level=100,
                    guidance_scale=CFG, num_inference_steps=STEPS, height=SIZE, width=SIZE, latents=start_noise(),
                    generator=torch.Generator().manual_seed(SEED - 10), output_type="latent").images
    (p,) = unCLIPConditioning().execute(ctx, [(pos, {})], encoded, 1.0, 0.1)
    ours = sample_with_seed(model, p, [(neg, {})])
    plain = sample_with_seed(model, [(pos, {})], [(neg, {})])
    assert (plain - expected).abs().max() > 0.05, "the image embedding should change the result"
    close(ours, expected)


def sample_with_seed(model, pos, neg):
    """Our guidance and sampler for seed SEED, as KSampler runs them once the run hands its seed to
    :meth:`Guider.bind` (unCLIP's noise augmentation reads it)."""
    from latentgraph.nodes.sampling.schedules import schedule_sigmas

    ctx, _ = make_ctx()
    sigmas = schedule_sigmas(ctx.registry.schedulers[SAMPLER[1]], model.model_sampling, STEPS)
    bound = guidance.Guider(model, {"positive": pos, "negative": neg}, guidance.CFG(CFG)).bind(
        (1, 4, SIZE // 2, SIZE // 2), 2, seed=SEED)
    x = start_noise() * (1 + float(sigmas[0]) ** 2) ** 0.5
    with torch.no_grad():
        return ctx.registry.samplers[SAMPLER[0]].sample(bound, x, sigmas, seed=SEED)


def test_unclip_entries_are_weighted_summed_and_augmented_again(sd1):
    """Two embeddings: strength-weighted sum of each [augmented embed, level embedding], the sum's
    embedding part augmented once more at round(999·0.05) with the next draws of the same noise."""
    from diffusers.models.embeddings import get_timestep_embedding

    from latentgraph.nodes.sampling.unet_inputs import NoiseAugmentor, image_embedding

    a, b = torch.randn(1, 6), torch.randn(1, 6)
    entries = [{"clip_vision_output": {"image_embeds": a}, "strength": 0.5, "noise_augmentation": 0.0},
               {"clip_vision_output": {"image_embeds": b}, "strength": 2.0, "noise_augmentation": 0.3}]
    got = image_embedding("positive", entries, 6, 20, 0.05)
    aug = NoiseAugmentor(6)
    g = torch.Generator().manual_seed(10)
    first = aug(a, 0, g) * 0.5
    g.manual_seed(10)
    second = aug(b, round(999 * 0.3), g) * 2.0
    total = first + second
    want = aug(total[:, :6], round(999 * 0.05), g)
    assert torch.allclose(got, want)
    assert torch.allclose(got[:, 6:], get_timestep_embedding(torch.tensor([50]), 6, True, 0))
    one = image_embedding("positive", entries[:1], 6, 20, 0.05)
    assert torch.allclose(one[:, 6:], 0.5 * get_timestep_embedding(torch.tensor([0]), 6, True, 0))


# -- wrong combinations --------------------------------------------------------------------------------
def test_wrong_combinations_are_refused_naming_the_input(sd1):
    sd, _ = sd1
    ctx, _ = make_ctx()
    pos, neg = [(torch.randn(1, 77, 32), {})], [(torch.randn(1, 77, 32), {})]
    p, n, latent = InstructPixToPixConditioning().execute(ctx, pos, neg, sd.vae, picture())
    with pytest.raises(NodeInputError) as err:
        ksampler(sd.model, p, n, latent)
    assert err.value.input_name == "positive" and "instruct-pix2pix" in str(err.value)

    vision = tiny_clip_vision()
    from latentgraph.nodes.text.clip_vision import CLIPVisionEncode

    (encoded,) = CLIPVisionEncode().execute(ctx, vision, picture(), "center")
    (u,) = unCLIPConditioning().execute(ctx, pos, encoded, 1.0, 0.0)
    with pytest.raises(NodeInputError) as err:
        ksampler(sd.model, u, neg)
    assert err.value.input_name == "positive" and "unCLIP" in str(err.value)
    with pytest.raises(NodeInputError) as err:  # embeddings of another width than the model takes
        ksampler(unclip_model(sd, width=16), u, neg)
    assert err.value.input_name == "positive" and "24" in str(err.value)

    odd = variant(sd, in_channels=6)
    with pytest.raises(NodeInputError) as err:
        ksampler(odd, p, n, latent)
    assert "6 input channels" in str(err.value)
    bad = [(p[0][0], {**p[0][1], "concat_latent_image": torch.zeros(1, 3, 8, 8)})]
    with pytest.raises(NodeInputError) as err:
        ksampler(variant(sd, in_channels=8), bad, n, latent)
    assert err.value.input_name == "positive" and "3 channels" in str(err.value)


def test_inpaint_conditioning_on_a_plain_model_uses_only_the_noise_mask(sd1):
    """As in ComfyUI: InpaintModelConditioning works with ordinary models (concat ignored)."""
    sd, _ = sd1
    ctx, _ = make_ctx()
    pos, neg = [(torch.randn(1, 77, 32), {})], [(torch.randn(1, 77, 32), {})]
    mask = torch.zeros(1, SIZE, SIZE)
    mask[:, :8] = 1
    p, n, latent = InpaintModelConditioning().execute(ctx, pos, neg, sd.vae, picture(), mask, True)
    a = ksampler(sd.model, p, n, latent)
    b = ksampler(sd.model, pos, neg, latent)
    assert torch.equal(a, b)


# -- GLIGEN -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gligen_setup(sd1, tmp_path_factory):
    """A tiny gated UNet (diffusers' GLIGEN form, gates opened), its GLIGEN layers saved in the
    original layout and loaded by our loader, and the same UNet without them as our MODEL."""
    from safetensors.torch import save_file

    from latentgraph.nodes.original_layout import unet_module_map
    from latentgraph.nodes.text.gligen import load_gligen

    sd, tokenizer = sd1
    gated = variant(sd, seed=11, attention_type="gated", attention_head_dim=1).unet
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, p in gated.named_parameters():
            if "alpha_" in name or "null_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.7)
    to_original = {path: orig for path, (orig, _) in unet_module_map(gated.config).items()}
    tensors = {}
    for key, value in gated.state_dict().items():
        if key.startswith("position_net."):
            tensors[key] = value
        elif ".fuser." in key:
            head, rest = key.split(".transformer_blocks.", 1)
            tensors[f"{to_original[head]}.transformer_blocks.{rest}"] = value
    path = tmp_path_factory.mktemp("gligen") / "tiny-gligen.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    plain = variant(sd, seed=11, attention_head_dim=1)
    plain.unet.load_state_dict({k: v for k, v in gated.state_dict().items()
                                if ".fuser." not in k and not k.startswith("position_net.")})
    clip = TextEncoder([tokenizer], sd.text_encoders, "sd1", CPU, torch.float32)
    return gated, plain, load_gligen(path), clip


BOXES = [("a red cat", 0, 8, 8, 8), ("a blue ball", 8, 0, 8, 8)]  # phrase, x, y, width, height (pixels)


def boxed(ctx, cond, gligen, clip):
    from latentgraph.nodes.text.gligen import GLIGENTextBoxApply

    for text, x, y, w, h in BOXES:
        (cond,) = GLIGENTextBoxApply().execute(ctx, cond, clip, gligen, text, w, h, x, y)
    return cond


@pytest.mark.parametrize("cfg", [1.0, CFG])
def test_gligen_matches_gligen_pipeline(sd1, gligen_setup, cfg):
    """GLIGENTextBoxApply → our sampler against StableDiffusionGLIGENPipeline with grounding on for
    every step (gligen_scheduled_sampling_beta 1; ComfyUI has no schedule). The pipeline's negative
    gets the null objects; ComfyUI lends the positive's boxes to it, so for cfg > 1 our negative
    carries an empty box list (null objects) of its own."""
    sd, tokenizer = sd1
    gated, plain, gligen, clip = gligen_setup
    pipe = pipe_of("StableDiffusionGLIGENPipeline", sd, tokenizer, gated)
    pos, neg = prompts(pipe)
    expected = pipe(prompt_embeds=pos, negative_prompt_embeds=neg, gligen_phrases=[b[0] for b in BOXES],
                    gligen_boxes=[[x / SIZE, y / SIZE, (x + w) / SIZE, (y + h) / SIZE] for _, x, y, w, h in BOXES],
                    gligen_scheduled_sampling_beta=1.0, guidance_scale=cfg, num_inference_steps=STEPS,
                    height=SIZE, width=SIZE, latents=start_noise(), output_type="latent").images
    ctx, _ = make_ctx()
    p = boxed(ctx, [(pos, {})], gligen, clip)
    n = [(neg, {"gligen": ("position", gligen, [])})]
    ours = ksampler(plain, p, n, cfg=cfg)
    without = ksampler(plain, [(pos, {})], [(neg, {})], cfg=cfg)
    assert (without - expected).abs().max() > 0.05, "the boxes should change the result"
    close(ours, expected)
    assert not hasattr(plain.unet, "position_net"), "the GLIGEN layers are removed after each call"


def test_gligen_boxes_reach_a_negative_without_its_own(sd1, gligen_setup):
    """ComfyUI's rule: the positive's boxes are lent to an area-less negative without a GLIGEN."""
    sd, _ = sd1
    _gated, plain, gligen, clip = gligen_setup
    ctx, _ = make_ctx()
    pos, neg = torch.randn(1, 77, 32), torch.randn(1, 77, 32)
    p = boxed(ctx, [(pos, {})], gligen, clip)
    lent = ksampler(plain, p, [(neg, {})])
    explicit = ksampler(plain, p, [(neg, {"gligen": p[0][1]["gligen"]})])
    empty = ksampler(plain, p, [(neg, {"gligen": ("position", gligen, [])})])
    assert torch.allclose(lent, explicit, atol=1e-6)
    assert (lent - empty).abs().max() > 1e-3


def test_gligen_for_another_model_is_refused(sd1, gligen_setup):
    sd, _ = sd1
    _gated, _plain, gligen, clip = gligen_setup
    ctx, _ = make_ctx()
    p = boxed(ctx, [(torch.randn(1, 77, 32), {})], gligen, clip)
    with pytest.raises(NodeInputError) as err:  # its attention blocks are 32 wide, the GLIGEN's 64
        ksampler(variant(sd, block_out_channels=(32, 32)), p, [(torch.randn(1, 77, 32), {})])
    assert err.value.input_name == "positive" and "another model family" in str(err.value)


# -- unCLIP checkpoints -----------------------------------------------------------------------------------
def test_unclip_checkpoint_loads_as_unclip_model_with_its_image_tower_and_samples(tmp_path):
    """An SD2.1-unCLIP-style file (label embedding of CLIP-embedding + noise-level width, image
    tower under ``embedder.model.visual.``, no metadata): unCLIPCheckpointLoader gives a MODEL with
    diffusers' projection class embedding and its CLIP_VISION, and the chain samples."""
    from dataclasses import replace

    from safetensors.torch import save_file
    from sd_helpers import Env
    from test_clip_vision import to_openai, tiny_vision

    from latentgraph.nodes.models.loaders import unCLIPCheckpointLoader
    from latentgraph.nodes.text.clip_vision import CLIPVisionEncode
    from latentgraph.nodes.tiny_models import diffusers_state_dicts, original_state_dict, tiny_config

    cfg = tiny_config("sd2")
    cfg = replace(cfg, unet={**cfg.unet, "class_embed_type": "projection", "projection_class_embeddings_input_dim": 32})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet, vae, encoders = diffusers_state_dicts(cfg)
    state = original_state_dict(cfg, unet, vae, encoders)
    time_width = unet["time_embedding.linear_1.weight"].shape[0]
    assert state["model.diffusion_model.label_emb.0.0.weight"].shape == (time_width, 32)
    state.update({f"embedder.model.{k}": v for k, v in to_openai(tiny_vision(width=64)).items()})
    env = Env(tmp_path)
    save_file({k: v.contiguous() for k, v in state.items()}, str(env.folder("checkpoints") / "tiny-unclip.safetensors"))

    model, _clip, _vae, vision = unCLIPCheckpointLoader().execute(env.ctx(), "tiny-unclip.safetensors")
    assert model.unet.config.class_embed_type == "projection" and vision is not None
    torch.testing.assert_close(model.unet.state_dict()["class_embedding.linear_1.weight"],
                               unet["class_embedding.linear_1.weight"])
    (encoded,) = CLIPVisionEncode().execute(env.ctx(), vision, picture(), "center")
    pos, neg = [(torch.randn(1, 77, 32), {})], [(torch.randn(1, 77, 32), {})]
    (p,) = unCLIPConditioning().execute(env.ctx(), pos, encoded, 1.0, 0.0)
    with_image, without = ksampler(model, p, neg), ksampler(model, pos, neg)
    assert torch.isfinite(with_image).all() and (with_image - without).abs().max() > 1e-3


# -- smaller rules ------------------------------------------------------------------------------------------
def test_concat_is_cut_to_each_entrys_area_and_cycled_to_the_batch(sd1):
    """Like ComfyUI's noise-shaped conds: an area entry's UNet call gets the picture under its area."""
    from latentgraph.nodes.sampling.unet_inputs import call_kwargs

    sd, _ = sd1
    model = variant(sd, in_channels=8)
    image = torch.randn(1, 4, 8, 8)
    cond = [(torch.randn(1, 77, 32), {"concat_latent_image": image, "area": (4, 6, 2, 1)})]
    (item,) = cond_items.prepare_items(model, "positive", cond, (2, 4, 8, 8), 8)
    crop, _ = item.region(torch.zeros(2, 4, 8, 8))
    got = call_kwargs([item], [crop])["c_concat"]
    assert got.shape == (2, 4, 4, 6)
    assert torch.equal(got, image[:, :, 2:6, 1:7].expand(2, -1, -1, -1))


def test_sdxl_revision_takes_the_image_embedding_as_pooled_output():
    """ComfyUI's SDXL reads unCLIPConditioning as its pooled text (Revision), no merge augmentation."""
    from latentgraph.nodes.sampling.unet_inputs import image_embedding

    sdxl = tiny_sd("sdxl", seed=0)
    embeds = torch.randn(1, 32)
    entry = {"clip_vision_output": {"image_embeds": embeds}, "strength": 0.8, "noise_augmentation": 0.2}
    cond = [(torch.randn(1, 77, 64), {"pooled_output": torch.randn(1, 32), "unclip_conditioning": [entry]})]
    (item,) = cond_items.prepare_items(sdxl.model, "positive", cond, (1, 4, 8, 8), 2)
    want = image_embedding("positive", [entry], 32, None, 0.0)[:, :32]
    assert torch.allclose(item.added["text_embeds"], want)
    assert not torch.allclose(want, embeds * 0.8, atol=1e-3)  # noise-augmented at level 200


# -- against ComfyUI's own model code ------------------------------------------------------------------
@pytest.fixture(scope="module")
def comfy_ref():
    """tests/data/comfyui/unet_inputs.safetensors, written by tests/reference/record_unet_inputs.py."""
    from pathlib import Path

    from safetensors.torch import load_file

    return load_file(str(Path(__file__).parent / "data" / "comfyui" / "unet_inputs.safetensors"))


def channels_model(in_channels: int) -> DiffusionModel:
    """Only what the channel rules read: the UNet's channel counts and the latent format."""
    unet = SimpleNamespace(config=SimpleNamespace(in_channels=in_channels, out_channels=4))
    return DiffusionModel(unet=unet, scheduler_config=SD1_SCHEDULER, arch="sd1", device=CPU, dtype=torch.float32,
                          info={"latent_channels": 4, "scaling_factor": 0.18215})


def test_unclip_embedding_matches_comfyui(comfy_ref):
    from latentgraph.nodes.sampling.unet_inputs import image_embedding

    r = comfy_ref
    two = [{"clip_vision_output": {"image_embeds": r["embeds_a"]}, "strength": 0.5, "noise_augmentation": 0.0},
           {"clip_vision_output": {"image_embeds": r["embeds_b"]}, "strength": 2.0, "noise_augmentation": 0.3}]
    torch.testing.assert_close(image_embedding("positive", two, 6, 20, 0.05), r["unclip_merged"], rtol=1e-5, atol=1e-6)
    one = [{"clip_vision_output": {"image_embeds": r["embeds_b"]}, "strength": 1.5, "noise_augmentation": 0.25}]
    torch.testing.assert_close(image_embedding("positive", one, 6, 7, 0.05), r["unclip_single"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("case", "channels", "extras", "run"), [
    ("inpaint_given", 9, {"concat_latent_image": "concat_latent", "concat_mask": "pixel_mask"},
     ("run_latent", "run_mask")),
    ("inpaint_run", 9, {}, ("run_latent", "run_mask")),
    ("inpaint_blank", 9, {}, ("run_latent", None)),
    ("inpaint_odd", 9, {"concat_latent_image": "odd_latent", "concat_mask": "pixel_mask"}, ("run_latent", None)),
    ("ip2p_given", 8, {"concat_latent_image": "odd_latent"}, (None, None)),
    ("ip2p_none", 8, {}, (None, None)),
])
def test_extra_channels_match_comfyui(comfy_ref, case, channels, extras, run):
    """Given concat, the run's latent and noise mask, or nothing; pictures of another size and batch."""
    from latentgraph.nodes.sampling.unet_inputs import RunInputs, prepare

    r = comfy_ref
    latent, mask = (r[k] if k else None for k in run)
    got = prepare(channels_model(channels), "positive", {k: r[v] for k, v in extras.items()}, (2, 4, 8, 8), 2,
                  RunInputs(seed=0, latent=latent, noise_mask=mask)).concat
    torch.testing.assert_close(got, r[case], rtol=1e-5, atol=1e-6)


def test_gligen_boxes_on_a_crop_and_gated_attention_match_comfyui(comfy_ref, tmp_path):
    """The recorded tiny GLIGEN through our loader; its grounding tokens for two boxes on a crop of
    6×8 cells (an SD latent: 8 pixels a cell) and its gated attention in two blocks."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from latentgraph.nodes.sampling.unet_inputs import RunInputs, call_kwargs, prepare
    from latentgraph.nodes.text.gligen import load_gligen

    r = comfy_ref
    path = tmp_path / "gligen.safetensors"
    save_file({k.removeprefix("gligen."): v for k, v in r.items() if k.startswith("gligen.")}, str(path))
    gligen = load_gligen(path)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(64, 128), layers_per_block=1, cross_attention_dim=32,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval()
    model = DiffusionModel(unet=unet, scheduler_config=SD1_SCHEDULER, arch="sd1", device=CPU, dtype=torch.float32,
                           info={"latent_channels": 4, "scaling_factor": 0.18215})
    phrases = r["gligen_phrases"]
    boxes = [(phrases[:1], 3, 4, 1, 2), (phrases[1:], 2, 2, 4, 5)]
    inputs = prepare(model, "positive", {"gligen": ("position", gligen, boxes)}, (1, 4, 6, 8), 8, RunInputs())
    item = SimpleNamespace(unet_inputs=inputs, area=None)
    args = call_kwargs([item], [torch.zeros(1, 4, 6, 8)])["cross_attention_kwargs"]["gligen"]
    with torch.no_grad():
        objs = gligen.position_net(**args)
        for i, (_path, fuser) in enumerate(inputs.gligen.placements):
            torch.testing.assert_close(fuser(r[f"gligen_x{i}"], objs), r[f"gligen_out{i}"], rtol=1e-4, atol=1e-5)
    assert [p for p, _ in inputs.gligen.placements] == ["down_blocks.0.attentions.0.transformer_blocks.0",
                                                         "mid_block.attentions.0.transformer_blocks.0"]
