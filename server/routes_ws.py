"""``/ws?clientId=…``: the websocket a client watches its prompts on."""

from __future__ import annotations

import uuid

from aiohttp import WSMsgType, web

from latentgraph.server.app import add_route, state_of

MAX_SID = 200


def setup(app: web.Application) -> None:
    add_route(app, "GET", "/ws", websocket)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    hub = state_of(request).hub
    sid = request.query.get("clientId") or uuid.uuid4().hex
    sid = sid[:MAX_SID]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1024 * 1024)
    await ws.prepare(request)
    conn = hub.attach(ws, sid)  # status with the sid, then the running prompt's events so far
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
            # Clients may send feature flags or pings; nothing here needs an answer.
    finally:
        hub.detach(conn)
    return ws
