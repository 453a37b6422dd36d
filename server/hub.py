"""Websocket clients: routing each prompt's messages to its submitter, and replay on reconnect.

Everything here runs on the event-loop thread (the worker posts with ``call_soon_threadsafe``),
so the order in which messages are logged is the order in which they are sent: a client that
reconnects gets the log of its running prompt and then the live messages, with no gap and no
duplicate. Each connection has its own outbox and writer task, so a slow client never holds up
the others; one that falls too far behind is disconnected (it can reconnect and replay).

A client's first message may be ComfyUI's ``feature_flags``: it is answered with the server's
flags, and a client that says ``supports_preview_metadata`` gets previews in the framing that
carries the node id (see :mod:`latentgraph.server.previews`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, web

from latentgraph import standard_json
from latentgraph.server.previews import FORMAT_JPEG, FORMAT_PNG, legacy_frame, metadata_frame

log = logging.getLogger("latentgraph.server")

#: Outbox length past which previews are skipped for that client (they are only eye candy). A
#: node's start sends ``executing`` and ``progress_state`` at once, so a fast graph's burst is
#: several messages per node: the bound leaves room for it.
PREVIEW_BACKLOG = 32
#: Longest client message read as JSON (feature flags are a few dozen bytes).
MAX_CLIENT_MESSAGE = 64 * 1024


def server_features(max_upload_bytes: int) -> dict[str, Any]:
    """The server's feature flags: the answer to a client's ``feature_flags`` and ``GET /features``."""
    return {"supports_preview_metadata": True, "max_upload_size": max_upload_bytes}


def encode(kind: str, data: dict[str, Any]) -> str:
    return standard_json.dumps({"type": kind, "data": data}, separators=(",", ":"))


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    sid: str
    outbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    task: asyncio.Task | None = None
    closed: bool = False
    #: Only a client's first message can negotiate feature flags (as in ComfyUI).
    negotiated: bool = False
    supports_preview_metadata: bool = False


@dataclass
class PromptLog:
    """The messages of one running prompt, for replay; consecutive progress ticks collapse."""

    client_id: str
    limit: int
    messages: deque = field(default_factory=deque)
    last_progress_node: str | None = None
    #: The latest ``progress_state`` snapshot: it supersedes every earlier one, so only it replays.
    latest_state: str | None = None

    def add(self, kind: str, data: dict[str, Any], text: str) -> None:
        if kind == "progress_state":
            self.latest_state = text
            return
        if kind == "progress" and self.last_progress_node == data.get("node") and self.messages:
            self.messages[-1] = text
            return
        self.last_progress_node = data.get("node") if kind == "progress" else None
        self.messages.append(text)
        while len(self.messages) > self.limit:
            self.messages.popleft()


class Hub:
    def __init__(
        self,
        queue_remaining: Callable[[], int],
        *,
        replay_limit: int = 1000,
        max_backlog: int = 10_000,
        status_interval: float = 0.05,
        preview_method: str = "none",
    ) -> None:
        self.queue_remaining = queue_remaining
        #: The server's default preview method (``--preview-method``); ComfyUI's default is none.
        self.preview_method = preview_method
        self.status_interval = status_interval
        self._last_status = float("-inf")
        self.replay_limit = replay_limit
        self.max_backlog = max_backlog
        #: Connections by client id, oldest first; only the newest receives that client's events
        #: (as in ComfyUI, where a reconnect replaces the socket), the older ones nothing.
        self._clients: dict[str, list[Connection]] = {}
        self._logs: dict[str, PromptLog] = {}
        self._status_scheduled = False

    # -- connections --------------------------------------------------------------------------
    def attach(self, ws: web.WebSocketResponse, sid: str) -> Connection:
        conn = Connection(ws, sid)
        self._clients.setdefault(sid, []).append(conn)
        conn.task = asyncio.get_running_loop().create_task(self._writer(conn))
        self._put(conn, self.status_message(sid))
        for text in self.replay_for(sid):
            self._put(conn, text)
        return conn

    def detach(self, conn: Connection) -> None:
        conn.closed = True
        conns = self._clients.get(conn.sid)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._clients[conn.sid]
        conn.outbox.put_nowait(None)

    def receive(self, conn: Connection, text: str, features: dict[str, Any]) -> None:
        """A text message from a client: the first may be ``feature_flags``; the rest are ignored."""
        if conn.negotiated:
            return
        conn.negotiated = True
        if len(text) > MAX_CLIENT_MESSAGE:
            return
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            return
        if not isinstance(message, dict) or message.get("type") != "feature_flags":
            return
        flags = message.get("data")
        conn.supports_preview_metadata = isinstance(flags, dict) and flags.get("supports_preview_metadata") is True
        self._put(conn, encode("feature_flags", features))

    def is_listening(self, client_id: str | None) -> bool:
        """Safe to call from another thread (a dict lookup); used to skip rendering previews."""
        return bool(self._clients) if client_id is None else client_id in self._clients

    @property
    def client_count(self) -> int:
        return sum(len(c) for c in self._clients.values())

    def replay_for(self, sid: str) -> list[str]:
        return [
            text
            for log_ in self._logs.values()
            if log_.client_id == sid
            for text in (*log_.messages, *((log_.latest_state,) if log_.latest_state else ()))
        ]

    async def close_all(self) -> None:
        conns = [c for group in self._clients.values() for c in group]
        await asyncio.gather(
            *(c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for c in conns),
            return_exceptions=True,
        )

    # -- sending ------------------------------------------------------------------------------
    def publish(self, prompt_id: str, client_id: str | None, kind: str, data: dict[str, Any], *, final: bool = False) -> None:
        """One execution message of a prompt: to its submitter (everyone if it has none)."""
        text = encode(kind, data)
        if client_id is not None:
            log_ = self._logs.get(prompt_id)
            if log_ is None and not final:
                log_ = self._logs[prompt_id] = PromptLog(client_id, self.replay_limit)
            if log_ is not None:
                log_.add(kind, data, text)
        if final:
            self._logs.pop(prompt_id, None)
        self._send(client_id, text)

    def publish_preview(self, client_id: str | None, jpeg: bytes, metadata: dict[str, Any]) -> None:
        """A preview image, framed for each client as its feature flags asked; skipped for a
        client that is behind."""
        frames: dict[bool, bytes] = {}
        for conn in self._targets(client_id):
            if conn.outbox.qsize() >= PREVIEW_BACKLOG:
                continue
            rich = conn.supports_preview_metadata
            if rich not in frames:
                frames[rich] = metadata_frame(jpeg, metadata) if rich else legacy_frame(jpeg, FORMAT_JPEG)
            self._put(conn, frames[rich])

    def publish_image(self, client_id: str | None, png: bytes) -> None:
        """A picture a node sends (SaveImageWebsocket): PNG, never dropped, always in the legacy
        framing (1, 2, PNG) — ComfyUI sends these as unencoded preview images, whatever the
        client's feature flags."""
        frame = legacy_frame(png, FORMAT_PNG)
        for conn in self._targets(client_id):
            self._put(conn, frame)

    def broadcast(self, kind: str, data: dict[str, Any]) -> None:
        self._send(None, encode(kind, data))

    def status_message(self, sid: str | None = None) -> str:
        data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}
        if sid is not None:
            data["sid"] = sid
        return encode("status", data)

    def status_changed(self) -> None:
        """Queue length changed: tell everyone — at most every ``status_interval`` seconds, so a
        burst of submissions costs one message per client, and always with the latest count."""
        if self._status_scheduled:
            return
        self._status_scheduled = True
        loop = asyncio.get_running_loop()
        wait = self._last_status + self.status_interval - loop.time()
        if wait > 0:
            loop.call_later(wait, self._send_status)
        else:
            loop.call_soon(self._send_status)

    def _send_status(self) -> None:
        self._status_scheduled = False
        self._last_status = asyncio.get_running_loop().time()
        if self._clients:
            self._send(None, self.status_message())

    def _targets(self, client_id: str | None) -> list[Connection]:
        if client_id is None:
            return [conns[-1] for conns in self._clients.values()]
        conns = self._clients.get(client_id)
        return [conns[-1]] if conns else []

    def _send(self, client_id: str | None, text: str) -> None:
        for conn in self._targets(client_id):
            self._put(conn, text)

    def _put(self, conn: Connection, item: str | bytes) -> None:
        if conn.closed:
            return
        if conn.outbox.qsize() >= self.max_backlog:
            log.warning("websocket client %s is %d messages behind; disconnecting it", conn.sid, self.max_backlog)
            self.detach(conn)
            asyncio.get_running_loop().create_task(conn.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow"))
            return
        conn.outbox.put_nowait(item)

    async def _writer(self, conn: Connection) -> None:
        ws = conn.ws
        try:
            while True:
                item = await conn.outbox.get()
                if item is None or ws.closed:
                    return
                if isinstance(item, bytes):
                    await ws.send_bytes(item)
                else:
                    await ws.send_str(item)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return
        except Exception:  # never let one client's socket error escape
            log.exception("websocket writer for %s failed", conn.sid)
