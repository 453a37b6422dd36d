"""Checkpoint loading: architecture detection, exact round trips, formats, errors, offline guarantee."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from latentgraph.errors import NodeInputError
from latentgraph.nodes.arch_detection import V_NORM_KEY, detect
from latentgraph.nodes.checkpoint_files import CheckpointError, open_weights
from latentgraph.nodes.checkpoints import BUILTIN_FORMATS, ModelFormat, check_compatible, load_checkpoint
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.model_configs import METADATA_KEY, load_shipped_config
from latentgraph.nodes.tiny_models import (
    diffusers_state_dicts,
    make_tiny_checkpoint,
    make_tiny_state_dict,
    original_state_dict,
    tiny_config,
)
from sd_helpers import SHIPPED_TINY, Env


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return Env(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def sd1(env):
    return env.run("LoadCheckpoint", ckpt_name=SHIPPED_TINY)


def _file_with(tmp_path: Path, tensors: dict, name="x.safetensors", metadata=None) -> Path:
    path = tmp_path / name
    save_file(tensors, str(path), metadata=metadata)
    return path


# -- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "family", "prediction"),
    [("sd1", "sd1", "epsilon"), ("sd2", "sd2", "epsilon"), ("sd2_v", "sd2", "v_prediction"), ("sdxl", "sdxl", "epsilon")],
)
def test_detects_each_architecture_from_keys_alone(tmp_path, arch, family, prediction):
    path = make_tiny_checkpoint(tmp_path / f"{arch}.safetensors", arch, with_metadata=False)
    det = detect(open_weights(path))
    assert (det.arch, det.prediction_type) == (family, prediction)
    assert det.reasons  # says why


@pytest.mark.parametrize(("width", "arch"), [(768, "sd1"), (1024, "sd2"), (2048, "sdxl")])
def test_unet_only_files_are_detected_by_cross_attention_width(tmp_path, width, arch):
    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    path = _file_with(tmp_path, {key: torch.zeros(8, width)})
    assert detect(open_weights(path)).arch == arch


def test_sdxl_is_recognised_by_label_embedding(tmp_path):
    path = _file_with(tmp_path, {"model.diffusion_model.label_emb.0.0.weight": torch.zeros(4, 4)})
    assert detect(open_weights(path)).arch == "sdxl"


def test_sd2_v_prediction_rules(tmp_path):
    base = {"cond_stage_model.model.token_embedding.weight": torch.zeros(4, 4)}
    spread = {V_NORM_KEY: torch.linspace(-1, 1, 64), **base}
    assert detect(open_weights(_file_with(tmp_path, spread, "a.safetensors"))).prediction_type == "v_prediction"
    flat = {V_NORM_KEY: torch.zeros(64), **base}
    assert detect(open_weights(_file_with(tmp_path, flat, "b.safetensors"))).prediction_type == "epsilon"
    spec = _file_with(tmp_path, flat, "c.safetensors", metadata={"modelspec.prediction_type": "v"})
    assert detect(open_weights(spec)).prediction_type == "v_prediction"


def test_v_pred_and_ztsnr_keys_set_the_schedule(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "x.safetensors", "sdxl", with_metadata=False)
    tensors = dict(open_weights(path).prefixed(""))
    tensors.update(v_pred=torch.zeros(0), ztsnr=torch.zeros(0))
    save_file(tensors, str(tmp_path / "vpred.safetensors"))
    loaded = load_checkpoint(tmp_path / "vpred.safetensors", Env(tmp_path / "e").settings)
    cfg = loaded.model.scheduler_config
    assert cfg["prediction_type"] == "v_prediction"
    assert cfg["rescale_betas_zero_snr"] is True and cfg["timestep_spacing"] == "trailing"


# -- loading -----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["sd1", "sd2", "sdxl"])
def test_original_layout_round_trip_is_exact(tmp_path, arch):
    """diffusers weights → original layout → loader: every tensor comes back unchanged."""
    cfg = tiny_config(arch)
    torch.manual_seed(7)
    unet, vae, encoders = diffusers_state_dicts(cfg)
    path = _file_with(tmp_path, original_state_dict(cfg, unet, vae, encoders), metadata={METADATA_KEY: cfg.to_json()})
    loaded = load_checkpoint(path, Env(tmp_path / "e").settings)
    assert loaded.arch == loaded.model.arch == loaded.clip.arch == loaded.vae.arch == cfg.arch

    def same(ref, module):
        got = module.state_dict()
        assert set(ref) == set(got)
        assert all(torch.equal(ref[k], got[k]) for k in ref)

    same(unet, loaded.model.unet)
    same(vae, loaded.vae.vae)
    for ref, enc in zip(encoders, loaded.clip.encoders):
        same(ref, enc)


def test_tiny_checkpoint_round_trip_generate_load_encode(env, sd1):
    model, clip, vae = sd1
    assert isinstance(model, DiffusionModel)
    assert model.arch == "sd1" and model.prediction_type == "epsilon"
    assert model.info["latent_downscale"] == 8 == vae.downscale_factor
    assert model.info["latent_channels"] == 4 and model.info["scaling_factor"] == pytest.approx(0.18215)
    assert model.scheduler_config["beta_schedule"] == "scaled_linear"
    assert model.device.type == "cpu" and model.dtype == torch.float32
    (cond,) = env.run("CLIPTextEncode", clip=clip, text="a photo of a cat")
    check_compatible(model, cond)
    check_compatible(model, clip)
    check_compatible(model, vae)
    with torch.no_grad():
        out = model.unet(torch.randn(1, 4, 8, 8), torch.tensor([999]), encoder_hidden_states=cond[0][0]).sample
        image = vae.vae.decode(torch.randn(1, 4, 8, 8)).sample
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()
    assert image.shape == (1, 3, 64, 64)


def test_generator_is_deterministic_and_small(tmp_path):
    a = make_tiny_checkpoint(tmp_path / "a.safetensors", "sd1", seed=0)
    b = make_tiny_checkpoint(tmp_path / "b.safetensors", "sd1", seed=0)
    c = make_tiny_checkpoint(tmp_path / "c.safetensors", "sd1", seed=1)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    shipped = Path(__file__).resolve().parents[1] / "nodes" / "data" / "models" / "checkpoints" / SHIPPED_TINY
    assert shipped.read_bytes() == a.read_bytes()  # the shipped file is reproducible
    assert a.stat().st_size < 7_000_000


def test_without_metadata_the_shapes_give_the_config(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "bare.safetensors", "sdxl", with_metadata=False)
    loaded = load_checkpoint(path, Env(tmp_path / "e").settings)
    cfg = tiny_config("sdxl")
    unet = loaded.model.unet.config
    assert list(unet.block_out_channels) == cfg.unet["block_out_channels"]
    assert unet.cross_attention_dim == 64 and unet.addition_time_embed_dim == 8
    assert [e.config.hidden_size for e in loaded.clip.encoders] == [32, 32]
    assert loaded.info["config_source"] == "shipped sdxl"


def test_pickle_checkpoint_with_plain_tensors_loads(tmp_path):
    state, _cfg = make_tiny_state_dict("sd1", 0)
    torch.save({"state_dict": state, "global_step": 10}, tmp_path / "m.ckpt")
    loaded = load_checkpoint(tmp_path / "m.ckpt", Env(tmp_path / "e").settings)
    assert loaded.arch == "sd1" and loaded.clip is not None and loaded.vae is not None


def test_diffusers_folder_loads_like_the_single_file(env, sd1, tmp_path):
    model, clip, vae = sd1
    folder = env.folder("checkpoints") / "tiny-diffusers"
    model.unet.save_pretrained(folder / "unet")
    vae.vae.save_pretrained(folder / "vae")
    clip.encoders[0].save_pretrained(folder / "text_encoder")
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(model.scheduler_config))
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "PNDMScheduler"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    assert "tiny-diffusers" in env.settings.list_models("checkpoints")
    model2, clip2, vae2 = env.run("LoadCheckpoint", ckpt_name="tiny-diffusers")
    assert model2.info["format"] == "diffusers" and model2.arch == "sd1"
    assert model2.scheduler_config == model.scheduler_config
    (folder / "scheduler" / "scheduler_config.json").unlink()  # optional: the family's schedule is used
    assert env.run("LoadCheckpoint", ckpt_name="tiny-diffusers")[0].scheduler_config["beta_schedule"] == "scaled_linear"
    (c1,) = env.run("CLIPTextEncode", clip=clip, text="same prompt")
    (c2,) = env.run("CLIPTextEncode", clip=clip2, text="same prompt")
    torch.testing.assert_close(c1[0][0], c2[0][0])
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([10])
    with torch.no_grad():
        torch.testing.assert_close(
            model.unet(x, t, encoder_hidden_states=c1[0][0]).sample, model2.unet(x, t, encoder_hidden_states=c1[0][0]).sample
        )


def test_dtype_comes_from_settings(tmp_path):
    env = Env(tmp_path, dtype="bf16")
    model, clip, vae = env.run("LoadCheckpoint", ckpt_name=SHIPPED_TINY)
    assert model.dtype == torch.bfloat16 and next(model.unet.parameters()).dtype == torch.bfloat16
    assert next(clip.encoders[0].parameters()).dtype == torch.bfloat16
    assert vae.dtype == torch.bfloat16


def test_loading_never_opens_a_network_connection(tmp_path, monkeypatch):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    env = Env(tmp_path)
    make_tiny_checkpoint(env.folder("checkpoints") / "xl.safetensors", "sdxl", with_metadata=False)
    for name in (SHIPPED_TINY, "xl.safetensors"):
        model, clip, _vae = env.run("LoadCheckpoint", ckpt_name=name)
        env.run("CLIPTextEncode", clip=clip, text="offline")


# -- the node ----------------------------------------------------------------------------------


def test_checkpoint_choices_list_the_shipped_model(env):
    node = env.registry.get("CheckpointLoaderSimple")
    assert node is env.registry.get("LoadCheckpoint")
    choices = node.spec.input_by_name["ckpt_name"].resolve_choices(env.settings, env.registry)
    assert SHIPPED_TINY in choices


def test_missing_checkpoint_lists_what_is_available(env):
    with pytest.raises(NodeInputError) as err:
        env.run("LoadCheckpoint", ckpt_name="sd_xl_base_1.0.safetensors")
    assert err.value.input_name == "ckpt_name"
    assert "not found" in str(err.value) and SHIPPED_TINY in str(err.value)


def test_fingerprint_changes_when_the_file_is_replaced(tmp_path):
    env = Env(tmp_path)
    path = make_tiny_checkpoint(env.folder("checkpoints") / "m.safetensors", "sd1", seed=0)
    node = env.registry.get("LoadCheckpoint")
    before = node.fingerprint(env.settings, {"ckpt_name": "m.safetensors"})
    assert before == node.fingerprint(env.settings, {"ckpt_name": "m.safetensors"})
    time.sleep(0.01)
    make_tiny_checkpoint(path, "sd1", seed=1)
    assert node.fingerprint(env.settings, {"ckpt_name": "m.safetensors"}) != before


def test_plugin_model_format_is_used(tmp_path):
    from latentgraph import hookimpl
    from latentgraph.plugins import load_plugins

    seen = []

    class Plugin:
        @staticmethod
        @hookimpl
        def register_model_formats():
            def load(path, settings):
                seen.append(path.name)
                return load_checkpoint(path.with_suffix(".safetensors"), settings, BUILTIN_FORMATS)

            return [ModelFormat("renamed", lambda p: p.suffix == ".mymodel", load, priority=10)]

    env = Env(tmp_path)
    env.host = load_plugins(entry_points=False, extra=[("fmt", Plugin())])
    env.registry = env.host.registry
    assert {"diffusers", "single_file", "renamed"} <= set(env.registry.model_formats)
    make_tiny_checkpoint(env.folder("checkpoints") / "m.safetensors", "sd1")
    (env.folder("checkpoints") / "m.mymodel").write_bytes(b"pointer")
    model, _clip, _vae = env.run("LoadCheckpoint", ckpt_name="m.mymodel")
    assert seen == ["m.mymodel"] and model.arch == "sd1"


# -- errors ------------------------------------------------------------------------------------


def test_truncated_safetensors_is_reported(env):
    src = Path(__file__).resolve().parents[1] / "nodes" / "data" / "models" / "checkpoints" / SHIPPED_TINY
    data = src.read_bytes()
    (env.folder("checkpoints") / "broken.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(NodeInputError) as err:
        env.run("LoadCheckpoint", ckpt_name="broken.safetensors")
    assert "truncated or corrupt" in str(err.value)


def test_unknown_architecture_is_reported(env):
    save_file({"transformer.blocks.0.weight": torch.zeros(2, 2)}, str(env.folder("checkpoints") / "llm.safetensors"))
    with pytest.raises(NodeInputError) as err:
        env.run("LoadCheckpoint", ckpt_name="llm.safetensors")
    assert "unknown model architecture" in str(err.value) and "transformer" in str(err.value)


def test_lora_loaded_as_checkpoint_says_so(env):
    from latentgraph.nodes.tiny_models import make_tiny_lora

    make_tiny_lora(env.folder("checkpoints") / "style.safetensors", "sd1")
    with pytest.raises(NodeInputError) as err:
        env.run("LoadCheckpoint", ckpt_name="style.safetensors")
    assert "is a LoRA" in str(err.value)


def test_malicious_pickle_is_refused_without_running_it(env, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"state_dict": {"a": torch.zeros(1)}, "payload": Evil()}, env.folder("checkpoints") / "evil.ckpt")
    with pytest.raises(NodeInputError) as err:
        env.run("LoadCheckpoint", ckpt_name="evil.ckpt")
    assert "refusing to load" in str(err.value) and "arbitrary code" in str(err.value)
    assert not marker.exists()


def test_incomplete_unet_is_reported(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "full.safetensors", "sd1")
    weights = open_weights(path)
    tensors = weights.prefixed("")
    del tensors["model.diffusion_model.middle_block.1.proj_out.weight"]
    save_file(tensors, str(tmp_path / "cut.safetensors"), metadata=weights.metadata)
    with pytest.raises(CheckpointError, match="UNet is incomplete"):
        load_checkpoint(tmp_path / "cut.safetensors", Env(tmp_path / "e").settings)


# -- compatibility -----------------------------------------------------------------------------


def test_mismatched_components_give_clear_errors(env, sd1, tmp_path):
    model, clip, vae = sd1
    make_tiny_checkpoint(env.folder("checkpoints") / "xl.safetensors", "sdxl")
    xl_model, xl_clip, xl_vae = env.run("LoadCheckpoint", ckpt_name="xl.safetensors")
    with pytest.raises(NodeInputError, match="SDXL model but the MODEL is SD1") as err:
        check_compatible(model, xl_clip)
    assert err.value.input_name == "clip"
    (xl_cond,) = env.run("CLIPTextEncode", clip=xl_clip, text="x")
    with pytest.raises(NodeInputError, match="64 wide") as err:
        check_compatible(model, xl_cond, input_name="positive")
    assert err.value.input_name == "positive"
    (sd1_cond,) = env.run("CLIPTextEncode", clip=clip, text="x")
    check_compatible(xl_model, xl_cond)
    with pytest.raises(NodeInputError):
        check_compatible(xl_model, sd1_cond)
    check_compatible(model, xl_vae)  # same latent space shape: allowed, as in ComfyUI
    with pytest.raises(NodeInputError, match="missing"):
        check_compatible(model, None, input_name="vae")


# -- VAE files ---------------------------------------------------------------------------------


def test_vae_loader_reads_original_and_diffusers_layouts(env, sd1):
    _model, _clip, vae = sd1
    src = Path(__file__).resolve().parents[1] / "nodes" / "data" / "models" / "checkpoints" / SHIPPED_TINY
    weights = open_weights(src)
    original = {k.removeprefix("first_stage_model."): v for k, v in weights.prefixed("first_stage_model.").items()}
    save_file(original, str(env.folder("vae") / "tiny-vae.safetensors"), metadata=weights.metadata)
    save_file(vae.vae.state_dict(), str(env.folder("vae") / "tiny-diffusers-vae.safetensors"), metadata=weights.metadata)
    save_file(original, str(env.folder("vae") / "tiny-xl-vae.safetensors"))
    ref = vae.vae.state_dict()
    for name in ("tiny-vae.safetensors", "tiny-diffusers-vae.safetensors"):
        (loaded,) = env.run("VAELoader", vae_name=name)
        got = loaded.vae.state_dict()
        assert all(torch.allclose(ref[k], got[k]) for k in ref), name
    (xl,) = env.run("VAELoader", vae_name="tiny-xl-vae.safetensors")
    assert xl.scaling_factor == pytest.approx(0.13025) and xl.downscale_factor == 8
    with pytest.raises(NodeInputError) as err:
        env.run("VAELoader", vae_name="nope.safetensors")
    assert "tiny-vae.safetensors" in str(err.value)


def test_shipped_configs_build_full_size_models_on_meta():
    from diffusers import AutoencoderKL, UNet2DConditionModel

    expected = {"sd1": 859_520_964, "sd2": 865_910_724, "sdxl": 2_567_463_684}
    for name, params in expected.items():
        cfg = load_shipped_config(name)
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(cfg.unet)
            vae = AutoencoderKL.from_config(cfg.vae)
        assert sum(p.numel() for p in unet.parameters()) == params, name
        assert sum(p.numel() for p in vae.parameters()) == 83_653_863


# -- through the engine ------------------------------------------------------------------------


def test_txt2img_workflow_with_lora_runs_caches_and_reloads_a_replaced_file(tmp_path):
    from latentgraph.engine import Engine
    from latentgraph.nodes.tiny_models import make_tiny_lora
    from latentgraph.settings import Settings

    ckpt = make_tiny_checkpoint(tmp_path / "models" / "checkpoints" / "mine.safetensors", "sd1", seed=0)
    make_tiny_lora(tmp_path / "models" / "loras" / "style.safetensors", "sd1")
    engine = Engine.create(settings=Settings.from_env(tmp_path), entry_points=False)
    wf = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "mine.safetensors"}},
        "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "style.safetensors",
                                                       "strength_model": 0.8, "strength_clip": 0.8}},
        "11": {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["10", 1], "stop_at_clip_layer": -2}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["11", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["11", 0]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 2, "cfg": 7.0, "sampler_name": "euler",
                                                    "scheduler": "normal", "denoise": 1.0, "model": ["10", 0],
                                                    "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "tiny", "images": ["8", 0]}},
    }
    first = engine.run(wf)
    assert first.status == "success", first.failure
    image = first.outputs["9"]["images"][0]
    assert (engine.settings.output_dir / image["filename"]).is_file()
    assert engine.run(wf).executed == []  # identical re-submit: everything from cache
    time.sleep(0.01)
    make_tiny_checkpoint(ckpt, "sd1", seed=5)  # replaced on disk: the loader and its dependants run again
    third = engine.run(wf)
    assert third.status == "success" and "4" in third.executed and "9" in third.executed


def test_clip_weights_without_the_text_model_level_load_too(tmp_path):
    """Checkpoints saved from newer transformers store ``cond_stage_model.transformer.encoder…``."""
    path = make_tiny_checkpoint(tmp_path / "a.safetensors", "sd1", with_metadata=False)
    tensors = {k.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."): v
               for k, v in open_weights(path).prefixed("").items()}
    save_file(tensors, str(tmp_path / "flat.safetensors"))
    settings = Env(tmp_path / "e").settings
    ref = load_checkpoint(path, settings).clip.encoders[0].state_dict()
    got = load_checkpoint(tmp_path / "flat.safetensors", settings).clip.encoders[0].state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
