"""ControlNet / T2I-Adapter: files in the original layouts, the apply nodes, the sampler's use of
them, parity with diffusers' pipelines, and the demo ControlNet's effect.

Parity (tolerance 1e-4 of the latent's largest magnitude + 1e-5, on tiny random models): our
KSampler with ControlNetApplyAdvanced against ``StableDiffusionControlNetPipeline`` (one and two
ControlNets) and against ``StableDiffusionAdapterPipeline``, on the schedules both can share
(see tests/test_parity.py: euler/simple with our integer timesteps, dpmpp_2m/karras). The control
nets go through a file in the original layout and our loader first, so the parity covers loading.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from test_parity import SEED, diffusers_scheduler, steps_or_timesteps
from tiny_sd import TOKENIZER_DIR, make_ctx, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.errors import NodeInputError
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.control import layout
from latentgraph.nodes.control.loading import load_control_file
from latentgraph.nodes.control.nodes import (
    ControlNetApply,
    ControlNetApplyAdvanced,
    ControlNetLoader,
    DiffControlNetLoader,
    SetUnionControlNetType,
)
from latentgraph.nodes.control.residuals import Control, resize_center
from latentgraph.nodes.latents import EmptyLatent
from latentgraph.nodes.original_layout import UNET_PREFIX, unet_to_original
from latentgraph.nodes.sampling import guidance
from latentgraph.nodes.sampling.ksampler_nodes import KSampler

CFG = 5.0
PROMPT, NEGATIVE = "a photo of a red cat", "blurry"
TOLERANCE = 1e-4


def close(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    diff = (ours - theirs).abs().max().item()
    report = f"max |diff| {diff:.3g}, max |latent| {theirs.abs().max():.3g}"
    print(report)
    assert diff <= TOLERANCE * theirs.abs().max().item() + 1e-5, report
    return diff


def _randomise(module: torch.nn.Module, seed: int, scale: float = 0.3) -> None:
    """Zero-initialised convolutions would hide every mistake: give them random weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "controlnet_down_blocks" in name or "controlnet_mid_block" in name or "conv_out" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def tiny_controlnet(unet, seed: int = 0, **kw):
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16), **kw)
    _randomise(net, seed)
    return net.eval()


def hint_image(size: int = 16, batch: int = 1, seed: int = 3) -> torch.Tensor:
    """IMAGE [B, H, W, 3]: a bright square on black, as an edge or scribble map looks."""
    img = torch.zeros(batch, size, size, 3)
    img[:, size // 4 : size // 2, size // 4 : 3 * size // 4] = 1.0
    g = torch.Generator().manual_seed(seed)
    return (img + 0.2 * torch.rand(img.shape, generator=g)).clamp(0, 1)


@pytest.fixture(scope="module")
def sd1():
    from transformers import CLIPTokenizer

    return tiny_sd("sd1", seed=0), CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)


def ctx_with(tmp_path: Path):
    ctx, sink = make_ctx()
    root = tmp_path / "models"
    (root / "controlnet").mkdir(parents=True, exist_ok=True)
    ctx.settings = ctx.settings.with_model_roots(root)
    return ctx, root / "controlnet"


def through_file(ctx, folder: Path, name: str, net, kind: str = "controlnet", metadata: bool = True, **kw):
    """Save ``net`` in the original layout and load it with ControlNetLoader."""
    config = dict(net.config)
    if metadata:
        layout.save_controlnet(folder / name, net.state_dict(), config, kind=kind, half=False)
    else:
        _save_plain(folder / name, net.state_dict(), config, kind)
    return ControlNetLoader().execute(ctx, name)[0]


def _save_plain(path: Path, state, config, kind: str, prefix: str = "") -> None:
    from safetensors.torch import save_file

    public = {k: v for k, v in config.items() if not k.startswith("_")}
    tensors = layout.controlnet_to_original(state, public) if kind == "controlnet" else layout.adapter_to_original(state, public)
    if kind == "controlnet" and prefix != layout.PTH_PREFIX:
        tensors = {prefix + k.removeprefix(layout.PTH_PREFIX): v for k, v in tensors.items()}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def cond(pipe):
    with torch.no_grad():
        return pipe.encode_prompt(PROMPT, torch.device("cpu"), 1, True, NEGATIVE)


def our_run(ctx, model, pos, neg, sampler_name, scheduler, steps, size=16):
    latent = EmptyLatent().execute(ctx, size, size, 1)[0]
    out = KSampler().execute(ctx, model, SEED, steps, CFG, sampler_name, scheduler, pos, neg, latent, 1.0)[0]
    return out["samples"] * 0.18215


def sd1_pipe(cls_name, sd, tokenizer, scheduler, **parts):
    import diffusers

    pipe = getattr(diffusers, cls_name)(
        vae=sd.vae.vae, text_encoder=sd.text_encoders[0], tokenizer=tokenizer, unet=sd.model.unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False, **parts,
    ).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -- parity ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("sampler_name", "scheduler"), [("euler", "simple"), ("dpmpp_2m", "karras")])
def test_controlnet_matches_stable_diffusion_controlnet_pipeline(sd1, tmp_path, sampler_name, scheduler):
    sd, tokenizer = sd1
    ctx, folder = ctx_with(tmp_path)
    net = tiny_controlnet(sd.model.unet)
    loaded = through_file(ctx, folder, "tiny-cn.safetensors", net)
    image = hint_image()
    pipe = sd1_pipe("StableDiffusionControlNetPipeline", sd, tokenizer,
                    diffusers_scheduler(sd.model, sampler_name, scheduler), controlnet=net)
    pos, neg = cond(pipe)
    expected = pipe(
        prompt_embeds=pos, negative_prompt_embeds=neg, image=image.movedim(-1, 1), height=16, width=16,
        controlnet_conditioning_scale=0.8, guidance_scale=CFG, generator=torch.Generator().manual_seed(SEED),
        output_type="latent", **steps_or_timesteps(sd.model, sampler_name, scheduler, 6),
    ).images
    p, n = ControlNetApplyAdvanced().execute(ctx, [(pos, {})], [(neg, {})], loaded, image, 0.8, 0.0, 1.0)
    ours = our_run(ctx, sd.model, p, n, sampler_name, scheduler, 6)
    plain = our_run(ctx, sd.model, [(pos, {})], [(neg, {})], sampler_name, scheduler, 6)
    assert (plain - expected).abs().max() > 0.05, "the ControlNet should change the result"
    close(ours, expected)


def test_stacked_controlnets_match_multi_controlnet_pipeline(sd1, tmp_path):
    sd, tokenizer = sd1
    ctx, folder = ctx_with(tmp_path)
    first, second = tiny_controlnet(sd.model.unet, seed=1), tiny_controlnet(sd.model.unet, seed=2)
    cn1 = through_file(ctx, folder, "a.safetensors", first)
    cn2 = through_file(ctx, folder, "b.safetensors", second)
    img1, img2 = hint_image(seed=1), hint_image(seed=2).flip(2)
    pipe = sd1_pipe("StableDiffusionControlNetPipeline", sd, tokenizer,
                    diffusers_scheduler(sd.model, "euler", "simple"), controlnet=[first, second])
    pos, neg = cond(pipe)
    expected = pipe(
        prompt_embeds=pos, negative_prompt_embeds=neg, image=[img1.movedim(-1, 1), img2.movedim(-1, 1)],
        height=16, width=16, controlnet_conditioning_scale=[0.7, 1.2], guidance_scale=CFG,
        generator=torch.Generator().manual_seed(SEED), output_type="latent",
        **steps_or_timesteps(sd.model, "euler", "simple", 5),
    ).images
    p, n = ControlNetApplyAdvanced().execute(ctx, [(pos, {})], [(neg, {})], cn1, img1, 0.7, 0.0, 1.0)
    p, n = ControlNetApplyAdvanced().execute(ctx, p, n, cn2, img2, 1.2, 0.0, 1.0)
    assert p[0][1]["control"].previous is not None and p[0][1]["control"] is n[0][1]["control"]
    close(our_run(ctx, sd.model, p, n, "euler", "simple", 5), expected)


def adapter_model(seed: int = 0) -> DiffusionModel:
    """A tiny SD1 UNet whose levels run like SD1's (attention first), as T2I-Adapters expect."""
    from diffusers import UNet2DConditionModel

    base = tiny_sd("sd1", seed=seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
    ).eval()
    from dataclasses import replace

    return base, replace(base.model, unet=unet)


@pytest.mark.parametrize(("sampler_name", "scheduler"), [("euler", "simple"), ("dpmpp_2m", "karras")])
def test_t2i_adapter_matches_adapter_pipeline(sd1, tmp_path, sampler_name, scheduler):
    from diffusers import T2IAdapter

    _, tokenizer = sd1
    sd, model = adapter_model()
    torch.manual_seed(5)
    adapter = T2IAdapter(in_channels=3, channels=(32, 64), num_res_blocks=2, downscale_factor=2, adapter_type="full_adapter").eval()
    ctx, folder = ctx_with(tmp_path)
    loaded = through_file(ctx, folder, "tiny-t2i.safetensors", adapter, kind="t2i_adapter")
    assert loaded.kind == "t2i_adapter"
    image = hint_image()
    pipe = sd1_pipe("StableDiffusionAdapterPipeline", sd, tokenizer, diffusers_scheduler(model, sampler_name, scheduler),
                    adapter=adapter)
    pipe.unet = model.unet
    pos, neg = cond(pipe)
    expected = pipe(
        prompt_embeds=pos, negative_prompt_embeds=neg, image=image.movedim(-1, 1), height=16, width=16,
        adapter_conditioning_scale=0.9, guidance_scale=CFG, generator=torch.Generator().manual_seed(SEED),
        output_type="latent", **steps_or_timesteps(model, sampler_name, scheduler, 6),
    ).images
    p, n = ControlNetApplyAdvanced().execute(ctx, [(pos, {})], [(neg, {})], loaded, image, 0.9, 0.0, 1.0)
    ours = our_run(ctx, model, p, n, sampler_name, scheduler, 6)
    plain = our_run(ctx, model, [(pos, {})], [(neg, {})], sampler_name, scheduler, 6)
    assert (plain - expected).abs().max() > 0.05, "the adapter should change the result"
    close(ours, expected)


# -- files in the original layouts --------------------------------------------------------------------
def _same_outputs(a, b, hint_size: int = 16, added=None, downscale: int = 2) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, hint_size // downscale, hint_size // downscale, generator=g)
    hidden = torch.randn(1, 7, a.config.cross_attention_dim, generator=g)
    hint = torch.rand(1, 3, hint_size, hint_size, generator=g)
    kw = {"added_cond_kwargs": added} if added else {}
    with torch.no_grad():
        da, ma = a(x, torch.tensor([500.0]), hidden, hint, return_dict=False, **kw)
        db, mb = b(x, torch.tensor([500.0]), hidden, hint, return_dict=False, **kw)
    for p, q in zip([*da, ma], [*db, mb]):
        assert torch.allclose(p, q, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prefix", ["control_model.", ""])
def test_sd1_controlnet_without_metadata_is_read_from_its_shapes(sd1, tmp_path, prefix):
    sd, _ = sd1
    net = tiny_controlnet(sd.model.unet)
    path = tmp_path / "plain.safetensors"
    _save_plain(path, net.state_dict(), dict(net.config), "controlnet", prefix=prefix)
    from latentgraph.nodes.checkpoint_files import open_weights

    keys = open_weights(path).keys
    assert f"{prefix}zero_convs.0.0.weight" in keys and f"{prefix}input_hint_block.2.weight" in keys
    assert f"{prefix}middle_block_out.0.weight" in keys and f"{prefix}input_blocks.1.0.in_layers.0.weight" in keys
    ctx, _ = make_ctx()
    loaded = load_control_file(path, ctx.settings)
    assert loaded.kind == "controlnet" and loaded.arch == "sd1" and loaded.hint_downscale == 2
    _same_outputs(net, loaded.model)


def _sd2_like_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        block_out_channels=(64, 128), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=1024, attention_head_dim=(1, 2), use_linear_projection=True, norm_num_groups=32,
    ).eval()


def test_sd2_controlnet_shapes_give_linear_attention_and_64_channel_heads(tmp_path):
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    net = ControlNetModel.from_unet(_sd2_like_unet(), conditioning_embedding_out_channels=(16, 32, 96, 256)).eval()
    _randomise(net, 0)
    path = tmp_path / "sd2.safetensors"
    _save_plain(path, net.state_dict(), dict(net.config), "controlnet", prefix=layout.PTH_PREFIX)
    ctx, _ = make_ctx()
    loaded = load_control_file(path, ctx.settings)
    config = loaded.model.config
    assert loaded.arch == "sd2" and config.use_linear_projection and list(config.attention_head_dim) == [1, 2]
    assert list(config.conditioning_embedding_out_channels) == [16, 32, 96, 256] and loaded.hint_downscale == 8
    _same_outputs(net, loaded.model, hint_size=32, downscale=8)


def test_sdxl_controlnet_loads_from_file_and_runs_on_sdxl_model(tmp_path):
    from diffusers import ControlNetModel

    sd = tiny_sd("sdxl", seed=0)
    net = ControlNetModel.from_unet(sd.model.unet, conditioning_embedding_out_channels=(8, 16)).eval()
    _randomise(net, 4)
    ctx, folder = ctx_with(tmp_path)
    loaded = through_file(ctx, folder, "xl.safetensors", net)
    added = {"text_embeds": torch.randn(1, 32), "time_ids": torch.tensor([[16.0, 16, 0, 0, 16, 16]])}
    _same_outputs(net, loaded.model, added=added)
    # without metadata the shapes still say SDXL: size conditioning, per-level transformer depth
    _save_plain(folder / "xl-plain.safetensors", net.state_dict(), dict(net.config), "controlnet")
    plain = load_control_file(folder / "xl-plain.safetensors", ctx.settings)
    assert plain.arch == "sdxl" and plain.model.config.addition_embed_type == "text_time"
    assert list(plain.model.config.transformer_layers_per_block) == [1, 2]
    g = torch.Generator().manual_seed(2)
    pos = [(torch.randn(1, 77, 64, generator=g), {"pooled_output": torch.randn(1, 32, generator=g)})]
    neg = [(torch.randn(1, 77, 64, generator=g), {"pooled_output": torch.randn(1, 32, generator=g)})]
    p, n = ControlNetApplyAdvanced().execute(ctx, pos, neg, loaded, hint_image(), 1.0, 0.0, 1.0)
    with_cn = our_run(ctx, sd.model, p, n, "euler", "simple", 3)
    without = our_run(ctx, sd.model, pos, neg, "euler", "simple", 3)
    assert torch.isfinite(with_cn).all() and (with_cn - without).abs().max() > 1e-3


def test_diff_controlnet_needs_the_model_and_adds_its_weights(sd1, tmp_path):
    from safetensors.torch import save_file

    sd, _ = sd1
    net = tiny_controlnet(sd.model.unet)
    full = layout.controlnet_to_original(net.state_dict(), dict(net.config))
    base = unet_to_original(sd.model.unet.state_dict(), dict(sd.model.unet.config))
    diff = {}
    for key, value in full.items():
        ref = base.get(UNET_PREFIX + key.removeprefix(layout.PTH_PREFIX))
        diff[key] = (value - ref if ref is not None else value).contiguous()
    diff["difference"] = torch.tensor([])
    ctx, folder = ctx_with(tmp_path)
    save_file(diff, str(folder / "diff.safetensors"))
    loaded = DiffControlNetLoader().execute(ctx, sd.model, "diff.safetensors")[0]
    assert loaded.info["diff"]
    _same_outputs(net, loaded.model)
    without_model = ControlNetLoader().execute(ctx, "diff.safetensors")[0]  # ComfyUI warns and goes on
    with pytest.raises(AssertionError):
        _same_outputs(net, without_model.model)


@pytest.mark.parametrize(
    ("adapter_type", "channels", "downscale", "blocks"),
    [("full_adapter", (32, 64, 128, 128), 8, 2), ("full_adapter_xl", (32, 64, 128, 128), 16, 2), ("light_adapter", (32, 64, 128), 8, 4)],
)
def test_t2i_adapter_forms_read_from_their_original_layout(tmp_path, adapter_type, channels, downscale, blocks):
    from diffusers import T2IAdapter

    torch.manual_seed(0)
    adapter = T2IAdapter(in_channels=3, channels=channels, num_res_blocks=blocks, downscale_factor=downscale,
                         adapter_type=adapter_type).eval()
    path = tmp_path / "adapter.safetensors"
    _save_plain(path, adapter.state_dict(), dict(adapter.config), "t2i_adapter")
    from latentgraph.nodes.checkpoint_files import open_weights

    keys = open_weights(path).keys
    assert "body.0.block1.weight" in keys or "body.0.body.0.block1.weight" in keys  # TencentARC's names
    ctx, _ = make_ctx()
    loaded = load_control_file(path, ctx.settings)
    assert loaded.kind == "t2i_adapter" and loaded.model.config.adapter_type == adapter_type
    hint = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for a, b in zip(adapter(hint), loaded.model(hint)):
            assert torch.allclose(a, b, atol=1e-6)
    assert loaded.hint_downscale == (8 if adapter_type != "full_adapter_xl" else 8)


def test_files_that_are_no_control_model_are_refused_by_name(tmp_path):
    from safetensors.torch import save_file

    ctx, folder = ctx_with(tmp_path)
    save_file({"foo.weight": torch.zeros(2)}, str(folder / "junk.safetensors"))
    with pytest.raises(NodeInputError) as err:
        ControlNetLoader().execute(ctx, "junk.safetensors")
    assert err.value.input_name == "control_net_name" and "neither a ControlNet nor a T2I-Adapter" in str(err.value)
    with pytest.raises(NodeInputError) as err:
        ControlNetLoader().execute(ctx, "missing.safetensors")
    assert err.value.input_name == "control_net_name"


# -- applying and sampling ------------------------------------------------------------------------------
def test_apply_nodes_chain_and_share_one_control_per_chain(sd1, tmp_path):
    sd, _ = sd1
    ctx, folder = ctx_with(tmp_path)
    loaded = through_file(ctx, folder, "cn.safetensors", tiny_controlnet(sd.model.unet))
    e = torch.zeros(1, 77, 32)
    pos, neg = [(e, {}), (e, {"area": (8, 8, 0, 0)})], [(e, {})]
    p, n = ControlNetApplyAdvanced().execute(ctx, pos, neg, loaded, hint_image(), 0.5, 0.2, 0.7)
    c = p[0][1]["control"]
    assert c is p[1][1]["control"] is n[0][1]["control"] and (c.start_percent, c.end_percent, c.strength) == (0.2, 0.7, 0.5)
    assert pos[0][1] == {}  # inputs untouched
    assert ControlNetApplyAdvanced().execute(ctx, pos, neg, loaded, hint_image(), 0.0, 0.0, 1.0) == (pos, neg)
    (old,) = ControlNetApply().execute(ctx, p, loaded, hint_image(), 1.0)
    assert old[0][1]["control"].previous is c and old[0][1]["control_apply_to_uncond"] is True
    union = SetUnionControlNetType().execute(ctx, loaded, "depth")[0]
    assert union.extra_args == {"control_type": [1]} and loaded.extra_args == {}
    with pytest.raises(NodeInputError) as err:
        ControlNetApplyAdvanced().execute(ctx, pos, neg, "not a net", hint_image(), 1.0, 0.0, 1.0)
    assert err.value.input_name == "control_net"


def test_old_apply_lends_its_control_to_the_negative_like_comfyui(sd1, tmp_path):
    sd, _ = sd1
    ctx, folder = ctx_with(tmp_path)
    loaded = through_file(ctx, folder, "cn.safetensors", tiny_controlnet(sd.model.unet))
    e = torch.zeros(1, 77, 32)
    (p,) = ControlNetApply().execute(ctx, [(e, {})], loaded, hint_image(), 1.0)
    control = p[0][1]["control"]
    guider = guidance.Guider(sd.model, {"positive": p, "negative": [(e, {}), (e, {"area": (4, 4, 0, 0)})]}, guidance.CFG(5.0))
    bound = guider.bind((1, 4, 8, 8), 2)
    negative = bound.sides[1]
    assert negative[0].control is control and negative[1].control is None  # area entries are not lent to
    # a negative with a control of its own keeps it
    other = Control(loaded, hint_image().movedim(-1, 1))
    bound = guidance.Guider(sd.model, {"positive": p, "negative": [(e, {"control": other})]}, guidance.CFG(5.0)).bind((1, 4, 8, 8), 2)
    assert bound.sides[1][0].control is other
    # ControlNetApplyAdvanced does not lend
    pa, _ = ControlNetApplyAdvanced().execute(ctx, [(e, {})], [(e, {})], loaded, hint_image(), 1.0, 0.0, 1.0)
    bound = guidance.Guider(sd.model, {"positive": pa, "negative": [(e, {})]}, guidance.CFG(5.0)).bind((1, 4, 8, 8), 2)
    assert bound.sides[1][0].control is None


def test_start_and_end_percent_limit_the_control_to_part_of_the_run(sd1, tmp_path):
    sd, _ = sd1
    ctx, folder = ctx_with(tmp_path)
    loaded = through_file(ctx, folder, "cn.safetensors", tiny_controlnet(sd.model.unet))
    g = torch.Generator().manual_seed(0)
    pos, neg = [(torch.randn(1, 77, 32, generator=g), {})], [(torch.randn(1, 77, 32, generator=g), {})]

    def run(start, end):
        p, n = ControlNetApplyAdvanced().execute(ctx, pos, neg, loaded, hint_image(), 1.0, start, end)
        return our_run(ctx, sd.model, p, n, "euler", "simple", 6)

    plain = our_run(ctx, sd.model, pos, neg, "euler", "simple", 6)
    assert torch.equal(run(0.0, 0.0), plain)  # ends before the first step: never applied
    full, late = run(0.0, 1.0), run(0.5, 1.0)
    assert (full - plain).abs().max() > 0.05 and (late - plain).abs().max() > 1e-4
    assert not torch.allclose(full, late)
    ms = sd.model.model_sampling
    c = Control(loaded, hint_image().movedim(-1, 1), start_percent=0.25, end_percent=0.75)
    assert c.active(ms.percent_to_sigma(0.25), ms) and c.active(ms.percent_to_sigma(0.75), ms)
    assert not c.active(ms.percent_to_sigma(0.2), ms) and not c.active(ms.percent_to_sigma(0.8), ms)


def test_area_conditioning_gets_the_hint_cropped_to_its_aspect_and_sized_to_the_area(sd1, tmp_path):
    hint = torch.arange(4 * 8, dtype=torch.float32).view(1, 1, 4, 8)
    out = resize_center(hint, 2, 2)  # a square area: the centre 4×4 of the 4×8 hint, resampled
    assert torch.equal(out, torch.nn.functional.interpolate(hint[..., 2:6], size=(2, 2), mode="nearest-exact"))
    sd, _ = sd1
    ctx, folder = ctx_with(tmp_path)
    loaded = through_file(ctx, folder, "cn.safetensors", tiny_controlnet(sd.model.unet))
    g = torch.Generator().manual_seed(0)
    e = torch.randn(1, 77, 32, generator=g)
    pos = [(e, {}), (e, {"area": ("percentage", 1.0, 0.5, 0.0, 0.5)})]  # the right half
    p, n = ControlNetApplyAdvanced().execute(ctx, pos, [(e * 0, {})], loaded, hint_image(), 1.0, 0.0, 1.0)
    out = our_run(ctx, sd.model, p, n, "euler", "simple", 3)
    assert torch.isfinite(out).all()
    # the whole latent's 16×16 pixels, and the area crop's 8×4 cells as 16×8 pixels
    assert set(p[0][1]["control"]._hints) == {(16, 16), (16, 8)}


def test_a_controlnet_for_another_family_is_refused_naming_the_conditioning(sd1, tmp_path):
    from diffusers import ControlNetModel

    sd, _ = sd1
    ctx, folder = ctx_with(tmp_path)
    other = ControlNetModel.from_unet(_sd2_like_unet(), conditioning_embedding_out_channels=(8, 16)).eval()
    loaded = through_file(ctx, folder, "sd2.safetensors", other)
    e = torch.zeros(1, 77, 32)
    p, n = ControlNetApplyAdvanced().execute(ctx, [(e, {})], [(e, {})], loaded, hint_image(), 1.0, 0.0, 1.0)
    with pytest.raises(NodeInputError) as err:
        our_run(ctx, sd.model, p, n, "euler", "simple", 2)
    assert err.value.input_name == "positive" and "another model family" in str(err.value)


# -- registration, contracts, the example workflow ---------------------------------------------------
class _ControlPlugin:
    """Registers this package's nodes the way nodes/builtin.py will (until it does)."""

    from latentgraph import hookimpl

    @hookimpl
    def register_nodes(self):
        from latentgraph.nodes import control

        return control.NODES

    @hookimpl
    def register_types(self):
        from latentgraph.nodes import control

        return control.TYPES


def _registered_by_builtins() -> bool:
    from latentgraph.nodes import builtin

    return "nodes.control" in Path(builtin.__file__).read_text() or "nodes import control" in Path(builtin.__file__).read_text()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    import shutil

    from latentgraph import Settings
    from latentgraph.engine import Engine

    data = tmp_path_factory.mktemp("cn-engine")
    shutil.copytree(Path(__file__).parent.parent / "workflows" / "input", data / "input")
    extra = [] if _registered_by_builtins() else [("control-nodes", _ControlPlugin())]
    return Engine.create(Settings.from_env(data, environ={}, device="cpu"), entry_points=False, extra_plugins=extra)


@pytest.mark.parametrize("name", ["ControlNetLoader", "DiffControlNetLoader", "ControlNetApply",
                                  "ControlNetApplyAdvanced", "SetUnionControlNetType", "Canny"])
def test_node_contract_matches_comfyui(engine, name):
    from test_node_contracts import _compare

    from latentgraph.object_info import object_info

    _compare(name, object_info(engine.registry, engine.settings))


def test_example_workflow_runs_and_lists_the_shipped_controlnet(engine):
    wf = json.loads((Path(__file__).parent.parent / "workflows" / "controlnet_canny.json").read_text())
    from latentgraph.object_info import object_info

    info = object_info(engine.registry, engine.settings)
    assert "latentgraph-demo-canny.safetensors" in info["ControlNetLoader"]["input"]["required"]["control_net_name"][0]
    result = engine.run(wf)
    assert result.ok, result.failure and result.failure.message


# -- the demo ControlNet ------------------------------------------------------------------------------
def test_shipped_demo_controlnet_is_small_fp16_original_layout():
    from latentgraph.nodes.builtin import DATA_DIR
    from latentgraph.nodes.checkpoint_files import open_weights

    path = DATA_DIR / "models" / "controlnet" / "latentgraph-demo-canny.safetensors"
    assert path.stat().st_size < 15 * 1024 * 1024
    weights = open_weights(path)
    assert "control_model.zero_convs.0.0.weight" in weights and "control_model.input_hint_block.0.weight" in weights
    meta = json.loads(weights.metadata["latentgraph.config"])
    assert meta["kind"] == "controlnet" and meta["trained_steps"] > 0
    assert {str(weights.tensors([k])[k].dtype) for k in weights.keys[:5]} == {"torch.float16"}


def test_demo_controlnet_puts_the_shape_where_the_edges_are():
    """Edges of a circle drawn top-left or bottom-right move the drawn circle there (centroid)."""
    from latentgraph.nodes.builtin import DATA_DIR
    from latentgraph.nodes.checkpoints import load_checkpoint
    from latentgraph.nodes.conditioning import CLIPEncode
    from latentgraph.nodes.control.canny import canny
    from demo_model.train_controlnet import EDGE_HIGH, EDGE_LOW
    from demo_model.data import ShapeSpec, render
    from demo_model.reading import shape_mask
    from latentgraph.nodes.latents import VAEDecode

    ctx, _ = make_ctx()
    ck = load_checkpoint(DATA_DIR / "models" / "checkpoints" / "latentgraph-demo-shapes.safetensors", ctx.settings)
    net = load_control_file(DATA_DIR / "models" / "controlnet" / "latentgraph-demo-canny.safetensors", ctx.settings)
    pos = CLIPEncode().execute(ctx, ck.clip, "a red circle on a blue background")[0]
    neg = CLIPEncode().execute(ctx, ck.clip, "")[0]
    latent = EmptyLatent().execute(ctx, 64, 64, 1)[0]

    def centroid(samples) -> np.ndarray:
        image = VAEDecode().execute(ctx, samples, ck.vae)[0][0]
        _, mask, _ = shape_mask((image * 255).clamp(0, 255).byte().numpy())
        assert mask is not None, "no shape drawn"
        ys, xs = np.nonzero(mask)
        return np.array([xs.mean(), ys.mean()])

    def run(p, n, seed):
        return KSampler().execute(ctx, ck.model, seed, 12, 6.0, "euler", "normal", p, n, latent, 1.0)[0]

    found = {}
    for target in ((20.0, 22.0), (44.0, 42.0)):
        drawn = np.asarray(render(ShapeSpec("circle", "red", "blue", target[0], target[1], 24)), dtype=np.float32)
        edges = canny(torch.from_numpy(drawn / 255).permute(2, 0, 1)[None], EDGE_LOW, EDGE_HIGH)[1]
        hint = edges.repeat(1, 3, 1, 1).movedim(1, -1)
        p, n = ControlNetApplyAdvanced().execute(ctx, pos, neg, net, hint, 1.0, 0.0, 1.0)
        for seed in (0, 1):
            guided = centroid(run(p, n, seed))
            free = centroid(run(pos, neg, seed))
            print(target, seed, "guided", guided.round(1), "free", free.round(1))
            found[target, seed] = guided
            assert np.linalg.norm(guided - target) < 6.0  # within 6 px of the edges' centre …
            assert np.linalg.norm(guided - target) < np.linalg.norm(free - target) / 2  # … much nearer than unguided
    for seed in (0, 1):  # the two edge maps, 34 px apart, put the circle ≥ 25 px apart
        assert np.linalg.norm(found[(20.0, 22.0), seed] - found[(44.0, 42.0), seed]) > 25.0
