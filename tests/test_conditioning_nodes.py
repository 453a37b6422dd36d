"""ComfyUI's conditioning editors and SetLatentNoiseMask: the extras they write, and what sampling does
with them on the tiny SD1 model (areas, strength, timestep ranges, inpainting masks)."""

from __future__ import annotations

import pytest
import torch

from tiny_sd import make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.errors import NodeInputError
from latentgraph.nodes import conditioning_nodes as cn
from latentgraph.nodes.latent_mask import SetLatentNoiseMask
from latentgraph.nodes.mask.convert import ImageToMask, SolidMask
from latentgraph.nodes.sampling.cond_items import CondItem
from latentgraph.nodes.sampling.guidance import CFG, Guider
from latentgraph.nodes.sampling.ksampler_nodes import KSampler
from latentgraph.nodes.tiny_models import make_tiny_checkpoint
from sd_helpers import Env


def run(node_cls, **inputs):
    ctx, _ = make_ctx(class_type=node_cls.spec.name)
    return node_cls().execute(ctx, **inputs)[0]


def cond(seed=1, tokens=77, pooled=False, width=32):
    g = torch.Generator().manual_seed(seed)
    extras = {"arch": "sd1"}
    if pooled:
        extras["pooled_output"] = torch.randn(1, 8, generator=g)
    return [(torch.randn(1, tokens, width, generator=g), extras)]


# -- contracts: ComfyUI 0.8.0's input names, order and defaults ------------------------------------------
CONTRACTS = {
    cn.ConditioningSetArea: [("conditioning", None), ("width", 64), ("height", 64), ("x", 0), ("y", 0), ("strength", 1.0)],
    cn.ConditioningSetAreaPercentage: [("conditioning", None), ("width", 1.0), ("height", 1.0), ("x", 0.0), ("y", 0.0),
                                       ("strength", 1.0)],
    cn.ConditioningSetAreaStrength: [("conditioning", None), ("strength", 1.0)],
    cn.ConditioningSetMask: [("conditioning", None), ("mask", None), ("strength", 1.0), ("set_cond_area", "default")],
    cn.ConditioningSetTimestepRange: [("conditioning", None), ("start", 0.0), ("end", 1.0)],
    cn.ConditioningAverage: [("conditioning_to", None), ("conditioning_from", None), ("conditioning_to_strength", 1.0)],
    cn.ConditioningConcat: [("conditioning_to", None), ("conditioning_from", None)],
    cn.ConditioningZeroOut: [("conditioning", None)],
    cn.CLIPTextEncodeSDXL: [("clip", None), ("width", 1024), ("height", 1024), ("crop_w", 0), ("crop_h", 0),
                            ("target_width", 1024), ("target_height", 1024), ("text_g", ""), ("text_l", "")],
    cn.CLIPTextEncodeSDXLRefiner: [("ascore", 6.0), ("width", 1024), ("height", 1024), ("text", ""), ("clip", None)],
    SetLatentNoiseMask: [("samples", None), ("mask", None)],
    ImageToMask: [("image", None), ("channel", "red")],
    SolidMask: [("value", 1.0), ("width", 512), ("height", 512)],
}


@pytest.mark.parametrize("node", list(CONTRACTS), ids=lambda n: n.spec.name)
def test_inputs_are_comfyuis(node):
    assert [(i.name, i.default) for i in node.spec.inputs] == CONTRACTS[node]
    assert len(node.spec.outputs) == 1


# -- the extras each node writes (ComfyUI 0.8.0's keys and units) --------------------------------------
def test_set_area_stores_latent_cells_of_eight_pixels_and_leaves_the_input_alone():
    source = cond(pooled=True)
    out = run(cn.ConditioningSetArea, conditioning=source, width=200, height=64, x=24, y=100, strength=0.5)
    (emb, extras) = out[0]
    assert extras["area"] == (8, 25, 12, 3)  # (h, w, y, x) = pixels // 8
    assert extras["strength"] == 0.5 and extras["set_area_to_bounds"] is False
    assert emb is source[0][0] and extras["pooled_output"] is source[0][1]["pooled_output"]
    assert set(source[0][1]) == {"arch", "pooled_output"}  # the input entry is not modified


def test_set_area_percentage_keeps_fractions_for_the_sampler_to_resolve():
    out = run(cn.ConditioningSetAreaPercentage, conditioning=cond() + cond(2), width=0.5, height=0.25, x=0.5, y=0.75,
              strength=2.0)
    assert len(out) == 2
    for _, extras in out:
        assert extras["area"] == ("percentage", 0.25, 0.5, 0.75, 0.5)
        assert extras["strength"] == 2.0 and extras["set_area_to_bounds"] is False


def test_set_area_strength_only_sets_strength():
    source = run(cn.ConditioningSetArea, conditioning=cond(), width=64, height=64, x=0, y=0, strength=1.0)
    (_, extras), = run(cn.ConditioningSetAreaStrength, conditioning=source, strength=3.5)
    assert extras["strength"] == 3.5 and extras["area"] == (8, 8, 0, 0)


def test_set_mask_adds_a_batch_axis_mask_strength_and_bounds_flag():
    mask = torch.zeros(32, 48)
    (_, plain), = run(cn.ConditioningSetMask, conditioning=cond(), mask=mask, strength=0.7, set_cond_area="default")
    assert plain["mask"].shape == (1, 32, 48) and plain["mask_strength"] == 0.7
    assert plain["set_area_to_bounds"] is False and "strength" not in plain
    (_, bounded), = run(cn.ConditioningSetMask, conditioning=cond(), mask=mask[None], strength=1.0,
                        set_cond_area="mask bounds")
    assert bounded["set_area_to_bounds"] is True and bounded["mask"].shape == (1, 32, 48)
    with pytest.raises(NodeInputError) as err:
        run(cn.ConditioningSetMask, conditioning=cond(), mask="nope", strength=1.0, set_cond_area="default")
    assert err.value.input_name == "mask"


def test_timestep_range_sets_start_and_end_percent():
    (_, extras), = run(cn.ConditioningSetTimestepRange, conditioning=cond(), start=0.25, end=0.8)
    assert extras["start_percent"] == 0.25 and extras["end_percent"] == 0.8


def test_average_blends_tokens_and_pooled_cutting_or_padding_from_to_the_length_of_to():
    to, frm = cond(1, pooled=True), cond(2, tokens=154, pooled=True)
    (emb, extras), = run(cn.ConditioningAverage, conditioning_to=to, conditioning_from=frm, conditioning_to_strength=0.3)
    torch.testing.assert_close(emb, to[0][0] * 0.3 + frm[0][0][:, :77] * 0.7)
    torch.testing.assert_close(extras["pooled_output"], to[0][1]["pooled_output"] * 0.3 + frm[0][1]["pooled_output"] * 0.7)
    # a shorter 'from' is padded with zeros: the tail is 'to' scaled by the strength
    (emb, _), = run(cn.ConditioningAverage, conditioning_to=cond(3, tokens=154), conditioning_from=cond(4),
                    conditioning_to_strength=0.25)
    torch.testing.assert_close(emb[:, 77:], cond(3, tokens=154)[0][0][:, 77:] * 0.25)
    # 'to' without pooled output takes 'from''s; 'from' without keeps 'to''s
    (_, extras), = run(cn.ConditioningAverage, conditioning_to=cond(1), conditioning_from=frm, conditioning_to_strength=0.3)
    torch.testing.assert_close(extras["pooled_output"], frm[0][1]["pooled_output"])
    (_, extras), = run(cn.ConditioningAverage, conditioning_to=to, conditioning_from=cond(2), conditioning_to_strength=0.3)
    assert extras["pooled_output"] is to[0][1]["pooled_output"]


def test_average_and_concat_use_only_the_first_from_entry():
    to = cond(1)
    both = cond(2) + cond(3)
    (emb, _), = run(cn.ConditioningAverage, conditioning_to=to, conditioning_from=both, conditioning_to_strength=0.0)
    assert torch.equal(emb, both[0][0])
    (emb, extras), = run(cn.ConditioningConcat, conditioning_to=to, conditioning_from=both)
    assert emb.shape == (1, 154, 32)
    assert torch.equal(emb[:, :77], to[0][0]) and torch.equal(emb[:, 77:], both[0][0])
    assert extras == to[0][1]
    with pytest.raises(NodeInputError) as err:
        run(cn.ConditioningConcat, conditioning_to=to, conditioning_from=cond(width=64))
    assert err.value.input_name == "conditioning_from"


def test_zero_out_zeros_embeddings_and_pooled_and_keeps_the_rest():
    source = run(cn.ConditioningSetArea, conditioning=cond(pooled=True), width=64, height=64, x=0, y=0, strength=1.0)
    (emb, extras), = run(cn.ConditioningZeroOut, conditioning=source)
    assert emb.shape == source[0][0].shape and not emb.any()
    assert extras["pooled_output"].shape == (1, 8) and not extras["pooled_output"].any()
    assert extras["area"] == (8, 8, 0, 0) and source[0][0].any()


# -- SDXL text encoders --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return Env(tmp_path_factory.mktemp("cond"))


@pytest.fixture(scope="module")
def sdxl_clip(env):
    make_tiny_checkpoint(env.folder("checkpoints") / "tiny-sdxl.safetensors", "sdxl", seed=3)
    return env.run("LoadCheckpoint", ckpt_name="tiny-sdxl.safetensors")[1]


def encode(env, clip, text):
    return env.run("CLIPTextEncode", clip=clip, text=text)[0][0]


def test_sdxl_encoder_sends_text_l_and_text_g_to_their_encoders_with_the_sizes(env, sdxl_clip):
    (emb, extras), = run(cn.CLIPTextEncodeSDXL, clip=sdxl_clip, width=896, height=1152, crop_w=16, crop_h=32,
                         target_width=1024, target_height=768, text_g="a red star", text_l="a blue circle")
    l_only, g_only = encode(env, sdxl_clip, "a blue circle"), encode(env, sdxl_clip, "a red star")
    torch.testing.assert_close(emb[..., :32], l_only[0][..., :32])  # CLIP-L half
    torch.testing.assert_close(emb[..., 32:], g_only[0][..., 32:])  # OpenCLIP bigG half
    torch.testing.assert_close(extras["pooled_output"], g_only[1]["pooled_output"])
    assert {k: extras[k] for k in ("width", "height", "crop_w", "crop_h", "target_width", "target_height")} == {
        "width": 896, "height": 1152, "crop_w": 16, "crop_h": 32, "target_width": 1024, "target_height": 768}


def test_sdxl_encoder_pads_the_shorter_prompt_with_empty_windows(env, sdxl_clip):
    (emb, _), = run(cn.CLIPTextEncodeSDXL, clip=sdxl_clip, width=1024, height=1024, crop_w=0, crop_h=0,
                    target_width=1024, target_height=1024, text_g="a star", text_l="circle " * 100)
    assert emb.shape == (1, 154, 64)
    torch.testing.assert_close(emb[:, 77:, 32:], encode(env, sdxl_clip, "")[0][..., 32:])


def test_sdxl_refiner_encoder_sets_aesthetic_score_and_size(env, sdxl_clip):
    (emb, extras), = run(cn.CLIPTextEncodeSDXLRefiner, clip=sdxl_clip, ascore=2.5, width=768, height=512, text="a cat")
    assert emb.shape == (1, 77, 64) and extras["pooled_output"].shape == (1, 32)
    assert extras["aesthetic_score"] == 2.5 and extras["width"] == 768 and extras["height"] == 512
    with pytest.raises(NodeInputError) as err:
        run(cn.CLIPTextEncodeSDXLRefiner, clip=None, ascore=6.0, width=1024, height=1024, text="x")
    assert err.value.input_name == "clip"


# -- masks ---------------------------------------------------------------------------------------------
def test_set_latent_noise_mask_stores_a_b1hw_mask_on_a_copy():
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    out = run(SetLatentNoiseMask, samples=latent, mask=torch.ones(64, 64))
    assert out["noise_mask"].shape == (1, 1, 64, 64) and "noise_mask" not in latent
    assert out["samples"] is latent["samples"]
    with pytest.raises(NodeInputError) as err:
        run(SetLatentNoiseMask, samples=latent, mask=None)
    assert err.value.input_name == "mask"


def test_image_to_mask_and_solid_mask():
    image = torch.rand(2, 5, 6, 3)
    assert torch.equal(run(ImageToMask, image=image, channel="green"), image[..., 1])
    with pytest.raises(NodeInputError) as err:
        run(ImageToMask, image=image, channel="alpha")
    assert err.value.input_name == "channel"
    solid = run(SolidMask, value=0.25, width=6, height=5)
    assert solid.shape == (1, 5, 6) and torch.all(solid == 0.25)


# -- what sampling does with them (tiny SD1, latent 16×16 cells) ----------------------------------------
@pytest.fixture(scope="module")
def sd():
    return tiny_sd("sd1", seed=0)


POSITIVE, OTHER, NEGATIVE = (random_conditioning("sd1", seed=s) for s in (11, 13, 12))


def sample(sd, positive, *, sampler="euler", steps=4, cfg=4.0, latent=None, seed=3):
    ctx, _ = make_ctx()
    latent = latent if latent is not None else {"samples": torch.zeros(1, 4, 16, 16)}
    out = KSampler().execute(ctx, sd.model, seed, steps, cfg, sampler, "normal", positive, NEGATIVE, latent, 1.0)
    return out[0]["samples"]


def with_area(conditioning, **inputs):
    return run(cn.ConditioningSetArea, conditioning=conditioning, **{"x": 0, "y": 0, "strength": 1.0, **inputs})


def test_an_area_prompt_changes_the_picture_mostly_inside_its_area(sd):
    alone = sample(sd, POSITIVE)
    # the tiny model's latent cell is 2 px: 16×16 px is the top-left quarter of the 16×16-cell latent
    both = sample(sd, POSITIVE + with_area(OTHER, width=16, height=16))
    change = (both - alone).abs().mean(dim=(0, 1))
    inside, outside = change[:8, :8].mean(), change[8:, 8:].mean()
    assert inside > 0.05 and inside > 5 * outside, (float(inside), float(outside))


def test_area_strength_zero_is_no_area_and_one_is_not(sd):
    alone = sample(sd, POSITIVE)
    zero = sample(sd, POSITIVE + with_area(OTHER, width=16, height=16, strength=0.0))
    one = sample(sd, POSITIVE + with_area(OTHER, width=16, height=16, strength=1.0))
    torch.testing.assert_close(zero, alone, atol=1e-5, rtol=0)
    assert (one - zero).abs().max() > 0.05


def timed(conditioning, start, end):
    return run(cn.ConditioningSetTimestepRange, conditioning=conditioning, start=start, end=end)


def test_timestep_range_decides_when_a_prompt_applies(sd):
    always = sample(sd, POSITIVE + OTHER)
    full = sample(sd, POSITIVE + timed(OTHER, 0.0, 1.0))
    second_half = sample(sd, POSITIVE + timed(OTHER, 0.5, 1.0))
    never = sample(sd, POSITIVE + timed(OTHER, 0.0, 0.0))
    torch.testing.assert_close(full, always, atol=1e-5, rtol=0)
    assert (second_half - full).abs().max() > 0.05
    torch.testing.assert_close(never, sample(sd, POSITIVE), atol=1e-5, rtol=0)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral"])
def test_noise_mask_keeps_the_unmasked_latent_exactly(sd, sampler):
    start = {"samples": torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))}
    mask = torch.zeros(1, 32, 32)  # at the pixel size (the tiny VAE's downscale is 2): right half repaints
    mask[:, :, 16:] = 1.0
    latent = run(SetLatentNoiseMask, samples=start, mask=mask)
    out = sample(sd, POSITIVE, sampler=sampler, latent=latent)
    kept = (out - start["samples"])[..., :8].abs().max()
    assert kept <= 1e-5, float(kept)
    assert (out - start["samples"])[..., 8:].abs().mean() > 0.05


# -- ComfyUI's area rules (feathering, same-area partners) and areas on other latent scales ---------------
def test_area_edges_fade_over_a_quarter_of_small_areas():
    item = CondItem(hidden=torch.zeros(1, 77, 32), added=None, area=(8, 8, 0, 0))
    _, mult = item.region(torch.zeros(1, 4, 16, 16))
    # ComfyUI: rr = min(8, 8 // 4) = 2 → the last column at 1/2, the rest 1
    assert mult[0, 0, 0].tolist() == [1.0] * 7 + [0.5]


def test_an_area_smaller_than_eight_cells_samples(sd):
    small = run(cn.ConditioningSetAreaPercentage, conditioning=OTHER, width=0.25, height=0.25, x=0.5, y=0.5, strength=1.0)
    sample(sd, POSITIVE + small, steps=1)


def test_a_positive_area_gets_the_negative_over_the_same_area(sd):
    area = with_area(OTHER, width=16, height=16, strength=0.8)
    explicit_negative = NEGATIVE + [(NEGATIVE[0][0], {**area[0][1]})]
    x, sigma = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(2)), torch.tensor([3.0])

    def x0(negative):
        guider = Guider(sd.model, {"positive": POSITIVE + area, "negative": negative}, CFG(5.0))
        return guider.bind((1, 4, 16, 16), 2).predict(x, sigma).denoised

    torch.testing.assert_close(x0(NEGATIVE), x0(explicit_negative), atol=1e-5, rtol=0)


def test_set_area_covers_the_same_pixels_on_a_downscale_4_model(sd):
    from latentgraph.nodes.sampling.cond_items import prepare_items

    left = with_area(OTHER, width=64, height=64)  # the left half of a 128×64 picture
    (item,) = prepare_items(sd.model, "positive", left, (1, 4, 16, 32), downscale=4)
    assert item.area == (16, 16, 0, 0)
