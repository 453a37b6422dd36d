"""``/internal/…``: routes only ComfyUI's editor calls (folder paths, file lists, the server log).

The log is the ``latentgraph`` loggers' last :data:`LOG_LINES` records, kept by a handler that
lives as long as the app (added on start-up, removed on clean-up), as ComfyUI's terminal panel
shows them: ``{t, m}`` entries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from typing import Any

from aiohttp import web

from latentgraph.server.app import JsonError, add_route, json_response, read_json, state_of
from latentgraph.server.routes_files import folder_for
from latentgraph.server.routes_models import folder_paths

LOG_LINES = 1000
MAX_FILES = 10_000


class RecentLog(logging.Handler):
    """The most recent log records as ``{t, m}`` (ISO time, formatted message)."""

    def __init__(self, capacity: int = LOG_LINES) -> None:
        super().__init__(logging.INFO)
        self.entries: deque[dict[str, str]] = deque(maxlen=capacity)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
            self.entries.append({"t": stamp, "m": self.format(record) + "\n"})
        except Exception:  # a log handler must never raise
            self.handleError(record)


LOG = web.AppKey("latentgraph_recent_log", RecentLog)


def setup(app: web.Application) -> None:
    app[LOG] = RecentLog()
    app.on_startup.append(_attach_log)
    app.on_cleanup.append(_detach_log)
    add_route(app, "GET", "/internal/folder_paths", get_folder_paths)
    add_route(app, "GET", "/internal/files/{directory_type}", get_files)
    add_route(app, "GET", "/internal/logs", get_logs)
    add_route(app, "GET", "/internal/logs/raw", get_raw_logs)
    add_route(app, "PATCH", "/internal/logs/subscribe", subscribe_logs)


async def _attach_log(app: web.Application) -> None:
    logging.getLogger("latentgraph").addHandler(app[LOG])


async def _detach_log(app: web.Application) -> None:
    logging.getLogger("latentgraph").removeHandler(app[LOG])


async def get_folder_paths(request: web.Request) -> web.Response:
    """Model folder name → the directories searched for it (ComfyUI: the same, absolute)."""
    return json_response(folder_paths(state_of(request).engine.settings))


async def get_files(request: web.Request) -> web.Response:
    """``output``, ``input`` or ``temp``: its visible files' names, newest first."""
    kind = request.match_info["directory_type"]
    if kind not in ("output", "input", "temp"):
        raise JsonError(400, "bad_request", "Invalid directory type", field="directory_type")
    folder = folder_for(state_of(request).engine.settings, kind)

    def names() -> list[str]:
        if not folder.is_dir():
            return []
        entries: list[tuple[float, str]] = []
        with os.scandir(folder) as it:
            for entry in it:
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                entries.append((entry.stat().st_mtime, entry.name))
        entries.sort(key=lambda e: -e[0])
        return [name for _, name in entries[:MAX_FILES]]

    return json_response(await asyncio.to_thread(names))


async def get_logs(request: web.Request) -> web.Response:
    return json_response("".join(f"{e['t']} - {e['m']}" for e in request.app[LOG].entries))


async def get_raw_logs(request: web.Request) -> web.Response:
    size = os.get_terminal_size() if os.isatty(1) else os.terminal_size((80, 24))
    return json_response({"entries": list(request.app[LOG].entries), "size": {"cols": size.columns, "rows": size.lines}})


async def subscribe_logs(request: web.Request) -> web.Response:
    """``{clientId, enabled}``: accepted; live log lines are not pushed over the websocket here."""
    body: Any = await read_json(request, default={})
    if not isinstance(body, dict) or "clientId" not in body or "enabled" not in body:
        raise JsonError(400, "bad_request", "expected {clientId, enabled}")
    return web.Response(status=200)
