"""Inpainting and outpainting preparation: VAEEncodeForInpaint, InpaintModelConditioning,
ImagePadForOutpaint and DifferentialDiffusion, on small tensors and the tiny SD1 model."""

from __future__ import annotations

import pytest
import torch

from tiny_sd import make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.errors import NodeInputError
from latentgraph.nodes.latent import inpaint as ip
from latentgraph.nodes.latents import encode_images
from latentgraph.nodes.sampling.ksampler_nodes import KSampler


def one(node_cls, index=0, **inputs):
    ctx, _ = make_ctx(class_type=node_cls.spec.name)
    return node_cls().execute(ctx, **inputs)[index]


@pytest.fixture(scope="module")
def sd():
    return tiny_sd()


def picture(h=32, w=32, seed=0):
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))


def sample(sd, latent, model=None, steps=6, sampler="euler", scheduler="normal"):
    return one(KSampler, model=model or sd.model, seed=3, steps=steps, cfg=4.0, sampler_name=sampler, scheduler=scheduler,
               positive=random_conditioning(seed=1), negative=random_conditioning(seed=2), latent_image=latent,
               denoise=1.0)["samples"]


# -- pure functions ----------------------------------------------------------------------------------------
def test_grey_out_replaces_only_the_masked_pixels():
    px = picture(4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 1, 2] = 0.7  # rounds to 1
    mask[..., 0, 0] = 0.4  # rounds to 0
    out = ip.grey_out(px, mask)
    assert out[0, 1, 2].tolist() == [0.5, 0.5, 0.5]
    changed = (out != px).any(-1)
    assert changed.sum() == 1


def test_grow_mask_dilates_by_the_box_size():
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 8, 8] = 1.0
    grown = ip.grow_mask(mask, 6)
    rows = grown[0, 0].any(1).nonzero().flatten().tolist()
    assert rows == list(range(6, 12)) and grown.shape == mask.shape  # 6 wide, as ComfyUI's padding puts it
    assert ip.grow_mask(mask, 0).equal(mask) and set(ip.grow_mask(mask * 0.6, 3).unique().tolist()) == {0.0, 1.0}


def test_pad_for_outpaint_places_the_picture_and_feathers_quadratically():
    px = picture(20, 24)
    canvas, mask = ip.pad_for_outpaint(px, left=8, top=0, right=0, bottom=4, feathering=5)
    assert canvas.shape == (1, 24, 32, 3) and mask.shape == (1, 24, 32)
    assert canvas[:, :20, 8:].equal(px) and canvas[:, :, :8].eq(0.5).all() and canvas[:, 20:].eq(0.5).all()
    assert mask[:, :, :8].eq(1).all() and mask[:, 20:].eq(1).all()
    row = mask[0, 10, 8:14].tolist()  # moving right from the grown left side: ((5 − d)/5)²
    assert row == pytest.approx([1.0, 0.64, 0.36, 0.16, 0.04, 0.0])
    assert mask[0, 0, 20] == 0.0  # the top did not grow: no fade there
    _, unfeathered = ip.pad_for_outpaint(px, 8, 0, 0, 0, feathering=10)  # 2·10 ≥ 20 rows: no feathering
    assert unfeathered[0, :, 8:].eq(0).all()


def test_differential_mask_opens_up_as_the_run_progresses(sd):
    ms = sd.model.model_sampling
    sigmas = torch.tensor([10.0, 5.0, 1.0, 0.05, 0.0])
    mask = torch.tensor([0.0, 0.3, 0.7, 1.0])
    first = ip.differential_mask(sigmas[0:1], mask, sigmas, ms)
    assert first.tolist() == [0, 0, 0, 1]  # threshold 1: only the full-strength part repaints
    ends = [ip.differential_mask(s.reshape(1), mask, sigmas, ms) for s in sigmas[:4]]
    assert all((a <= b).all() for a, b in zip(ends, ends[1:]))  # monotone: once repainting, always
    assert ends[-1].tolist() == [0, 1, 1, 1]  # near the end every part of the mask repaints
    half = ip.differential_mask(sigmas[0:1], mask, sigmas, ms, strength=0.5)
    assert half.tolist() == pytest.approx([0.0, 0.15, 0.35, 1.0])


# -- nodes -------------------------------------------------------------------------------------------------
def test_vae_encode_for_inpaint_crops_greys_and_sets_the_grown_mask(sd):
    px = picture(35, 33)
    mask = torch.zeros(35, 33)
    mask[10:20, 10:20] = 1.0
    out = one(ip.VAEEncodeForInpaint, pixels=px, vae=sd.vae, mask=mask, grow_mask_by=0)
    assert out["samples"].shape == (1, 4, 17, 16) and out["noise_mask"].shape == (1, 1, 34, 32)
    cropped = px[:, 0:34, 0:32]  # 35 % 2 = 1 → offset 0; 33 % 2 = 1 → offset 0
    grey = cropped.clone()
    grey[:, 10:20, 10:20] = 0.5
    torch.testing.assert_close(out["samples"], encode_images(sd.vae, grey))
    assert out["noise_mask"].sum() == 100
    grown = one(ip.VAEEncodeForInpaint, pixels=px, vae=sd.vae, mask=mask, grow_mask_by=6)["noise_mask"]
    assert grown.sum() == 15 * 15  # 10 + 5 each way (box of 6, padding 3)


def test_vae_encode_for_inpaint_keeps_the_unmasked_latent_after_sampling(sd):
    """The noise mask it writes holds the latent outside the (grown) mask exactly at the encoded
    original, for every sampler."""
    px = picture(32, 32)
    mask = torch.zeros(1, 32, 32)
    mask[:, :, 20:] = 1.0  # repaint the right 12 pixel columns; grown by 6 → from column 17
    latent = one(ip.VAEEncodeForInpaint, pixels=px, vae=sd.vae, mask=mask, grow_mask_by=6)
    for sampler in ("euler", "dpmpp_2m", "euler_ancestral"):
        out = sample(sd, latent, sampler=sampler)
        kept = (out - latent["samples"])[..., :8].abs().max()  # latent cells 0..7 = pixels 0..15
        assert kept <= 1e-5, (sampler, float(kept))
        assert (out - latent["samples"])[..., 9:].abs().mean() > 0.05


def test_inpaint_model_conditioning_writes_concat_extras(sd):
    px = picture(32, 32)
    mask = torch.zeros(32, 32)
    mask[:16] = 1.0
    pos, neg = random_conditioning(seed=1), random_conditioning(seed=2)
    positive, negative, latent = one(ip.InpaintModelConditioning, index=slice(None), positive=pos, negative=neg,
                                     vae=sd.vae, pixels=px, mask=mask, noise_mask=True)
    torch.testing.assert_close(latent["samples"], encode_images(sd.vae, px))  # the original picture
    assert latent["noise_mask"].shape == (1, 1, 32, 32)
    for cond, source in ((positive, pos), (negative, neg)):
        extras = cond[0][1]
        assert extras["concat_mask"].equal(latent["noise_mask"]) and extras["concat_latent_image"].shape == (1, 4, 16, 16)
        assert cond[0][0] is source[0][0] and "concat_mask" not in source[0][1]
    grey = px.clone()
    grey[:, :16] = 0.5
    torch.testing.assert_close(positive[0][1]["concat_latent_image"], encode_images(sd.vae, grey))
    no_mask = one(ip.InpaintModelConditioning, index=2, positive=pos, negative=neg, vae=sd.vae, pixels=px, mask=mask,
                  noise_mask=False)
    assert "noise_mask" not in no_mask


def test_pad_node_checks_its_inputs():
    image, mask = one(ip.ImagePadForOutpaint, index=slice(None), image=picture(16, 16), left=0, top=8, right=0,
                      bottom=0, feathering=0)
    assert image.shape == (1, 24, 16, 3) and mask[0, :8].eq(1).all() and mask[0, 8:].eq(0).all()
    with pytest.raises(NodeInputError, match="image"):
        one(ip.ImagePadForOutpaint, image=torch.zeros(16, 16), left=0, top=0, right=0, bottom=0, feathering=0)


def test_differential_diffusion_repaints_a_soft_mask_gradually(sd):
    """With a half-strength mask, plain inpainting blends (half of the change at every step);
    differential diffusion keeps the region fixed for the first half of the run, then repaints
    it fully: a different result. Where the mask is 0 both keep the input exactly — as long as no
    step is taken at the model's σ_min (there the threshold is 0 and, as in ComfyUI, every cell
    repaints: schedules that end on σ_min, like normal and karras, touch the whole picture once);
    the simple schedule stops above it."""
    start = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(1, 32, 32)
    mask[:, :, 16:] = 0.5
    latent = {"samples": start, "noise_mask": mask}
    patched = one(ip.DifferentialDiffusion, model=sd.model, strength=1.0)
    assert patched is not sd.model
    plain = sample(sd, latent, scheduler="simple")
    diff = sample(sd, latent, model=patched, scheduler="simple")
    assert (diff - start)[..., :8].abs().max() <= 1e-5 and (plain - start)[..., :8].abs().max() <= 1e-5
    assert (diff - plain)[..., 9:].abs().mean() > 0.05
    # a 0/1 mask is already binary: differential diffusion changes nothing
    hard = {"samples": start, "noise_mask": (mask > 0).float()}
    torch.testing.assert_close(sample(sd, hard, model=patched, scheduler="simple"), sample(sd, hard, scheduler="simple"),
                               atol=1e-5, rtol=0)
