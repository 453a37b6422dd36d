"""Prompts in, queue and history out: ``/prompt``, ``/queue``, ``/history``, ``/interrupt``."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web

from latentgraph.server.app import JsonError, ServerState, add_route, state_of
from latentgraph.server.schemas import ClearOrDelete, InterruptRequest, PromptRequest, parse_body
from latentgraph.store import DuplicatePromptId, QueueItem


def setup(app: web.Application) -> None:
    add_route(app, "POST", "/prompt", post_prompt)
    add_route(app, "GET", "/prompt", get_prompt)
    add_route(app, "GET", "/queue", get_queue)
    add_route(app, "POST", "/queue", post_queue)
    add_route(app, "GET", "/history", get_history)
    add_route(app, "GET", "/history/{prompt_id}", get_history_item)
    add_route(app, "POST", "/history", post_history)
    add_route(app, "POST", "/interrupt", post_interrupt)


def _check(state: ServerState, body: PromptRequest) -> QueueItem | tuple[int, dict[str, Any]]:
    """Validate one prompt into a queue item (runs in a thread: validation may list files)."""
    graph, report = state.engine.check(body.prompt, targets=body.partial_execution_targets)
    if graph is None:
        return 400, report.to_dict()
    number = body.number if body.number is not None else state.store.assign_number(front=body.front)
    extra_data = body.extra_data.model_dump(exclude_unset=True)
    if body.client_id is not None:
        extra_data["client_id"] = body.client_id
    return QueueItem(
        prompt_id=body.prompt_id or str(uuid.uuid4()),
        number=number,
        prompt=body.prompt,
        extra_data=extra_data,
        outputs_to_execute=list(graph.outputs),
        client_id=body.client_id,
    )


async def post_prompt(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await parse_body(request, PromptRequest)
    item = await asyncio.to_thread(_check, state, body)
    if isinstance(item, tuple):
        status, payload = item
        return web.json_response(payload, status=status)
    try:
        await state.acceptor.add(item)  # durable before we answer
    except DuplicatePromptId:
        raise JsonError(400, "duplicate_prompt_id", f"prompt_id '{item.prompt_id}' is already queued or in history") from None
    if state.worker is not None:
        state.worker.notify()
    state.hub.status_changed()
    number = int(item.number) if float(item.number).is_integer() else item.number
    return web.json_response({"prompt_id": item.prompt_id, "number": number, "node_errors": {}})


async def get_prompt(request: web.Request) -> web.Response:
    remaining = state_of(request).store.queue_remaining()
    return web.json_response({"exec_info": {"queue_remaining": remaining}})


async def get_queue(request: web.Request) -> web.Response:
    running, pending = state_of(request).store.queue()
    return web.json_response(
        {"queue_running": [i.to_wire() for i in running], "queue_pending": [i.to_wire() for i in pending]},
        dumps=_dumps,
    )


async def post_queue(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await parse_body(request, ClearOrDelete)
    removed = 0
    if body.clear:
        removed += state.store.delete_pending()
    if body.delete:
        removed += state.store.delete_pending(body.delete)
    if removed:
        state.hub.status_changed()
    return web.json_response({"deleted": removed})


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise JsonError(400, "bad_request", f"'{name}' must be an integer") from None
    if value < 0:
        raise JsonError(400, "bad_request", f"'{name}' must not be negative")
    return value


async def get_history(request: web.Request) -> web.Response:
    max_items = _int_param(request, "max_items")
    offset = _int_param(request, "offset") or 0
    entries = state_of(request).store.history(max_items, offset)
    return web.json_response({e.item.prompt_id: e.to_wire() for e in entries}, dumps=_dumps)


async def get_history_item(request: web.Request) -> web.Response:
    prompt_id = request.match_info["prompt_id"]
    entry = state_of(request).store.get_history(prompt_id)
    return web.json_response({prompt_id: entry.to_wire()} if entry else {}, dumps=_dumps)


async def post_history(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await parse_body(request, ClearOrDelete)
    removed = 0
    if body.clear:
        removed += state.store.delete_history()
    if body.delete:
        removed += state.store.delete_history(body.delete)
    return web.json_response({"deleted": removed})


async def post_interrupt(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await parse_body(request, InterruptRequest)
    interrupted = state.worker.interrupt(body.prompt_id) if state.worker is not None else False
    return web.json_response({"interrupted": interrupted})


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, default=str)
