"""``comfy_api.latest``: the V3 custom-node API (``from comfy_api.latest import ComfyExtension, io, ui``)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from latentgraph.plugins.comfy_api.latest import io, ui


class ComfyExtension(ABC):
    """What ``comfy_entrypoint()`` returns: the node classes a custom-node module provides."""

    async def on_load(self) -> None:
        """Not called by the loader (ComfyUI 0.8.0 does not call it either)."""

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """The V3 node classes to register."""


class Input:
    """Value types for annotations (``Input.Image`` is an IMAGE tensor ``[B, H, W, C]``)."""

    Image = torch.Tensor
    Mask = torch.Tensor
    Latent = dict
    Audio = dict


IO = io
UI = ui

__all__ = ["ComfyExtension", "IO", "Input", "UI", "io", "ui"]
