"""``comfy_api.latest.ui``: what a V3 node shows in the editor (``NodeOutput(ui=...)``).

Outputs that write files (previews) are rendered by the adapter after ``execute`` returns, with
the running node's context (settings, temp folder, workflow metadata): no global state is needed
to find the temp folder, and the files are written by latentgraph's own PNG writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from latentgraph.plugins.comfy_api.latest.io import FolderType

if TYPE_CHECKING:
    from latentgraph.context import ExecutionContext


class UIOutput:
    """Base of ``ui.*`` results: ``as_dict()`` is the ``ui`` dict sent with ``executed``."""

    def as_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def render(self, ctx: ExecutionContext) -> dict[str, Any]:
        """The ``ui`` dict for this run (outputs that save files do it here)."""
        return self.as_dict()


class SavedResult(dict):
    """One file in ``output``/``input``/``temp`` as the editor addresses it."""

    def __init__(self, filename: str, subfolder: str, type: FolderType | str) -> None:
        super().__init__(filename=filename, subfolder=subfolder, type=FolderType(type).value)

    @property
    def filename(self) -> str:
        return self["filename"]

    @property
    def subfolder(self) -> str:
        return self["subfolder"]

    @property
    def type(self) -> FolderType:
        return FolderType(self["type"])


class SavedImages(UIOutput):
    """Images the node already wrote (e.g. with ``SavedResult`` entries)."""

    def __init__(self, results: Sequence[SavedResult | dict], is_animated: bool = False) -> None:
        self.results = list(results)
        self.is_animated = is_animated

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.results, **({"animated": (True,)} if self.is_animated else {})}


class PreviewImage(UIOutput):
    """Shows an IMAGE batch: written as PNGs to the temp folder when the node's run ends."""

    PREFIX = "latentgraph_temp"

    def __init__(self, image: Any, animated: bool = False, cls: Any = None, **kwargs: Any) -> None:
        self.image = image
        self.animated = animated

    def as_dict(self) -> dict[str, Any]:
        raise RuntimeError("ui.PreviewImage is written when the node returns it in NodeOutput(ui=...)")

    def render(self, ctx: ExecutionContext) -> dict[str, Any]:
        from latentgraph.nodes.images import save_images

        saved = save_images(ctx, self.image, self.PREFIX, ctx.settings.temp_dir, "temp", compress_level=1)
        return {**(saved.ui or {}), "animated": (self.animated,)}


class PreviewMask(PreviewImage):
    """Shows a MASK batch as grey images."""

    def __init__(self, mask: Any, animated: bool = False, cls: Any = None, **kwargs: Any) -> None:
        grey = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(-1, -1, -1, 3)
        super().__init__(grey, animated, cls)


class PreviewText(UIOutput):
    def __init__(self, value: str, **kwargs: Any) -> None:
        self.value = value

    def as_dict(self) -> dict[str, Any]:
        return {"text": (self.value,)}


__all__ = ["PreviewImage", "PreviewMask", "PreviewText", "SavedImages", "SavedResult", "UIOutput"]
