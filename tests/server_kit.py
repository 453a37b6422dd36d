"""Helpers for the server tests: a real server on a free loopback port and websocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

import server_nodes
from latentgraph.server import ServerConfig, create_app
from latentgraph.settings import Settings
from latentgraph.server.store import Store
from latentgraph.testing import WorkflowBuilder, make_engine

TIMEOUT = 30.0


def chain(value: int = 1, *, steps: int = 2, delay: float = 0.0, preview: bool = False, b: int = 10) -> dict:
    """``Number → Add → Wait → Show``: four nodes, one with progress ticks."""
    wf = WorkflowBuilder()
    n = wf.add("SrvNumber", id="1", value=value)
    a = wf.add("SrvAdd", id="2", a=n[0], b=b)
    w = wf.add("SrvWait", id="3", value=a[0], steps=steps, delay=delay, preview=preview)
    wf.add("SrvShow", id="4", value=w[0])
    return wf.to_api()


@dataclass
class WsClient:
    ws: aiohttp.ClientWebSocketResponse
    client_id: str
    sid: str = ""
    messages: list[tuple[str, dict]] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)

    async def receive(self, timeout: float = TIMEOUT) -> tuple[str, dict] | None:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type == aiohttp.WSMsgType.TEXT:
            data = json.loads(msg.data)
            item = (data["type"], data["data"])
            self.messages.append(item)
            return item
        if msg.type == aiohttp.WSMsgType.BINARY:
            self.frames.append(msg.data)
            return None
        raise ConnectionError(f"websocket closed: {msg.type} {msg.data!r}")

    async def until(self, kind: str, timeout: float = TIMEOUT, **match: Any) -> dict:
        """Read until a message of ``kind`` whose data has the given items; returns its data."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind} {match} within {timeout}s; got {[m[0] for m in self.messages][-20:]}")
            item = await self.receive(left)
            if item and item[0] == kind and all(item[1].get(k) == v for k, v in match.items()):
                return item[1]

    async def until_done(self, prompt_id: str, timeout: float = TIMEOUT) -> list[tuple[str, dict]]:
        """Every execution message of ``prompt_id`` up to and including ``executing {node: null}``."""
        start = len(self.messages)
        await self.until("executing", timeout, node=None, prompt_id=prompt_id)
        return [m for m in self.messages[start:] if m[1].get("prompt_id") == prompt_id]

    def of(self, prompt_id: str) -> list[tuple[str, dict]]:
        return [m for m in self.messages if m[1].get("prompt_id") == prompt_id]


@dataclass
class Client:
    base: str
    session: aiohttp.ClientSession
    token: str | None = None

    def url(self, path: str) -> str:
        return self.base + path

    def _headers(self, headers: dict | None) -> dict:
        out = dict(headers or {})
        if self.token:
            out.setdefault("Authorization", f"Bearer {self.token}")
        return out

    async def request(self, method: str, path: str, *, headers: dict | None = None, **kw) -> tuple[int, Any]:
        async with self.session.request(method, self.url(path), headers=self._headers(headers), **kw) as resp:
            body = await resp.read()
            try:
                return resp.status, json.loads(body)
            except ValueError:
                return resp.status, body

    async def get(self, path: str, **kw) -> tuple[int, Any]:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw) -> tuple[int, Any]:
        if body is not None:
            kw["json"] = body
        return await self.request("POST", path, **kw)

    async def submit(self, prompt: dict, client_id: str | None = None, **extra: Any) -> dict:
        status, body = await self.post("/prompt", {"prompt": prompt, "client_id": client_id, **extra})
        assert status == 200, body
        return body

    async def ws(self, client_id: str, *, token: str | None = None, read_status: bool = True) -> WsClient:
        query = f"?clientId={client_id}"
        if token or self.token:
            query += f"&token={token or self.token}"
        ws = await self.session.ws_connect(self.url("/ws" + query))
        client = WsClient(ws, client_id)
        if read_status:
            data = await client.until("status")
            client.sid = data.get("sid", "")
        return client


class RunnerTestServer(TestServer):
    """A ``TestServer`` served through ``make_runner``, as ``latentgraph serve`` serves."""

    async def _make_runner(self, **kwargs: Any):
        from latentgraph.server.runner import make_runner

        return make_runner(self.app, **kwargs)


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, *plugins: object, config: ServerConfig | None = None, store: Store | None = None, runner: bool = False
):
    """An in-process server on a free loopback port; yields a :class:`Client`. ``runner``: serve
    through ``make_runner`` (malformed HTTP answered in JSON) as ``latentgraph serve`` does."""
    engine = make_engine(settings, server_nodes, *plugins)
    own_store = store is None
    store = store or Store(settings.base_dir / "queue.sqlite3")
    app = create_app(engine, store, config or ServerConfig())
    server = (RunnerTestServer if runner else TestServer)(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Client(str(server.make_url("")).rstrip("/"), session, (config.auth_token if config else None))
    finally:
        await server.close()
        if own_store:
            store.close()


def run(coro) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 90))


# -- a real `latentgraph serve` process ------------------------------------------------------
def install_plugin(data_dir: Path) -> None:
    plugins = data_dir / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(server_nodes.__file__), plugins / "server_nodes.py")


@dataclass
class ServeProcess:
    proc: subprocess.Popen
    base: str

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        self.proc.terminate()
        return self.proc.wait(30)


def start_serve(data_dir: Path, *args: str, timeout: float = 60) -> ServeProcess:
    env = {**os.environ, "LATENTGRAPH_PLUGINS": "server_nodes", "PYTHONUNBUFFERED": "1"}
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "serve.log", "a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "latentgraph.cli", "serve", "--data-dir", str(data_dir), "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited {proc.returncode}: {(data_dir / 'serve.log').read_text()}")
            continue
        if "serving on " in line:
            return ServeProcess(proc, line.strip().split("serving on ", 1)[1])
    proc.kill()
    raise TimeoutError("latentgraph serve did not start")
