"""The LATENT nodes of ``latentgraph.nodes.latent`` on small tensors with known answers: geometry
lands where it should, arithmetic and batches behave as ComfyUI's, empty latents stay symbolic,
``.latent`` files cross over with ComfyUI, tiled VAE stays within its tolerance of the untiled one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tiny_sd import make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.errors import NodeInputError
from latentgraph.nodes.latent import arithmetic as ar
from latentgraph.nodes.latent import batch as bt
from latentgraph.nodes.latent import composite as cp
from latentgraph.nodes.latent import files as fl
from latentgraph.nodes.latent import operations as op
from latentgraph.nodes.latent import tiled_vae as tv
from latentgraph.nodes.latent import transform as tf
from latentgraph.nodes.latents import EMPTY_KEY, EmptyLatent, latent_samples

DATA = Path(__file__).parent / "data" / "comfyui"


def run(node_cls, **inputs):
    ctx, _ = make_ctx(class_type=node_cls.spec.name)
    return node_cls().execute(ctx, **inputs)


def one(node_cls, **inputs):
    return run(node_cls, **inputs)[0]


def grid(b=1, c=1, h=4, w=4) -> torch.Tensor:
    return torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w)


def lat(samples, f=8, **extra):
    return {"samples": samples, "downscale": f, **extra}


def empty(width=64, height=64, batch=1):
    return one(EmptyLatent, width=width, height=height, batch_size=batch)


# -- geometry ----------------------------------------------------------------------------------------------
def test_flip_x_reverses_rows_and_y_reverses_columns():
    s = grid()
    assert one(tf.LatentFlip, samples=lat(s), flip_method="x-axis: vertically")["samples"][0, 0, 0].tolist() == [12, 13, 14, 15]
    assert one(tf.LatentFlip, samples=lat(s), flip_method="y-axis: horizontally")["samples"][0, 0, 0].tolist() == [3, 2, 1, 0]


def test_rotate_90_is_clockwise():
    s = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = one(tf.LatentRotate, samples=lat(s), rotation="90 degrees")["samples"]
    assert out[0, 0].tolist() == [[3.0, 1.0], [4.0, 2.0]]
    assert one(tf.LatentRotate, samples=lat(s), rotation="none")["samples"].equal(s)
    back = one(tf.LatentRotate, samples=lat(out), rotation="270 degrees")["samples"]
    assert back.equal(s)


def test_crop_takes_the_pixel_window_through_the_latents_own_scale():
    s = grid(h=32, w=32)
    out = one(tf.LatentCrop, samples=lat(s, f=4), width=64, height=32, x=8, y=16)["samples"]
    assert out.shape == (1, 1, 8, 16) and out[0, 0, 0, 0] == s[0, 0, 4, 2]
    # x is pulled back so 64 pixels (16 cells at f=4) remain after it, as ComfyUI does at f=8
    far = one(tf.LatentCrop, samples=lat(s, f=4), width=64, height=64, x=128, y=0)["samples"]
    assert far[0, 0, 0, 0] == s[0, 0, 0, 16]


def test_upscale_by_rounds_cells_and_keeps_other_keys():
    mask = torch.ones(1, 1, 8, 8)
    out = one(tf.LatentUpscaleBy, samples=lat(torch.ones(1, 4, 5, 6), noise_mask=mask), upscale_method="nearest-exact",
              scale_by=1.5)
    assert out["samples"].shape == (1, 4, 8, 9) and out["noise_mask"] is mask


def test_concat_and_cut():
    a, b = torch.zeros(1, 4, 2, 3), torch.ones(1, 4, 2, 2)
    right = one(tf.LatentConcat, samples1=lat(a), samples2=lat(b), dim="x")["samples"]
    left = one(tf.LatentConcat, samples1=lat(a), samples2=lat(b), dim="-x")["samples"]
    assert right.shape == (1, 4, 2, 5) and right[..., 3:].eq(1).all() and left[..., :2].eq(1).all()
    with pytest.raises(NodeInputError, match="samples2"):
        one(tf.LatentConcat, samples1=lat(a), samples2=lat(b), dim="y")
    s = grid(w=6)
    assert one(tf.LatentCut, samples=lat(s), dim="x", index=4, amount=5)["samples"][0, 0, 0].tolist() == [4, 5]
    assert one(tf.LatentCut, samples=lat(s), dim="x", index=-2, amount=1)["samples"][0, 0, 0].tolist() == [4]
    assert one(tf.LatentCut, samples=lat(s), dim="y", index=1, amount=2)["samples"].shape == (1, 1, 2, 6)


# -- compositing -------------------------------------------------------------------------------------------
def test_composite_lands_at_x_y_in_pixels():
    to, src = torch.zeros(1, 4, 8, 8), torch.ones(1, 4, 2, 3)
    out = one(cp.LatentComposite, samples_to=lat(to, f=4), samples_from=lat(src, f=4), x=8, y=4, feather=0)["samples"]
    assert out[0, 0].nonzero().tolist() == [[1, c] for c in (2, 3, 4)] + [[2, c] for c in (2, 3, 4)]
    # cut at the border
    edge = one(cp.LatentComposite, samples_to=lat(to), samples_from=lat(src), x=56, y=56, feather=0)["samples"]
    assert edge[0, 0].sum() == 1 and edge[0, 0, 7, 7] == 1


def test_composite_feathering_rises_monotonically_into_the_block():
    to, src = torch.zeros(1, 1, 12, 12), torch.ones(1, 1, 8, 8)
    out = one(cp.LatentComposite, samples_to=lat(to), samples_from=lat(src), x=16, y=16, feather=24)["samples"][0, 0]
    row = out[6, 2:10]  # a row through the pasted block (cells 2..9)
    assert row.tolist()[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])  # ramps over feather/8 = 3 cells
    assert row.tolist()[-3:] == pytest.approx([1.0, 2 / 3, 1 / 3])
    corner = one(cp.LatentComposite, samples_to=lat(to), samples_from=lat(src), x=0, y=0, feather=24)["samples"][0, 0]
    assert corner[0, 0] == 1.0  # edges on the destination's border are not faded


def test_composite_masked_through_a_mask():
    dest, src = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.5]])
    out = one(cp.LatentCompositeMasked, destination=lat(dest), source=lat(src), x=8, y=8, resize_source=False,
              mask=mask)["samples"][0, 0]
    assert out[1:3, 1:3].tolist() == [[1.0, 0.0], [0.0, 0.5]] and out.sum() == 1.5
    full = one(cp.LatentCompositeMasked, destination=lat(dest), source=lat(src), x=0, y=0, resize_source=True)["samples"]
    assert full.eq(1).all()


def test_composite_masked_keeps_fp16_latents_and_float_mask_weights():
    """fp16 latents blend with the mask resized in float32 (ComfyUI's masks are float), and stay fp16."""
    dest, src = torch.zeros(1, 1, 4, 4, dtype=torch.float16), torch.ones(1, 1, 4, 4, dtype=torch.float16)
    mask = torch.tensor([[0.0, 1.0], [1.0, 0.3]])
    out = one(cp.LatentCompositeMasked, destination=lat(dest), source=lat(src), x=0, y=0, resize_source=False,
              mask=mask)["samples"]
    want = torch.nn.functional.interpolate(mask.reshape(1, 1, 2, 2), size=(4, 4), mode="bilinear").half()
    assert out.dtype == torch.float16 and torch.equal(out, want)


def test_blend():
    a, b = torch.full((1, 4, 2, 2), 2.0), torch.full((1, 4, 2, 2), 4.0)
    assert one(cp.LatentBlend, samples1=lat(a), samples2=lat(b), blend_factor=0.25)["samples"].eq(3.5).all()


# -- arithmetic --------------------------------------------------------------------------------------------
def test_add_subtract_multiply_resize_the_second_operand():
    a, b = torch.full((2, 4, 4, 4), 3.0), torch.full((1, 4, 2, 2), 1.0)
    assert one(ar.LatentAdd, samples1=lat(a), samples2=lat(b))["samples"].eq(4).all()
    assert one(ar.LatentSubtract, samples1=lat(a), samples2=lat(b))["samples"].eq(2).all()
    assert one(ar.LatentMultiply, samples=lat(a), multiplier=-0.5)["samples"].eq(-1.5).all()


def test_interpolate_ends_and_middle():
    a = torch.zeros(1, 2, 1, 1)
    a[0, 0] = 2.0  # length 2 along channel 0
    b = torch.zeros(1, 2, 1, 1)
    b[0, 1] = 4.0  # length 4 along channel 1
    assert one(ar.LatentInterpolate, samples1=lat(a), samples2=lat(b), ratio=1.0)["samples"].equal(a)
    assert one(ar.LatentInterpolate, samples1=lat(a), samples2=lat(b), ratio=0.0)["samples"].equal(b)
    mid = one(ar.LatentInterpolate, samples1=lat(a), samples2=lat(b), ratio=0.5)["samples"].flatten()
    assert mid.norm() == pytest.approx(3.0) and mid[0] == pytest.approx(mid[1])  # halfway in angle and length


# -- batches -----------------------------------------------------------------------------------------------
def test_from_batch_keeps_positions_and_masks():
    s = grid(b=4, h=1, w=1)
    masks = torch.arange(2.0).reshape(2, 1, 1, 1)
    out = one(bt.LatentFromBatch, samples=lat(s, noise_mask=masks), batch_index=1, length=5)
    assert out["samples"].flatten().tolist() == [1, 2, 3] and out["batch_index"] == [1, 2, 3]
    assert out["noise_mask"].flatten().tolist() == [1, 0, 1]  # masks cycle over the batch
    again = one(bt.LatentFromBatch, samples=out, batch_index=1, length=1)
    assert again["batch_index"] == [2]


def test_repeat_and_join_batches():
    s = grid(b=2, h=1, w=1)
    rep = one(bt.RepeatLatentBatch, samples=lat(s, batch_index=[3, 4]), amount=3)
    assert rep["samples"].flatten().tolist() == [0, 1] * 3 and rep["batch_index"] == [3, 4, 5, 6, 7, 8]
    joined = one(bt.LatentBatch, samples1=lat(s), samples2=lat(torch.ones(1, 1, 2, 2)))
    assert joined["samples"].shape == (3, 1, 1, 1) and joined["batch_index"] == [0, 1, 0]


def test_seed_behavior():
    s = lat(grid(b=3, h=1, w=1), batch_index=[5, 6, 7])
    assert one(bt.LatentBatchSeedBehavior, samples=s, seed_behavior="fixed")["batch_index"] == [5, 5, 5]
    assert "batch_index" not in one(bt.LatentBatchSeedBehavior, samples=s, seed_behavior="random")


def test_rebatch_regroups_and_splits_at_size_changes():
    a, b, c = lat(grid(b=3, h=2, w=2)), lat(grid(b=2, h=2, w=2)), lat(torch.zeros(1, 1, 3, 3))
    out = one(bt.RebatchLatents, latents=[a, b, c], batch_size=2)
    assert [x["samples"].shape[0] for x in out] == [2, 2, 1, 1]
    assert [x["batch_index"] for x in out] == [[0, 1], [2, 3], [4], [5]]  # positions in the whole list
    assert all("noise_mask" not in x for x in out)  # all-ones masks are dropped
    single = one(bt.RebatchLatents, latents=a, batch_size=1)  # the engine passing one LATENT
    assert len(single) == 3


# -- empty latents stay empty until a model decides their shape --------------------------------------------
def test_empty_latent_through_batch_nodes_is_built_for_the_model_later():
    rep = one(bt.RepeatLatentBatch, samples=empty(64, 48, 2), amount=3)
    assert latent_samples(rep, 4, 4, "latent").shape == (6, 4, 12, 16)  # a downscale-4 model's latent
    picked = one(bt.LatentFromBatch, samples=rep, batch_index=4, length=2)
    assert latent_samples(picked, 4, 4, "latent").shape == (2, 4, 12, 16) and picked["batch_index"] == [4, 5]
    up = one(tf.LatentUpscaleBy, samples=empty(64, 64), upscale_method="bilinear", scale_by=2.0)
    assert up[EMPTY_KEY].width == 128 and latent_samples(up, 4, 4, "latent").shape == (1, 4, 32, 32)


def test_empty_latent_takes_the_format_of_a_real_partner():
    real = lat(torch.ones(1, 4, 16, 16), f=4)  # a 64×64 picture of a downscale-4 model
    out = one(cp.LatentComposite, samples_to=empty(64, 64), samples_from=real, x=32, y=0, feather=0)
    assert EMPTY_KEY not in out and out["downscale"] == 4
    assert out["samples"].shape == (1, 4, 16, 16) and out["samples"][0, 0, 0].tolist() == [0] * 8 + [1] * 8
    both = one(ar.LatentAdd, samples1=empty(), samples2=empty())
    assert both[EMPTY_KEY].width == 64


# -- operations --------------------------------------------------------------------------------------------
def test_sharpen_with_alpha_zero_is_identity_and_tonemap_bounds_lengths():
    s = torch.randn(1, 4, 12, 12, generator=torch.Generator().manual_seed(0))
    same = one(op.LatentOperationSharpen, sharpen_radius=3, sigma=1.0, alpha=0.0)
    torch.testing.assert_close(one(op.LatentApplyOperation, samples=lat(s), operation=same)["samples"], s, atol=1e-5, rtol=0)
    sharp = one(op.LatentOperationSharpen, sharpen_radius=3, sigma=1.0, alpha=0.5)(latent=s)
    assert (sharp - s).abs().max() > 0.1
    flat = torch.randn(1, 4, 1, 1).expand(1, 4, 12, 12) * torch.rand(1, 1, 12, 12)  # one direction everywhere
    sharpen = one(op.LatentOperationSharpen, sharpen_radius=3, sigma=1.0, alpha=2.0)
    torch.testing.assert_close(sharpen(latent=flat), flat, atol=1e-3, rtol=1e-3)  # only directions are sharpened
    out = one(op.LatentOperationTonemapReinhard, multiplier=1.0)(latent=s)
    lengths = s.norm(dim=1)
    top = lengths.mean() + 5 * lengths.std()
    assert (out.norm(dim=1) < top).all() and (out.norm(dim=1) < lengths).all()
    cos = torch.nn.functional.cosine_similarity(out, s, dim=1)
    assert cos.min() > 0.9999  # directions kept


def test_cfg_operation_scales_the_guidance_direction():
    """×2 on (cond − uncond) at cfg 3 is plain CFG at cfg 6: uncond + 3·2·(cond − uncond)."""
    from latentgraph.nodes.sampling.guidance import CFG, Guider

    sd = tiny_sd()
    double = lambda latent, **kw: latent * 2  # noqa: E731
    patched = one(op.LatentApplyOperationCFG, model=sd.model, operation=double)
    assert patched is not sd.model and "pre_cfg_functions" not in sd.model.info
    conds = {"positive": random_conditioning(seed=1), "negative": random_conditioning(seed=2)}
    x, sigma = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)), torch.tensor([2.0])
    ours = Guider(patched, conds, CFG(3.0)).bind(x.shape, 2).predict(x, sigma).denoised
    plain = Guider(sd.model, conds, CFG(6.0)).bind(x.shape, 2).predict(x, sigma).denoised
    torch.testing.assert_close(ours, plain, atol=1e-5, rtol=1e-5)


# -- .latent files, both directions with ComfyUI ------------------------------------------------------------
def _expected_comfyui_samples():
    return torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(3))


def test_loads_a_file_written_by_comfyui(tmp_path):
    """tests/data/comfyui/comfyui_saved.latent: written by ComfyUI 0.8.0's own SaveLatent.save
    (randn(2, 4, 3, 5), generator seed 3, with a prompt and a workflow)."""
    latent = fl.read_latent_file(DATA / "comfyui_saved.latent")
    torch.testing.assert_close(latent["samples"], _expected_comfyui_samples(), atol=0, rtol=0)


def test_saves_what_comfyui_writes_and_round_trips(tmp_path):
    from safetensors import safe_open

    ctx, _ = make_ctx(class_type="SaveLatent")
    ctx.settings = ctx.settings.__class__.from_env(tmp_path, environ={}, device="cpu")
    ctx.extra = {"prompt": {"1": {"class_type": "X", "inputs": {}}}, "extra_pnginfo": {"workflow": {"nodes": []}}}
    samples = _expected_comfyui_samples()
    result = fl.SaveLatent().execute(ctx, samples=lat(samples), filename_prefix="latents/ComfyUI")
    (saved,) = result.ui["latents"]
    assert saved == {"filename": "ComfyUI_00001_.latent", "subfolder": "latents", "type": "output"}
    path = tmp_path / "output" / "latents" / saved["filename"]
    with safe_open(path, "pt") as ours, safe_open(DATA / "comfyui_saved.latent", "pt") as theirs:
        assert set(ours.keys()) == set(theirs.keys()) == {"latent_tensor", "latent_format_version_0"}
        assert ours.metadata() == theirs.metadata()  # prompt and workflow as JSON strings
        assert ours.get_tensor("latent_tensor").dtype == theirs.get_tensor("latent_tensor").dtype
    (tmp_path / "input").mkdir(exist_ok=True)
    path.rename(tmp_path / "input" / "mine.latent")
    assert fl.list_latent_files(ctx.settings) == ["mine.latent"]
    loaded = fl.LoadLatent().execute(ctx, latent="mine.latent")[0]
    assert loaded["samples"].equal(samples)


def test_an_old_file_without_the_version_marker_is_unscaled(tmp_path):
    import safetensors.torch

    safetensors.torch.save_file({"latent_tensor": torch.full((1, 4, 2, 2), 0.18215)}, str(tmp_path / "old.latent"))
    torch.testing.assert_close(fl.read_latent_file(tmp_path / "old.latent")["samples"], torch.ones(1, 4, 2, 2))


# -- tiled VAE -----------------------------------------------------------------------------------------------
def test_tiles_cover_the_picture_and_blend_to_the_identity():
    assert tv.tile_starts(100, 40, 10) == [0, 30, 60]
    assert tv.tile_starts(32, 64, 8) == [0]
    x = torch.randn(1, 3, 37, 53, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(tv.tiled_map(x, lambda t: t, 16, 12, 4, 1.0), x)  # weights sum out exactly
    up = tv.tiled_map(x, lambda t: t.repeat_interleave(2, 2).repeat_interleave(2, 3), 16, 16, 4, 2.0)
    torch.testing.assert_close(up, x.repeat_interleave(2, 2).repeat_interleave(2, 3))


@pytest.fixture(scope="module")
def demo_vae(tmp_path_factory):
    from sd_helpers import Env

    env = Env(tmp_path_factory.mktemp("demo"))
    return env.run("LoadCheckpoint", ckpt_name="latentgraph-demo-shapes.safetensors")[2]


def test_tiled_vae_matches_untiled_within_tolerance(demo_vae):
    """Tolerance, chosen before measuring: a tile's VAE pass cannot see the whole picture (the
    convolutions' reach, group-norm statistics and the mid-block attention all span it), so the
    tiled result is an approximation; it passes if a viewer could not tell: mean |Δ| ≤ 0.02 of the
    0..1 range (5/255) and 99% of pixels within 0.1, compared in pixel space (what a user sees)
    for both directions. One tile covering the picture must give the untiled result exactly."""
    from latentgraph.nodes.latents import decode_latents, encode_images

    from latentgraph.nodes.images import read_image_file

    picture = read_image_file(Path(__file__).parent.parent / "workflows" / "input" / "shapes.png")[0]
    big = torch.cat([torch.cat([picture, picture.flip(2)], 2), torch.cat([picture.flip(1), picture], 2)], 1)  # 128×128
    z = encode_images(demo_vae, big)
    reference = decode_latents(demo_vae, z)

    def close(a, b):
        d = (a - b).abs()
        return float(d.mean()), float(d.flatten().quantile(0.99))

    tiled_dec = one(tv.VAEDecodeTiled, samples=lat(z, f=4), vae=demo_vae, tile_size=64, overlap=32)
    mean, p99 = close(tiled_dec, reference)
    assert tiled_dec.shape == reference.shape and mean <= 0.02 and p99 <= 0.1, (mean, p99)
    tiled_enc = one(tv.VAEEncodeTiled, pixels=big, vae=demo_vae, tile_size=64, overlap=32)["samples"]
    mean, p99 = close(decode_latents(demo_vae, tiled_enc), reference)
    assert tiled_enc.shape == z.shape and mean <= 0.02 and p99 <= 0.1, (mean, p99)
    whole = one(tv.VAEDecodeTiled, samples=lat(z, f=4), vae=demo_vae, tile_size=512, overlap=64)
    torch.testing.assert_close(whole, reference, atol=1e-6, rtol=0)
