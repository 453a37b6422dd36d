"""``POST /upload/mask``: the editor's mask editor saves a mask painted over an existing picture.

The upload is the mask (its alpha is the mask), ``original_ref`` names the picture it was painted
on (``{filename, subfolder, type}``, confined like ``/view``); the stored file is the original's
colours with the mask's alpha, keeping the original's PNG text (its workflow), as ComfyUI's.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from PIL import Image, PngImagePlugin

from latentgraph import standard_json
from latentgraph.server.app import JsonError, add_route, json_response, state_of
from latentgraph.server.routes_files import UPLOAD_FIELDS, annotated_filename, folder_for, read_upload, store_upload
from latentgraph.server.schemas import UploadForm, validate
from latentgraph.server.security import UnsafePath, relative_parts, resolve_inside, safe_filename

MASK_FIELDS = (*UPLOAD_FIELDS, "original_ref")
#: Largest picture (in pixels) a mask is applied to; beyond it the work is refused.
MAX_PIXELS = 64 * 1024 * 1024


def setup(app: web.Application) -> None:
    add_route(app, "POST", "/upload/mask", upload_mask)


def _original_ref(text: str | None) -> dict[str, Any]:
    try:
        ref = standard_json.loads(text or "")
    except (ValueError, standard_json.JsonInputError):
        ref = None
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str) or not ref["filename"]:
        raise JsonError(400, "bad_request", "'original_ref' must be JSON {filename, subfolder, type}", field="original_ref")
    return ref


def apply_mask(original: Path, mask_bytes: bytes) -> bytes:
    """The original's colours with the mask's alpha, as PNG with the original's text chunks."""
    with Image.open(original) as img:
        if img.width * img.height > MAX_PIXELS:
            raise JsonError(413, "too_large", "the original picture is too large", field="original_ref")
        info = PngImagePlugin.PngInfo()
        for key, value in (getattr(img, "text", None) or {}).items():
            info.add_text(key, value)
        rgba = img.convert("RGBA")
    with Image.open(io.BytesIO(mask_bytes)) as mask:
        alpha = mask.convert("RGBA").getchannel("A")
    if alpha.size != rgba.size:
        alpha = alpha.resize(rgba.size)
    rgba.putalpha(alpha)
    out = io.BytesIO()
    rgba.save(out, format="PNG", compress_level=4, pnginfo=info)
    return out.getvalue()


async def upload_mask(request: web.Request) -> web.Response:
    state = state_of(request)
    limit = state.config.max_upload_bytes
    if not request.content_type.startswith("multipart/"):
        raise JsonError(400, "bad_request", "expected a multipart/form-data upload with 'image' and 'original_ref'")
    try:
        filename, data, fields = await read_upload(request, limit, MASK_FIELDS)
    except (ValueError, AssertionError, HttpProcessingError, web.RequestPayloadError, asyncio.IncompleteReadError) as exc:
        raise JsonError(400, "bad_request", f"malformed multipart body ({type(exc).__name__})") from None
    ref = _original_ref(fields.pop("original_ref", None))
    form = validate(UploadForm, fields)
    if data is None:
        raise JsonError(400, "bad_request", "no 'image' file in the upload", field="image")
    settings = state.engine.settings
    name, ref_type = annotated_filename(ref["filename"], str(ref.get("type") or "output"))
    try:
        original = resolve_inside(folder_for(settings, ref_type), str(ref.get("subfolder") or ""), name, what="original_ref")
    except UnsafePath as exc:
        raise JsonError(403, "forbidden", str(exc), field="original_ref") from None
    if not original.is_file():
        raise JsonError(404, "not_found", f"no picture '{name[:200]}' to apply the mask to", field="original_ref")
    try:
        masked = await asyncio.to_thread(apply_mask, original, bytes(data))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise JsonError(415, "unsupported_media_type", f"the mask or the original is not a readable image ({type(exc).__name__})",
                        field="image") from None
    root = folder_for(settings, form.type)
    try:
        saved = await asyncio.to_thread(store_upload, root, form.subfolder, safe_filename(filename), masked, form.overwrite)
    except UnsafePath as exc:
        raise JsonError(403, "forbidden", str(exc)) from None
    except OSError as exc:
        raise JsonError(500, "storage_error", f"the mask could not be stored ({exc.strerror or type(exc).__name__})") from None
    return json_response({"name": saved, "subfolder": "/".join(relative_parts(form.subfolder)), "type": form.type})
