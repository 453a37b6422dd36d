"""Prompts in, queue and history out: ``/prompt``, ``/queue``, ``/history``, ``/interrupt``.

Nothing slow runs on the event loop: validation, SQLite reads and writes and the encoding of
answers (a history is megabytes of JSON) run in a worker thread, and big answers are encoded
piece by piece so that thread lets go of the GIL between pieces (one ``json.dumps`` of the
whole answer would hold it, and stall every other client, for as long as it takes).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from latentgraph import standard_json
from latentgraph.server.app import JsonError, ServerState, add_route, json_response, state_of
from latentgraph.server.schemas import ClearOrDelete, InterruptRequest, PromptRequest, parse_body
from latentgraph.server.store import DuplicatePromptId, QueueItem
from latentgraph.validation import Graph


#: Nodes a prompt may have. Validation is linear (a 12k-node prompt takes about a second, off
#: the loop), but real workflows have hundreds of nodes, and 16 MiB of tiny nodes would be 250k.
MAX_PROMPT_NODES = 10_000


def setup(app: web.Application) -> None:
    add_route(app, "POST", "/prompt", post_prompt)
    add_route(app, "GET", "/prompt", get_prompt)
    add_route(app, "GET", "/queue", get_queue)
    add_route(app, "POST", "/queue", post_queue)
    add_route(app, "GET", "/history", get_history)
    add_route(app, "GET", "/history/{prompt_id}", get_history_item)
    add_route(app, "POST", "/history", post_history)
    add_route(app, "POST", "/interrupt", post_interrupt)


def _check(state: ServerState, body: PromptRequest) -> tuple[QueueItem, Graph] | bytes:
    """Validate one prompt into a queue item and its graph, or the encoded 400 answer (runs in a
    thread: validation is linear in the prompt, a 10k-node one takes a fraction of a second, and
    may list files)."""
    graph, report = state.engine.check(body.prompt, targets=body.partial_execution_targets)
    if graph is None:
        return encode(report.to_dict())  # bounded: see latentgraph.errors.ReportLimits
    number = body.number if body.number is not None else state.store.assign_number(front=body.front)
    extra_data = body.extra_data.model_dump(exclude_unset=True)
    if body.client_id is not None:
        extra_data["client_id"] = body.client_id
    item = QueueItem(
        prompt_id=body.prompt_id or str(uuid.uuid4()),
        number=number,
        prompt=body.prompt,
        extra_data=extra_data,
        outputs_to_execute=list(graph.outputs),
        client_id=body.client_id,
    )
    return item, graph


async def post_prompt(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await parse_body(request, PromptRequest)
    if len(body.prompt) > MAX_PROMPT_NODES:
        raise JsonError(
            400,
            "prompt_too_large",
            f"prompt: {len(body.prompt)} nodes; at most {MAX_PROMPT_NODES} are accepted",
            field="prompt",
            nodes=len(body.prompt),
            limit=MAX_PROMPT_NODES,
        )
    checked = await asyncio.to_thread(_check, state, body)
    if isinstance(checked, bytes):
        return _json_bytes(checked, status=400)
    item, graph = checked
    validated = state.validated
    if validated is not None:  # the worker runs this graph: the prompt is validated once
        validated.offer(item.prompt_id, graph)
    try:
        await state.acceptor.add(item)  # durable before we answer
    except BaseException as exc:
        if validated is not None:
            validated.withdraw(item.prompt_id, graph)
        if isinstance(exc, DuplicatePromptId):
            raise JsonError(400, "duplicate_prompt_id", f"prompt_id '{item.prompt_id}' is already queued or in history") from None
        raise
    if state.worker is not None:
        state.worker.notify()
    state.hub.status_changed()
    number = int(item.number) if float(item.number).is_integer() else item.number
    return json_response({"prompt_id": item.prompt_id, "number": number, "node_errors": {}})


async def get_prompt(request: web.Request) -> web.Response:
    remaining = state_of(request).store.queue_remaining()  # from memory
    return json_response({"exec_info": {"queue_remaining": remaining}})


async def get_queue(request: web.Request) -> web.Response:
    store = state_of(request).store

    def answer() -> bytes:
        running, pending = store.queue()
        return encode({"queue_running": [i.to_wire() for i in running], "queue_pending": [i.to_wire() for i in pending]})

    return await _off_loop(answer)


async def post_queue(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await parse_body(request, ClearOrDelete)

    def delete() -> int:
        removed = 0
        if body.clear:
            removed += state.store.delete_pending()
        if body.delete:
            removed += state.store.delete_pending(body.delete)
        if state.validated is not None and (body.clear or body.delete):
            state.validated.discard(None if body.clear else body.delete)
        return removed

    removed = await asyncio.to_thread(delete)
    if removed:
        state.hub.status_changed()
    return json_response({"deleted": removed})


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
    offset = _int_param(request, "offset")  # none: the newest max_items (ComfyUI)
    store = state_of(request).store
    if request.method == "HEAD":
        return web.Response(content_type="application/json")
    entries = await asyncio.to_thread(store.history_json, max_items, offset)
    # Streamed entry by entry: the body is spliced from stored JSON (no parse, no re-encode).
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    await response.prepare(request)
    await response.write(b"{")
    for i, (prompt_id, text) in enumerate(entries):
        await response.write(("," if i else "").encode() + standard_json.dumps(prompt_id).encode() + b":" + text.encode())
    await response.write(b"}")
    await response.write_eof()
    return response


async def get_history_item(request: web.Request) -> web.Response:
    prompt_id = request.match_info["prompt_id"]
    store = state_of(request).store

    def answer() -> bytes:
        entry = store.get_history(prompt_id)
        return encode({prompt_id: entry.to_wire()} if entry else {})

    return await _off_loop(answer)


async def post_history(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await parse_body(request, ClearOrDelete)

    def delete() -> int:
        removed = 0
        if body.clear:
            removed += state.store.delete_history()
        if body.delete:
            removed += state.store.delete_history(body.delete)
        return removed

    return json_response({"deleted": await asyncio.to_thread(delete)})


async def post_interrupt(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await parse_body(request, InterruptRequest)
    interrupted = state.worker.interrupt(body.prompt_id) if state.worker is not None else False
    return json_response({"interrupted": interrupted})


# -- JSON out, off the loop and in pieces -----------------------------------------------------
#: Containers this deep (answer → entry → field → prompt → node) are encoded one member at a
#: time; below that one ``json.dumps`` call (the C encoder, which holds the GIL) per member.
PIECE_DEPTH = 4


def encode(value: Any) -> bytes:
    """Standard JSON of ``value`` (no NaN/Infinity), built from pieces no bigger than one member
    at depth :data:`PIECE_DEPTH` (about one node of one prompt) so a thread encoding a long
    history yields the GIL between them."""
    pieces: list[str] = []
    _encode_into(value, PIECE_DEPTH, pieces)
    return "".join(pieces).encode()


def _encode_into(value: Any, depth: int, pieces: list[str]) -> None:
    if depth <= 0 or not isinstance(value, (dict, list, tuple)) or len(value) <= 1:
        pieces.append(standard_json.dumps(value))
    elif isinstance(value, dict):
        pieces.append("{")
        for i, (key, member) in enumerate(value.items()):
            pieces.append(("," if i else "") + standard_json.dumps(str(key)) + ":")
            _encode_into(member, depth - 1, pieces)
        pieces.append("}")
    else:
        pieces.append("[")
        for i, member in enumerate(value):
            if i:
                pieces.append(",")
            _encode_into(member, depth - 1, pieces)
        pieces.append("]")


def _json_bytes(body: bytes, *, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


async def _off_loop(answer: Callable[[], bytes]) -> web.Response:
    """``answer()`` (SQLite reads and encoding) in a worker thread; a 200 with its JSON."""
    return _json_bytes(await asyncio.to_thread(answer))
