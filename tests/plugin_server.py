"""An in-process server around a given engine (plugins already loaded), for the plugin tests."""

from __future__ import annotations

import contextlib
import io

import aiohttp
from aiohttp.test_utils import TestServer
from PIL import Image
from server_kit import Client

from latentgraph.engine import Engine
from latentgraph.server import ServerConfig, create_app
from latentgraph.server.store import Store


@contextlib.asynccontextmanager
async def serving_engine(engine: Engine):
    store = Store(engine.settings.base_dir / "queue.sqlite3")
    server = TestServer(create_app(engine, store, ServerConfig()), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Client(str(server.make_url("")).rstrip("/"), session)
    finally:
        await server.close()
        store.close()


async def run_prompt(client: Client, prompt: dict, client_id: str = "plugin-test") -> list[tuple[str, dict]]:
    """Submit over HTTP and return the websocket messages of that prompt until it is done."""
    ws = await client.ws(client_id)
    try:
        reply = await client.submit(prompt, client_id)
        return await ws.until_done(reply["prompt_id"])
    finally:
        await ws.ws.close()


async def fetch_image(client: Client, item: dict) -> Image.Image:
    """An ``{"filename", "subfolder", "type"}`` output item through ``GET /view``."""
    status, body = await client.get("/view", params=item)
    assert status == 200, body
    with Image.open(io.BytesIO(body)) as img:
        img.load()
        return img.copy()
