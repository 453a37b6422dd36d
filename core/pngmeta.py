"""Workflow metadata inside PNG files, in ComfyUI's layout.

ComfyUI stores the API-format workflow in a ``prompt`` text chunk and the editor-format workflow
in a ``workflow`` text chunk (plus any other ``extra_pnginfo`` key as a JSON text chunk). Using the
same layout lets ComfyUI load our PNGs and us load theirs.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from latentgraph import standard_json
from latentgraph.errors import LatentgraphError

#: The chunks a workflow lives in.
PROMPT_KEY = "prompt"
WORKFLOW_KEY = "workflow"

PngSource = str | Path | bytes | IO[bytes]


class PngMetadataError(LatentgraphError):
    """The file is not a PNG, or its workflow chunk is not valid JSON."""


def workflow_chunks(
    prompt: Any = None,
    workflow: Any = None,
    extra_pnginfo: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Text chunks to embed, in a stable order: ``prompt``, ``workflow``, then other extras.

    An explicit ``workflow`` wins over ``extra_pnginfo["workflow"]``. Values are JSON-encoded with
    ``json.dumps`` defaults (ASCII only, so every chunk is a plain ``tEXt`` like ComfyUI writes).
    """
    chunks: dict[str, str] = {}
    if prompt is not None:
        chunks[PROMPT_KEY] = json.dumps(prompt)
    extras = dict(extra_pnginfo or {})
    if workflow is None:
        workflow = extras.get(WORKFLOW_KEY)
    if workflow is not None:
        chunks[WORKFLOW_KEY] = json.dumps(workflow)
    for key, value in extras.items():
        if key not in (PROMPT_KEY, WORKFLOW_KEY):
            chunks[str(key)] = json.dumps(value)
    return chunks


def png_info(chunks: Mapping[str, str]) -> PngImagePlugin.PngInfo:
    """A Pillow ``PngInfo`` holding the given text chunks (no timestamps, nothing else)."""
    info = PngImagePlugin.PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    return info


def read_png_text(source: PngSource) -> dict[str, str]:
    """All text chunks (``tEXt``, ``zTXt``, ``iTXt``) of a PNG."""
    stream: Any = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with Image.open(stream) as img:
            if img.format != "PNG":
                raise PngMetadataError(f"{_describe(source)} is a {img.format} file, not a PNG")
            img.load()  # text chunks after the image data are only read on load
            return {str(k): str(v) for k, v in getattr(img, "text", {}).items()}
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise PngMetadataError(f"{_describe(source)} is not a readable PNG: {exc}") from exc


def read_workflow_from_png(source: PngSource) -> dict[str, Any]:
    """The workflows embedded in a PNG: ``{"prompt": dict | None, "workflow": dict | None}``.

    Other JSON text chunks (ComfyUI ``extra_pnginfo`` keys) are returned under their own names.
    Raises :class:`PngMetadataError` for a non-PNG or a workflow chunk that is not JSON.
    """
    found: dict[str, Any] = {PROMPT_KEY: None, WORKFLOW_KEY: None}
    for key, text in read_png_text(source).items():
        try:
            found[key] = standard_json.loads(text)
        except ValueError as exc:
            if key in (PROMPT_KEY, WORKFLOW_KEY):
                raise PngMetadataError(f"the '{key}' chunk of {_describe(source)} is not valid JSON: {exc}") from exc
            # Plain-text chunks (e.g. A1111 "parameters") are kept as text.
            found[key] = text
    for key in (PROMPT_KEY, WORKFLOW_KEY):
        if found[key] is not None and not isinstance(found[key], dict):
            raise PngMetadataError(f"the '{key}' chunk of {_describe(source)} is not a JSON object")
    return found


def _describe(source: PngSource) -> str:
    if isinstance(source, (str, Path)):
        return f"'{source}'"
    return "the data"
