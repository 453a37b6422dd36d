"""Prompts in, queue and history out: ``/prompt``, ``/queue``, ``/history``, ``/interrupt``."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

from aiohttp import web

from latentgraph.server.app import JsonError, ServerState, add_route, read_json, state_of
from latentgraph.store import DuplicatePromptId, QueueItem

MAX_ID = 200


def setup(app: web.Application) -> None:
    add_route(app, "POST", "/prompt", post_prompt)
    add_route(app, "GET", "/prompt", get_prompt)
    add_route(app, "GET", "/queue", get_queue)
    add_route(app, "POST", "/queue", post_queue)
    add_route(app, "GET", "/history", get_history)
    add_route(app, "GET", "/history/{prompt_id}", get_history_item)
    add_route(app, "POST", "/history", post_history)
    add_route(app, "POST", "/interrupt", post_interrupt)


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_ID:
        raise JsonError(400, "invalid_prompt", f"'{key}' must be a string of at most {MAX_ID} characters")
    return value


def _check(state: ServerState, body: dict[str, Any]) -> QueueItem | tuple[int, dict[str, Any]]:
    """Validate one prompt into a queue item (runs in a thread: validation may list files)."""
    prompt = body.get("prompt")
    if not isinstance(prompt, dict) or not prompt:
        raise JsonError(400, "no_prompt", "No prompt provided", "'prompt' must be an API-format workflow object")
    client_id = _optional_str(body, "client_id")
    prompt_id = _optional_str(body, "prompt_id") or str(uuid.uuid4())
    extra_data = body.get("extra_data") or {}
    if not isinstance(extra_data, dict):
        raise JsonError(400, "invalid_prompt", "'extra_data' must be an object")
    targets = body.get("partial_execution_targets")
    if targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise JsonError(400, "invalid_prompt", "'partial_execution_targets' must be a list of node ids")
    graph, report = state.engine.check(prompt, targets=targets)
    if graph is None:
        return 400, report.to_dict()
    if "number" in body and body["number"] is not None:
        try:
            number = float(body["number"])
        except (TypeError, ValueError):
            raise JsonError(400, "invalid_prompt", "'number' must be a number") from None
        if not math.isfinite(number):
            raise JsonError(400, "invalid_prompt", "'number' must be finite")
    else:
        number = state.store.assign_number(front=bool(body.get("front")))
    if client_id is not None:
        extra_data = {**extra_data, "client_id": client_id}
    item = QueueItem(
        prompt_id=prompt_id,
        number=number,
        prompt=prompt,
        extra_data=extra_data,
        outputs_to_execute=list(graph.outputs),
        client_id=client_id,
    )
    return item


async def post_prompt(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json(request, default={})
    if not isinstance(body, dict):
        raise JsonError(400, "invalid_prompt", "the body must be a JSON object")
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


def _id_list(body: dict[str, Any], key: str) -> list[str]:
    ids = body.get(key)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise JsonError(400, "bad_request", f"'{key}' must be a list of prompt ids")
    return ids


async def post_queue(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json(request, default={})
    if not isinstance(body, dict):
        raise JsonError(400, "bad_request", "the body must be a JSON object")
    removed = 0
    if body.get("clear"):
        removed += state.store.delete_pending()
    if "delete" in body:
        removed += state.store.delete_pending(_id_list(body, "delete"))
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
    body = await read_json(request, default={})
    if not isinstance(body, dict):
        raise JsonError(400, "bad_request", "the body must be a JSON object")
    removed = 0
    if body.get("clear"):
        removed += state.store.delete_history()
    if "delete" in body:
        removed += state.store.delete_history(_id_list(body, "delete"))
    return web.json_response({"deleted": removed})


async def post_interrupt(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json(request, default={})
    prompt_id = None
    if isinstance(body, dict) and body.get("prompt_id"):
        prompt_id = _optional_str(body, "prompt_id")
    interrupted = state.worker.interrupt(prompt_id) if state.worker is not None else False
    return web.json_response({"interrupted": interrupted})


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, default=str)
