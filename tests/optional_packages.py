"""Example workflows whose nodes need an optional package: skipped, with the reason, without it."""

from __future__ import annotations

import importlib.util
from typing import Any

#: node class → the optional package it needs (``pip install 'latentgraph[upscale]'``).
OPTIONAL = {"UpscaleModelLoader": "spandrel", "ImageUpscaleWithModel": "spandrel"}


def missing_package(prompt: dict[str, Any]) -> str | None:
    for node in prompt.values():
        package = OPTIONAL.get(node.get("class_type", "")) if isinstance(node, dict) else None
        if package and importlib.util.find_spec(package) is None:
            return f"needs the optional package {package!r} (pip install 'latentgraph[upscale]')"
    return None
