"""``GET /view`` and ``POST /upload/image``: files confined to the output, input and temp folders."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import get_args

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from latentgraph.server.app import JsonError, add_route, json_response, state_of
from latentgraph.server.media_sniff import sniff_media, sniff_media_file
from latentgraph.server.schemas import FolderType, UploadForm, validate
from latentgraph.server.security import (
    FileKind,
    UnsafePath,
    relative_parts,
    resolve_inside,
    safe_filename,
    sniff_file,
    sniff_image,
)
from latentgraph.settings import Settings

FOLDER_TYPES: tuple[str, ...] = get_args(FolderType)
MAX_FIELD = 4096
#: Parts in one upload: ``image``, ``subfolder``, ``type``, ``overwrite`` and what clients add
#: besides. Each part costs a parse on the event loop; tens of thousands of tiny ones stalled it.
MAX_PARTS = 32
#: ``name.png [output]``: ComfyUI's annotated file name, the folder type in brackets.
_ANNOTATED = re.compile(r"^(?P<name>.*?) ?\[(?P<type>output|input|temp)\]$")
#: Errors of a client-given name, not of the server: answered 400.
_NAME_ERRNOS = {errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ}


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
    raise JsonError(400, "bad_request", f"'type' must be one of {', '.join(FOLDER_TYPES)}, got {kind[:40]!r}", field="type")


def annotated_filename(filename: str, default_type: str) -> tuple[str, str]:
    """``"x.png [output]"`` → ``("x.png", "output")``; an unannotated name keeps ``default_type``."""
    match = _ANNOTATED.match(filename)
    return (match["name"], match["type"]) if match else (filename, default_type)


async def view(request: web.Request) -> web.StreamResponse:
    settings = state_of(request).engine.settings
    query = request.query
    filename, folder_type = annotated_filename(query.get("filename", ""), query.get("type", "output") or "output")
    if not filename:
        raise JsonError(400, "bad_request", "'filename' is required", field="filename")
    root = folder_for(settings, folder_type)
    try:
        path = resolve_inside(root, query.get("subfolder", ""), filename, what="file")
        found = path.is_file()
    except UnsafePath as exc:
        raise JsonError(403, "forbidden", str(exc)) from None
    except OSError:  # a name the file system refuses (too long, invalid): it cannot be there
        found = False
    if not found:
        raise JsonError(404, "not_found", f"no file '{filename[:200]}' there", field="filename")
    kind = await asyncio.to_thread(_sniff_path, path)
    preview = query.get("preview")
    channel = query.get("channel", "rgba")
    if kind is not None and kind.mime.startswith("image/") and (preview or channel in ("rgb", "a")):
        converted = await asyncio.to_thread(_convert, path, preview, channel)
        if converted is None:
            raise JsonError(415, "unsupported_media_type", f"'{filename[:200]}' cannot be converted", field="filename")
        body, content_type = converted
        return web.Response(body=body, content_type=content_type, headers=_file_headers(path.name, inline=True))
    headers = _file_headers(path.name, inline=kind is not None)
    headers["Content-Type"] = kind.mime if kind is not None else "application/octet-stream"
    return web.FileResponse(path, headers=headers)


def _sniff_path(path: Path) -> FileKind | None:
    return sniff_file(path) or sniff_media_file(path)


def _file_headers(name: str, *, inline: bool) -> dict[str, str]:
    quoted = "".join(ch if ch.isprintable() and ch not in '\\"' else "_" for ch in name)
    if not quoted.isascii():
        from urllib.parse import quote

        disposition = f"{'inline' if inline else 'attachment'}; filename*=UTF-8''{quote(name, safe='')}"
    else:
        disposition = f'{"inline" if inline else "attachment"}; filename="{quoted}"'
    return {"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def _convert(path: Path, preview: str | None, channel: str) -> tuple[bytes, str] | None:
    """ComfyUI's ``preview=webp;90`` / ``jpeg;90`` and ``channel=rgb|a|rgba`` options.

    ``channel=a``: the alpha channel as an RGBA PNG whose colour is black and whose alpha is the
    image's (opaque when it has none); ``rgb``: a PNG without alpha. A preview is webp (also when
    the channel has ``a``) or jpeg, quality from ``;N``; ``rgb`` and jpeg drop alpha.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if preview:
                fmt, _, quality = preview.partition(";")
                fmt = fmt.lower() if fmt.lower() in ("webp", "jpeg") and "a" not in channel else "webp"
                q = max(1, min(100, int(quality))) if quality.isdigit() else 90
                out = img.convert("RGB") if fmt == "jpeg" or channel == "rgb" else img
                if out.mode not in ("RGB", "RGBA", "L", "LA"):
                    out = out.convert("RGBA")
                buf = io.BytesIO()
                out.save(buf, format=fmt.upper(), quality=q)
                return buf.getvalue(), f"image/{fmt}"
            if channel == "a":
                has_alpha = "A" in img.getbands() or "transparency" in img.info
                alpha = img.convert("RGBA").getchannel("A") if has_alpha else Image.new("L", img.size, 255)
                out = Image.new("RGBA", img.size)
                out.putalpha(alpha)
            else:
                out = img.convert("RGB")
            buf = io.BytesIO()
            out.save(buf, format="PNG")
            return buf.getvalue(), "image/png"
    except Exception:  # a file Pillow sniffed but cannot decode: refused, not a 500
        return None


async def upload_image(request: web.Request) -> web.Response:
    """ComfyUI's upload: images, and the videos and sounds its editor sends here too. The client's
    name is kept (made safe, never renamed by type): ``/view`` trusts the bytes, not the name."""
    state = state_of(request)
    limit = state.config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit + 64 * 1024:
        raise JsonError(413, "too_large", f"upload larger than {limit} bytes")
    if not request.content_type.startswith("multipart/"):
        raise JsonError(400, "bad_request", "expected a multipart/form-data upload with an 'image' field")
    try:
        filename, data, fields = await read_upload(request, limit)
    except (ValueError, AssertionError, HttpProcessingError, web.RequestPayloadError, asyncio.IncompleteReadError) as exc:
        # aiohttp's multipart reader raises these for a missing boundary, a body that ends early…
        raise JsonError(400, "bad_request", f"malformed multipart body ({type(exc).__name__})") from None
    form = validate(UploadForm, fields)
    if data is None:
        raise JsonError(400, "bad_request", "no 'image' file in the upload", field="image")
    kind = await asyncio.to_thread(sniff_image, bytes(data)) or sniff_media(bytes(data[:64]))
    if kind is None:
        raise JsonError(
            415, "unsupported_media_type",
            "the upload is neither an image Pillow can read (PNG, JPEG, WebP, GIF, BMP, TIFF) nor audio/video "
            "(MP4, MOV, WebM, MKV, AVI, WAV, Ogg, FLAC, MP3, AAC)",
            field="image",
        )
    root = folder_for(state.engine.settings, form.type)
    name = safe_filename(filename)
    try:
        saved = await asyncio.to_thread(store_upload, root, form.subfolder, name, bytes(data), form.overwrite)
    except UnsafePath as exc:
        raise JsonError(403, "forbidden", str(exc)) from None
    except OSError as exc:  # never the path: only what went wrong
        if exc.errno in _NAME_ERRNOS:
            raise JsonError(400, "bad_request", f"the file system refuses that name ({exc.strerror})", field="image") from None
        raise JsonError(500, "storage_error", f"the upload could not be stored ({exc.strerror or type(exc).__name__})") from None
    clean_sub = "/".join(relative_parts(form.subfolder))
    return json_response({"name": saved, "subfolder": clean_sub, "type": form.type})


#: The text fields of ``/upload/image``; ``/upload/mask`` adds ``original_ref``.
UPLOAD_FIELDS = ("subfolder", "type", "overwrite")


async def read_upload(
    request: web.Request, limit: int, text_fields: tuple[str, ...] = UPLOAD_FIELDS
) -> tuple[str, bytearray | None, dict[str, str]]:
    """(file name, the ``image`` bytes, the text fields), bounded in size and in parts."""
    fields: dict[str, str] = {}
    data: bytearray | None = None
    filename = ""
    reader = await request.multipart()
    parts = 0
    async for part in reader:
        parts += 1
        if parts > MAX_PARTS:
            raise JsonError(400, "bad_request", f"more than {MAX_PARTS} parts in the upload")
        if not isinstance(part, BodyPartReader):
            raise JsonError(400, "bad_request", "nested multipart bodies are not accepted")
        if part.name == "image" and data is None:
            filename = getattr(part, "filename", None) or "upload"
            data = bytearray()
            while chunk := await part.read_chunk(256 * 1024):
                data += chunk
                if len(data) > limit:
                    raise JsonError(413, "too_large", f"upload larger than {limit} bytes")
        elif part.name in text_fields:
            raw = bytearray()
            while chunk := await part.read_chunk(MAX_FIELD):
                raw += chunk
                if len(raw) > MAX_FIELD:
                    raise JsonError(400, "bad_request", f"field '{part.name}' is too long", field=part.name)
            fields[part.name] = raw.decode("utf-8", "replace")
        else:
            while await part.read_chunk(256 * 1024):
                pass
    return filename, data, fields


def store_upload(root: Path, subfolder: str, name: str, data: bytes, overwrite: bool) -> str:
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
