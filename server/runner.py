"""Serving the app so that even aiohttp's HTTP parser answers in JSON.

A request the parser itself rejects (bad request line, bad header, oversized line, broken
chunking) never reaches the app's middlewares: aiohttp answers it from its protocol object with
``text/plain``. :func:`make_runner` returns an ``AppRunner`` whose protocol answers those with the
same ``{error, node_errors}`` body as every other error, without echoing the offending bytes.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp import web

from latentgraph import standard_json
from latentgraph.server.app import STATUS_KIND, error_body


class JsonErrorProtocol(web.RequestHandler):
    """aiohttp's HTTP protocol, with parse errors answered as JSON."""

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it; raises if a response was already sent
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "HTTP error"
        first_line = (message or "").splitlines()[0][:120] if message else ""
        body = error_body(
            STATUS_KIND.get(status, "http_error"),
            f"{phrase}: the HTTP request could not be parsed" if status < 500 else "internal error",
            first_line if status < 500 else "",
        )
        response = web.Response(status=status, text=standard_json.dumps(body), content_type="application/json")
        response.force_close()
        # Said explicitly: the message could not be read, so its HTTP version is unknown and aiohttp
        # would not add the header, yet the connection closes; a keep-alive client must know.
        response.headers["Connection"] = "close"
        return response


class JsonErrorServer(web.Server):
    """``web.Server`` whose connections use :class:`JsonErrorProtocol`."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        protocol_kwargs = {k: v for k, v in kwargs.items() if k not in ("request_factory", "handler_cancellation", "loop")}
        super().__init__(handler, **kwargs)
        self.protocol_kwargs = protocol_kwargs

    def __call__(self) -> web.RequestHandler:
        return JsonErrorProtocol(self, loop=self._loop, **self.protocol_kwargs)


class JsonErrorRunner(web.AppRunner):
    """``web.AppRunner`` serving through :class:`JsonErrorServer`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return JsonErrorServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


def make_runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """The runner to serve ``app`` with (``latentgraph serve`` and the tests): like
    ``web.AppRunner(app, **kwargs)``, with JSON answers to malformed HTTP."""
    return JsonErrorRunner(app, **kwargs)
