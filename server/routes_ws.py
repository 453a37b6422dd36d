"""``/ws?clientId=…``: the websocket a client watches its prompts on."""

from __future__ import annotations

import uuid

from aiohttp import WSMsgType, web

from latentgraph.server.app import add_route, state_of
from latentgraph.server.hub import server_features

MAX_SID = 200


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/ws", websocket)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    state = state_of(request)
    hub = state.hub
    sid = request.query.get("clientId") or uuid.uuid4().hex
    sid = sid[:MAX_SID]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1024 * 1024)
    await ws.prepare(request)
    conn = hub.attach(ws, sid)  # status with the sid, then the running prompt's events so far
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
            if msg.type == WSMsgType.TEXT:  # feature flags (first message only); the rest is ignored
                hub.receive(conn, msg.data, server_features(state.config.max_upload_bytes))
    finally:
        hub.detach(conn)
    return ws
