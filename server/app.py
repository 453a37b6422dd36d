"""The aiohttp application: state, middlewares (errors, origin/host, auth), routes, lifecycle.

``create_app(engine, store, config)`` returns an app that starts its worker thread on startup
and stops it on cleanup (the running prompt is interrupted and stays queued for the next start).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from latentgraph import standard_json
from latentgraph.engine import Engine
from latentgraph.server.accept import Acceptor
from latentgraph.server.hub import Hub
from latentgraph.server.worker import Worker
from latentgraph.server.store import Store
from latentgraph.server.validated import ValidatedGraphs

log = logging.getLogger("latentgraph.server")
MiB = 1024 * 1024
#: Bodies larger than this are parsed (and checked) off the event loop.
THREAD_PARSE_BYTES = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ServerConfig:
    """How the server guards itself; the engine and the store are passed separately."""

    #: When set, every request must carry it (``Authorization: Bearer`` or ``?token=``).
    auth_token: str | None = None
    max_upload_bytes: int = 64 * MiB
    max_body_bytes: int = 16 * MiB
    preview_interval: float = 0.1
    replay_limit: int = 1000
    #: Host names accepted in the ``Host`` header besides loopback ones, when bound to loopback
    #: (DNS-rebinding protection); None disables the check (bound to a public address).
    allowed_hosts: frozenset[str] | None = field(default_factory=frozenset)
    #: Values (arrays, objects, list items) a JSON body may hold, counted from its bytes before
    #: parsing: parsing holds the GIL, so a body of millions of tiny values would stall everyone.
    max_json_values: int = 250_000
    #: Live previews unless a prompt says otherwise (``--preview-method``; ComfyUI's default: none).
    preview_method: str = "none"
    #: The web editor's folder (a ComfyUI frontend build) served at ``/``; None: no editor.
    editor_dir: Path | None = None
    #: Several users, picked by the ``Comfy-User`` header (``--multi-user``); else user ``default``.
    multi_user: bool = False
    #: ``--workers ray[://ADDRESS]``: a :class:`latentgraph.server.cluster.ClusterConfig`; None
    #: runs prompts in this process (the default).
    cluster: Any = None


@dataclass
class ServerState:
    engine: Engine
    store: Store
    config: ServerConfig
    hub: Hub
    acceptor: Acceptor
    worker: Worker | None = None
    #: Graphs validated at acceptance, run by the in-process worker (None with --workers: the
    #: cluster's workers validate in their own processes).
    validated: ValidatedGraphs | None = None


STATE = web.AppKey("latentgraph_state", ServerState)


def state_of(request: web.Request) -> ServerState:
    return request.app[STATE]


# -- JSON out -------------------------------------------------------------------------------
def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """The one way a route answers JSON: standard JSON only (no ``NaN``/``Infinity``)."""
    return web.json_response(data, status=status, headers=headers, dumps=standard_json.dumps)


# -- JSON errors ----------------------------------------------------------------------------
def error_body(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, "details": details, "extra_info": extra}, "node_errors": {}}


def json_error(status: int, kind: str, message: str, details: str = "", *, headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    return json_response(error_body(kind, message, details, **extra), status=status, headers=headers)


class JsonError(Exception):
    """Raise from a handler to answer with a JSON error body."""

    def __init__(self, status: int, kind: str, message: str, details: str = "", **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(kind, message, details, **extra)


STATUS_KIND = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               408: "timeout", 411: "length_required", 413: "too_large", 414: "uri_too_long", 415: "unsupported_media_type",
               431: "headers_too_large", 501: "not_implemented", 505: "http_version_not_supported"}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error is JSON; nothing a request does can take the server down, and no 500 names a
    server path or echoes an exception's text (the log has it)."""
    response = await _answer_in_json(request, handler)
    if request.content.exception() is not None:
        # The body broke off (bad gzip, bad chunking): aiohttp drops the connection after this
        # answer, so say so, or a keep-alive client sends its next request into a closed socket.
        response.force_close()
    return response


async def _answer_in_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except JsonError as exc:
        return json_response(exc.body, status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = STATUS_KIND.get(exc.status, "http_error")
        details = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else ""
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return json_error(exc.status, kind, exc.reason or kind, details, headers=allow)
    except (HttpProcessingError, web.RequestPayloadError) as exc:  # the body broke off or was malformed
        status = getattr(exc, "code", 400) or 400
        status = status if 400 <= status < 500 else 400
        return json_error(status, STATUS_KIND.get(status, "bad_request"), f"malformed request body ({type(exc).__name__})")
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return json_error(500, "internal_error", f"internal error ({type(exc).__name__}); the server log has the details")


def _loopback(hostname: str) -> bool:
    if hostname in ("localhost", "localhost.") or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> tuple[str, int | None]:
    """``host[:port]`` → (lowercase host name, explicit port or None); port -1 if malformed."""
    parts = urlsplit(f"//{value}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    return (parts.hostname or "").lower(), port


@web.middleware
async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse cross-site browser requests (Origin ≠ Host) and, on loopback, foreign Host names.

    Ports are compared only when both sides name one (as ComfyUI does), so a TLS-terminating
    proxy in front (``Origin: https://name``, ``Host: name``) still works.
    """
    config = request.app[STATE].config
    host = request.headers.get("Host", "")
    host_name, host_port = _split_host(host)
    if config.allowed_hosts is not None and host:
        if not _loopback(host_name) and host_name not in config.allowed_hosts:
            return json_error(403, "forbidden", f"host '{host_name[:100]}' is not served here (bound to loopback)")
    origin = request.headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin)
        if origin == "null" or not parts.hostname:
            return json_error(403, "forbidden", "requests from opaque origins are refused")
        origin_name, origin_port = _split_host(parts.netloc)
        same = bool(host) and origin_name == host_name
        if same and origin_port is not None and host_port is not None:
            same = origin_port == host_port
        if not same:
            return json_error(403, "forbidden", "cross-origin request refused (Origin does not match Host)")
    return await handler(request)


def _given_token(request: web.Request) -> str:
    """The token a request carries: ``Bearer TOKEN``, ``Basic`` with TOKEN as the password (any
    user name, for clients that only speak Basic), or ``?token=TOKEN``."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return ""
        return decoded.partition(":")[2]
    return request.query.get("token", "")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[STATE].config.auth_token
    if token and not hmac.compare_digest(_given_token(request).encode("utf-8", "replace"), token.encode()):
        response = json_error(401, "unauthorized", "missing or wrong token")
        response.headers.add("WWW-Authenticate", 'Bearer realm="latentgraph"')
        response.headers.add("WWW-Authenticate", 'Basic realm="latentgraph", charset="UTF-8"')
        return response
    return await handler(request)


@web.middleware
async def options_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``OPTIONS`` on any route: 204 with ``Allow``. No CORS headers: cross-origin preflights were
    already refused by the Origin check, as everything cross-origin is."""
    if request.method == "OPTIONS":
        refusal = request.match_info.http_exception
        if isinstance(refusal, web.HTTPMethodNotAllowed):
            allowed = sorted({*refusal.allowed_methods, "OPTIONS"})
            return web.Response(status=204, headers={"Allow": ", ".join(allowed)})
    return await handler(request)


# -- routing --------------------------------------------------------------------------------
def add_route(app: web.Application, method: str, path: str, handler: Handler) -> None:
    """Register ``path`` and ``/api{path}``, as ComfyUI does; a GET route answers HEAD too."""
    for prefix in ("", "/api"):
        app.router.add_route(method, prefix + path, handler)
        if method == "GET":
            app.router.add_route("HEAD", prefix + path, handler)


def create_app(engine: Engine, store: Store, config: ServerConfig | None = None) -> web.Application:
    from latentgraph.server import (
        routes_editor, routes_files, routes_info, routes_internal, routes_jobs, routes_mask, routes_models,
        routes_prompt, routes_userdata, routes_workflow, routes_ws,
    )

    config = config or ServerConfig()
    app = web.Application(
        middlewares=[errors_middleware, origin_middleware, auth_middleware, options_middleware],
        client_max_size=config.max_body_bytes,
    )
    hub = Hub(store.queue_remaining, replay_limit=config.replay_limit, preview_method=config.preview_method)
    state = ServerState(engine, store, config, hub, Acceptor(store),
                        validated=ValidatedGraphs() if config.cluster is None else None)
    app[STATE] = state
    for module in (routes_prompt, routes_files, routes_info, routes_ws, routes_userdata, routes_jobs, routes_models,
                   routes_internal, routes_mask, routes_editor):
        module.setup(app)
    routes_workflow.add_routes(app, engine)
    register_plugin_routes(app, engine)
    if config.editor_dir is not None:  # its catch-all file route goes last: it never shadows a route
        routes_editor.add_static(app, config.editor_dir)
    app.on_startup.append(_start_worker)
    app.on_shutdown.append(_close_clients)
    app.on_cleanup.append(_stop_worker)
    return app


def register_plugin_routes(app: web.Application, engine: Engine) -> None:
    """Each plugin's ``register_routes(app, prefix)`` on a scratch app; routes outside
    ``/plugins/<name>`` and plugins that raise are reported in ``/plugins`` and skipped."""
    host = engine.host
    if host is None:
        return
    for impl in host.pm.hook.register_routes.get_hookimpls():
        name = impl.plugin_name
        prefix = f"/plugins/{name}"
        scratch = web.Application()
        info = host.plugins.get(name)
        try:
            result = impl.function(**{k: v for k, v in (("app", scratch), ("prefix", prefix)) if k in impl.argnames})
            if hasattr(result, "close") and hasattr(result, "send"):  # a coroutine: not supported here
                result.close()
                raise TypeError("register_routes must add routes synchronously")
        except Exception as exc:
            log.warning("plugin %s: register_routes raised %s", name, exc)
            if info is not None:
                info.errors.append(f"register_routes raised {type(exc).__name__}: {exc}")
            continue
        for route in scratch.router.routes():
            path = route.resource.canonical if route.resource is not None else ""
            if route.method == "HEAD":
                continue
            if path != prefix and not path.startswith(prefix + "/"):
                if info is not None:
                    info.errors.append(f"register_routes: route {path!r} is outside {prefix!r}; skipped")
                continue
            try:
                add_route(app, route.method, path, route.handler)
            except Exception as exc:
                if info is not None:
                    info.errors.append(f"register_routes: {exc}")


async def _start_worker(app: web.Application) -> None:
    state = app[STATE]
    if state.config.cluster is not None:  # prompts run on Ray workers (server/cluster.py)
        from latentgraph.server.cluster import start_cluster

        state.worker = start_cluster(state.engine, state.store, state.hub, asyncio.get_running_loop(),
                                     state.config.cluster, preview_interval=state.config.preview_interval)
        return
    state.worker = Worker(
        state.engine, state.store, state.hub, asyncio.get_running_loop(), preview_interval=state.config.preview_interval,
        validated=state.validated,
    )
    state.worker.start()


async def _close_clients(app: web.Application) -> None:
    await app[STATE].hub.close_all()


async def _stop_worker(app: web.Application) -> None:
    worker = app[STATE].worker
    if worker is not None:
        await asyncio.to_thread(worker.stop)


async def read_json(
    request: web.Request, *, default: Any = None, invalid: Callable[[standard_json.JsonInputError], JsonError] | None = None
) -> Any:
    """The request body as standard JSON, bounded by ``max_body_bytes`` (413 past it); empty →
    ``default``. ``NaN``/``Infinity``, numbers beyond a double, integer literals over 400 digits,
    lone surrogates and nesting deeper than ``standard_json.MAX_DEPTH`` are 400s naming the field
    (``invalid`` shapes that error; by default ``invalid_json``)."""
    limit = request.app[STATE].config.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise JsonError(413, "too_large", f"request body larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise JsonError(413, "too_large", f"request body larger than {limit} bytes")
    if not body or body.isspace():
        return default
    max_values = request.app[STATE].config.max_json_values
    try:
        if len(body) > THREAD_PARSE_BYTES:
            return await asyncio.to_thread(_parse, bytes(body), max_values)
        return _parse(body, max_values)
    except standard_json.JsonInputError as exc:
        raise (invalid or _invalid_json)(exc) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise JsonError(400, "invalid_json", f"the request body is not valid JSON: {str(exc)[:200]}") from None


def _parse(body: bytes | bytearray, max_values: int) -> Any:
    """Count the body's values (a 413 past ``max_values``), then parse it: both off the loop for big bodies."""
    values = body.count(b"[") + body.count(b"{") + body.count(b",")
    if values > max_values:
        raise JsonError(413, "too_large", f"request body holds about {values} JSON values; the limit is {max_values}",
                        reason="too_many_values")
    return standard_json.loads(body)


def _invalid_json(exc: standard_json.JsonInputError) -> JsonError:
    field = exc.path or "body"
    return JsonError(400, "invalid_json", str(exc) if exc.path else f"body: {exc}", field=field,
                     errors=[{"field": field, "type": exc.kind, "message": exc.message}])
