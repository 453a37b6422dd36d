"""``GET /view`` and ``POST /upload/image``: files confined to the output, input and temp folders."""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import get_args

from aiohttp import web

from latentgraph.server.app import JsonError, add_route, state_of
from latentgraph.server.schemas import FolderType, UploadForm, validate
from latentgraph.server.security import (
    UnsafePath,
    name_for_kind,
    relative_parts,
    resolve_inside,
    safe_filename,
    sniff_file,
    sniff_image,
)
from latentgraph.settings import Settings

FOLDER_TYPES: tuple[str, ...] = get_args(FolderType)
MAX_FIELD = 4096


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/view", view)
    add_route(app, "POST", "/upload/image", upload_image)


def folder_for(settings: Settings, kind: str) -> Path:
    if kind == "output":
        return settings.output_dir
    if kind == "input":
        return settings.input_dir
    if kind == "temp":
        return settings.temp_dir
    raise JsonError(400, "bad_request", f"'type' must be one of {', '.join(FOLDER_TYPES)}, got {kind!r}")


async def view(request: web.Request) -> web.StreamResponse:
    settings = state_of(request).engine.settings
    query = request.query
    filename = query.get("filename", "")
    if not filename:
        raise JsonError(400, "bad_request", "'filename' is required")
    root = folder_for(settings, query.get("type", "output") or "output")
    try:
        path = resolve_inside(root, query.get("subfolder", ""), filename, what="file")
    except UnsafePath as exc:
        raise JsonError(403, "forbidden", str(exc)) from None
    if not path.is_file():
        raise JsonError(404, "not_found", f"no file '{filename}' there")
    kind = await asyncio.to_thread(sniff_file, path)
    preview = query.get("preview")
    channel = query.get("channel")
    if kind is not None and (preview or channel in ("rgb", "a")):
        body, content_type = await asyncio.to_thread(_convert, path, preview, channel)
        return web.Response(body=body, content_type=content_type, headers=_file_headers(path.name, inline=True))
    headers = _file_headers(path.name, inline=kind is not None)
    headers["Content-Type"] = kind.mime if kind is not None else "application/octet-stream"
    return web.FileResponse(path, headers=headers)


def _file_headers(name: str, *, inline: bool) -> dict[str, str]:
    quoted = name.replace("\\", "_").replace('"', "_")
    return {
        "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{quoted}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }


def _convert(path: Path, preview: str | None, channel: str | None) -> tuple[bytes, str]:
    """ComfyUI's ``preview=webp;90`` / ``jpeg;90`` and ``channel=rgb|a`` options."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if channel == "a":
            out = img.getchannel("A") if "A" in img.getbands() else Image.new("L", img.size, 255)
        elif channel == "rgb" or preview:
            out = img.convert("RGB")
        else:
            out = img
    fmt, _, quality = (preview or "png").partition(";")
    fmt = {"jpg": "jpeg"}.get(fmt.lower(), fmt.lower())
    if fmt not in ("webp", "jpeg", "png"):
        fmt = "png"
    try:
        q = max(1, min(100, int(quality))) if quality else 90
    except ValueError:
        q = 90
    buf = io.BytesIO()
    if fmt == "png":
        out.save(buf, format="PNG")
    else:
        out.save(buf, format=fmt.upper(), quality=q)
    return buf.getvalue(), f"image/{fmt}"


async def upload_image(request: web.Request) -> web.Response:
    state = state_of(request)
    limit = state.config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise JsonError(413, "too_large", f"upload larger than {limit} bytes")
    if not request.content_type.startswith("multipart/"):
        raise JsonError(400, "bad_request", "expected a multipart/form-data upload with an 'image' field")
    fields: dict[str, str] = {}
    data: bytearray | None = None
    filename = ""
    reader = await request.multipart()
    async for part in reader:
        if part.name == "image":
            filename = part.filename or "upload"
            data = bytearray()
            while chunk := await part.read_chunk(256 * 1024):
                data += chunk
                if len(data) > limit:
                    raise JsonError(413, "too_large", f"upload larger than {limit} bytes")
        elif part.name in ("subfolder", "type", "overwrite"):
            raw = bytearray()
            while chunk := await part.read_chunk(MAX_FIELD):
                raw += chunk
                if len(raw) > MAX_FIELD:
                    raise JsonError(400, "bad_request", f"field '{part.name}' is too long")
            fields[part.name] = raw.decode("utf-8", "replace")
        else:
            while await part.read_chunk(256 * 1024):
                pass
    form = validate(UploadForm, fields)
    if data is None:
        raise JsonError(400, "bad_request", "no 'image' file in the upload")
    kind = await asyncio.to_thread(sniff_image, bytes(data))
    if kind is None:
        raise JsonError(415, "unsupported_media_type", "the upload is not an image Pillow can read (PNG, JPEG, WebP, GIF, BMP, TIFF)")
    root = folder_for(state.engine.settings, form.type)
    name = name_for_kind(safe_filename(filename), kind)
    try:
        saved = await asyncio.to_thread(_store_upload, root, form.subfolder, name, bytes(data), form.overwrite)
    except UnsafePath as exc:
        raise JsonError(403, "forbidden", str(exc)) from None
    clean_sub = "/".join(relative_parts(form.subfolder))
    return web.json_response({"name": saved, "subfolder": clean_sub, "type": form.type})


def _store_upload(root: Path, subfolder: str, name: str, data: bytes, overwrite: bool) -> str:
    """Write atomically inside ``root/subfolder``; never through a symlink; returns the name used."""
    root.mkdir(parents=True, exist_ok=True)
    folder = resolve_inside(root, subfolder, what="subfolder")
    folder.mkdir(parents=True, exist_ok=True)
    folder = resolve_inside(root, subfolder, what="subfolder")  # re-check after creating it
    stem, suffix = PurePosixPath(name).stem, PurePosixPath(name).suffix
    candidate, i = name, 1
    while True:
        target = folder / candidate
        if target.is_symlink():
            raise UnsafePath("the target file is a symbolic link")
        if not target.exists() or overwrite:
            break
        if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
            return candidate  # the same image again: reuse it
        candidate = f"{stem} ({i}){suffix}"
        i += 1
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return candidate
