"""``comfy_api.v0_0_2``: the pinned-version import path; the same surface as ``latest``."""

from latentgraph.plugins.comfy_api.latest import IO, UI, ComfyExtension, Input, io, ui

__all__ = ["ComfyExtension", "IO", "Input", "UI", "io", "ui"]
