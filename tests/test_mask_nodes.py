"""MASK nodes (nodes/mask/): known answers on small tensors, and through the engine."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from PIL import Image

from latentgraph import ExecutionContext, InterruptFlag, NodeInputError, Settings
from latentgraph.nodes.mask import convert, files, shape
from latentgraph.nodes.mask.convert import CropMask, ImageColorToMask, ImageToMask, SolidMask
from latentgraph.nodes.mask.files import LoadImageMask, MaskPreview
from latentgraph.nodes.mask.shape import GrowMask, MaskComposite
from latentgraph.plugins import load_plugins
from latentgraph.testing import assert_success, make_engine


@pytest.fixture(scope="module")
def registry():
    return load_plugins(entry_points=False).registry


@pytest.fixture
def settings(tmp_path):
    s = Settings.from_env(tmp_path, environ={}, device="cpu")
    for folder in (s.input_dir, s.output_dir, s.temp_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return s


def ctx_for(settings, registry, events=None):
    return ExecutionContext(
        prompt_id="p", node_id="1", class_type="X", settings=settings, registry=registry,
        sink=(events.append if events is not None else [].append), interrupt=InterruptFlag(), extra={},
    )


def test_all_mask_nodes_registered(registry):
    for name in ("MaskToImage", "ImageToMask", "ImageColorToMask", "SolidMask", "InvertMask", "CropMask",
                 "MaskComposite", "FeatherMask", "GrowMask", "ThresholdMask", "MaskPreview", "LoadImageMask"):
        assert registry.get(name) is not None, name
    # one implementation of the two that nodes/latent_mask.py registers
    assert registry.get("ImageToMask") is ImageToMask and registry.get("SolidMask") is SolidMask


def test_mask_to_image_is_grey_and_round_trips():
    mask = torch.tensor([[[0.0, 0.25], [0.5, 1.0]]])
    image = convert.mask_to_image(mask)
    assert image.shape == (1, 2, 2, 3)
    assert torch.equal(image[..., 0], mask) and torch.equal(image[..., 1], mask) and torch.equal(image[..., 2], mask)
    assert torch.equal(ImageToMask().execute(None, image, "green")[0], mask)
    assert convert.mask_to_image(mask[0]).shape == (1, 2, 2, 3)  # [H, W] accepted


def test_image_color_to_mask_picks_exact_colour():
    image = torch.zeros(1, 2, 3, 3)
    image[0, 0, 1] = torch.tensor([1.0, 128 / 255, 0.0])  # 0xFF8000
    image[0, 1, 2] = torch.tensor([1.0, 127 / 255, 0.0])  # 0xFF7F00: a neighbour, not a match
    (mask,) = ImageColorToMask().execute(None, image, 0xFF8000)
    expected = torch.zeros(1, 2, 3)
    expected[0, 0, 1] = 1.0
    assert torch.equal(mask, expected)
    assert ImageColorToMask().execute(None, image, 0)[0].sum() == 4  # black elsewhere


def test_invert_and_threshold():
    mask = torch.tensor([[[0.0, 0.5, 0.7, 1.0]]])
    assert torch.allclose(convert.invert(mask), torch.tensor([[[1.0, 0.5, 0.3, 0.0]]]))
    assert torch.equal(convert.threshold(mask, 0.5), torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]))  # strictly above


def test_crop_mask_window_and_edges():
    mask = torch.arange(20.0).reshape(1, 4, 5)
    (out,) = CropMask().execute(None, mask, x=1, y=2, width=3, height=5)
    assert torch.equal(out, mask[:, 2:4, 1:4])  # cut short at the bottom
    with pytest.raises(NodeInputError) as err:
        CropMask().execute(None, mask, x=5, y=0, width=2, height=2)
    assert err.value.input_name == "x"


@pytest.mark.parametrize(
    "operation, expected",
    # and/or/xor round first: 0.5 rounds to 0 (half to even, as ComfyUI's torch.round)
    [("multiply", 0.5), ("add", 1.0), ("subtract", 0.0), ("and", 0.0), ("or", 1.0), ("xor", 1.0)],
)
def test_mask_composite_lands_at_xy(operation, expected):
    dst = torch.full((1, 6, 8), 0.5)
    src = torch.ones(1, 2, 3)
    (out,) = MaskComposite().execute(None, dst, src, x=4, y=3, operation=operation)
    inside = torch.zeros(1, 6, 8, dtype=torch.bool)
    inside[:, 3:5, 4:7] = True
    assert torch.allclose(out[inside], torch.tensor(expected))
    assert torch.equal(out[~inside], dst[~inside])  # untouched outside the source
    assert torch.equal(dst, torch.full((1, 6, 8), 0.5))  # input not modified


def test_mask_composite_clips_at_edges_and_clamps():
    dst = torch.full((1, 4, 4), 0.8)
    src = torch.ones(1, 3, 3)
    out = shape.composite(dst, src, 2, 2, "add")
    assert torch.equal(out[:, 2:, 2:], torch.ones(1, 2, 2)) and out[:, :2].eq(0.8).all()
    assert torch.equal(shape.composite(dst, src, 9, 9, "add"), dst)  # no overlap: unchanged
    batch = shape.composite(torch.zeros(1, 2, 2), torch.stack([torch.ones(2, 2), torch.zeros(2, 2)]), 0, 0, "or")
    assert batch.shape == (2, 2, 2) and batch[0].eq(1).all() and batch[1].eq(0).all()


def test_feather_ramps_as_comfyui_does():
    """Left/top ramp 1/n … 1 from the edge; right/bottom carry ComfyUI's off-by-one (factor
    (k+1)/n on index −k: the first column/row gets 1/n, the last 2/n), kept for pixel parity
    (tests/test_comfyui_node_parity.py checks the numbers against ComfyUI itself)."""
    mask = torch.ones(1, 6, 10)
    out = shape.feather(mask, left=4, top=0, right=2, bottom=3)
    row = out[0, 1]  # a row bottom=3 leaves alone
    assert torch.allclose(row, torch.tensor([0.25 * 0.5, 0.5, 0.75, 1, 1, 1, 1, 1, 1, 1.0]))
    col = out[0, :, 5]
    assert torch.allclose(col, torch.tensor([1 / 3, 1.0, 1.0, 1.0, 1.0, 2 / 3]))
    assert torch.equal(shape.feather(mask, 0, 0, 0, 0), mask)
    assert shape.feather(mask, 100, 0, 0, 0)[0, 0, -1] == 1.0  # capped at the width


@pytest.mark.parametrize("tapered", [True, False])
@pytest.mark.parametrize("expand", [2, -1, 0])
def test_grow_mask_matches_grey_morphology(tapered, expand):
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(2, 9, 11, generator=g) > 0.7).float() * torch.rand(2, 9, 11, generator=g)
    c = 0 if tapered else 1
    kernel = np.array([[c, 1, c], [1, 1, 1], [c, 1, c]])
    expected = []
    for m in mask.numpy():
        for _ in range(abs(expand)):
            op = scipy.ndimage.grey_dilation if expand > 0 else scipy.ndimage.grey_erosion
            m = op(m, footprint=kernel)
        expected.append(torch.from_numpy(np.ascontiguousarray(m)))
    (out,) = GrowMask().execute(None, mask, expand, tapered)
    assert torch.allclose(out, torch.stack(expected))


def test_grow_single_pixel_shapes():
    dot = torch.zeros(1, 5, 5)
    dot[0, 2, 2] = 1.0
    cross = shape.grow(dot, 1, tapered_corners=True)
    assert cross.sum() == 5 and cross[0, 1, 1] == 0
    square = shape.grow(dot, 1, tapered_corners=False)
    assert square.sum() == 9
    assert shape.grow(square, -1, tapered_corners=False).sum() == 1


def test_solid_mask_and_threshold_through_engine(tmp_path):
    settings = Settings.from_env(tmp_path / "d", environ={}, device="cpu")
    engine = make_engine(settings)
    prompt = {
        "1": {"class_type": "SolidMask", "inputs": {"value": 0.6, "width": 4, "height": 3}},
        "2": {"class_type": "ThresholdMask", "inputs": {"mask": ["1", 0], "value": 0.5}},
        "3": {"class_type": "InvertMask", "inputs": {"mask": ["2", 0]}},
        "4": {"class_type": "MaskToImage", "inputs": {"mask": ["3", 0]}},
        "5": {"class_type": "MaskPreview", "inputs": {"mask": ["2", 0]}},
    }
    result = assert_success(engine.run(prompt))
    assert result.outputs["5"]["images"][0]["type"] == "temp"
    preview = Image.open(settings.temp_dir / result.outputs["5"]["images"][0]["filename"])
    assert preview.size == (4, 3) and preview.convert("L").getpixel((0, 0)) == 255


def test_load_image_mask_channels(settings, registry):
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 1] = 51
    rgba[..., 3] = 0
    rgba[0, 0, 3] = 255  # one opaque pixel
    Image.fromarray(rgba, "RGBA").save(settings.input_dir / "m.png")
    Image.fromarray(rgba[..., :3], "RGB").save(settings.input_dir / "rgb.png")
    node, ctx = LoadImageMask(), ctx_for(settings, registry)
    (alpha,) = node.execute(ctx, "m.png", "alpha")
    expected = torch.ones(1, 2, 3)
    expected[0, 0, 0] = 0.0  # opaque = not masked
    assert torch.equal(alpha, expected)
    assert torch.equal(node.execute(ctx, "m.png", "red")[0], torch.ones(1, 2, 3))
    assert torch.allclose(node.execute(ctx, "m.png", "green")[0], torch.full((1, 2, 3), 0.2))
    assert torch.equal(node.execute(ctx, "m.png", "blue")[0], torch.zeros(1, 2, 3))
    assert torch.equal(node.execute(ctx, "rgb.png", "alpha")[0], torch.zeros(1, 2, 3))  # no alpha: nothing masked
    assert "m.png" in LoadImageMask.spec.inputs[0].resolve_choices(settings, registry)
    assert LoadImageMask.check_inputs(settings, {"image": "nope.png", "channel": "red"})
    assert LoadImageMask.fingerprint(settings, {"image": "m.png", "channel": "red"})
    with pytest.raises(NodeInputError):
        node.execute(ctx, "nope.png", "red")


def test_mask_preview_writes_temp_png(settings, registry):
    mask = torch.zeros(1, 4, 6)
    mask[0, :, 3:] = 1.0
    result = MaskPreview().execute(ctx_for(settings, registry), mask)
    (entry,) = result.ui["images"]
    img = Image.open(settings.temp_dir / entry["subfolder"] / entry["filename"]).convert("L")
    assert img.size == (6, 4) and img.getpixel((0, 0)) == 0 and img.getpixel((5, 3)) == 255
    assert files.MASK_CHANNELS[0] == "alpha"
