"""Image I/O nodes: what a user sees on disk and in the returned tensors."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image

from latentgraph import ExecutionContext, InterruptFlag, NodeInputError, Settings
from latentgraph.nodes.images import ImageScale, LoadImage, PreviewImage, SaveImage, list_input_images
from latentgraph.pngmeta import PngMetadataError, read_png_text, read_workflow_from_png
from latentgraph.plugins import load_plugins

PROMPT = {"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}}}
WORKFLOW = {"last_node_id": 9, "nodes": [{"id": 9, "type": "SaveImage"}], "links": []}


@pytest.fixture(scope="module")
def registry():
    return load_plugins(entry_points=False).registry


@pytest.fixture
def settings(tmp_path):
    s = Settings.from_env(tmp_path)
    for folder in (s.input_dir, s.output_dir, s.temp_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return s


def make_ctx(settings, registry, extra=None):
    return ExecutionContext(
        prompt_id="p1",
        node_id="9",
        class_type="SaveImage",
        settings=settings,
        registry=registry,
        sink=[].append,
        interrupt=InterruptFlag(),
        extra=extra if extra is not None else {"prompt": PROMPT, "workflow": WORKFLOW},
    )


def gradient(batch=1, height=8, width=12, channels=3):
    ys = torch.linspace(0, 1, height)[:, None].expand(height, width)
    xs = torch.linspace(0, 1, width)[None, :].expand(height, width)
    planes = [ys, xs, (ys + xs) / 2, 1 - ys][:channels]
    return torch.stack(planes, dim=-1)[None].repeat(batch, 1, 1, 1)


# -- SaveImage ----------------------------------------------------------------------------------


def test_save_names_files_with_counter_and_reports_them(settings, registry):
    result = SaveImage().execute(make_ctx(settings, registry), images=gradient(batch=2), filename_prefix="run")
    assert result.ui == {
        "images": [
            {"filename": "run_00001_.png", "subfolder": "", "type": "output"},
            {"filename": "run_00002_.png", "subfolder": "", "type": "output"},
        ]
    }
    with Image.open(settings.output_dir / "run_00002_.png") as img:
        assert img.size == (12, 8) and img.mode == "RGB"


def test_save_counter_continues_after_highest_existing_file(settings, registry):
    (settings.output_dir / "run_00007_.png").write_bytes(b"old")
    (settings.output_dir / "run_00003_.png").write_bytes(b"old")
    (settings.output_dir / "runner_00050_.png").write_bytes(b"other prefix")
    (settings.output_dir / "run_notes.txt").write_text("not counted")
    result = SaveImage().execute(make_ctx(settings, registry), images=gradient(), filename_prefix="run")
    assert result.ui["images"][0]["filename"] == "run_00008_.png"
    assert (settings.output_dir / "run_00007_.png").read_bytes() == b"old"


def test_save_into_subfolder_creates_it_and_counts_there(settings, registry):
    ctx = make_ctx(settings, registry)
    first = SaveImage().execute(ctx, images=gradient(), filename_prefix="portraits/img")
    second = SaveImage().execute(ctx, images=gradient(), filename_prefix="portraits/img")
    other = SaveImage().execute(ctx, images=gradient(), filename_prefix="img")
    assert first.ui["images"][0] == {"filename": "img_00001_.png", "subfolder": "portraits", "type": "output"}
    assert second.ui["images"][0]["filename"] == "img_00002_.png"
    assert other.ui["images"][0] == {"filename": "img_00001_.png", "subfolder": "", "type": "output"}
    assert (settings.output_dir / "portraits" / "img_00002_.png").is_file()


def test_save_expands_size_variables(settings, registry):
    result = SaveImage().execute(make_ctx(settings, registry), images=gradient(), filename_prefix="%width%x%height%/img")
    assert result.ui["images"][0]["subfolder"] == "12x8"


def test_save_embeds_workflow_chunks_like_comfyui(settings, registry):
    extra = {"prompt": PROMPT, "workflow": WORKFLOW, "extra_pnginfo": {"workflow": {"ignored": True}, "note": {"a": 1}}}
    result = SaveImage().execute(make_ctx(settings, registry, extra), images=gradient(), filename_prefix="meta")
    path = settings.output_dir / result.ui["images"][0]["filename"]
    text = read_png_text(path)
    assert list(text) == ["prompt", "workflow", "note"]
    assert json.loads(text["prompt"]) == PROMPT
    found = read_workflow_from_png(path)
    assert found["prompt"] == PROMPT
    assert found["workflow"] == WORKFLOW  # the explicit editor workflow wins
    assert found["note"] == {"a": 1}


def test_save_takes_workflow_from_extra_pnginfo_as_comfyui_sends_it(settings, registry):
    extra = {"prompt": PROMPT, "extra_pnginfo": {"workflow": WORKFLOW}}
    result = SaveImage().execute(make_ctx(settings, registry, extra), images=gradient(), filename_prefix="meta")
    found = read_workflow_from_png(settings.output_dir / result.ui["images"][0]["filename"])
    assert found["workflow"] == WORKFLOW and found["prompt"] == PROMPT


def test_save_without_workflow_writes_no_chunks(settings, registry):
    result = SaveImage().execute(make_ctx(settings, registry, {}), images=gradient(), filename_prefix="bare")
    path = settings.output_dir / result.ui["images"][0]["filename"]
    assert read_workflow_from_png(path) == {"prompt": None, "workflow": None}


def test_same_inputs_give_byte_identical_png(settings, registry):
    ctx = make_ctx(settings, registry)
    a = SaveImage().execute(ctx, images=gradient(), filename_prefix="same")
    b = SaveImage().execute(ctx, images=gradient(), filename_prefix="same")
    name_a, name_b = a.ui["images"][0]["filename"], b.ui["images"][0]["filename"]
    assert name_a != name_b
    assert (settings.output_dir / name_a).read_bytes() == (settings.output_dir / name_b).read_bytes()


def test_saved_pixels_round_trip_exactly_through_load(settings, registry):
    pixels = torch.randint(0, 256, (1, 5, 7, 3)).float() / 255.0
    result = SaveImage().execute(make_ctx(settings, registry), images=pixels, filename_prefix="rt")
    image, mask = LoadImage().execute(make_ctx(settings, registry), image=f"{result.ui['images'][0]['filename']} [output]")
    assert torch.equal(image, pixels)
    assert torch.count_nonzero(mask) == 0


def test_save_accepts_half_precision_and_rgba(settings, registry):
    images = gradient(channels=4).half()
    result = SaveImage().execute(make_ctx(settings, registry), images=images, filename_prefix="rgba")
    with Image.open(settings.output_dir / result.ui["images"][0]["filename"]) as img:
        assert img.mode == "RGBA"


@pytest.mark.parametrize("prefix", ["../escape", "/tmp/abs", "a/../../escape", "..\\win", "", "folder/"])
def test_save_rejects_prefix_outside_output_folder(settings, registry, prefix):
    with pytest.raises(NodeInputError) as err:
        SaveImage().execute(make_ctx(settings, registry), images=gradient(), filename_prefix=prefix)
    assert err.value.input_name == "filename_prefix"
    assert not any(settings.base_dir.parent.glob("escape*"))


def test_save_rejects_symlink_leading_out(settings, registry, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    os.symlink(outside, settings.output_dir / "link")
    with pytest.raises(NodeInputError, match="outside"):
        SaveImage().execute(make_ctx(settings, registry), images=gradient(), filename_prefix="link/img")
    assert list(outside.iterdir()) == []


def test_save_reports_a_file_in_the_way_of_the_subfolder(settings, registry):
    (settings.output_dir / "taken").write_text("a file, not a folder")
    with pytest.raises(NodeInputError, match="cannot create") as err:
        SaveImage().execute(make_ctx(settings, registry), images=gradient(), filename_prefix="taken/img")
    assert err.value.input_name == "filename_prefix"


def test_save_rejects_non_image_input(settings, registry):
    with pytest.raises(NodeInputError) as err:
        SaveImage().execute(make_ctx(settings, registry), images=torch.zeros(2, 3), filename_prefix="x")
    assert err.value.input_name == "images"


def test_preview_writes_to_temp_folder(settings, registry):
    result = PreviewImage().execute(make_ctx(settings, registry), images=gradient(batch=2))
    entries = result.ui["images"]
    assert [e["type"] for e in entries] == ["temp", "temp"]
    assert all((settings.temp_dir / e["subfolder"] / e["filename"]).is_file() for e in entries)
    assert not any(settings.output_dir.iterdir())
    again = PreviewImage().execute(make_ctx(settings, registry), images=gradient())
    assert again.ui["images"][0]["filename"] not in {e["filename"] for e in entries}


# -- LoadImage ----------------------------------------------------------------------------------


def test_load_rgba_gives_rgb_image_and_inverted_alpha_mask(settings, registry):
    img = Image.new("RGBA", (4, 3), (255, 0, 0, 255))
    img.putpixel((1, 2), (0, 255, 0, 0))
    img.save(settings.input_dir / "cut.png")
    image, mask = LoadImage().execute(make_ctx(settings, registry), image="cut.png")
    assert image.shape == (1, 3, 4, 3) and image.dtype == torch.float32
    assert mask.shape == (1, 3, 4)
    assert image[0, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert mask[0, 2, 1] == 1.0 and mask[0, 0, 0] == 0.0


def test_load_grayscale_and_rgb_have_zero_mask(settings, registry):
    Image.new("L", (5, 4), 128).save(settings.input_dir / "gray.png")
    Image.new("RGB", (5, 4), (10, 20, 30)).save(settings.input_dir / "rgb.jpg", quality=100)
    image, mask = LoadImage().execute(make_ctx(settings, registry), image="gray.png")
    assert image.shape == (1, 4, 5, 3)
    assert torch.allclose(image, torch.full_like(image, 128 / 255))
    assert mask.shape == (1, 4, 5) and not mask.any()
    image, mask = LoadImage().execute(make_ctx(settings, registry), image="rgb.jpg")
    assert image.shape == (1, 4, 5, 3) and not mask.any()


def test_load_palette_image_with_transparency(settings, registry):
    img = Image.new("P", (3, 2), 0)
    img.putpalette([0, 0, 255, 255, 255, 0] + [0] * 762)
    img.putpixel((2, 1), 1)
    img.info["transparency"] = 1
    img.save(settings.input_dir / "pal.png", transparency=1)
    image, mask = LoadImage().execute(make_ctx(settings, registry), image="pal.png")
    assert image[0, 0, 0].tolist() == [0.0, 0.0, 1.0]
    assert mask[0].tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]


def test_load_16bit_grayscale_keeps_range(settings, registry):
    import numpy as np

    Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16)).save(settings.input_dir / "deep.png")
    image, _ = LoadImage().execute(make_ctx(settings, registry), image="deep.png")
    assert torch.allclose(image, torch.ones_like(image))


def test_load_honours_exif_orientation(settings, registry):
    """Orientation 6 (a phone held upright): the stored picture turns 90° clockwise to display.
    A red block at the stored top-left corner must end up at the displayed top-right (a turn the
    other way would put it bottom-left; a mirror, top-left)."""
    img = Image.new("RGB", (12, 4), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 4, 2))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    img.save(settings.input_dir / "phone.jpg", exif=exif, quality=100)
    image, mask = LoadImage().execute(make_ctx(settings, registry), image="phone.jpg")
    assert image.shape == (1, 12, 4, 3) and mask.shape == (1, 12, 4)
    red = image[0, :, :, 0] > 0.5
    assert red[1, 3] and red[2, 2]  # displayed top-right
    assert not red[1, 0] and not red[10, 0] and not red[10, 3]


def test_load_animation_gives_batch_of_frames(settings, registry):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(settings.input_dir / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    image, mask = LoadImage().execute(make_ctx(settings, registry), image="anim.gif")
    assert image.shape == (3, 4, 4, 3) and mask.shape == (3, 4, 4)
    assert image[1, 0, 0].argmax() == 1 and image[2, 0, 0].argmax() == 2


def test_load_from_subfolder_and_listing(settings, registry):
    (settings.input_dir / "sub").mkdir()
    (settings.input_dir / ".hidden").mkdir()
    Image.new("RGB", (2, 2)).save(settings.input_dir / "sub" / "b.png")
    Image.new("RGB", (2, 2)).save(settings.input_dir / "a.webp")
    Image.new("RGB", (2, 2)).save(settings.input_dir / ".hidden" / "c.png")
    (settings.input_dir / "notes.txt").write_text("no")
    assert list_input_images(settings, registry) == ["a.webp", "sub/b.png"]
    spec = LoadImage.spec.input_by_name["image"]
    assert spec.resolve_choices(settings, registry) == ["a.webp", "sub/b.png"]
    image, _ = LoadImage().execute(make_ctx(settings, registry), image="sub/b.png")
    assert image.shape == (1, 2, 2, 3)


def test_load_missing_file_names_input_and_lists_available(settings, registry):
    Image.new("RGB", (2, 2)).save(settings.input_dir / "there.png")
    with pytest.raises(NodeInputError) as err:
        LoadImage().execute(make_ctx(settings, registry), image="gone.png")
    assert err.value.input_name == "image"
    assert "gone.png" in str(err.value) and "there.png" in str(err.value)
    assert LoadImage.check_inputs(settings, {"image": "gone.png"})


def test_load_rejects_escape_and_non_images(settings, registry, tmp_path_factory):
    outside = tmp_path_factory.mktemp("secret")
    Image.new("RGB", (2, 2)).save(outside / "s.png")
    os.symlink(outside / "s.png", settings.input_dir / "link.png")
    (settings.input_dir / "fake.png").write_bytes(b"definitely not a png")
    for name in ("../secret.png", str(outside / "s.png"), "link.png"):
        with pytest.raises(NodeInputError, match="outside") as err:
            LoadImage().execute(make_ctx(settings, registry), image=name)
        assert err.value.input_name == "image"
    assert "link.png" not in list_input_images(settings)
    with pytest.raises(NodeInputError, match="not an image") as err:
        LoadImage().execute(make_ctx(settings, registry), image="fake.png")
    assert err.value.input_name == "image"
    assert LoadImage.check_inputs(settings, {"image": "fake.png"})
    assert LoadImage.check_inputs(settings, {"image": "../secret.png"})


def test_fingerprint_follows_file_content(settings):
    path = settings.input_dir / "edit.png"
    Image.new("RGB", (2, 2), (1, 2, 3)).save(path)
    first = LoadImage.fingerprint(settings, {"image": "edit.png"})
    assert first and LoadImage.fingerprint(settings, {"image": "edit.png"}) == first
    Image.new("RGB", (2, 2), (9, 9, 9)).save(path)
    assert LoadImage.fingerprint(settings, {"image": "edit.png"}) not in (None, first)
    assert LoadImage.check_inputs(settings, {"image": "edit.png"}) == []
    assert LoadImage.fingerprint(settings, {"image": "missing.png"}) is None


# -- ImageScale ---------------------------------------------------------------------------------


def scale(image, method="bilinear", width=0, height=0, crop="disabled"):
    (out,) = ImageScale().execute(None, image=image, upscale_method=method, width=width, height=height, crop=crop)
    return out


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"])
def test_scale_methods_give_requested_size_in_range(method):
    out = scale(gradient(batch=2, height=8, width=12), method, width=30, height=20)
    assert out.shape == (2, 20, 30, 3)
    # bicubic overshoots at edges, unclamped like ComfyUI's (its ringing stays well inside ±0.2)
    low, high = (-0.2, 1.2) if method == "bicubic" else (0.0, 1.0)
    assert out.min() >= low and out.max() <= high
    assert torch.allclose(out.mean(), gradient(height=8, width=12).mean(), atol=0.03)


def test_scale_zero_side_keeps_aspect_ratio():
    image = gradient(height=100, width=200)
    assert scale(image, width=50).shape == (1, 25, 50, 3)
    assert scale(image, height=30).shape == (1, 30, 60, 3)
    assert scale(image) is image


def test_scale_center_crop_keeps_middle():
    image = torch.zeros(1, 10, 30, 3)
    image[:, :, 10:20] = 1.0  # a white middle third
    out = scale(image, "nearest-exact", width=10, height=10, crop="center")
    assert out.shape == (1, 10, 10, 3)
    assert torch.all(out == 1.0)
    stretched = scale(image, "nearest-exact", width=10, height=10)
    assert stretched[0, 0, 0].sum() == 0


def test_scale_keeps_dtype_and_rejects_bad_choices():
    out = scale(gradient().half(), "bicubic", width=6, height=4)
    assert out.dtype == torch.float16
    with pytest.raises(NodeInputError) as err:
        scale(gradient(), "magic", width=6, height=4)
    assert err.value.input_name == "upscale_method"


# -- pngmeta ------------------------------------------------------------------------------------


def test_read_workflow_from_foreign_png_and_errors(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat, Steps: 20")
    info.add_text("workflow", json.dumps(WORKFLOW))
    Image.new("RGB", (2, 2)).save(tmp_path / "comfy.png", pnginfo=info)
    found = read_workflow_from_png(tmp_path / "comfy.png")
    assert found["workflow"] == WORKFLOW and found["prompt"] is None
    assert found["parameters"] == "a cat, Steps: 20"
    assert read_workflow_from_png((tmp_path / "comfy.png").read_bytes())["workflow"] == WORKFLOW

    Image.new("RGB", (2, 2)).save(tmp_path / "photo.jpg")
    with pytest.raises(PngMetadataError, match="not a PNG"):
        read_workflow_from_png(tmp_path / "photo.jpg")
    broken = PngImagePlugin.PngInfo()
    broken.add_text("prompt", "{not json")
    Image.new("RGB", (2, 2)).save(tmp_path / "broken.png", pnginfo=broken)
    with pytest.raises(PngMetadataError, match="prompt"):
        read_workflow_from_png(tmp_path / "broken.png")


# -- end to end through the engine ------------------------------------------------------------


@pytest.fixture
def engine(settings):
    from latentgraph.engine import Engine

    return Engine.create(settings, entry_points=False)


def scale_workflow(prefix="e2e/img"):
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
        "2": {
            "class_type": "ImageScale",
            "inputs": {"image": ["1", 0], "upscale_method": "lanczos", "width": 0, "height": 6, "crop": "disabled"},
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def test_engine_load_scale_save_then_cache_then_file_edit(engine, settings):
    Image.new("RGB", (8, 4), (200, 100, 50)).save(settings.input_dir / "photo.png")
    wf = scale_workflow()
    first = engine.run(wf, extra={"extra_pnginfo": {"workflow": WORKFLOW}})
    assert first.status == "success", first.failure
    saved = first.outputs["3"]["images"]
    assert saved == [{"filename": "img_00001_.png", "subfolder": "e2e", "type": "output"}]
    path = settings.output_dir / "e2e" / "img_00001_.png"
    with Image.open(path) as img:
        assert img.size == (12, 6)
    meta = read_workflow_from_png(path)
    assert meta["prompt"]["3"]["class_type"] == "SaveImage" and meta["workflow"] == WORKFLOW

    again = engine.run(wf)
    assert again.executed == [] and sorted(again.cached) == ["1", "2", "3"]
    assert again.outputs["3"]["images"] == saved
    assert sorted(p.name for p in (settings.output_dir / "e2e").iterdir()) == ["img_00001_.png"]

    Image.new("RGB", (8, 4), (0, 0, 0)).save(settings.input_dir / "photo.png")
    edited = engine.run(wf)
    assert sorted(edited.executed) == ["1", "2", "3"]
    assert edited.outputs["3"]["images"][0]["filename"] == "img_00002_.png"


def test_engine_reports_missing_image_and_escaping_prefix(engine, settings):
    from latentgraph.errors import WorkflowInvalid

    Image.new("RGB", (2, 2)).save(settings.input_dir / "other.png")
    with pytest.raises(WorkflowInvalid) as err:
        engine.run(scale_workflow())
    assert "photo.png" in err.value.report.format()

    Image.new("RGB", (2, 2)).save(settings.input_dir / "photo.png")
    result = engine.run(scale_workflow(prefix="../../outside"))
    assert result.status == "error"
    assert result.failure.node_id == "3" and result.failure.input_name == "filename_prefix"


def test_load_image_accepts_comfyui_folder_annotations_and_names_the_input(tmp_path):
    """``"name.png [output]"`` is not among the listed choices but is valid; a missing file names 'image'."""
    from latentgraph import Settings
    from latentgraph.engine import Engine
    from latentgraph.object_info import object_info

    settings = Settings.from_env(tmp_path, environ={})
    settings.output_dir.mkdir(parents=True)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(settings.output_dir / "made.png")
    engine = Engine.create(settings, entry_points=False)
    wf = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "made.png [output]"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    assert engine.run(wf).ok
    wf["1"]["inputs"]["image"] = "nope.png"
    graph, report = engine.check(wf)
    (err,) = report.node_errors["1"].errors
    assert graph is None and err.extra_info["input_name"] == "image"
    assert object_info(engine.registry, settings, "LoadImage")["LoadImage"]["input"]["required"]["image"][1]["image_upload"] is True
