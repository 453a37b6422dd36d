"""Merging, saving and LoRA extraction (nodes/models/merging.py, saving.py): files in the original
layout that load back here and reproduce what was saved."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from sd_helpers import Env
from tiny_sd import make_ctx, random_conditioning, single_thread  # noqa: F401 (autouse fixture)

from latentgraph.nodes.checkpoints import load_checkpoint, load_vae
from latentgraph.nodes.lora import apply_lora, read_lora
from latentgraph.nodes.models import loaders as ml
from latentgraph.nodes.models import merging as mm
from latentgraph.nodes.models import saving as ms
from latentgraph.nodes.sampling.ksampler_nodes import KSampler
from latentgraph.nodes.tiny_models import make_tiny_checkpoint, make_tiny_lora

#: Decided before measuring: a LoRA stored in fp16 (as ComfyUI stores it) reproduces the
#: fine-tune to within 1e-3 of the output's magnitude, and at most 2% of what the fine-tune changes.
LORA_REL_TOL = 1e-3
LORA_EFFECT_FRACTION = 0.02


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(tmp_path_factory.mktemp("merge"))
    for seed in (0, 1):
        make_tiny_checkpoint(e.folder("checkpoints") / f"tiny{seed}.safetensors", "sd1", seed=seed, dtype=torch.float32)
    return e


@pytest.fixture(scope="module")
def pair(env):
    return [load_checkpoint(env.folder("checkpoints") / f"tiny{s}.safetensors", env.settings) for s in (0, 1)]


def sample(model, pos=None):
    ctx, _ = make_ctx()
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    pos = pos or random_conditioning("sd1", seed=1)
    return KSampler().execute(ctx, model, 3, 3, 4.0, "euler", "normal", pos, random_conditioning("sd1", seed=2), latent, 1.0)[0]["samples"]


def param(model, name):
    return dict(model.unet.named_parameters())[name]


def test_simple_merge_is_comfyuis_ratio_and_leaves_the_inputs(pair):
    a, b = pair[0].model, pair[1].model
    before = param(a, "conv_in.weight").clone()
    (m,) = mm.ModelMergeSimple().execute(None, a, b, ratio=0.3)
    torch.testing.assert_close(param(m, "conv_in.weight"), 0.3 * param(a, "conv_in.weight") + 0.7 * param(b, "conv_in.weight"))
    assert torch.equal(param(a, "conv_in.weight"), before)
    (same,) = mm.ModelMergeSimple().execute(None, a, b, ratio=1.0)
    assert param(same, "conv_in.weight").data_ptr() == param(a, "conv_in.weight").data_ptr()  # untouched weights are shared


def test_blocks_merge_picks_ratios_by_original_block_names(pair):
    a, b = pair[0].model, pair[1].model
    (m,) = mm.ModelMergeBlocks().execute(None, a, b, input=1.0, middle=0.0, out=1.0)
    mid = "mid_block.resnets.0.conv1.weight"  # middle_block.0.in_layers.2
    torch.testing.assert_close(param(m, mid), param(b, mid))
    for name in ("down_blocks.0.resnets.0.conv1.weight", "up_blocks.1.resnets.0.conv1.weight", "conv_out.weight"):
        assert torch.equal(param(m, name), param(a, name))
    # SD1 per-block: output_blocks.3. is up_blocks.1.resnets.0, the longest prefix wins over "out."
    ratios = {n.name: 1.0 for n in mm.ModelMergeSD1.spec.inputs[2:]}
    ratios["output_blocks.3."] = 0.0
    (m1,) = mm.ModelMergeSD1().execute(None, a, b, **ratios)
    torch.testing.assert_close(param(m1, "up_blocks.1.resnets.0.conv1.weight"), param(b, "up_blocks.1.resnets.0.conv1.weight"))
    assert torch.equal(param(m1, "up_blocks.1.resnets.1.conv1.weight"), param(a, "up_blocks.1.resnets.1.conv1.weight"))


def test_subtract_then_add_gives_the_model_back(pair):
    a, b = pair[0].model, pair[1].model
    (diff,) = mm.ModelMergeSubtract().execute(None, a, b, multiplier=1.0)
    (back,) = mm.ModelMergeAdd().execute(None, b, diff)
    torch.testing.assert_close(param(back, "conv_in.weight"), param(a, "conv_in.weight"), atol=1e-6, rtol=1e-6)
    (cdiff,) = mm.CLIPMergeSubtract().execute(None, pair[0].clip, pair[1].clip, multiplier=1.0)
    (cback,) = mm.CLIPMergeAdd().execute(None, pair[1].clip, cdiff)
    for (k, v1), v2 in zip(pair[0].clip.encoders[0].state_dict().items(), cback.encoders[0].state_dict().values()):
        if v1.is_floating_point():
            torch.testing.assert_close(v2, v1, atol=1e-6, rtol=1e-6)


def test_a_merged_and_saved_checkpoint_reloads_and_reproduces_the_merge(env, pair):
    (model,) = mm.ModelMergeSimple().execute(None, pair[0].model, pair[1].model, ratio=0.5)
    (clip,) = mm.CLIPMergeSimple().execute(None, pair[0].clip, pair[1].clip, ratio=0.5)
    result = ms.CheckpointSave().execute(env.ctx(), model, clip, pair[0].vae, filename_prefix="checkpoints/merged")
    entry = result.ui["checkpoints"][0]
    path = env.settings.output_dir / entry["subfolder"] / entry["filename"]
    assert path.name == "merged_00001_.safetensors"
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert any(k.startswith("first_stage_model.encoder.down.0.") for k in keys)
    assert any(k.startswith("cond_stage_model.transformer.text_model.") for k in keys)
    again = load_checkpoint(path, env.settings)
    assert again.arch == "sd1"
    torch.testing.assert_close(sample(again.model), sample(model), atol=1e-5, rtol=1e-5)
    assert (sample(again.model) - sample(pair[0].model)).abs().max() > 1e-2
    for a, b in zip(again.clip.encoders[0].state_dict().values(), clip.encoders[0].state_dict().values()):
        torch.testing.assert_close(a, b)


def test_vae_unet_and_clip_files_load_back(env, pair):
    ctx = env.ctx()
    vae_entry = ms.VAESave().execute(ctx, pair[1].vae, filename_prefix="vae/tiny").ui["vaes"][0]
    vae = load_vae(env.settings.output_dir / vae_entry["subfolder"] / vae_entry["filename"], env.settings)
    for a, b in zip(vae.vae.state_dict().values(), pair[1].vae.vae.state_dict().values()):
        torch.testing.assert_close(a, b)
    unet_entry = ms.ModelSave().execute(ctx, pair[1].model, filename_prefix="diffusion_models/tiny").ui["models"][0]
    unet = ml.load_unet_file(env.settings.output_dir / unet_entry["subfolder"] / unet_entry["filename"], env.settings)
    torch.testing.assert_close(sample(unet), sample(pair[1].model), atol=1e-6, rtol=1e-6)
    clip_entry = ms.CLIPSave().execute(ctx, pair[1].clip, filename_prefix="clip/tiny").ui["clips"][0]
    assert clip_entry["filename"].startswith("tiny_clip_l_")
    arch, cfg, enc = ml.load_text_encoder_file(env.settings.output_dir / clip_entry["subfolder"] / clip_entry["filename"], env.settings)
    assert arch == "sd1"
    for a, b in zip(enc.state_dict().values(), pair[1].clip.encoders[0].state_dict().values()):
        torch.testing.assert_close(a, b)


def test_a_failed_save_leaves_no_file_and_the_next_save_takes_the_next_name(env, pair, monkeypatch):
    """Saving goes through a temporary file: a write that fails half-way (a disk that fills up:
    safetensors' writer stops after some bytes) leaves nothing under a real name, and two saves
    with one prefix never share a counter."""
    import safetensors.torch

    real = safetensors.torch.save_file

    def disk_full(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as fh:
            fh.truncate(100)
        raise OSError(28, "No space left on device")

    ctx = env.ctx()
    folder = env.settings.output_dir / "vae"
    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(OSError):
        ms.VAESave().execute(ctx, pair[0].vae, filename_prefix="vae/broken")
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    assert [p.name for p in folder.iterdir() if "broken" in p.name] == []
    first = ms.VAESave().execute(ctx, pair[0].vae, filename_prefix="vae/twice").ui["vaes"][0]["filename"]
    second = ms.VAESave().execute(ctx, pair[0].vae, filename_prefix="vae/twice").ui["vaes"][0]["filename"]
    assert (first, second) == ("twice_00001_.safetensors", "twice_00002_.safetensors")
    assert sorted(p.name for p in folder.iterdir() if "twice" in p.name) == [first, second]


def test_an_extracted_lora_applied_to_the_base_reproduces_the_fine_tune(env, pair):
    base = pair[0]
    lora_file = make_tiny_lora(env.base / "src_lora.safetensors", "sd1", seed=3, rank=4, alpha=4.0)
    tuned = apply_lora(read_lora(lora_file), base.model, base.clip, 1.0, 1.0)
    (model_diff,) = mm.ModelMergeSubtract().execute(None, tuned.model, base.model, multiplier=1.0)
    (clip_diff,) = mm.CLIPMergeSubtract().execute(None, tuned.clip, base.clip, multiplier=1.0)
    result = ms.LoraSave().execute(env.ctx(), filename_prefix="loras/extracted", rank=4, lora_type="standard",
                                   bias_diff=False, model_diff=model_diff, text_encoder_diff=clip_diff)
    entry = result.ui["loras"][0]
    saved = read_lora(env.settings.output_dir / entry["subfolder"] / entry["filename"])
    assert any(k.startswith("diffusion_model.") for k in saved.pairs) and any(k.startswith("lora_te_") for k in saved.pairs)
    rebuilt = apply_lora(saved, base.model, base.clip, 1.0, 1.0)
    assert not rebuilt.unmatched
    want, got, plain = sample(tuned.model), sample(rebuilt.model), sample(base.model)
    err = (got - want).abs().max()
    assert err <= LORA_REL_TOL * want.abs().max(), err
    assert err <= LORA_EFFECT_FRACTION * (want - plain).abs().max(), (err, (want - plain).abs().max())
    # the text-encoder half too
    ids = torch.tensor([[49406, 320, 1929, 49407] + [49407] * 73])
    enc_want = tuned.clip.encoders[0](ids).last_hidden_state
    enc_got = rebuilt.clip.encoders[0](ids).last_hidden_state
    assert (enc_got - enc_want).abs().max() <= LORA_REL_TOL * enc_want.abs().max() * 10


def test_extracting_at_a_lower_rank_is_the_best_low_rank_approximation():
    g = torch.Generator().manual_seed(0)
    diff = torch.randn(16, 8, generator=g) @ torch.randn(8, 12, generator=g)
    up, down = ms.extract_lora(diff, 8)
    torch.testing.assert_close(up @ down, diff, atol=1e-4, rtol=1e-4)
    up2, down2 = ms.extract_lora(diff, 2)
    s = torch.linalg.svdvals(diff)
    assert torch.isclose(torch.linalg.norm(up2 @ down2 - diff), s[2:].norm(), rtol=1e-4)
    conv = torch.randn(8, 4, 3, 3, generator=g)
    up3, down3 = ms.extract_lora(conv, 36)
    assert up3.shape == (8, 8, 1, 1) and down3.shape == (8, 4, 3, 3)
    torch.testing.assert_close((up3.flatten(1) @ down3.flatten(1)).reshape(conv.shape), conv, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("lora_type", ["standard", "full_diff"])
def test_a_bias_diff_lora_carries_bias_and_norm_changes_back(env, pair, lora_type):
    """LoraSave with bias_diff writes ``.diff_b`` (biases) and ``.diff`` (norm weights; every weight
    for full_diff) — nodes/lora.py reads them back and the fine-tune is reproduced."""
    from dataclasses import replace

    from latentgraph.nodes.lora import patched_copy

    base = pair[0]
    lora_file = make_tiny_lora(env.base / "src_lora_b.safetensors", "sd1", seed=3, rank=4, alpha=4.0)
    tuned = apply_lora(read_lora(lora_file), base.model, base.clip, 1.0, 1.0)
    g = torch.Generator().manual_seed(5)
    shifts = {n: torch.randn(p.shape, generator=g) * 0.05 for n, p in tuned.model.unet.named_parameters()
              if n.endswith(".bias") or (n.endswith(".weight") and p.ndim == 1)}
    tuned_model = replace(tuned.model, unet=patched_copy(tuned.model.unet, shifts, 1.0))
    te_shifts = {n: torch.randn(p.shape, generator=g) * 0.05 for n, p in tuned.clip.encoders[0].named_parameters()
                 if n.startswith("text_model.encoder.") and n.endswith(".bias")}
    tuned_clip = replace(tuned.clip, encoders=[patched_copy(tuned.clip.encoders[0], te_shifts, 1.0)])
    (model_diff,) = mm.ModelMergeSubtract().execute(None, tuned_model, base.model, multiplier=1.0)
    (clip_diff,) = mm.CLIPMergeSubtract().execute(None, tuned_clip, base.clip, multiplier=1.0)
    result = ms.LoraSave().execute(env.ctx(), filename_prefix=f"loras/bias_{lora_type}", rank=4, lora_type=lora_type,
                                   bias_diff=True, model_diff=model_diff, text_encoder_diff=clip_diff)
    entry = result.ui["loras"][0]
    path = env.settings.output_dir / entry["subfolder"] / entry["filename"]
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    assert any(k.endswith(".diff_b") for k in keys) and any(k.endswith(".diff") for k in keys)
    saved = read_lora(path)
    rebuilt = apply_lora(saved, base.model, base.clip, 1.0, 1.0)
    assert not rebuilt.unmatched and not saved.unsupported
    got_params = dict(rebuilt.model.unet.named_parameters())
    for name in list(shifts)[:20]:
        torch.testing.assert_close(got_params[name], dict(tuned_model.unet.named_parameters())[name], atol=2e-3, rtol=1e-3)
    want, got, plain = sample(tuned_model), sample(rebuilt.model), sample(base.model)
    err = (got - want).abs().max()
    assert err <= LORA_REL_TOL * want.abs().max(), err
    assert err <= LORA_EFFECT_FRACTION * (want - plain).abs().max(), (err, (want - plain).abs().max())
    ids = torch.tensor([[49406, 320, 1929, 49407] + [49407] * 73])
    enc_want = tuned_clip.encoders[0](ids).last_hidden_state
    enc_got = rebuilt.clip.encoders[0](ids).last_hidden_state
    assert (enc_got - enc_want).abs().max() <= LORA_REL_TOL * enc_want.abs().max() * 10
    # the base is untouched
    assert not any(torch.equal(got_params[n], dict(base.model.unet.named_parameters())[n]) for n in list(shifts)[:5])
