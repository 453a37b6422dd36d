"""Image sources and facts: EmptyImage, GetImageSize, LoadImageOutput."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.image.common import MAX_RESOLUTION, check_image
from latentgraph.nodes.images import _ANNOTATION, LoadImage, list_input_images


def solid_image(width: int, height: int, batch_size: int, color: int) -> Tensor:
    """A ``[batch, height, width, 3]`` image of one colour, given as ``0xRRGGBB``."""
    rgb = torch.tensor([(color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF], dtype=torch.float32) / 0xFF
    return rgb.expand(batch_size, height, width, 3).clone()


class EmptyImage(Node):
    spec = NodeSpec(
        name="EmptyImage",
        category="image",
        description="Images of one colour (0xRRGGBB).",
        inputs=(
            In("width", "INT", default=512, min=1, max=MAX_RESOLUTION, step=1),
            In("height", "INT", default=512, min=1, max=MAX_RESOLUTION, step=1),
            In("batch_size", "INT", default=1, min=1, max=4096),
            In("color", "INT", default=0, min=0, max=0xFFFFFF, step=1, editor_options={"display": "color"}),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, width=512, height=512, batch_size=1, color=0):
        for name, value, low, high in (
            ("width", width, 1, MAX_RESOLUTION),
            ("height", height, 1, MAX_RESOLUTION),
            ("batch_size", batch_size, 1, 4096),
            ("color", color, 0, 0xFFFFFF),
        ):
            if not low <= int(value) <= high:
                raise NodeInputError(name, f"{value} is outside {low}..{high}")
        return (solid_image(int(width), int(height), int(batch_size), int(color)),)


class GetImageSize(Node):
    spec = NodeSpec(
        name="GetImageSize",
        display_name="Get Image Size",
        category="image",
        description="The width, height and batch size of the images.",
        inputs=(In("image", "IMAGE"),),
        outputs=(Out("INT", "width"), Out("INT", "height"), Out("INT", "batch_size")),
    )

    def execute(self, ctx, image):
        image = check_image("image", image)
        return (int(image.shape[2]), int(image.shape[1]), int(image.shape[0]))


# -- LoadImageOutput ----------------------------------------------------------------------------


class _OutputFolder:
    """Settings seen through ``list_input_images``' eyes with the output folder as the input."""

    def __init__(self, settings: Any) -> None:
        self._settings = settings

    def input_dirs(self) -> list:
        return [self._settings.output_dir]


def list_output_images(settings: Any, registry: Any = None) -> list[str]:
    """Image files in the output folder as ``"name.png [output]"`` (LoadImageOutput's choices)."""
    return [f"{name} [output]" for name in list_input_images(_OutputFolder(settings))]


def as_output_name(name: Any) -> Any:
    """A bare file name means the output folder here; ``"x.png [input]"`` etc. keep their folder."""
    if isinstance(name, str) and name.strip() and not _ANNOTATION.match(name.strip()):
        return f"{name.strip()} [output]"
    return name


class LoadImageOutput(LoadImage):
    """LoadImage reading from the output folder (what the editor's refresh lists: the newest
    results), so a generated image can be fed back in. Loading is LoadImage's."""

    spec = NodeSpec(
        name="LoadImageOutput",
        display_name="Load Image (from Outputs)",
        category="image",
        description="Loads an image from the output folder (e.g. a result, to work on it further).",
        inputs=(
            In(
                "image",
                "COMBO",
                choices=list_output_images,
                strict_choices=False,  # bare names and other "[folder]" annotations are accepted
                editor_options={
                    "image_upload": True,
                    "image_folder": "output",
                    "remote": {"route": "/internal/files/output", "refresh_button": True, "control_after_refresh": "first"},
                },
            ),
        ),
        outputs=(Out("IMAGE"), Out("MASK")),
        deterministic=False,
    )

    def execute(self, ctx, image: str) -> tuple[Tensor, Tensor]:
        return super().execute(ctx, as_output_name(image))

    @classmethod
    def fingerprint(cls, settings, inputs: Mapping[str, Any]) -> str | None:
        return super().fingerprint(settings, {**inputs, "image": as_output_name(inputs.get("image", ""))})

    @classmethod
    def check_inputs(cls, settings, inputs: Mapping[str, Any]):
        return super().check_inputs(settings, {**inputs, "image": as_output_name(inputs.get("image"))})


NODES: list[type[Node]] = [EmptyImage, GetImageSize, LoadImageOutput]
