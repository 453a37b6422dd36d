"""Per-user files of the editor: users, settings and user data (saved workflows, keybindings…).

Everything lives under ``<data dir>/user/<user>/`` as in ComfyUI (settings in
``comfy.settings.json``, workflows in ``workflows/``), confined like ``/view``: client paths are
checked lexically and after resolving symlinks, and writes are atomic (a temporary file, then a
rename) so a crash never leaves half a workflow. Single-user by default (user ``default``); with
``multi_user`` the ``Comfy-User`` header picks one of the users created by ``POST /users``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from latentgraph import standard_json
from latentgraph.server import editor_assets
from latentgraph.server.app import JsonError, add_route, json_response, read_json, state_of
from latentgraph.server.security import UnsafePath, relative_parts, resolve_inside

DEFAULT_USER = "default"
SETTINGS_FILE = "comfy.settings.json"
USERS_FILE = "users.json"
#: A ComfyUI "system user" prefix: such names are never served.
SYSTEM_PREFIX = "__"
#: Settings the editor sees until the user sets them: ComfyUI's release notes and update checks
#: (fetched from api.comfy.org) say nothing about latentgraph, so they are off.
SETTING_DEFAULTS: dict[str, Any] = {"Comfy.Notification.ShowVersionUpdates": False}
#: Files the editor always asks for, and what their absence means (ComfyUI answers 404).
ABSENT_MEANS: dict[str, tuple[bytes, str]] = {
    "user.css": (b"", "text/css"),
    "comfy.templates.json": (b"[]", "application/json"),
    "workflows/.index.json": (b'{"favorites": []}', "application/json"),  # bookmarked workflows
}
#: Entries a listing returns at most (a user folder is small; this bounds a pathological one).
MAX_LISTING = 10_000
#: One settings write at a time per app (read-modify-write of one file).
SETTINGS_LOCK = web.AppKey("latentgraph_settings_lock", asyncio.Lock)


def setup(app: web.Application) -> None:
    app[SETTINGS_LOCK] = asyncio.Lock()
    add_route(app, "GET", "/users", get_users)
    add_route(app, "POST", "/users", post_users)
    add_route(app, "GET", "/settings", get_settings)
    add_route(app, "POST", "/settings", post_settings)
    add_route(app, "GET", "/settings/{id}", get_setting)
    add_route(app, "POST", "/settings/{id}", post_setting)
    add_route(app, "GET", "/userdata", list_userdata)
    add_route(app, "GET", "/v2/userdata", list_userdata_v2)
    add_route(app, "GET", "/userdata/{file}", get_userdata)
    add_route(app, "POST", "/userdata/{file}", post_userdata)
    add_route(app, "DELETE", "/userdata/{file}", delete_userdata)
    add_route(app, "POST", "/userdata/{file}/move/{dest}", move_userdata)


# -- users ----------------------------------------------------------------------------------
def user_root(request: web.Request) -> Path:
    """``<data dir>/user``."""
    return state_of(request).engine.settings.base_dir / "user"


def _users(root: Path) -> dict[str, str]:
    try:
        users = json.loads((root / USERS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        users = {}
    return {str(k): str(v) for k, v in users.items()} if isinstance(users, dict) else {}


def request_user(request: web.Request) -> str:
    """The user a request acts for: ``default``, or (multi-user) its ``Comfy-User`` header."""
    if not state_of(request).config.multi_user:
        return DEFAULT_USER
    user = request.headers.get("Comfy-User", DEFAULT_USER)
    if user != DEFAULT_USER and (user.startswith(SYSTEM_PREFIX) or user not in _users(user_root(request))):
        raise JsonError(401, "unauthorized", "unknown user", field="Comfy-User")
    return user


def user_dir(request: web.Request) -> Path:
    return user_root(request) / request_user(request)


async def get_users(request: web.Request) -> web.Response:
    root = user_root(request)
    if state_of(request).config.multi_user:
        return json_response({"storage": "server", "users": await asyncio.to_thread(_users, root)})
    return json_response({"storage": "server", "migrated": (root / DEFAULT_USER).is_dir()})


async def post_users(request: web.Request) -> web.Response:
    """``{username}`` → the new user's id (ComfyUI's: the name made safe plus a UUID)."""
    if not state_of(request).config.multi_user:
        raise JsonError(400, "bad_request", "this server is single-user (start it with --multi-user)")
    body = await read_json(request, default={})
    name = body.get("username") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise JsonError(400, "bad_request", "username not provided", field="username")
    name = name.strip()
    if name.startswith(SYSTEM_PREFIX):
        raise JsonError(400, "bad_request", "System User prefix not allowed", field="username")
    root = user_root(request)

    def add() -> str | None:
        users = _users(root)
        if name in users.values():
            return None
        user_id = f"{re.sub(r'[^a-zA-Z0-9-_]+', '-', name)}_{uuid.uuid4()}"
        users[user_id] = name
        _write_atomic(root / USERS_FILE, standard_json.dumps(users).encode())
        return user_id

    user_id = await asyncio.to_thread(add)
    if user_id is None:
        raise JsonError(400, "bad_request", "Duplicate username.", field="username")
    return json_response(user_id)


# -- settings -------------------------------------------------------------------------------
def _read_settings(path: Path) -> dict[str, Any]:
    try:
        value = standard_json.loads(path.read_bytes())
    except (OSError, ValueError):  # missing or corrupt: start over, as ComfyUI does
        return {}
    return value if isinstance(value, dict) else {}


async def _update_settings(request: web.Request, change: dict[str, Any]) -> None:
    path = user_dir(request) / SETTINGS_FILE
    lock = request.app[SETTINGS_LOCK]
    async with lock:  # two saves at once must not lose one of them

        def write() -> None:
            settings = _read_settings(path)
            settings.update(change)
            _write_atomic(path, standard_json.dumps(settings, indent=4).encode())

        await asyncio.to_thread(write)



def setting_defaults() -> dict[str, Any]:
    """:data:`SETTING_DEFAULTS`; without the templates package the editor's first run would open an
    empty template browser on a blank canvas, so it starts on its default graph instead."""
    defaults = dict(SETTING_DEFAULTS)
    if not editor_assets.templates_installed():
        defaults["Comfy.TutorialCompleted"] = True
    return defaults


async def _settings(request: web.Request) -> dict[str, Any]:
    stored = await asyncio.to_thread(_read_settings, user_dir(request) / SETTINGS_FILE)
    return {**setting_defaults(), **stored}


async def get_settings(request: web.Request) -> web.Response:
    return json_response(await _settings(request))


async def get_setting(request: web.Request) -> web.Response:
    return json_response((await _settings(request)).get(request.match_info["id"]))


async def post_settings(request: web.Request) -> web.Response:
    body = await read_json(request, default=None)
    if not isinstance(body, dict):
        raise JsonError(400, "bad_request", "expected an object of settings", field="body")
    await _update_settings(request, body)
    return json_response(None)


async def post_setting(request: web.Request) -> web.Response:
    value = await read_json(request, default=None)
    await _update_settings(request, {request.match_info["id"]: value})
    return json_response(None)


# -- user data ------------------------------------------------------------------------------
def _client_path(text: str) -> str:
    """A path from the URL: the editor sends ``workflows%2Fa.json`` (ComfyUI decodes ``%``)."""
    return unquote(text) if "%" in text else text


def _resolve(request: web.Request, text: str, what: str) -> Path:
    """``user/<user>/<text>`` confined to the user's folder; ``text`` must name something."""
    text = _client_path(text)
    try:
        if not relative_parts(text, what=what):
            raise JsonError(400, "bad_request", f"'{what}' is empty", field=what)
        return resolve_inside(user_dir(request), text, what=what)
    except UnsafePath as exc:
        raise JsonError(403, "forbidden", str(exc), field=what) from None


def _relative(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()


def _file_info(path: Path, base: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": _relative(path, base), "size": stat.st_size, "modified": stat.st_mtime, "created": stat.st_ctime}


def _flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    return default if value is None else value.lower() == "true"


async def list_userdata(request: web.Request) -> web.Response:
    """``?dir=&recurse=&full_info=&split=``: files under a folder of the user's data."""
    directory = request.query.get("dir", "")
    if not directory:
        raise JsonError(400, "bad_request", "Directory not provided", field="dir")
    folder = _resolve(request, directory, "dir")
    recurse, full_info, split = _flag(request, "recurse", False), _flag(request, "full_info", False), _flag(request, "split", False)

    def listing() -> list[Any] | None:
        if not folder.exists():  # nothing saved there yet (ComfyUI: 404, which the editor reads as empty)
            return []
        if not folder.is_dir():
            return None
        files = (p for p in (folder.rglob("*") if recurse else folder.iterdir()) if p.is_file() and not p.is_symlink())
        out: list[Any] = []
        for path in sorted(files):
            if len(out) >= MAX_LISTING:
                break
            if full_info:
                out.append(_file_info(path, folder))
            else:
                rel = _relative(path, folder)
                out.append([rel, *rel.split("/")] if split else rel)
        return out

    out = await asyncio.to_thread(listing)
    if out is None:
        raise JsonError(404, "not_found", "not a directory", field="dir")
    return json_response(out)


async def list_userdata_v2(request: web.Request) -> web.Response:
    """``?path=``: files and folders under it, folders first, each ``{name, path, type[, size,
    modified]}`` with paths relative to the user's folder."""
    base = user_dir(request)
    text = request.query.get("path", "")
    target = _resolve(request, text, "path") if relative_parts(_client_path(text)) else base

    def listing() -> list[dict[str, Any]] | str:
        if not target.exists():
            return [] if target == base else "missing"
        if not target.is_dir():
            return "not a folder"
        real_base = base.resolve()
        out: list[dict[str, Any]] = []
        for path in sorted(target.rglob("*")):
            if len(out) >= MAX_LISTING:
                break
            if path.is_symlink():
                continue
            entry: dict[str, Any] = {"name": path.name, "path": _relative(path, real_base)}
            if path.is_dir():
                entry["type"] = "directory"
            else:
                stat = path.stat()
                entry.update(type="file", size=stat.st_size, modified=stat.st_mtime)
            out.append(entry)
        out.sort(key=lambda e: (e["type"] != "directory", e["name"].lower()))
        return out

    out = await asyncio.to_thread(listing)
    if out == "missing":
        raise JsonError(404, "not_found", "Requested path not found", field="path")
    if isinstance(out, str):
        raise JsonError(400, "bad_request", "Requested path is not a directory", field="path")
    return json_response(out)


async def get_userdata(request: web.Request) -> web.StreamResponse:
    path = _resolve(request, request.match_info["file"], "file")
    if not path.is_file():
        rel = _relative(path, user_dir(request).resolve()) if path.is_relative_to(user_dir(request).resolve()) else ""
        if rel in ABSENT_MEANS:
            body, content_type = ABSENT_MEANS[rel]
            return web.Response(body=body, content_type=content_type)
        raise JsonError(404, "not_found", "no such file", field="file")
    return web.FileResponse(path, headers={"X-Content-Type-Options": "nosniff"})


async def post_userdata(request: web.Request) -> web.Response:
    """The raw body written to the file (``?overwrite=false`` → 409 if it exists;
    ``?full_info=true`` → ``{path, size, modified, created}``, else the relative path)."""
    base = user_dir(request)
    path = _resolve(request, request.match_info["file"], "file")
    overwrite = request.query.get("overwrite", "true") != "false"
    full_info = _flag(request, "full_info", False)
    limit = state_of(request).config.max_body_bytes
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise JsonError(413, "too_large", f"request body larger than {limit} bytes")

    def write() -> dict[str, Any] | str | None:
        if path.exists() and not overwrite:
            return None
        if path.is_dir():
            raise JsonError(409, "conflict", "a folder has that name", field="file")
        _write_atomic(path, body)
        real_base = base.resolve()
        return _file_info(path, real_base) if full_info else _relative(path, real_base)

    try:
        out = await asyncio.to_thread(write)
    except OSError as exc:
        raise JsonError(400, "bad_request", f"Invalid filename ({exc.strerror or type(exc).__name__})", field="file") from None
    if out is None:
        raise JsonError(409, "conflict", "File already exists", field="file")
    return json_response(out)


async def delete_userdata(request: web.Request) -> web.Response:
    path = _resolve(request, request.match_info["file"], "file")
    if not path.is_file():
        raise JsonError(404, "not_found", "no such file", field="file")
    await asyncio.to_thread(path.unlink)
    return web.Response(status=204)


async def move_userdata(request: web.Request) -> web.Response:
    base = user_dir(request)
    source = _resolve(request, request.match_info["file"], "file")
    dest = _resolve(request, request.match_info["dest"], "dest")
    overwrite = request.query.get("overwrite", "true") != "false"
    full_info = _flag(request, "full_info", False)
    if not source.is_file():
        raise JsonError(404, "not_found", "no such file", field="file")

    def move() -> dict[str, Any] | str | None:
        if dest.exists() and not overwrite:
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, dest)
        real_base = base.resolve()
        return _file_info(dest, real_base) if full_info else _relative(dest, real_base)

    out = await asyncio.to_thread(move)
    if out is None:
        raise JsonError(409, "conflict", "File already exists", field="dest")
    return json_response(out)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder, then rename: never half a file, and
    never through a symlink planted at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".userdata-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
