"""The web editor at ``/``: ComfyUI's frontend, and the small routes it reads at start-up.

The frontend's files come from the installed ``comfyui-frontend-package`` (or ``--editor-dir``);
they are served read-only, confined to their folder like ``/view``. The catch-all file route is
added last (:func:`add_static`), after every API and plugin route, so it never shadows one.
"""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path

from aiohttp import web

from latentgraph.server import editor_assets
from latentgraph.server.app import JsonError, add_route, json_response
from latentgraph.server.security import UnsafePath, resolve_inside

#: The stylesheets the editor's index.html links unconditionally; absent, they are empty.
OPTIONAL_STYLESHEETS = ("user.css",)
#: Files browsers ask for at the root that the frontend keeps elsewhere.
FALLBACKS = {"favicon.ico": "assets/favicon.ico"}
NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache", "Expires": "0"}

_TEMPLATES = web.AppKey("latentgraph_template_assets", dict)
EDITOR_DIR = web.AppKey("latentgraph_editor_dir", Path)


def setup(app: web.Application) -> None:
    """API routes the editor needs whether or not it is served here (a separate frontend calls
    them too)."""
    app[_TEMPLATES] = {}
    app.on_startup.append(_load_templates)
    add_route(app, "GET", "/workflow_templates", workflow_templates)
    add_route(app, "GET", "/i18n", i18n)
    add_route(app, "GET", "/global_subgraphs", global_subgraphs)
    add_route(app, "GET", "/global_subgraphs/{id}", global_subgraph)
    for prefix in ("", "/api"):
        app.router.add_get(prefix + "/templates/{path:.*}", template_file)


def add_static(app: web.Application, folder: Path) -> None:
    """``/`` (index.html, never cached) and every file of the frontend folder; call it last."""
    app.router.add_get("/", index)
    app.router.add_get("/{path:.+}", static_file)
    app[EDITOR_DIR] = folder


async def _load_templates(app: web.Application) -> None:
    app[_TEMPLATES].update(await asyncio.to_thread(editor_assets.template_assets))


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(request.app[EDITOR_DIR] / "index.html", headers=NO_CACHE)


async def static_file(request: web.Request) -> web.StreamResponse:
    root = request.app[EDITOR_DIR]
    name = request.match_info["path"]
    if name in FALLBACKS and not (root / name).is_file():
        name = FALLBACKS[name]
    try:
        path = resolve_inside(root, name, what="file")
        found = path.is_file()
    except UnsafePath as exc:
        raise JsonError(403, "forbidden", str(exc)) from None
    except OSError:
        found = False
    if not found:
        if name in OPTIONAL_STYLESHEETS:
            return web.Response(body=b"", content_type="text/css", headers=NO_CACHE)
        raise JsonError(404, "not_found", f"no file '{name[:200]}' in the editor")
    return web.FileResponse(path, headers={"Content-Type": _content_type(path)})


def _content_type(path: Path) -> str:
    if path.suffix in (".js", ".mjs"):
        return "application/javascript; charset=utf-8"  # module scripts need a JavaScript type
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


async def template_file(request: web.Request) -> web.StreamResponse:
    """A workflow-template asset (``index.json``, ``<id>.json``, thumbnails) from the installed
    ``comfyui-workflow-templates``; without it, an empty index so the editor's browser is empty."""
    assets = request.app[_TEMPLATES]
    name = request.match_info["path"]
    target = assets.get(name)
    if target is not None and target.is_file():
        return web.FileResponse(target)
    if not assets and name == "index.json":
        return json_response([])
    raise JsonError(404, "not_found", f"no workflow template asset '{name[:200]}'")


async def workflow_templates(request: web.Request) -> web.Response:
    """Plugins' example workflows by plugin (ComfyUI: custom nodes'); none are published here."""
    return json_response({})


async def i18n(request: web.Request) -> web.Response:
    """Translations contributed by plugins (ComfyUI: custom nodes' ``locales``): none."""
    return json_response({})


async def global_subgraphs(request: web.Request) -> web.Response:
    return json_response({})


async def global_subgraph(request: web.Request) -> web.Response:
    raise JsonError(404, "not_found", "no such global subgraph", field="id")
