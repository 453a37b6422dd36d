"""The fast load path builds the same models as diffusers, and start-up stays light.

Checkpoints are built on the ``meta`` device and given the file's tensors (no random
initialisation); these tests check what that must not cost: every parameter and buffer is real
(none left on ``meta``, ``position_ids`` made, not read), and the models are bit-identical —
weights and outputs — to what diffusers' own ``from_single_file`` (the slow reference: random init,
then a copy) builds from the same tiny file (SDXL's OpenCLIP encoder: to the weights the file was
written from, see ``_written_encoder``). Speed itself is measured by ``bench/load.py``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latentgraph.nodes.checkpoint_files import open_weights
from latentgraph.nodes.checkpoints import load_checkpoint, load_folder_model
from latentgraph.nodes.model_configs import METADATA_KEY, ArchConfig, write_config_folder
from latentgraph.nodes.tiny_models import diffusers_state_dicts, make_tiny_checkpoint
from sd_helpers import Env

ROOT = Path(__file__).resolve().parents[1]
#: Optional or server-only modules a CLI start must not import (``run`` neither, until a node needs them).
HEAVY_OPTIONAL = ("kornia", "spandrel", "ray", "playwright", "aiohttp", "matplotlib", "cv2", "torchvision")
#: Also not at registry time: the model libraries, imported by the first node that loads a model.
NOT_AT_REGISTRY = (*HEAVY_OPTIONAL, "scipy", "diffusers", "transformers")


def _meta_tensors(module: torch.nn.Module) -> list[str]:
    named = [*module.named_parameters(), *module.named_buffers()]
    return [name for name, t in named if t.is_meta]


def _assert_same_tensors(ours: torch.nn.Module, ref: torch.nn.Module, what: str) -> None:
    a = {**dict(ours.named_parameters()), **dict(ours.named_buffers())}
    b = {**dict(ref.named_parameters()), **dict(ref.named_buffers())}
    assert sorted(a) == sorted(b), what
    different = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    assert not different, f"{what}: {len(different)} tensors differ, e.g. {different[:3]}"


def _diffusers_reference(path: Path, cfg: ArchConfig, tmp_path: Path):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    folder = write_config_folder(cfg, tmp_path / "config")
    cls = StableDiffusionXLPipeline if cfg.arch == "sdxl" else StableDiffusionPipeline
    return cls.from_single_file(str(path), config=str(folder), local_files_only=True, torch_dtype=torch.float32)


def _written_encoder(cfg: ArchConfig, index: int, seed: int) -> torch.nn.Module:
    """Text encoder ``index`` with the weights the tiny file was written from (fp16-rounded).

    The reference for SDXL's OpenCLIP encoder: diffusers' ``from_single_file`` recognises it by a
    full-size layer index, so for a 5-layer encoder it silently keeps its random initialisation.
    """
    import transformers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _unet, _vae, encoders = diffusers_state_dicts(cfg)
    enc = cfg.text_encoders[index]
    model = getattr(transformers, enc.class_name)(transformers.CLIPTextConfig(**enc.config))
    model.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in encoders[index].items()})
    return model.eval()


@pytest.mark.parametrize("arch", ["sd1", "sd2", "sdxl"])
def test_single_file_load_is_real_and_identical_to_diffusers_from_single_file(tmp_path, arch):
    path = make_tiny_checkpoint(tmp_path / f"{arch}.safetensors", arch, seed=3)
    cfg = ArchConfig.from_json(open_weights(path).metadata[METADATA_KEY])
    loaded = load_checkpoint(path, Env(tmp_path / "env", dtype="fp32").settings)
    ref = _diffusers_reference(path, cfg, tmp_path)

    ours = {"unet": loaded.model.unet, "vae": loaded.vae.vae}
    theirs = {"unet": ref.unet, "vae": ref.vae}
    ref_encoders = [ref.text_encoder] + ([_written_encoder(cfg, 1, seed=3)] if arch == "sdxl" else [])
    for i, (mine, other) in enumerate(zip(loaded.clip.encoders, ref_encoders, strict=True)):
        ours[f"text_encoder_{i}"], theirs[f"text_encoder_{i}"] = mine, other
    for name, module in ours.items():
        assert _meta_tensors(module) == [], name
        _assert_same_tensors(module, theirs[name], name)
    position_ids = dict(loaded.clip.encoders[0].named_buffers()).get("text_model.embeddings.position_ids")
    if position_ids is not None:  # a buffer not in the file: made, and right
        assert torch.equal(position_ids.flatten(), torch.arange(position_ids.numel()))

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 49408, (1, 77), generator=gen)
    with torch.no_grad():
        for mine, other in zip(loaded.clip.encoders, ref_encoders):
            a, b = mine(ids, output_hidden_states=True), other(ids, output_hidden_states=True)
            assert torch.equal(a.hidden_states[-2], b.hidden_states[-2]) and torch.equal(a[0], b[0])
        width = loaded.model.cross_attention_dim
        x = torch.randn(1, 4, 8, 8, generator=gen)
        context = torch.randn(1, 77, width, generator=gen)
        extra = {}
        if arch == "sdxl":
            pooled = ref.unet.config.projection_class_embeddings_input_dim - 6 * ref.unet.config.addition_time_embed_dim
            extra = {"added_cond_kwargs": {"text_embeds": torch.randn(1, pooled, generator=gen),
                                           "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])}}
        t = torch.tensor([500])
        assert torch.equal(loaded.model.unet(x, t, context, **extra).sample, ref.unet(x, t, context, **extra).sample)
        assert torch.equal(loaded.vae.vae.decode(x).sample, ref.vae.decode(x).sample)


def test_fp16_file_loads_as_is_in_fp16_and_exactly_cast_in_fp32(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "sd1.safetensors", "sd1", dtype=torch.float16)
    half = load_checkpoint(path, Env(tmp_path / "a", dtype="fp16").settings)
    full = load_checkpoint(path, Env(tmp_path / "b", dtype="fp32").settings)
    file_ref = open_weights(path).get("model.diffusion_model.input_blocks.0.0.weight")
    w16, w32 = half.model.unet.conv_in.weight, full.model.unet.conv_in.weight
    assert w16.dtype == torch.float16 and w32.dtype == torch.float32
    assert torch.equal(w16, file_ref) and torch.equal(w32, file_ref.float())
    assert _meta_tensors(half.model.unet) == [] and _meta_tensors(full.model.unet) == []


def test_diffusers_folder_is_built_on_meta_and_equals_from_pretrained(tmp_path, caplog):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    caplog.set_level(logging.INFO, logger="latentgraph.checkpoints")
    loaded = load_checkpoint(make_tiny_checkpoint(tmp_path / "sd1.safetensors", "sd1", seed=5),
                             Env(tmp_path / "env", dtype="fp32").settings)
    loaded.model.unet.save_pretrained(tmp_path / "unet")
    loaded.vae.vae.save_pretrained(tmp_path / "vae", variant="fp16")  # only an fp16 variant: used
    for cls, sub in ((UNet2DConditionModel, "unet"), (AutoencoderKL, "vae")):
        mine = load_folder_model(cls, tmp_path / sub, torch.float32, torch.device("cpu"), sub)
        variant = "fp16" if sub == "vae" else None
        ref = cls.from_pretrained(tmp_path / sub, torch_dtype=torch.float32, local_files_only=True, variant=variant)
        assert _meta_tensors(mine) == [] and not mine.training
        _assert_same_tensors(mine, ref, sub)
    assert "from_pretrained" not in caplog.text  # built on meta, not through the fallback


def test_sharded_and_bin_diffusers_folders_load_on_meta(tmp_path, caplog):
    from diffusers import UNet2DConditionModel

    caplog.set_level(logging.INFO, logger="latentgraph.checkpoints")
    unet = load_checkpoint(make_tiny_checkpoint(tmp_path / "sd1.safetensors", "sd1"), Env(tmp_path / "env").settings).model.unet
    unet.save_pretrained(tmp_path / "sharded", max_shard_size="200KB")
    unet.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    assert (tmp_path / "bin" / "diffusion_pytorch_model.bin").is_file()
    for sub in ("sharded", "bin"):
        mine = load_folder_model(UNet2DConditionModel, tmp_path / sub, torch.float32, torch.device("cpu"), "UNet")
        assert _meta_tensors(mine) == []
        _assert_same_tensors(mine, unet, sub)
    assert "from_pretrained" not in caplog.text


def test_vae_folder_with_old_attention_names_still_loads(tmp_path, caplog):
    """Pre-0.14 diffusers names do not match the model: from_pretrained (which renames them) is used."""
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file, save_file

    loaded = load_checkpoint(make_tiny_checkpoint(tmp_path / "sd1.safetensors", "sd1"), Env(tmp_path / "env").settings)
    folder = tmp_path / "old-vae"
    loaded.vae.vae.save_pretrained(folder)
    state = load_file(folder / "diffusion_pytorch_model.safetensors")
    renames = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    old = {}
    for key, value in state.items():
        for new_name, old_name in renames.items():
            key = key.replace(new_name, old_name)
        old[key] = value
    assert any(".query." in k for k in old)
    save_file(old, str(folder / "diffusion_pytorch_model.safetensors"))
    caplog.set_level(logging.INFO, logger="latentgraph.checkpoints")
    vae = load_folder_model(AutoencoderKL, folder, torch.float32, torch.device("cpu"), "VAE")
    assert "loading through from_pretrained" in caplog.text and _meta_tensors(vae) == []
    _assert_same_tensors(vae, loaded.vae.vae, "vae")


def test_cli_start_imports_no_model_libraries_until_a_node_needs_them(tmp_path):
    """``validate`` builds the registry and checks a workflow: no diffusers/transformers/scipy, no
    optional extras. ``run`` then imports the model libraries, still none of the optional ones."""
    script = f"""
import json, sys
from latentgraph.cli import main
wf = {str(ROOT / 'workflows' / 'txt2img.json')!r}
seen = {{}}
assert main(['validate', wf]) == 0
seen['validate'] = sorted(m for m in {NOT_AT_REGISTRY!r} if m in sys.modules)
assert main(['run', wf, '--quiet', '--output-dir', {str(tmp_path / 'out')!r}, '--set', '3.steps=2']) == 0
seen['run'] = sorted(m for m in {HEAVY_OPTIONAL!r} if m in sys.modules)
seen['model_libraries'] = 'diffusers' in sys.modules and 'transformers' in sys.modules
print(json.dumps(seen))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {"validate": [], "run": [], "model_libraries": True}
