"""What the server knows: node types, models, plugins, system and cache stats; ``/free``."""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import re
import sys
from pathlib import PurePosixPath
from typing import Any

from aiohttp import web

from latentgraph.object_info import object_info
from latentgraph import model_folders
from latentgraph.server.hub import server_features
from latentgraph.server.app import JsonError, add_route, json_response, state_of
from latentgraph.server.schemas import FreeRequest, parse_body

_FOLDER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/object_info", get_object_info)
    add_route(app, "GET", "/object_info/{node_class}", get_object_info_one)
    add_route(app, "GET", "/system_stats", system_stats)
    add_route(app, "GET", "/models", models)
    add_route(app, "GET", "/models/{folder}", models_in)
    add_route(app, "GET", "/embeddings", embeddings)
    add_route(app, "GET", "/extensions", extensions)
    add_route(app, "GET", "/features", features)
    add_route(app, "POST", "/free", free)
    add_route(app, "GET", "/plugins", plugins)


async def get_object_info(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    info = await asyncio.to_thread(object_info, engine.registry, engine.settings)
    return json_response(info)


async def get_object_info_one(request: web.Request) -> web.Response:
    engine = state_of(request).engine
    name = request.match_info["node_class"]
    info = await asyncio.to_thread(object_info, engine.registry, engine.settings, name)
    return json_response(info)


def _memory() -> tuple[int, int]:
    """(total, available) RAM in bytes, without extra dependencies."""
    try:
        with open("/proc/meminfo") as fh:
            values = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if ":" in line}
        return values.get("MemTotal", 0), values.get("MemAvailable", values.get("MemFree", 0))
    except OSError:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            return total, total
        except (ValueError, OSError, AttributeError):
            return 0, 0


def _devices(engine) -> list[dict[str, Any]]:
    import torch

    from latentgraph.device import pick_device

    stats = engine.cache.stats()
    device = pick_device(engine.settings.device)
    ram_total, ram_free = _memory()
    total, free_ = ram_total, ram_free
    if device.type == "cuda":
        try:
            free_, total = torch.cuda.mem_get_info(device)
        except Exception:
            pass
    entry = {
        "name": str(device) if device.type != "cuda" else f"{device} {torch.cuda.get_device_name(device)}",
        "type": device.type,
        "index": device.index,
        "vram_total": total,
        "vram_free": free_,
        "torch_vram_total": total,
        "torch_vram_free": free_,
        "cache": {"bytes": stats.bytes.get(device.type, 0), "budget": engine.cache.budget_for(device.type)},
        # Model weights on this device now, within the device budget (None: no limit, no offloading).
        "models": engine.memory.stats().to_dict(),
    }
    return [entry]


async def system_stats(request: web.Request) -> web.Response:
    import torch

    from latentgraph import __version__

    state = state_of(request)
    engine = state.engine
    ram_total, ram_free = _memory()
    worker = state.worker
    body = {
        "system": {
            "os": sys.platform,
            "platform": platform.platform(),
            "python_version": sys.version,
            "embedded_python": False,
            "latentgraph_version": __version__,
            # what the editor reads: the ComfyUI protocol version spoken, the frontend we test with
            **editor_versions(),
            "pytorch_version": torch.__version__,
            "argv": masked_argv(sys.argv),
            "ram_total": ram_total,
            "ram_free": ram_free,
        },
        "devices": await asyncio.to_thread(_devices, engine),
        "cache": engine.cache.stats().to_dict(),
        "queue": {
            "remaining": state.store.queue_remaining(),
            "running": worker.running_id if worker else None,
            "completed_since_start": worker.completed if worker else 0,
            "websocket_clients": state.hub.client_count,
        },
    }
    return json_response(body)


#: The ComfyUI release whose protocol this server speaks (the editor reads it as the server's version).
COMFYUI_PROTOCOL_VERSION = "0.8.0"


def editor_versions() -> dict[str, Any]:
    from latentgraph.server import editor_assets

    templates = editor_assets.package_version(editor_assets.TEMPLATES_PACKAGE)
    return {
        "comfyui_version": COMFYUI_PROTOCOL_VERSION,
        "required_frontend_version": editor_assets.TESTED_FRONTEND_VERSION,
        "installed_frontend_version": editor_assets.package_version(editor_assets.FRONTEND_PACKAGE),
        "installed_templates_version": templates,
        "required_templates_version": templates,  # optional here: whatever is installed is fine
    }


async def models(request: web.Request) -> web.Response:
    return json_response(list(model_folders.FOLDERS))


async def models_in(request: web.Request) -> web.Response:
    """ComfyUI's folders (``[]`` when empty), their legacy names, and folders present on disk; 404 else."""
    settings = state_of(request).engine.settings
    folder = request.match_info["folder"]
    if not _FOLDER_NAME.match(folder) or folder.startswith("."):
        raise JsonError(400, "bad_request", "invalid model folder name", field="folder")
    if not model_folders.known(settings, folder):
        raise JsonError(404, "not_found", f"no model folder '{folder}'", field="folder", folders=list(model_folders.FOLDERS))
    return json_response(await asyncio.to_thread(model_folders.list_folder, settings, folder))


async def embeddings(request: web.Request) -> web.Response:
    settings = state_of(request).engine.settings
    names = await asyncio.to_thread(settings.list_models, "embeddings")
    return json_response([str(PurePosixPath(n).with_suffix("")) for n in names])


async def extensions(request: web.Request) -> web.Response:
    return json_response([])  # no web extensions: the server has no bundled front end


async def features(request: web.Request) -> web.Response:
    config = state_of(request).config
    return json_response(server_features(config.max_upload_bytes))


async def free(request: web.Request) -> web.Response:
    """As ComfyUI: ``unload_models`` moves every model not in use back to the offload device (the
    cache keeps them); ``free_memory`` does that and drops every cached result, models included.
    The answer says how many device bytes the models gave back."""
    state = state_of(request)
    body = await parse_body(request, FreeRequest)
    if not (body.unload_models or body.free_memory):
        return json_response({"freed": False})
    offloaded = await asyncio.to_thread(state.engine.memory.offload_all)
    if body.free_memory:
        state.engine.cache.clear()
    await asyncio.to_thread(_release_memory)
    return json_response({"freed": True, "offloaded_bytes": offloaded})


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        mps = getattr(torch, "mps", None)
        if mps is not None and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            mps.empty_cache()
    except Exception:
        pass


async def plugins(request: web.Request) -> web.Response:
    host = state_of(request).engine.host
    infos = [info.to_dict() for info in host.plugins.values()] if host is not None else []
    return json_response(infos)


#: Options whose value is a secret, masked in ``/system_stats`` ``argv``.
SECRET_OPTIONS = ("--auth-token",)


def masked_argv(argv: list[str]) -> list[str]:
    """``argv`` with the values of :data:`SECRET_OPTIONS` (``--opt VALUE`` and ``--opt=VALUE``,
    and argparse's unambiguous prefixes of them) replaced by ``***``."""
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            out.append("***")
            mask_next = False
            continue
        name, eq, _ = arg.partition("=")
        secret = len(name) > 2 and name.startswith("--") and any(opt.startswith(name) for opt in SECRET_OPTIONS)
        if secret and eq:
            out.append(f"{name}=***")
        else:
            out.append(arg)
            mask_next = secret
    return out
