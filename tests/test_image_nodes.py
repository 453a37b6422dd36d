"""IMAGE nodes of ``latentgraph.nodes.image``: known answers on small tensors.

Expected numbers marked "ComfyUI 0.8.0" were produced by running ComfyUI's own node functions
(``comfy_extras.nodes_post_processing`` / ``nodes_morphology`` with kornia 0.9.0 /
``nodes_images``) on the same ``pattern`` images and are kept here as plain literals.
"""

from __future__ import annotations

import pytest
import torch

from latentgraph import NodeInputError
from latentgraph.nodes.image import NODES
from latentgraph.nodes.image.alpha import JoinImageWithAlpha, SplitImageWithAlpha, join_alpha, split_alpha
from latentgraph.nodes.image.batch import RebatchImages, batch_images, from_batch, rebatch, repeat_batch
from latentgraph.nodes.image.blend import ImageBlend, add_noise, blend, blend_mode, invert
from latentgraph.nodes.image.common import center_crop_to_aspect, match_channels
from latentgraph.nodes.image.compositing import (
    PORTER_DUFF_MODES,
    ImageCompositeMasked,
    composite,
    porter_duff,
    porter_duff_images,
)
from latentgraph.nodes.image.filters import (
    Morphology,
    bayer_matrix,
    blur,
    gaussian_kernel,
    morphology,
    quantize,
    sharpen,
)
from latentgraph.nodes.image.misc import EmptyImage, GetImageSize, LoadImageOutput, solid_image
from latentgraph.nodes.image.resize import (
    ImageScaleToMaxDimension,
    ImageScaleToTotalPixels,
    ResizeAndPadImage,
    fit_size,
    max_dimension_size,
    resize_and_pad,
    scale_by_size,
    total_pixels_size,
)
from latentgraph.nodes.image.transform import ImageFlip, ImageRotate, ImageStitch, crop, flip, rotate, stitch
from latentgraph.testing import WorkflowBuilder, assert_success, output_images

COMFY_NAMES = {
    "ImageScaleBy", "ImageScaleToTotalPixels", "ImageScaleToMaxDimension", "ImageCrop", "ImageFlip",
    "ImageRotate", "ImageStitch", "ImageInvert", "ImageBatch", "ImageFromBatch", "RepeatImageBatch",
    "RebatchImages", "GetImageSize", "ImageAddNoise", "ImageBlend", "ImageBlur", "ImageQuantize",
    "ImageSharpen", "Morphology", "ImageCompositeMasked", "JoinImageWithAlpha", "SplitImageWithAlpha",
    "PorterDuffImageComposite", "ResizeAndPadImage", "EmptyImage", "LoadImageOutput",
}  # fmt: skip


def pattern(b: int, h: int, w: int, c: int, k: int = 0) -> torch.Tensor:
    """``((3i + 5j + 7c + 11b + k) mod 13) / 12``: every pixel differs from its neighbours."""
    i = torch.arange(h)[None, :, None, None]
    j = torch.arange(w)[None, None, :, None]
    ch = torch.arange(c)[None, None, None, :]
    bb = torch.arange(b)[:, None, None, None]
    return (((3 * i + 5 * j + 7 * ch + 11 * bb + k) % 13) / 12.0).float()


def close(actual, expected, atol=2e-6):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float32),
                               torch.as_tensor(expected, dtype=torch.float32), atol=atol, rtol=0)


# -- registration -------------------------------------------------------------------------------


def test_every_catalogue_image_node_is_registered_under_comfyui_name(lg_engine):
    names = {n.spec.name for n in NODES}
    assert COMFY_NAMES <= names
    registry = lg_engine().registry
    for name in COMFY_NAMES:
        assert registry.get(name) is not None, name


def test_a_graph_of_image_nodes_runs(lg_engine, lg_settings):
    wf = WorkflowBuilder()
    empty = wf.add("EmptyImage", width=16, height=8, batch_size=1, color=0x00FF00)
    blurred = wf.add("ImageBlur", image=empty[0], blur_radius=2, sigma=1.0)
    inverted = wf.add("ImageInvert", image=blurred[0])
    flipped = wf.add("ImageFlip", image=inverted[0], flip_method="y-axis: horizontally")
    wf.add("SaveImage", images=flipped[0], filename_prefix="img")
    [out] = output_images(assert_success(lg_engine().run(wf.to_api())), lg_settings)
    assert out.size == (16, 8)
    assert out.getpixel((3, 3)) == (255, 0, 255)


# -- transforms ---------------------------------------------------------------------------------


def test_flip_vertically_and_horizontally():
    img = pattern(2, 3, 4, 3)
    up_down = flip(img, "x-axis: vertically")
    left_right = flip(img, "y-axis: horizontally")
    assert torch.equal(up_down[:, 0], img[:, 2]) and torch.equal(up_down[:, 2], img[:, 0])
    assert torch.equal(left_right[:, :, 0], img[:, :, 3]) and torch.equal(left_right[:, :, 3], img[:, :, 0])
    (node_out,) = ImageFlip().execute(None, image=img, flip_method="y-axis: horizontally")
    assert torch.equal(node_out, left_right)


def test_rotate_is_clockwise_and_four_quarter_turns_are_identity():
    img = torch.zeros(1, 2, 3, 1)
    img[0, 0, 0, 0] = 1.0  # top-left
    quarter = rotate(img, 1)
    assert quarter.shape == (1, 3, 2, 1)
    assert quarter[0, 0, 1, 0] == 1.0  # clockwise: the top-left corner goes to the top-right
    full = pattern(2, 3, 5, 3)
    turned = full
    for _ in range(4):
        (turned,) = ImageRotate().execute(None, image=turned, rotation="90 degrees")
    assert torch.equal(turned, full)
    assert torch.equal(rotate(full, 2), rotate(rotate(full, 1), 1))
    assert torch.equal(ImageRotate().execute(None, image=full, rotation="none")[0], full)


def test_crop_lands_at_xy_and_is_cut_at_the_border():
    img = pattern(1, 6, 8, 3)
    out = crop(img, 3, 2, 4, 1)
    assert torch.equal(out, img[:, 1:3, 4:7])
    edge = crop(img, 5, 5, 7, 5)  # x, y past the last column/row keep one pixel
    assert edge.shape == (1, 1, 1, 3) and torch.equal(edge, img[:, 5:6, 7:8])
    assert crop(img, 100, 100, 100, 100).shape == (1, 1, 1, 3)


def test_stitch_places_image2_on_the_chosen_side_with_spacing():
    a = torch.zeros(1, 4, 3, 3)
    b = torch.ones(1, 4, 2, 3)
    right = stitch(a, b, "right", match_image_size=False)
    assert right.shape == (1, 4, 5, 3) and right[0, :, :3].max() == 0 and right[0, :, 3:].min() == 1
    left = stitch(a, b, "left", match_image_size=False)
    assert left[0, :, :2].min() == 1 and left[0, :, 2:].max() == 0
    spaced = stitch(a, b, "right", match_image_size=False, spacing_width=3, spacing_color="red")
    assert spaced.shape == (1, 4, 3 + 4 + 2, 3)  # odd widths round up to even
    close(spaced[0, 0, 3:7], [[1.0, 0.0, 0.0]] * 4)
    down = stitch(a, torch.ones(2, 2, 3, 3), "down", match_image_size=False)
    assert down.shape == (2, 6, 3, 3)  # the shorter batch repeats its last image
    (unchanged,) = ImageStitch().execute(None, image1=a, direction="up")
    assert unchanged is a


def test_stitch_matches_size_keeping_the_aspect_and_pads_otherwise():
    a = pattern(1, 4, 5, 3)
    b = pattern(1, 6, 3, 3, 2)
    assert stitch(a, b, "right", match_image_size=True).shape == (1, 4, 5 + 2, 3)  # 3·4/6 = 2 columns
    assert stitch(a, b, "down", match_image_size=True).shape == (1, 4 + 10, 5, 3)
    padded = stitch(a, b, "right", match_image_size=False, spacing_color="white")
    assert padded.shape == (1, 6, 8, 3)
    assert padded[0, 0, :5].min() == 1.0 and padded[0, 5, :5].min() == 1.0  # a centred, white above/below
    assert torch.equal(padded[0, 1:5, :5], a[0])


# -- resizing -----------------------------------------------------------------------------------


def test_scale_to_total_pixels_hits_the_pixel_count():
    width, height = total_pixels_size(640, 480, 1.0)
    assert abs(width * height - 1024 * 1024) / (1024 * 1024) < 0.002
    assert abs(width / height - 4 / 3) < 0.01
    assert total_pixels_size(5, 4, 0.001, 8) == (40, 32)  # ComfyUI 0.8.0
    assert total_pixels_size(5, 4, 0.0002, 3) == (15, 12)  # ComfyUI 0.8.0
    (out,) = ImageScaleToTotalPixels().execute(None, image=pattern(1, 30, 40, 3), upscale_method="area",
                                               megapixels=0.01, resolution_steps=1)
    assert out.shape == (1, 89, 118, 3) and abs(89 * 118 - 0.01 * 1024 * 1024) < 100


def test_scale_to_max_dimension_and_scale_by():
    assert max_dimension_size(3, 6, 7) == (4, 7)  # ComfyUI 0.8.0: 3·7/6 = 3.5 → 4
    assert max_dimension_size(10, 4, 5) == (5, 2)
    assert max_dimension_size(4, 4, 9) == (9, 9)
    (out,) = ImageScaleToMaxDimension().execute(None, image=pattern(1, 6, 3, 3), upscale_method="bilinear", largest_size=10)
    assert out.shape == (1, 10, 5, 3)
    assert scale_by_size(5, 4, 1.7) == (8, 7)  # ComfyUI 0.8.0
    with pytest.raises(NodeInputError) as err:
        ImageScaleToMaxDimension().execute(None, image=pattern(1, 6, 3, 3), upscale_method="bilinear", largest_size=0)
    assert err.value.input_name == "largest_size"


def test_resize_and_pad_centres_the_image():
    img = torch.zeros(1, 2, 4, 3)  # black 4×2
    out = resize_and_pad(img, 8, 8, 1.0, "nearest-exact")
    assert fit_size(4, 2, 8, 8) == (8, 4)
    assert out.shape == (1, 8, 8, 3)
    assert out[0, 2:6].max() == 0.0  # the image, rows 2..5
    assert out[0, :2].min() == 1.0 and out[0, 6:].min() == 1.0  # white bands above and below
    (black,) = ResizeAndPadImage().execute(None, image=torch.ones(1, 4, 2, 3), target_width=6, target_height=4,
                                           padding_color="black", interpolation="area")
    assert black[0, :, 2:4].min() == 1.0 and black[0, :, :2].max() == 0.0 and black[0, :, 4:].max() == 0.0


def test_center_crop_keeps_comfyui_rounding():
    x = torch.arange(8.0).reshape(1, 1, 1, 8).expand(1, 1, 3, 8)
    assert center_crop_to_aspect(x, 1, 1).shape[-1] == 4  # round(2.5) = 2 columns off each side


# -- batches ------------------------------------------------------------------------------------


def test_batch_images_resizes_and_adds_alpha():
    out = batch_images(pattern(1, 4, 5, 3), pattern(1, 6, 9, 4))
    assert out.shape == (2, 4, 5, 4)
    assert out[0, ..., 3].min() == 1.0  # the RGB image got an opaque alpha
    assert torch.equal(out[0, ..., :3], pattern(1, 4, 5, 3)[0])


def test_from_batch_repeat_and_rebatch():
    img = pattern(5, 2, 2, 3)
    assert torch.equal(from_batch(img, 1, 2), img[1:3])
    assert torch.equal(from_batch(img, 9, 3), img[4:5])  # index and length cut to the batch
    rep = repeat_batch(img[:2], 3)
    assert rep.shape[0] == 6 and torch.equal(rep[4], img[0]) and torch.equal(rep[5], img[1])
    groups = rebatch([img[:2], img[2:]], 2)
    assert [g.shape[0] for g in groups] == [2, 2, 1]
    assert torch.equal(torch.cat(groups), img)
    (listed,) = RebatchImages().execute(None, images=[img], batch_size=[4])
    assert [g.shape[0] for g in listed] == [4, 1]


def test_get_image_size():
    assert GetImageSize().execute(None, image=pattern(3, 5, 7, 3)) == (7, 5, 3)


# -- per-pixel ----------------------------------------------------------------------------------


def test_invert_and_empty_image():
    img = pattern(1, 2, 3, 4)
    assert torch.equal(invert(img), 1 - img)
    (empty,) = EmptyImage().execute(None, width=3, height=2, batch_size=2, color=0xFF8000)
    assert empty.shape == (2, 2, 3, 3)
    close(empty[1, 1, 2], [1.0, 128 / 255, 0.0])
    assert torch.equal(solid_image(1, 1, 1, 0)[0, 0, 0], torch.zeros(3))


def test_blend_modes_follow_their_formulas():
    a, b = pattern(1, 3, 4, 3), pattern(1, 3, 4, 3, 5)
    close(blend_mode(a, b, "multiply"), a * b)
    close(blend_mode(a, b, "screen"), 1 - (1 - a) * (1 - b))
    close(blend(a, b, 0.0, "screen"), a)
    close(blend(a, b, 1.0, "normal"), b)
    close(blend(a, b, 0.3, "difference"), (a * 0.7 + (a - b) * 0.3).clamp(0, 1))
    # ComfyUI 0.8.0, ImageBlend(factor 0.7), row 1 of channel 0 of pattern(2, 4, 5, 3) onto pattern(..., 5)
    a, b = pattern(2, 4, 5, 3), pattern(2, 4, 5, 3, 5)
    close(blend(a, b, 0.7, "overlay")[0, 1, :, 0], [0.308333, 0.433333, 0.0, 0.611111, 0.755556])
    close(blend(a, b, 0.7, "soft_light")[0, 1, :, 0], [0.308333, 0.511111, 0.0, 0.523454, 0.768519])


def test_blend_fits_channels_and_size():
    rgba, rgb = pattern(1, 4, 4, 4), pattern(1, 2, 2, 3)
    (out,) = ImageBlend().execute(None, image1=rgba, image2=rgb, blend_factor=0.5, blend_mode="normal")
    assert out.shape == rgba.shape
    close(out[..., 3], (rgba[..., 3] + 1) / 2)  # the RGB image counts as opaque
    d, s = match_channels(pattern(1, 2, 2, 3), pattern(1, 2, 2, 1))
    assert s.shape[-1] == 3 and torch.equal(s[..., 2], s[..., 0])


def test_add_noise_is_seeded_and_equals_comfyui():
    img = pattern(1, 2, 3, 3)
    first = add_noise(img, 123, 0.3)
    assert torch.equal(first, add_noise(img, 123, 0.3))
    assert not torch.equal(first, add_noise(img, 124, 0.3))
    close(first[0, 0, :, 0], [0.101211, 0.691996, 1.0])  # ComfyUI 0.8.0
    assert add_noise(img, 2**64 - 1, 0.3).shape == img.shape


# -- filters ------------------------------------------------------------------------------------


def test_blur_of_a_constant_is_constant_and_kernel_is_normalised():
    flat = torch.full((1, 5, 6, 3), 0.37)
    close(blur(flat, 2, 1.5), flat)
    close(sharpen(flat, 2, 1.0, 2.0), flat)
    assert abs(gaussian_kernel(7, 0.8).sum().item() - 1) < 1e-6


def test_blur_and_sharpen_equal_comfyui():
    img = pattern(1, 6, 7, 3)  # row 2 of channel 0; ComfyUI 0.8.0
    close(blur(img, 1, 1.0)[0, 2, :, 0], [0.565644, 0.485597, 0.465535, 0.451132, 0.431069, 0.416667, 0.470781])
    close(blur(img, 2, 0.5)[0, 2, :, 0], [0.524652, 0.50178, 0.462515, 0.457368, 0.439446, 0.454055, 0.472831])
    close(blur(img, 3, 2.0)[0, 2, :, 0], [0.469517, 0.481318, 0.484303, 0.473835, 0.48285, 0.483463, 0.479145])
    close(sharpen(img, 1, 1.0, 1.0)[0, 2, :, 0], [0.0, 1.0, 0.0, 1.0, 0.0, 0.416667, 1.0])
    close(sharpen(img, 2, 0.7, 0.5)[0, 2, :, 0], [0.547711, 1.0, 0.0, 1.0, 0.0, 0.096378, 1.0])


def test_quantize_gives_at_most_n_colours_and_equals_comfyui():
    img = pattern(2, 8, 9, 3)
    for colors in (1, 2, 4, 16):
        for dither in ("none", "floyd-steinberg", "bayer-4"):
            out = quantize(img, colors, dither)
            for b in range(2):
                assert len(torch.unique(out[b].reshape(-1, 3), dim=0)) <= colors
    # ComfyUI 0.8.0, 4 colours: row 1, channel 0 of the first image
    close(quantize(img, 4, "none")[0, 1, :, 0],
          [0.509804, 0.541176, 0.082353, 0.509804, 0.784314, 0.082353, 0.541176, 0.509804, 0.509804])
    close(quantize(img, 4, "floyd-steinberg")[0, 1, :, 0],
          [0.082353, 0.784314, 0.082353, 0.509804, 0.784314, 0.509804, 0.541176, 0.509804, 0.509804])
    close(quantize(img, 4, "bayer-2")[0, 1, :, 0],
          [0.509804, 0.541176, 0.082353, 0.509804, 0.784314, 0.082353, 0.784314, 0.509804, 0.509804])
    rgba = pattern(1, 4, 4, 4)
    assert torch.equal(quantize(rgba, 2)[..., 3], rgba[..., 3])  # alpha kept


def test_bayer_matrix_is_the_ordered_dither_matrix():
    close(bayer_matrix(2), [[-0.375, 0.125], [0.375, -0.125]])
    m = bayer_matrix(8)
    assert m.shape == (8, 8) and len(torch.unique(m)) == 64


def test_morphology_equals_kornia_as_comfyui_uses_it():
    img = pattern(1, 7, 8, 3, 2)  # row 3 of channel 0; ComfyUI 0.8.0 with kornia 0.9.0
    expected = {
        ("erode", 3): [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.166667],
        ("dilate", 3): [0.916667, 0.916667, 0.916667, 0.916667, 0.833333, 1.0, 1.0, 1.0],
        ("dilate", 4): [0.916667, 0.916667, 0.916667, 0.916667, 1.0, 1.0, 1.0, 1.0],
        ("open", 3): [0.083333, 0.083333, 0.083333, 0.0, 0.166667, 0.166667, 0.166667, 0.166667],
        ("open", 4): [0.083333, 0.083333, 0.083333, 0.0, 0.083333, 0.083333, 0.083333, 0.083333],
        ("close", 3): [0.916667, 0.833333, 0.833333, 0.833333, 0.833333, 0.833333, 0.833333, 0.833333],
        ("gradient", 3): [0.916667, 0.916667, 0.916667, 0.916667, 0.833333, 1.0, 1.0, 0.833333],
        ("gradient", 4): [0.916667, 0.916667, 0.916667, 0.916667, 1.0, 1.0, 1.0, 1.0],
        ("top_hat", 3): [0.833333, 0.166667, 0.583333, 0.0, 0.25, 0.666667, 0.0, 0.416667],
        ("top_hat", 4): [0.833333, 0.166667, 0.583333, 0.0, 0.333333, 0.75, 0.083333, 0.5],
        ("bottom_hat", 3): [0.0, 0.583333, 0.166667, 0.833333, 0.416667, 0.0, 0.666667, 0.25],
        ("bottom_hat", 4): [0.0, 0.666667, 0.25, 0.916667, 0.5, 0.083333, 0.75, 0.333333],
    }
    for (op, k), row in expected.items():
        close(morphology(img, op, k)[0, 3, :, 0], row)


def test_morphology_on_a_binary_square():
    img = torch.zeros(1, 9, 9, 1)
    img[0, 3:6, 3:6] = 1.0  # a 3×3 white square
    (dilated,) = Morphology().execute(None, image=img, operation="dilate", kernel_size=3)
    assert dilated[0, 2:7, 2:7].min() == 1 and dilated.sum() == 25
    assert morphology(img, "erode", 3).sum() == 1  # only the centre survives
    assert torch.equal(morphology(img, "open", 3), img) and torch.equal(morphology(img, "close", 3), img)
    assert morphology(img, "gradient", 3).sum() == 24  # the 5×5 ring minus the centre
    noisy = pattern(1, 6, 6, 3)
    assert (morphology(noisy, "erode", 3) <= noisy).all() and (noisy <= morphology(noisy, "dilate", 3)).all()
    assert (morphology(noisy, "open", 5) <= noisy).all() and (noisy <= morphology(noisy, "close", 5)).all()


# -- compositing --------------------------------------------------------------------------------


def test_composite_lands_at_xy():
    dest = torch.zeros(1, 6, 8, 3)
    src = torch.ones(1, 2, 3, 3)
    (out,) = ImageCompositeMasked().execute(None, destination=dest, source=src, x=4, y=3, resize_source=False)
    assert out[0, 3:5, 4:7].min() == 1 and out.sum() == 2 * 3 * 3
    edge = composite(dest.movedim(-1, 1), src.movedim(-1, 1), 6, 5).movedim(1, -1)
    assert edge[0, 5, 6:8].min() == 1 and edge.sum() == 2 * 3  # cut at the border
    left = composite(dest.movedim(-1, 1), src.movedim(-1, 1), -2, 0).movedim(1, -1)
    assert left[0, 0:2, 0].min() == 1 and left.sum() == 2 * 3  # negative: only the right column lands
    assert torch.equal(dest, torch.zeros(1, 6, 8, 3))  # the input is not modified


def test_composite_through_a_mask_and_resized():
    dest = torch.zeros(2, 4, 4, 3)
    src = torch.ones(1, 2, 2, 3)
    mask = torch.tensor([[[1.0, 0.0], [0.0, 0.5]]])
    (out,) = ImageCompositeMasked().execute(None, destination=dest, source=src, x=1, y=1, resize_source=False, mask=mask)
    close(out[1, 1:3, 1:3, 0], [[1.0, 0.0], [0.0, 0.5]])  # both images, through the mask
    (full,) = ImageCompositeMasked().execute(None, destination=dest, source=src, x=0, y=0, resize_source=True)
    assert full.min() == 1.0


def test_porter_duff_modes_on_two_pixels_follow_the_formulas():
    src = torch.tensor([[[[0.2, 0.4, 0.9], [0.8, 0.1, 0.5]]]])
    dst = torch.tensor([[[[0.6, 0.3, 0.1], [0.25, 0.75, 1.0]]]])
    src_mask, dst_mask = torch.tensor([[[0.3, 0.8]]]), torch.tensor([[[0.6, 0.1]]])
    a_s, a_d = (1 - src_mask)[..., None], (1 - dst_mask)[..., None]  # 0.7, 0.2 and 0.4, 0.9
    s, d = src * a_s, dst * a_d
    formulas = {  # (premultiplied colour, alpha)
        "SRC": (s, a_s), "DST": (d, a_d), "CLEAR": (0 * s, 0 * a_s),
        "SRC_OVER": (s + (1 - a_s) * d, a_s + (1 - a_s) * a_d),
        "DST_OVER": (d + (1 - a_d) * s, a_d + (1 - a_d) * a_s),
        "SRC_IN": (s * a_d, a_s * a_d), "DST_IN": (d * a_s, a_s * a_d),
        "SRC_OUT": (s * (1 - a_d), a_s * (1 - a_d)), "DST_OUT": (d * (1 - a_s), a_d * (1 - a_s)),
        "SRC_ATOP": (s * a_d + d * (1 - a_s), a_d), "DST_ATOP": (d * a_s + s * (1 - a_d), a_s),
        "XOR": (s * (1 - a_d) + d * (1 - a_s), a_s * (1 - a_d) + a_d * (1 - a_s)),
        "MULTIPLY": (s * d, a_s * a_d),
        "SCREEN": (s + d - s * d, a_s + a_d - a_s * a_d),
        "ADD": ((s + d).clamp(0, 1), (a_s + a_d).clamp(0, 1)),
    }  # fmt: skip
    for mode, (colour, alpha) in formulas.items():
        image, mask = porter_duff_images(src, src_mask, dst, dst_mask, mode)
        straight = torch.where(alpha > 1e-5, colour / alpha.clamp_min(1e-12), torch.zeros_like(colour)).clamp(0, 1)
        close(image, straight, atol=1e-6)
        close(mask, 1 - alpha[..., 0], atol=1e-6)
    # fully opaque SRC_OVER is just the source; fully transparent source leaves the destination
    opaque = torch.zeros(1, 1, 2)
    close(porter_duff_images(src, opaque, dst, opaque, "SRC_OVER")[0], src)
    close(porter_duff_images(src, 1 - opaque, dst, opaque, "SRC_OVER")[0], dst)
    assert len(PORTER_DUFF_MODES) == 18
    for mode in PORTER_DUFF_MODES:
        colour, alpha = porter_duff(src, a_s, dst, a_d, mode)
        assert colour.shape == src.shape and 0 <= alpha.min() and alpha.max() <= 1


def test_split_and_join_alpha_round_trip():
    rgba = pattern(2, 3, 4, 4)
    colour, mask = split_alpha(rgba)
    assert colour.shape == (2, 3, 4, 3)
    close(mask, 1 - rgba[..., 3])
    close(join_alpha(colour, mask), rgba)
    _, opaque = SplitImageWithAlpha().execute(None, image=pattern(1, 2, 2, 3))
    assert opaque.max() == 0.0  # no alpha channel: nothing masked
    small = pattern(2, 2, 3, 1)[..., 0]  # ComfyUI 0.8.0: the mask resized bilinearly to 3×4
    (joined,) = JoinImageWithAlpha().execute(None, image=pattern(2, 3, 4, 3), alpha=small)
    close(joined[0, :, :, 3].flatten(), [1.0, 0.739583, 0.427083, 0.166667, 0.875, 0.614583, 0.505208, 0.583333,
                                         0.75, 0.489583, 0.583333, 1.0])


# -- LoadImageOutput ----------------------------------------------------------------------------


def test_load_image_output_reads_from_the_output_folder(lg_engine, lg_settings):
    from PIL import Image

    lg_settings.output_dir.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (5, 4), (255, 0, 0, 128)).save(lg_settings.output_dir / "result.png")
    choices = LoadImageOutput.spec.inputs[0].resolve_choices(lg_settings, None)
    assert choices == ["result.png [output]"]
    wf = WorkflowBuilder()
    for name in ("result.png", "result.png [output]"):
        loaded = wf.add("LoadImageOutput", image=name)
        wf.add("PreviewImage", images=wf.add("ImageInvert", image=loaded[0])[0])
    result = assert_success(lg_engine().run(wf.to_api()))
    images = output_images(result, lg_settings)
    assert [img.getpixel((0, 0)) for img in images] == [(0, 255, 255), (0, 255, 255)]


def test_errors_name_the_input():
    with pytest.raises(NodeInputError) as err:
        ImageFlip().execute(None, image=torch.zeros(2, 2), flip_method="x-axis: vertically")
    assert err.value.input_name == "image"
    with pytest.raises(NodeInputError) as err:
        ImageRotate().execute(None, image=pattern(1, 2, 2, 3), rotation="45 degrees")
    assert err.value.input_name == "rotation"
