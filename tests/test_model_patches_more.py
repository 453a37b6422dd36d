"""HyperTile, ToMe, deep shrink and self-attention guidance (nodes/models/self_attention.py,
deep_shrink.py): the settings that make each a no-op give the unpatched run, others change it, and
the shared UNet is left without hooks or foreign attention processors."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tiny_sd import make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.nodes.models import deep_shrink as dsh
from latentgraph.nodes.models import self_attention as sa
from latentgraph.nodes.sampling.ksampler_nodes import KSampler


def _full_res_attention_unet():
    """A tiny SD1-like UNet with self-attention at the full latent resolution (HyperTile and ToMe
    act there only; tests/tiny_sd.py's UNet has attention at the second level only)."""
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32, attention_head_dim=8,
        ).eval()


@pytest.fixture(scope="module")
def sd():
    return tiny_sd("sd1", seed=0)


@pytest.fixture(scope="module")
def attn_model(sd):
    return replace(sd.model, unet=_full_res_attention_unet())


def run(model, size=8, cfg=4.0, steps=3, sampler="euler"):
    ctx, _ = make_ctx()
    latent = {"samples": torch.zeros(1, 4, size, size)}
    pos, neg = random_conditioning("sd1", seed=1), random_conditioning("sd1", seed=2)
    return KSampler().execute(ctx, model, 7, steps, cfg, sampler, "normal", pos, neg, latent, 1.0)[0]["samples"]


def differs(a, b, by=1e-2):
    return (a - b).abs().max() > by


def untouched(model):
    from diffusers.models.attention_processor import AttnProcessor2_0

    for m in model.unet.modules():
        assert not m._forward_pre_hooks and not m._forward_hooks
        assert not m._forward_pre_hooks_with_kwargs if hasattr(m, "_forward_pre_hooks_with_kwargs") else True
        if hasattr(m, "processor"):
            assert not isinstance(m.processor, sa.SelfAttentionPatch)
            assert isinstance(m.processor, AttnProcessor2_0)
    assert not model.options


@pytest.fixture(scope="module")
def plain16(attn_model):
    return run(attn_model, size=16)


@pytest.fixture(scope="module")
def plain8(sd):
    return run(sd.model)


# -- the processor ---------------------------------------------------------------------------------
def test_the_patched_processor_without_changes_is_diffusers_attention(attn_model):
    name = sa.attention_modules(attn_model.unet, "self")[0]
    attn = attn_model.unet.get_submodule(name)
    x = torch.randn(2, 256, attn.to_q.in_features)
    want = attn.processor(attn, x)
    got = sa.SelfAttentionPatch(attn.processor)(attn, x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    recorded = []
    got2 = sa.SelfAttentionPatch(attn.processor, record=recorded.append)(attn, x)
    torch.testing.assert_close(got2, want, atol=1e-5, rtol=1e-5)
    assert recorded[0].shape == (2, attn.heads, 256, 256)
    torch.testing.assert_close(recorded[0].sum(-1), torch.ones(2, attn.heads, 256))


# -- HyperTile ----------------------------------------------------------------------------------------
def test_hypertile_with_tiles_as_large_as_the_latent_changes_nothing(attn_model, plain16):
    (m,) = sa.HyperTile().execute(None, attn_model, tile_size=256, swap_size=2, max_depth=0, scale_depth=False)
    torch.testing.assert_close(run(m, size=16), plain16, atol=1e-4, rtol=1e-4)
    untouched(attn_model)


def test_hypertile_with_small_tiles_changes_the_result(attn_model, plain16):
    (m,) = sa.HyperTile().execute(None, attn_model, tile_size=32, swap_size=1, max_depth=1, scale_depth=False)
    out = run(m, size=16)
    assert differs(out, plain16) and torch.isfinite(out).all()
    untouched(attn_model)


def test_hypertile_tiles_and_untiles_in_the_right_order():
    x = torch.arange(2 * 64 * 3, dtype=torch.float32).reshape(2, 64, 3)
    args = {"input": torch.zeros(2, 4, 8, 8), "timestep": torch.tensor([500.0])}
    prep = sa.hypertile_prepare(args, tile_size=32, swap_size=1, max_depth=0, scale_depth=False)  # 4-cell tiles
    q, kv, finish = prep(x)
    assert q.shape == (8, 16, 3) and kv is q
    # the second tile is the top-right 4×4 cells of the 8×8 grid
    torch.testing.assert_close(q[1], x[0, [r * 8 + c for r in range(4) for c in range(4, 8)]])
    torch.testing.assert_close(finish(q), x)


# -- ToMe ---------------------------------------------------------------------------------------------
def test_tome_ratio_0_changes_nothing_and_0_5_does(attn_model, plain16):
    (zero,) = sa.TomePatchModel().execute(None, attn_model, ratio=0.0)
    torch.testing.assert_close(run(zero, size=16), plain16, atol=1e-4, rtol=1e-4)
    (half,) = sa.TomePatchModel().execute(None, attn_model, ratio=0.5)
    out = run(half, size=16)
    assert differs(out, plain16) and torch.isfinite(out).all()
    untouched(attn_model)


def test_bipartite_merge_averages_the_most_similar_tokens_and_unmerges_to_every_position():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 8, generator=g)
    x[0, 1] = x[0, 0] * 2  # same direction as token 0: merged first (token 0 or 1 is a destination)
    merge, unmerge = sa.bipartite_merge(x, 4, 4, 3, torch.Generator().manual_seed(1))
    merged = merge(x)
    assert merged.shape == (1, 13, 8)
    back = unmerge(merged)
    assert back.shape == x.shape
    same = (back - x).abs().amax(-1) < 1e-6
    assert int(same.sum()) >= 16 - 3 - 3  # at most the 3 moved tokens and their ≤3 destinations change
    # merging nothing is the identity
    assert sa.bipartite_merge(x, 4, 4, 0, g) is None


# -- deep shrink -------------------------------------------------------------------------------------
def test_deep_shrink_by_1_or_outside_its_window_changes_nothing(sd, plain8):
    for kw in ({"downscale_factor": 1.0, "start_percent": 0.0, "end_percent": 1.0},
               {"downscale_factor": 2.0, "start_percent": 1.0, "end_percent": 1.0}):
        (m,) = dsh.PatchModelAddDownscale().execute(None, sd.model, block_number=3, downscale_after_skip=True,
                                                     downscale_method="bicubic", upscale_method="bicubic", **kw)
        torch.testing.assert_close(run(m), plain8, atol=1e-5, rtol=1e-5)
    untouched(sd.model)


@pytest.mark.parametrize("after_skip", [True, False])
@pytest.mark.parametrize("block", [1, 3, 4])
def test_deep_shrink_by_2_runs_at_every_block_and_changes_the_result(sd, plain8, after_skip, block):
    (m,) = dsh.PatchModelAddDownscale().execute(None, sd.model, block_number=block, downscale_factor=2.0,
                                                 start_percent=0.0, end_percent=0.35, downscale_after_skip=after_skip,
                                                 downscale_method="bicubic", upscale_method="bislerp")
    out = run(m)
    assert out.shape == plain8.shape and torch.isfinite(out).all() and differs(out, plain8, by=1e-4)
    untouched(sd.model)


def test_deep_shrink_shrinks_inside_the_unet_only_in_its_window(sd):
    seen = []
    unet = sd.model.unet
    handle = unet.mid_block.register_forward_hook(lambda mod, i, o: seen.append(tuple(o.shape[-2:])))
    try:
        (m,) = dsh.PatchModelAddDownscale().execute(None, sd.model, block_number=3, downscale_factor=2.0,
                                                     start_percent=0.0, end_percent=0.5, downscale_after_skip=True,
                                                     downscale_method="bicubic", upscale_method="bicubic")
        run(m, steps=4, cfg=1.0)
    finally:
        handle.remove()
    assert seen[0] == (2, 2) and seen[-1] == (4, 4)
    assert dsh.input_block_modules(unet)[3][0] == "down_blocks.0.downsamplers.0"
    assert dsh.input_block_modules(unet)[5][0] == "down_blocks.1.attentions.1"


# -- SAG ----------------------------------------------------------------------------------------------
def test_sag_scale_0_changes_nothing_and_0_5_does(sd, plain8):
    (zero,) = sa.SelfAttentionGuidance().execute(None, sd.model, scale=0.0, blur_sigma=2.0)
    # the recorded call computes that one attention explicitly (softmax, not SDPA): float rounding only
    torch.testing.assert_close(run(zero), plain8, atol=5e-4, rtol=1e-4)
    (guided,) = sa.SelfAttentionGuidance().execute(None, sd.model, scale=0.5, blur_sigma=2.0)
    out = run(guided)
    assert differs(out, plain8, by=1e-3) and torch.isfinite(out).all()
    untouched(sd.model)


def test_sag_without_blur_reproduces_the_negative_so_guides_by_nothing(sd, plain8):
    """blur_sigma 0: the degraded x0 is the negative's own x0, re-noised to the same x; the extra
    pass (with the recorded negative conditioning) must give back that x0 exactly."""
    (m,) = sa.SelfAttentionGuidance().execute(None, sd.model, scale=3.0, blur_sigma=0.0)
    torch.testing.assert_close(run(m), plain8, atol=1e-4, rtol=1e-4)
    untouched(sd.model)


def test_blur_map_blurs_only_where_attention_is_concentrated():
    x0 = torch.randn(1, 4, 8, 8)
    attn = torch.zeros(2, 16, 16)  # 2 heads, a 4×4 grid: every query attends to token 0
    attn[:, :, 0] = 1.0
    out = sa.blur_where_attended(x0, attn, (4, 4), 2.0)
    # token 0 covers cells [0:2, 0:2]; everything else stays sharp
    torch.testing.assert_close(out[..., 2:, :], x0[..., 2:, :])
    torch.testing.assert_close(out[..., :2, 2:], x0[..., :2, 2:])
    assert differs(out[..., :2, :2], x0[..., :2, :2], by=1e-3)
