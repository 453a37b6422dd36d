"""Image batches: ImageBatch, ImageFromBatch, RepeatImageBatch, RebatchImages."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.image.common import check_image, resize_bchw


def batch_images(image1: Tensor, image2: Tensor) -> Tensor:
    """``image1`` then ``image2`` in one batch. A 3-channel image next to a 4-channel one gets an
    opaque alpha; image2 is resized (bilinear, centre-cropped to the aspect) to image1's size."""
    image2 = image2.to(image1.device, image1.dtype)
    c1, c2 = image1.shape[-1], image2.shape[-1]
    if c1 != c2:  # ComfyUI adds one channel of 1 to the image with fewer channels
        if c1 > c2:
            image2 = F.pad(image2, (0, 1), mode="constant", value=1.0)
        else:
            image1 = F.pad(image1, (0, 1), mode="constant", value=1.0)
    if image1.shape[1:] != image2.shape[1:]:
        if image1.shape[-1] != image2.shape[-1]:
            raise NodeInputError("image2", f"has {c2} channels, image1 has {c1}: cannot be batched")
        image2 = resize_bchw(image2.movedim(-1, 1), image1.shape[2], image1.shape[1], "bilinear", crop=True).movedim(1, -1)
    return torch.cat((image1, image2), dim=0)


def from_batch(image: Tensor, batch_index: int, length: int) -> Tensor:
    """``length`` images from ``batch_index`` on; both are cut to the batch (at least one image)."""
    index = max(0, min(image.shape[0] - 1, int(batch_index)))
    length = min(image.shape[0] - index, int(length))
    return image[index : index + length].clone()


def repeat_batch(image: Tensor, amount: int) -> Tensor:
    """The whole batch ``amount`` times over (``[a, b]`` ×2 → ``[a, b, a, b]``)."""
    return image.repeat(int(amount), 1, 1, 1)


def rebatch(images: list[Tensor], batch_size: int) -> list[Tensor]:
    """All images of all input batches, in order, regrouped into batches of ``batch_size`` (the
    last may be smaller). Images of different sizes must not share a batch: ``torch.cat`` fails."""
    singles = [img[i : i + 1] for img in images for i in range(img.shape[0])]
    return [torch.cat(singles[i : i + batch_size], dim=0) for i in range(0, len(singles), batch_size)]


class ImageBatch(Node):
    spec = NodeSpec(
        name="ImageBatch",
        display_name="Batch Images",
        category="image",
        description="image1's images followed by image2's (image2 resized to image1's size if needed). "
        "Deprecated in ComfyUI.",
        inputs=(In("image1", "IMAGE"), In("image2", "IMAGE")),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image1, image2):
        return (batch_images(check_image("image1", image1), check_image("image2", image2)),)


class ImageFromBatch(Node):
    spec = NodeSpec(
        name="ImageFromBatch",
        category="image/batch",
        description="length images starting at batch_index (0 = the first), cut to the batch.",
        inputs=(
            In("image", "IMAGE"),
            In("batch_index", "INT", default=0, min=0, max=4095),
            In("length", "INT", default=1, min=1, max=4096),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, batch_index=0, length=1):
        image = check_image("image", image)
        if int(length) < 1:
            raise NodeInputError("length", f"must be at least 1, got {length}")
        return (from_batch(image, int(batch_index), int(length)),)


class RepeatImageBatch(Node):
    spec = NodeSpec(
        name="RepeatImageBatch",
        category="image/batch",
        description="The batch repeated amount times.",
        inputs=(In("image", "IMAGE"), In("amount", "INT", default=1, min=1, max=4096)),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, image, amount=1):
        image = check_image("image", image)
        if int(amount) < 1:
            raise NodeInputError("amount", f"must be at least 1, got {amount}")
        return (repeat_batch(image, int(amount)),)


class RebatchImages(Node):
    """Regroups a list of image batches into batches of ``batch_size`` (ComfyUI's INPUT_IS_LIST /
    OUTPUT_IS_LIST node): it takes the whole list, and each batch it makes is one item downstream,
    so the nodes after it run once per batch."""

    spec = NodeSpec(
        name="RebatchImages",
        display_name="Rebatch Images",
        category="image/batch",
        description="Regroups images into batches of batch_size (a list of batches).",
        inputs=(In("images", "IMAGE"), In("batch_size", "INT", default=1, min=1, max=4096)),
        outputs=(Out("IMAGE", is_list=True),),
        input_is_list=True,
    )

    def execute(self, ctx, images, batch_size=1):
        items = images if isinstance(images, list) else [images]
        size = batch_size[0] if isinstance(batch_size, list) else batch_size
        if int(size) < 1:
            raise NodeInputError("batch_size", f"must be at least 1, got {size}")
        return (rebatch([check_image("images", x) for x in items], int(size)),)


NODES: list[type[Node]] = [ImageBatch, ImageFromBatch, RepeatImageBatch, RebatchImages]
