"""Acceptance: checkpoints with the real Stable Diffusion key layout and sizes, without any metadata.

The files are written by the test itself with random weights (no download): every tensor a real
SD1.5 checkpoint has, at its real shape (fp16, ~2 GB), and an SDXL checkpoint with the real block,
layer and key structure at reduced widths (full SDXL would need ~10 GB of RAM in fp32). Both must
be recognised from their keys alone, load offline, and run.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from latentgraph.nodes.checkpoint_files import open_weights
from latentgraph.nodes.checkpoints import check_compatible
from latentgraph.nodes.model_configs import ArchConfig, load_shipped_config
from latentgraph.nodes.tiny_models import original_state_dict
from sd_helpers import Env

pytestmark = pytest.mark.slow


def write_random_checkpoint(cfg: ArchConfig, path: Path, *, dtype=torch.float16, extra=None, seed=0) -> Path:
    """All tensors of ``cfg`` in the original layout, random, written without holding fp32 copies."""
    import transformers
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(cfg.unet).state_dict()
        vae = AutoencoderKL.from_config(cfg.vae).state_dict()
        encoders = [
            getattr(transformers, e.class_name)(transformers.CLIPTextConfig(**e.config)).state_dict()
            for e in cfg.text_encoders
        ]
        shapes = {k: tuple(v.shape) for k, v in original_state_dict(cfg, unet, vae, encoders).items()}
    # Drawing a billion normals takes a minute on a small CPU; tiling a 4M-value pool (different
    # offsets per tensor) gives the same spread of values in a few seconds.
    pool = torch.randn(1 << 22, generator=torch.Generator().manual_seed(seed)).to(dtype)
    tensors = {}
    offset = 0
    for key, shape in shapes.items():
        n = math.prod(shape)
        start = offset % pool.numel()
        if start + n <= pool.numel():
            values = pool[start : start + n].view(shape)
        else:
            values = pool.roll(-start).repeat(math.ceil(n / pool.numel()))[:n].view(shape)
        offset += 7_919 * (n + 1)
        if len(shape) >= 2:
            value = values / math.sqrt(math.prod(shape[1:]))
        elif key.endswith("weight"):  # norms
            value = 1 + 0.02 * values
        else:
            value = 0.02 * values
        tensors[key] = value.to(dtype)  # computed in the file dtype: no float32 temporaries
    tensors.update(extra or {})
    save_file(tensors, str(path))
    return path


def test_full_size_sd15_layout_loads_without_metadata_and_runs(tmp_path):
    env = Env(tmp_path)
    path = env.folder("checkpoints") / "v1-5-random.safetensors"
    cfg = load_shipped_config("sd1")
    extra = {
        # found in real SD1.5 files: training schedule buffers, EMA bookkeeping, CLIP position ids
        "alphas_cumprod": torch.linspace(1, 0, 1000),
        "betas": torch.linspace(0.00085, 0.012, 1000),
        "model_ema.decay": torch.tensor(0.9999),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(77)[None],
    }
    try:
        write_random_checkpoint(cfg, path, extra=extra)
        weights = open_weights(path)
        assert not weights.metadata
        # well-known names and shapes of the real SD1.5 checkpoint
        known = {
            "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
            "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
            "model.diffusion_model.input_blocks.4.0.skip_connection.weight": (640, 320, 1, 1),
            "model.diffusion_model.middle_block.1.proj_in.weight": (1280, 1280, 1, 1),
            "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
            "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
            "model.diffusion_model.output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1),
            "model.diffusion_model.time_embed.0.weight": (1280, 320),
            "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
            "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
            "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
            "first_stage_model.quant_conv.weight": (8, 8, 1, 1),
            "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072),
            "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,),
        }
        assert {k: weights.shape(k) for k in known} == known
        assert len([k for k in weights.keys if k.startswith("model.diffusion_model.")]) == 686
        assert len([k for k in weights.keys if k.startswith("first_stage_model.")]) == 248
        assert len([k for k in weights.keys if k.startswith("cond_stage_model.")]) == 197
        del weights

        model, clip, vae = env.run("LoadCheckpoint", ckpt_name=path.name)
        assert model.arch == "sd1" and model.info["config_source"] == "shipped sd1"
        assert model.info["latent_downscale"] == 8 and model.prediction_type == "epsilon"
        unet_cfg = model.unet.config
        assert list(unet_cfg.block_out_channels) == [320, 640, 1280, 1280]
        assert unet_cfg.attention_head_dim == 8 and unet_cfg.cross_attention_dim == 768
        assert clip.encoders[0].config.num_hidden_layers == 12

        (cond,) = env.run("CLIPTextEncode", clip=clip, text="a photograph of an astronaut riding a horse")
        assert cond[0][0].shape == (1, 77, 768)
        check_compatible(model, cond)
        with torch.no_grad():
            out = model.unet(torch.randn(1, 4, 8, 8), torch.tensor([500]), encoder_hidden_states=cond[0][0]).sample
            image = vae.vae.decode(torch.randn(1, 4, 8, 8)).sample
        assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()
        assert image.shape == (1, 3, 64, 64) and torch.isfinite(image).all()
    finally:
        path.unlink(missing_ok=True)


def reduced_sdxl() -> ArchConfig:
    """SDXL's real structure (3 levels, transformer depths 1/2/10, 12 + 32 text layers) at small widths."""
    cfg = load_shipped_config("sdxl")
    clip_l, clip_g = cfg.text_encoders
    unet = {
        **cfg.unet,
        "block_out_channels": [64, 128, 256],
        "attention_head_dim": [1, 2, 4],
        "cross_attention_dim": 64 + 128,
        "projection_class_embeddings_input_dim": 128 + 6 * 256,
    }
    encoders = (
        replace(clip_l, config={**clip_l.config, "hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 1}),
        replace(clip_g, config={**clip_g.config, "hidden_size": 128, "intermediate_size": 512,
                                "num_attention_heads": 2, "projection_dim": 128}),
    )
    vae = {**cfg.vae, "block_out_channels": [32, 32, 64, 64]}
    return replace(cfg, unet=unet, vae=vae, text_encoders=encoders)


def test_sdxl_layout_at_reduced_width_loads_without_metadata_and_runs(tmp_path):
    env = Env(tmp_path)
    path = env.folder("checkpoints") / "sdxl-structure.safetensors"
    write_random_checkpoint(reduced_sdxl(), path, extra={"conditioner.embedders.1.model.logit_scale": torch.tensor(4.6)})
    weights = open_weights(path)
    for key in (
        "model.diffusion_model.label_emb.0.0.weight",
        "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn1.to_q.weight",
        "model.diffusion_model.middle_block.1.transformer_blocks.9.ff.net.2.weight",
        "model.diffusion_model.output_blocks.2.2.conv.weight",
        "conditioner.embedders.0.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight",
        "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight",
        "conditioner.embedders.1.model.text_projection",
        "first_stage_model.decoder.up.3.upsample.conv.weight",
    ):
        assert key in weights, key
    assert weights.shape("conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight") == (384, 128)

    model, clip, vae = env.run("LoadCheckpoint", ckpt_name=path.name)
    assert model.arch == "sdxl" and model.info["scaling_factor"] == pytest.approx(0.13025)
    assert model.unet.config.transformer_layers_per_block == [1, 2, 10]
    assert model.unet.config.addition_time_embed_dim == 256
    assert [e.config.num_hidden_layers for e in clip.encoders] == [12, 32]
    (cond,) = env.run("CLIPTextEncode", clip=clip, text="a castle on a hill, " * 5)
    emb, extras = cond[0]
    assert emb.shape == (1, 77, 192) and extras["pooled_output"].shape == (1, 128)
    check_compatible(model, cond)
    time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])
    with torch.no_grad():
        out = model.unet(
            torch.randn(1, 4, 8, 8), torch.tensor([500]), encoder_hidden_states=emb,
            added_cond_kwargs={"text_embeds": extras["pooled_output"], "time_ids": time_ids},
        ).sample
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()
    assert vae.vae.decode(torch.randn(1, 4, 8, 8)).sample.shape == (1, 3, 64, 64)


def test_sd2_768_v_layout_with_24_openclip_layers_loads_without_metadata(tmp_path):
    """SD2 files keep all 24 OpenCLIP layers although SD2 conditions on the 23rd; 768-v files are
    told from 512 epsilon ones by the spread of one norm bias (no key or metadata says so)."""
    env = Env(tmp_path)
    base = load_shipped_config("sd2_v")
    (enc,) = base.text_encoders
    cfg = replace(
        base,
        unet={**base.unet, "block_out_channels": [64, 128, 256, 256], "attention_head_dim": [1, 2, 4, 4],
              "cross_attention_dim": 128},
        vae={**base.vae, "block_out_channels": [32, 32, 64, 64]},
        text_encoders=(replace(enc, config={**enc.config, "hidden_size": 128, "intermediate_size": 512,
                                            "num_attention_heads": 2}),),
    )
    path = env.folder("checkpoints") / "sd2-768-v-structure.safetensors"
    prefix = "cond_stage_model.model."
    draft = write_random_checkpoint(cfg, tmp_path / "draft.safetensors")
    tensors = dict(open_weights(draft).prefixed(""))
    for key in [k for k in tensors if k.startswith(prefix + "transformer.resblocks.22.")]:
        tensors[key.replace(".resblocks.22.", ".resblocks.23.")] = tensors[key].clone()  # the unused last layer
    tensors[prefix + "text_projection"] = torch.randn(128, 128, dtype=torch.float16)
    tensors["model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"] = torch.randn(64).half() * 0.3
    save_file(tensors, str(path))

    model, clip, _vae = env.run("LoadCheckpoint", ckpt_name=path.name)
    assert model.arch == "sd2" and model.prediction_type == "v_prediction"
    assert model.info["config_source"] == "shipped sd2_v" and model.unet.config.upcast_attention is True
    assert any("norm heuristic" in reason for reason in model.info["detection"])
    assert clip.encoders[0].config.num_hidden_layers == 23
    (cond,) = env.run("CLIPTextEncode", clip=clip, text="a lighthouse")
    assert cond[0][0].shape == (1, 77, 128)
    with torch.no_grad():
        out = model.unet(torch.randn(1, 4, 8, 8), torch.tensor([500]), encoder_hidden_states=cond[0][0]).sample
    assert torch.isfinite(out).all()
