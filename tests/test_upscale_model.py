"""Upscale models (nodes/image/upscale_model.py): a tiny ESRGAN made here with random weights,
saved as safetensors (and as a plain-tensor .pth), loaded through spandrel, run tiled."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from latentgraph import ExecutionContext, InterruptFlag, NodeInputError, Settings
from latentgraph.events import NodeProgress
from latentgraph.nodes.image import upscale_model as um
from latentgraph.plugins import load_plugins
from latentgraph.testing import assert_success, make_engine

try:
    spandrel = um.import_spandrel()
except ImportError:  # pragma: no cover - CI installs it (pip install --no-deps spandrel einops)
    pytest.skip("spandrel is not installed", allow_module_level=True)


def tiny_esrgan(scale: int = 2) -> torch.nn.Module:
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    return ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale).eval()


@pytest.fixture
def settings(tmp_path):
    s = Settings.from_env(tmp_path / "d", environ={}, device="cpu")
    s.model_dirs(um.KIND)[0].mkdir(parents=True)
    return s


@pytest.fixture
def esrgan_file(settings):
    module = tiny_esrgan()
    path = settings.model_dirs(um.KIND)[0] / "tiny-esrgan-x2.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path, module


def ctx_for(settings, events):
    return ExecutionContext(prompt_id="p", node_id="1", class_type="ImageUpscaleWithModel", settings=settings,
                            registry=load_plugins(entry_points=False).registry, sink=events.append,
                            interrupt=InterruptFlag(), extra={})


def test_loader_reads_safetensors_through_spandrel(settings, esrgan_file):
    path, module = esrgan_file
    assert "tiny-esrgan-x2.safetensors" in um._model_choices(settings, None)
    (model,) = um.UpscaleModelLoader().execute(ctx_for(settings, []), "tiny-esrgan-x2.safetensors")
    assert isinstance(model, spandrel.ImageModelDescriptor)
    assert model.architecture.id == "ESRGAN" and model.scale == 2
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model(x), module(x).clamp(0, 1), atol=1e-6)  # the descriptor clamps


def test_pth_only_as_plain_tensors(settings):
    folder = settings.model_dirs(um.KIND)[0]
    torch.save(tiny_esrgan().state_dict(), folder / "plain.pth")
    (model,) = um.UpscaleModelLoader().execute(ctx_for(settings, []), "plain.pth")
    assert model.scale == 2

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(folder / "evil.pth", "wb") as fh:
        pickle.dump({"x": Payload()}, fh, protocol=2)
    with pytest.raises(NodeInputError, match="refusing"):
        um.UpscaleModelLoader().execute(ctx_for(settings, []), "evil.pth")
    save_file({"foo": torch.zeros(2)}, str(folder / "notamodel.safetensors"))
    with pytest.raises(NodeInputError, match="spandrel"):
        um.UpscaleModelLoader().execute(ctx_for(settings, []), "notamodel.safetensors")


def test_tile_starts_cover_with_overlap():
    assert um.tile_starts(100, 512, 32) == [0]
    starts = um.tile_starts(1000, 512, 32)
    assert starts[0] == 0 and starts[-1] == 1000 - 512
    assert all(b - a <= 512 - 32 for a, b in zip(starts, starts[1:]))


def test_tiled_equals_whole_for_a_pointwise_upscaler():
    """A tile-independent function (nearest ×2, then ×0.5) must come out identical when tiled."""
    def fn(t):
        return torch.nn.functional.interpolate(t, scale_factor=2, mode="nearest") * 0.5

    x = torch.rand(2, 3, 37, 53)
    seen = []
    tiled = um.upscale_tiled(x, fn, 2.0, tile=16, overlap=4, progress=lambda d, t: seen.append((d, t)))
    assert torch.allclose(tiled, fn(x), atol=1e-6)
    n = um.tile_count(37, 53, 16, 4)
    assert seen[-1] == (2 * n, 2 * n) and len(seen) == 2 * n


def test_upscale_node_tiled_matches_untiled_within_tolerance(settings, esrgan_file):
    _, module = esrgan_file
    model = um.load_upscale_model(esrgan_file[0])
    image = torch.rand(1, 24, 20, 3)
    whole = um.upscale_with_model(model, image, "cpu", tile=512)
    tiled = um.upscale_with_model(model, image, "cpu", tile=16, overlap=8)
    assert whole.shape == tiled.shape == (1, 48, 40, 3)
    assert whole.min() >= 0 and whole.max() <= 1
    # a convolutional net sees less context at tile seams: close, not equal
    assert (whole - tiled).abs().mean() < 0.02


def test_upscale_node_reports_progress_and_halves_tile_on_oom(settings, esrgan_file, monkeypatch):
    model = um.load_upscale_model(esrgan_file[0])
    calls = []
    real = um.upscale_tiled

    def flaky(pixels, fn, scale, tile, overlap, progress):
        calls.append(tile)
        if tile > 128:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(pixels, fn, scale, tile, overlap, progress)

    monkeypatch.setattr(um, "upscale_tiled", flaky)
    events = []
    (out,) = um.ImageUpscaleWithModel().execute(ctx_for(settings, events), model, torch.rand(1, 8, 8, 4))
    assert calls == [512, 256, 128] and out.shape == (1, 16, 16, 3)  # RGBA in: the model's 3 channels
    assert [(e.value, e.max) for e in events if isinstance(e, NodeProgress)] == [(1, 1)]

    monkeypatch.setattr(um, "upscale_tiled", lambda *a: (_ for _ in ()).throw(torch.OutOfMemoryError("oom")))
    with pytest.raises(torch.OutOfMemoryError):
        um.ImageUpscaleWithModel().execute(ctx_for(settings, []), model, torch.rand(1, 8, 8, 3))


def test_bad_inputs(settings):
    with pytest.raises(NodeInputError) as err:
        um.ImageUpscaleWithModel().execute(ctx_for(settings, []), "nope", torch.rand(1, 4, 4, 3))
    assert err.value.input_name == "upscale_model"
    with pytest.raises(NodeInputError) as err:
        um.UpscaleModelLoader().execute(ctx_for(settings, []), "missing.safetensors")
    assert err.value.input_name == "model_name"


def test_through_engine(settings, esrgan_file):
    engine = make_engine(settings)
    prompt = {
        "1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "tiny-esrgan-x2.safetensors"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 6, "batch_size": 1, "color": 0xFF0000}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["1", 0], "image": ["2", 0]}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    result = assert_success(engine.run(prompt))
    from PIL import Image

    entry = result.outputs["4"]["images"][0]
    assert Image.open(settings.temp_dir / entry["subfolder"] / entry["filename"]).size == (16, 12)
