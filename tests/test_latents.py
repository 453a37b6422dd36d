"""Latent nodes: shapes follow the model's VAE, LATENTs hold unscaled VAE latents (the sampler
scales into the model's space and back), resizing, previews."""

from __future__ import annotations

import pytest
import torch

from tiny_sd import make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.errors import NodeInputError
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.latents import UPSCALE_METHODS, EmptyLatent, LatentUpscale, VAEDecode, VAEEncode
from latentgraph.nodes.preview import latent_to_rgb, preview_image
from latentgraph.nodes.sampling.forward_noise import NOISE_KEY, ForwardNoise
from latentgraph.nodes.sampling.ksampler_nodes import KSampler
from latentgraph.nodes.sampling.run import process_latent_in, process_latent_out


@pytest.fixture(scope="module")
def sd():
    return tiny_sd("sd1", seed=0)  # VAE with 2 levels: latent scale 2, not 8


@pytest.fixture
def ctx():
    return make_ctx(class_type="latent")[0]


def ksample(sd, latent, steps=2):
    ctx, _ = make_ctx()
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    return KSampler().execute(ctx, sd.model, 0, steps, 5.0, "euler", "normal", pos, neg, latent, 1.0)[0]


def test_empty_latent_follows_the_vae(sd, ctx):
    latent = EmptyLatent().execute(ctx, 48, 32, 2, vae=sd.vae)[0]
    assert latent["samples"].shape == (2, 4, 16, 24)
    with pytest.raises(NodeInputError) as err:
        EmptyLatent().execute(ctx, 47, 32, 1, vae=sd.vae)
    assert err.value.input_name == "width" and "multiple of 2" in str(err.value)
    with pytest.raises(NodeInputError) as err:
        EmptyLatent().execute(ctx, 32, 33, 1, vae=sd.vae)
    assert err.value.input_name == "height"


def test_comfyui_empty_latent_is_sized_by_the_model_that_samples_it(sd, ctx):
    latent = EmptyLatent().execute(ctx, 48, 32, 1)[0]
    assert latent["samples"].shape == (1, 4, 4, 6)  # ComfyUI's shape for 8x VAEs, until a model decides
    assert ksample(sd, latent)["samples"].shape == (1, 4, 16, 24)
    image = VAEDecode().execute(ctx, latent, sd.vae)[0]
    assert image.shape == (1, 32, 48, 3)


def test_empty_latent_size_that_does_not_fit_the_model(ctx):
    eight = tiny_sd("sd1", seed=0)
    eight.model.info["latent_downscale"] = 8
    latent = EmptyLatent().execute(ctx, 36, 32, 1)[0]
    with pytest.raises(NodeInputError) as err:
        ksample(eight, latent)
    assert err.value.input_name == "latent_image" and "width 36 is not a multiple of 8" in str(err.value)


def test_encode_and_decode_use_unscaled_latents(sd, ctx):
    """ComfyUI's convention: VAEEncode gives the VAE's own latent (no scaling factor), VAEDecode
    takes it back as it is; only the sampler scales into the model's space."""
    pixels = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(0))
    latent = VAEEncode().execute(ctx, pixels, sd.vae)[0]
    assert latent["samples"].shape == (2, 4, 8, 8)
    with torch.no_grad():
        raw = sd.vae.vae.encode(pixels.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean
        assert torch.allclose(latent["samples"], raw, atol=1e-5)
        decoded = VAEDecode().execute(ctx, latent, sd.vae)[0]
        direct = sd.vae.vae.decode(raw).sample
    assert decoded.shape == (2, 16, 16, 3)
    assert torch.allclose(decoded, ((direct + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1), atol=1e-5)


def test_sampler_scales_in_and_out_with_shift_factor():
    """The model's latent space is (z − shift)·scale (SD3/Flux-style VAEs have a shift), and back."""
    model = DiffusionModel(unet=None, scheduler_config={}, arch="test", device=torch.device("cpu"), dtype=torch.float32,
                           info={"scaling_factor": 1.5, "shift_factor": 0.25})
    z = torch.randn(1, 4, 4, 4)
    assert torch.allclose(process_latent_in(model, z), (z - 0.25) * 1.5)
    assert torch.allclose(process_latent_out(model, process_latent_in(model, z)), z, atol=1e-6)


def test_encode_crops_to_the_vae_scale_and_drops_alpha(sd, ctx):
    rgba = torch.rand(1, 17, 19, 4)
    latent = VAEEncode().execute(ctx, rgba, sd.vae)[0]
    assert latent["samples"].shape == (1, 4, 8, 9)
    with pytest.raises(NodeInputError) as err:
        VAEEncode().execute(ctx, torch.rand(16, 16, 3), sd.vae)
    assert err.value.input_name == "pixels"


def test_decode_refuses_a_latent_of_another_model(sd, ctx):
    with pytest.raises(NodeInputError) as err:
        VAEDecode().execute(ctx, {"samples": torch.zeros(1, 16, 8, 8)}, sd.vae)
    assert err.value.input_name == "samples" and "16 channels" in str(err.value)


@pytest.mark.parametrize("method", UPSCALE_METHODS)
def test_latent_upscale_uses_the_latent_scale(sd, ctx, method):
    latent = VAEEncode().execute(ctx, torch.rand(1, 16, 16, 3), sd.vae)[0]  # 8x8 cells of 2 px
    up = LatentUpscale().execute(ctx, latent, method, 32, 0, "disabled")[0]
    assert up["samples"].shape == (1, 4, 16, 16)
    wide = LatentUpscale().execute(ctx, latent, method, 32, 16, "center")[0]
    assert wide["samples"].shape == (1, 4, 8, 16)
    assert torch.isfinite(wide["samples"]).all()


def test_bislerp_keeps_constant_vectors():
    from latentgraph.nodes.latents import resize_latents

    flat = torch.ones(1, 4, 3, 3) * torch.tensor([1.0, -2.0, 0.5, 3.0]).view(1, 4, 1, 1)
    out = resize_latents(flat, 7, 5, "bislerp", "disabled")
    assert out.shape == (1, 4, 5, 7)
    assert torch.allclose(out, torch.ones(1, 4, 5, 7) * flat[:, :, :1, :1], atol=1e-5)


def test_upscaling_an_empty_latent_keeps_it_model_sized(sd, ctx):
    latent = EmptyLatent().execute(ctx, 64, 64, 1)[0]
    up = LatentUpscale().execute(ctx, latent, "bilinear", 96, 64, "disabled")[0]
    assert ksample(sd, up)["samples"].shape == (1, 4, 32, 48)


def test_latent_upscale_never_goes_below_eight_cells_a_side(sd, ctx):
    """ComfyUI's floor of 64 px (8 cells at SD's scale); a 0 side keeps the aspect ratio."""
    latent = VAEEncode().execute(ctx, torch.rand(1, 16, 32, 3), sd.vae)[0]  # 8x16 cells of 2 px
    assert LatentUpscale().execute(ctx, latent, "bilinear", 4, 4, "disabled")[0]["samples"].shape == (1, 4, 8, 8)
    assert LatentUpscale().execute(ctx, latent, "bilinear", 0, 10, "disabled")[0]["samples"].shape == (1, 4, 8, 16)
    assert LatentUpscale().execute(ctx, latent, "bilinear", 64, 0, "disabled")[0]["samples"].shape == (1, 4, 16, 32)


def test_upscale_drops_the_noise_record(sd, ctx):
    latent = VAEEncode().execute(ctx, torch.rand(1, 16, 16, 3), sd.vae)[0]
    noisy = ForwardNoise().execute(ctx, sd.model, latent, 0, 4, "euler", "normal", 0.5)[0]
    assert NOISE_KEY in noisy
    up = LatentUpscale().execute(ctx, noisy, "nearest-exact", 32, 32, "disabled")[0]
    assert NOISE_KEY not in up


def test_previews_are_small_rgb_images():
    latents = torch.randn(2, 4, 8, 12)
    rgb = latent_to_rgb(latents[0], "sd1")
    assert rgb.shape == (8, 12, 3) and 0 <= rgb.min() and rgb.max() <= 1
    other = latent_to_rgb(torch.randn(16, 8, 8), "flux")
    assert other.shape == (8, 8, 3)
    image = preview_image(latents, "sdxl")
    assert image.mode == "RGB" and max(image.size) >= 96


@pytest.mark.parametrize("noise_node", ["ForwardNoise", "AddNoise"])
def test_img2img_workflows_through_the_engine(lg_engine, tiny_checkpoint, lg_input_image, noise_node):
    """ComfyUI-shaped img2img, and the same with ForwardNoise in front of the sampler (or the old
    form of latentgraph's AddNoise, which now resolves to it): same pixels."""
    from latentgraph.testing import WorkflowBuilder, assert_success, output_images

    def build(with_noise_node: bool) -> dict:
        wf = WorkflowBuilder()
        ckpt = wf.add("CheckpointLoaderSimple", ckpt_name=tiny_checkpoint.name)
        pos = wf.add("CLIPTextEncode", text="a cat", clip=ckpt[1])
        neg = wf.add("CLIPTextEncode", text="", clip=ckpt[1])
        image = wf.add("LoadImage", image=lg_input_image("in.png", size=(64, 48), color=(200, 30, 30)))
        latent = wf.add("VAEEncode", pixels=image[0], vae=ckpt[2])
        latent = wf.add("LatentUpscale", samples=latent[0], upscale_method="bislerp", width=96, height=0, crop="disabled")
        if with_noise_node:
            latent = wf.add(noise_node, model=ckpt[0], samples=latent[0], noise_seed=3, steps=3, sampler_name="euler",
                            scheduler="karras", denoise=0.5)
        sampled = wf.add("KSampler", model=ckpt[0], seed=3, steps=3, cfg=5.0, sampler_name="euler", scheduler="karras",
                         positive=pos[0], negative=neg[0], latent_image=latent[0], denoise=0.5)
        decoded = wf.add("VAEDecode", samples=sampled[0], vae=ckpt[2])
        wf.add("SaveImage", images=decoded[0], filename_prefix="img2img")
        return wf.to_api()

    engine = lg_engine()
    plain = output_images(assert_success(engine.run(build(False))), engine.settings)
    noised = output_images(assert_success(engine.run(build(True))), engine.settings)
    assert plain[0].size == noised[0].size == (96, 72)
    difference = max(abs(a - b) for a, b in zip(plain[0].convert("RGB").tobytes(), noised[-1].convert("RGB").tobytes()))
    assert difference <= 1
