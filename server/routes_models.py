"""The editor's model library: ``/experiment/models[/{folder}]`` and ``/view_metadata/{folder}``.

Folders are ComfyUI's names (:mod:`latentgraph.model_folders`), each looked up in every
model root; files are listed with their root's index (``pathIndex``) as ComfyUI's model manager
does. ``/view_metadata`` reads only the JSON header of a ``.safetensors`` file (bounded), never
its tensors.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from pathlib import Path
from typing import Any

from aiohttp import web

from latentgraph import model_folders
from latentgraph.server.app import JsonError, add_route, json_response, state_of
from latentgraph.settings import Settings

_FOLDER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: Folders the model library leaves out (as ComfyUI's).
HIDDEN = ("configs",)
#: Largest safetensors header read for ``/view_metadata`` (ComfyUI's limit).
MAX_HEADER = 1024 * 1024
MAX_FILES = 10_000


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/experiment/models", folders)
    add_route(app, "GET", "/experiment/models/{folder}", files_in)
    add_route(app, "GET", "/experiment/models/preview/{folder}/{path_index}/{filename:.*}", preview)
    add_route(app, "GET", "/view_metadata/{folder}", view_metadata)


def folder_paths(settings: Settings) -> dict[str, list[str]]:
    """Folder name → the directories searched for it, in order (``/internal/folder_paths``)."""
    out: dict[str, list[str]] = {}
    for name, (subfolders, _) in model_folders.FOLDERS.items():
        out[name] = [str(root / sub) for sub in subfolders for root in settings.model_roots]
    return out


def _folder(request: web.Request) -> str:
    folder = request.match_info["folder"]
    if not _FOLDER_NAME.match(folder) or folder.startswith("."):
        raise JsonError(400, "bad_request", "invalid model folder name", field="folder")
    if not model_folders.known(state_of(request).engine.settings, folder):
        raise JsonError(404, "not_found", f"no model folder '{folder}'", field="folder")
    return model_folders.ALIASES.get(folder, folder)


async def folders(request: web.Request) -> web.Response:
    paths = folder_paths(state_of(request).engine.settings)
    return json_response([{"name": name, "folders": dirs} for name, dirs in paths.items() if name not in HIDDEN])


def list_files(settings: Settings, folder: str) -> list[dict[str, Any]]:
    subfolders, suffixes = model_folders.FOLDERS.get(folder, ((folder,), model_folders.PT_SUFFIXES))
    dirs = [root / sub for sub in subfolders for root in settings.model_roots]
    out: list[dict[str, Any]] = []
    for index, directory in enumerate(dirs):
        if not directory.is_dir():
            continue
        for path in sorted(directory.rglob("*")):
            rel = path.relative_to(directory)
            if any(part.startswith(".") for part in rel.parts) or not path.is_file():
                continue
            if suffixes and path.suffix.lower() not in suffixes:
                continue
            stat = path.stat()
            out.append({"name": rel.as_posix(), "pathIndex": index, "modified": stat.st_mtime,
                        "created": stat.st_ctime, "size": stat.st_size})
            if len(out) >= MAX_FILES:
                return out
    return out


async def files_in(request: web.Request) -> web.Response:
    folder = _folder(request)
    return json_response(await asyncio.to_thread(list_files, state_of(request).engine.settings, folder))


async def preview(request: web.Request) -> web.Response:
    """Model preview pictures: none are kept here."""
    raise JsonError(404, "not_found", "no preview for this model")


def safetensors_metadata(path: Path) -> dict[str, Any] | None:
    """The ``__metadata__`` of a safetensors header, or None (no such file, too big, malformed)."""
    try:
        with path.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > MAX_HEADER:
                return None
            header = json.loads(fh.read(length))
    except (OSError, struct.error, ValueError):
        return None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else None


async def view_metadata(request: web.Request) -> web.Response:
    """``?filename=x.safetensors`` → the file's ``__metadata__``; 404 when it has none."""
    folder = _folder(request)
    filename = request.query.get("filename", "")
    if not filename.endswith(".safetensors"):
        raise JsonError(404, "not_found", "only .safetensors files carry metadata", field="filename")
    settings = state_of(request).engine.settings
    subfolders = model_folders.FOLDERS.get(folder, ((folder,), ()))[0]
    path = next((p for sub in subfolders if (p := settings.find_model(sub, filename)) is not None), None)
    if path is None or not path.is_file():
        raise JsonError(404, "not_found", f"no model '{filename[:200]}' in {folder}", field="filename")
    metadata = await asyncio.to_thread(safetensors_metadata, path)
    if metadata is None:
        raise JsonError(404, "not_found", "the file has no metadata", field="filename")
    return json_response(metadata)
