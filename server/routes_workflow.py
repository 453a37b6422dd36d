"""``POST /workflow/convert``: editor-format JSON in, API-format ``{prompt}`` out.

``POST /prompt`` keeps taking the API format, as ComfyUI's does; a client holding an editor file
(or a tool without the browser's converter) asks for the API form here first.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from aiohttp import web

from latentgraph.editor_format import convert_editor_workflow, is_api_workflow
from latentgraph.engine import Engine
from latentgraph.server.app import add_route
from latentgraph.server.routes_prompt import encode
from latentgraph.server.schemas import ConvertRequest, parse_body

_TRUE = frozenset({"1", "true", "yes", "on"})


def add_routes(app: web.Application, engine: Engine) -> None:
    """Body: the editor JSON (or ``{"workflow": editor JSON}``). Query ``apply_seed_control=1``
    applies each seed's increment/decrement/randomize mode first. Answers ``{"prompt": …}``
    (plus ``workflow`` when values were applied), or 400 ``{error, node_errors}``."""

    async def convert(request: web.Request) -> web.Response:
        workflow = (await parse_body(request, ConvertRequest)).workflow
        apply = request.query.get("apply_seed_control", "").lower() in _TRUE
        # Converting a big editor file is pure Python work linear in its size: off the loop.
        status, body = await asyncio.to_thread(_convert, workflow, engine, apply)
        return web.Response(body=body, status=status, content_type="application/json")

    add_route(app, "POST", "/workflow/convert", convert)


def _convert(workflow: dict[str, Any], engine: Engine, apply: bool) -> tuple[int, bytes]:
    """``(status, encoded answer)``; an error report is bounded (``latentgraph.errors.ReportLimits``)."""
    if is_api_workflow(workflow):
        return 200, encode({"prompt": workflow})
    result = convert_editor_workflow(workflow, engine.registry, apply_controls=apply, rng=random.Random() if apply else None)
    if result.report:
        return 400, encode(result.report.to_dict())
    answer: dict[str, Any] = {"prompt": result.prompt}
    if apply:
        answer["workflow"] = result.workflow
    return 200, encode(answer)
