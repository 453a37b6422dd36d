"""ComfyUI's other loaders (nodes/models/loaders.py): config form, UNet and text-encoder files,
SDXL's two encoders, unCLIP checkpoints, hypernetworks — offline, from the folders ComfyUI uses."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from sd_helpers import Env
from tiny_sd import make_ctx, random_conditioning, single_thread  # noqa: F401 (autouse fixture)

from latentgraph.errors import NodeInputError
from latentgraph.nodes.checkpoints import load_checkpoint
from latentgraph.nodes.models import loaders as ml
from latentgraph.nodes.models import saving as ms
from latentgraph.nodes.sampling.ksampler_nodes import KSampler
from latentgraph.nodes.tiny_models import make_tiny_checkpoint


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(tmp_path_factory.mktemp("loaders"))
    make_tiny_checkpoint(e.folder("checkpoints") / "tiny.safetensors", "sd1", seed=0, dtype=torch.float32)
    make_tiny_checkpoint(e.folder("checkpoints") / "tinyxl.safetensors", "sdxl", seed=0, dtype=torch.float32)
    (e.base / "models" / "configs").mkdir()
    (e.base / "models" / "configs" / "v1-inference.yaml").write_text("model: {}\n")
    return e


@pytest.fixture(scope="module")
def tiny(env):
    return load_checkpoint(env.folder("checkpoints") / "tiny.safetensors", env.settings)


def sample(model):
    ctx, _ = make_ctx()
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    return KSampler().execute(ctx, model, 3, 2, 4.0, "euler", "normal", random_conditioning("sd1", 1),
                              random_conditioning("sd1", 2), latent, 1.0)[0]["samples"]


def test_checkpoint_loader_config_form_lists_configs_and_loads(env, tiny):
    assert ml.CheckpointLoader.spec.input_by_name["config_name"].resolve_choices(env.settings, env.registry) == ["v1-inference.yaml"]
    model, clip, vae = ml.CheckpointLoader().execute(env.ctx(), "v1-inference.yaml", "tiny.safetensors")
    torch.testing.assert_close(sample(model), sample(tiny.model))
    with pytest.raises(NodeInputError) as err:
        ml.CheckpointLoader().execute(env.ctx(), "nope.yaml", "tiny.safetensors")
    assert err.value.input_name == "config_name"


def test_unclip_loader_gives_the_checkpoint_and_no_clip_vision_when_it_has_none(env, tiny):
    model, clip, vae, vision = ml.unCLIPCheckpointLoader().execute(env.ctx(), "tiny.safetensors")
    assert vision is None and model.arch == "sd1" and clip is not None and vae is not None


def test_unet_loader_reads_bare_original_keys_from_diffusion_models(env, tiny):
    sd = load_file(str(env.folder("checkpoints") / "tiny.safetensors"))
    from safetensors import safe_open

    with safe_open(str(env.folder("checkpoints") / "tiny.safetensors"), "pt") as f:
        meta = f.metadata()
    folder = env.base / "models" / "diffusion_models"
    folder.mkdir(exist_ok=True)
    bare = {k.removeprefix("model.diffusion_model."): v for k, v in sd.items() if k.startswith("model.diffusion_model.")}
    save_file(bare, str(folder / "bare.safetensors"), metadata=meta)
    (model,) = ml.UNETLoader().execute(env.ctx(), "bare.safetensors", "default")
    torch.testing.assert_close(sample(model), sample(tiny.model))
    save_file({"x": torch.zeros(1)}, str(folder / "junk.safetensors"))
    with pytest.raises(NodeInputError, match="not an SD1/SD2/SDXL UNet"):
        ml.UNETLoader().execute(env.ctx(), "junk.safetensors", "default")


def test_clip_loader_and_dual_clip_loader_read_clipsave_files(env, tiny):
    ctx = env.ctx()
    te = env.base / "models" / "text_encoders"
    ms.CLIPSave().execute(ctx, tiny.clip, filename_prefix="x/sd1")
    xl = load_checkpoint(env.folder("checkpoints") / "tinyxl.safetensors", env.settings)
    ms.CLIPSave().execute(ctx, xl.clip, filename_prefix="x/xl")
    te.mkdir(exist_ok=True)
    for p in (env.settings.output_dir / "x").iterdir():
        p.rename(te / p.name)
    (clip,) = ml.CLIPLoader().execute(ctx, "sd1_clip_l_00001_.safetensors", "stable_diffusion")
    assert clip.arch == "sd1" and clip.stop_at_layer == tiny.clip.stop_at_layer
    ids = torch.tensor([[49406, 320, 49407]])
    torch.testing.assert_close(clip.encoders[0](ids).last_hidden_state, tiny.clip.encoders[0](ids).last_hidden_state)
    with pytest.raises(NodeInputError) as err:
        ml.CLIPLoader().execute(ctx, "sd1_clip_l_00001_.safetensors", "sd3")
    assert err.value.input_name == "type"
    # SDXL: either order works, both encoders are needed
    (dual,) = ml.DualCLIPLoader().execute(ctx, "xl_clip_g_00001_.safetensors", "xl_clip_l_00001_.safetensors", "sdxl")
    assert dual.arch == "sdxl" and [type(e).__name__ for e in dual.encoders] == ["CLIPTextModel", "CLIPTextModelWithProjection"]
    for got, want in zip(dual.encoders, xl.clip.encoders):
        torch.testing.assert_close(got(ids)[0], want(ids)[0])
    with pytest.raises(NodeInputError, match="DualCLIPLoader"):
        ml.CLIPLoader().execute(ctx, "xl_clip_g_00001_.safetensors", "stable_diffusion")


def _hypernetwork(path, dims, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = {"activation_func": "relu", "is_layer_norm": False, "use_dropout": False, "activate_output": False}
    for dim in dims:
        pair = []
        for _ in range(2):
            pair.append({"linear.0.weight": torch.randn(2 * dim, dim, generator=g) * 0.1, "linear.0.bias": torch.zeros(2 * dim),
                         "linear.1.weight": torch.randn(dim, 2 * dim, generator=g) * 0.1, "linear.1.bias": torch.zeros(dim)})
        data[dim] = pair
    torch.save(data, str(path))


def test_hypernetwork_changes_the_picture_at_strength_1_and_not_at_0(env, tiny):
    folder = env.base / "models" / "hypernetworks"
    folder.mkdir(exist_ok=True)
    _hypernetwork(folder / "hn.pt", (32, 64))
    base = sample(tiny.model)
    (zero,) = ml.HypernetworkLoader().execute(env.ctx(), tiny.model, "hn.pt", 0.0)
    torch.testing.assert_close(sample(zero), base)
    (on,) = ml.HypernetworkLoader().execute(env.ctx(), tiny.model, "hn.pt", 1.0)
    assert (sample(on) - base).abs().max() > 1e-2
    torch.testing.assert_close(sample(tiny.model), base, atol=0, rtol=0)  # the shared UNet is unchanged
    _hypernetwork(folder / "other.pt", (768,))
    with pytest.raises(NodeInputError, match="fits"):
        ml.HypernetworkLoader().execute(env.ctx(), tiny.model, "other.pt", 1.0)


def test_diffusers_loader_names_the_folder_it_wants(env):
    with pytest.raises(NodeInputError) as err:
        ml.DiffusersLoader().execute(env.ctx(), "missing")
    assert err.value.input_name == "model_path" and "diffusers" in str(err.value)


def test_loader_nodes_and_the_models_routes_read_one_folder_table(tmp_path):
    """ComfyUI's extra sub-folders (t2i_adapter/ for controlnet, unet/ for diffusion_models, clip/
    for text_encoders) are listed and found by the loader nodes exactly as ``/models/{folder}``
    lists them (one table: latentgraph.model_folders)."""
    from latentgraph import model_folders
    from latentgraph.nodes.control.nodes import ControlNetLoader
    from latentgraph.nodes.loaders import resolve_model
    from latentgraph.settings import Settings

    settings = Settings.from_env(tmp_path / "data", environ={}, device="cpu")
    root = settings.model_roots[0]
    for sub, name in (("t2i_adapter", "adapter.safetensors"), ("controlnet", "canny.pth"), ("unet", "u.sft"),
                      ("clip", "l.safetensors")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / name).write_bytes(b"x")
    net_input = next(i for i in ControlNetLoader.spec.inputs if i.name == "control_net_name")
    assert net_input.choices(settings, None) == model_folders.list_folder(settings, "controlnet") == [
        "adapter.safetensors", "canny.pth"]
    unet_input = next(i for i in ml.UNETLoader.spec.inputs if i.name == "unet_name")
    assert unet_input.choices(settings, None) == model_folders.list_folder(settings, "unet") == ["u.sft"]
    assert resolve_model(settings, "controlnet", "adapter.safetensors", "control_net_name") == root / "t2i_adapter" / "adapter.safetensors"
    assert resolve_model(settings, "text_encoders", "l.safetensors", "clip_name") == root / "clip" / "l.safetensors"
    with pytest.raises(NodeInputError, match="t2i_adapter") as err:
        resolve_model(settings, "controlnet", "nope.safetensors", "control_net_name")
    assert err.value.input_name == "control_net_name"
