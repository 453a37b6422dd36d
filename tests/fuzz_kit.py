"""A fuzz campaign against a running ``latentgraph serve``: mutated workflows and every request shape.

Everything is drawn from ``random.Random(seed)``: a seed names one campaign exactly, so a failure
found by the long run in ``bench/server_abuse.py`` replays in the suite. This module runs the
campaign and re-exports the public names of its parts:

- :class:`Mutator` (``fuzz_mutations``): mutations of the example workflows (``workflows/*.json``
  in API format, ``workflows/editor/*.json`` in the editor's format): type swaps, NaN/Infinity,
  huge integers, deep nesting, unicode and NUL, missing and extra fields, links to nowhere,
  cycles, wrong slot indices, long strings within the limits.
- :func:`requests` (``fuzz_requests``): HTTP requests for every route (``/prompt``, ``/queue``,
  ``/history``, ``/interrupt``, ``/free``, ``/upload/image`` multipart variants, ``/view`` query
  parameters, ``/workflow/convert``, ``/object_info/{x}``, ``/models/{x}``, the GETs, wrong
  methods and headers), and :func:`ws_sessions`: websocket sessions of text and binary messages.
- :func:`run_campaign`: sends them to ``base`` one at a time, each with a timeout, and counts
  2xx/4xx/5xx, hangs, dropped connections and non-JSON answers (``NaN``/``Infinity`` count as
  non-JSON, as a browser's ``JSON.parse`` would have it).

Bodies are written by :func:`dumps` (``fuzz_values``), not ``json.dumps``: it must emit what no
encoder would (``NaN``, integers of 5,000 digits, lone surrogates, nesting deeper than Python
recurses).
"""

from __future__ import annotations

import asyncio
import json
import random  # ``fuzz_kit.random.Random(seed)`` replays a campaign's mutations (tests use it)
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl
from fuzz_mutations import WORKFLOWS, Mutator, load_examples
from fuzz_requests import MAX_BODY, FuzzRequest, RequestMaker, WsSession, requests, tiny_png, ws_sessions
from fuzz_values import Raw, dumps, weird_value

__all__ = [
    "MAX_BODY", "MAX_SAMPLES", "REQUEST_TIMEOUT", "WORKFLOWS", "Counts", "FuzzRequest", "Mutator", "Raw",
    "RequestMaker", "WsSession", "dumps", "load_examples", "random", "requests", "run_campaign", "run_ws",
    "send_one", "send_raw", "strict_json", "tiny_png", "weird_value", "ws_sessions",
]

#: A request gets this long to answer before it counts as a hang.
REQUEST_TIMEOUT = 10.0
#: Failures kept (with the request that caused them) for the report.
MAX_SAMPLES = 20


# -- running a campaign ------------------------------------------------------------------------
def _no_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def strict_json(raw: bytes) -> Any:
    """``raw`` parsed as a browser would: ``NaN``/``Infinity`` refused."""
    return json.loads(raw, parse_constant=_no_constant)


@dataclass
class Counts:
    requests: int = 0
    status_2xx: int = 0
    status_4xx: int = 0
    status_5xx: int = 0
    status_other: int = 0
    hangs: int = 0
    #: the server closed the connection without an answer
    dropped: int = 0
    non_json: int = 0
    #: malformed HTTP the server closed without answering (allowed: there is no request to answer)
    closed: int = 0
    #: refused by the client library itself (not sent; a bug of the generator, not the server)
    unsendable: int = 0
    ws_sessions: int = 0
    ws_non_json: int = 0
    seconds: float = 0.0
    slowest_ms: float = 0.0
    slowest: str = ""
    failures: list[str] = field(default_factory=list)
    #: the request sent before the current one (a dropped keep-alive connection is its doing)
    previous: str = ""

    def fail(self, what: str, request: str) -> None:
        if len(self.failures) < MAX_SAMPLES:
            self.failures.append(f"{what}: {request}")

    @property
    def ok(self) -> bool:
        return not (self.status_5xx or self.hangs or self.dropped or self.non_json or self.ws_non_json or self.status_other)

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("failures", "slowest", "previous")}
        out["seconds"] = round(self.seconds, 1)
        out["slowest_ms"] = round(self.slowest_ms, 1)
        out["slowest"] = self.slowest[:200]
        return out


def _needs_json(request: FuzzRequest, status: int) -> bool:
    if request.method == "HEAD" or status == 204:
        return False
    return not (request.file_route and 200 <= status < 300)


async def send_one(session: aiohttp.ClientSession, base: str, request: FuzzRequest, counts: Counts, timeout: float = REQUEST_TIMEOUT) -> None:
    counts.requests += 1
    start = time.perf_counter()
    previous, counts.previous = counts.previous, request.describe(100)
    if request.raw is not None:
        try:
            answer = await send_raw(base, request, timeout)
        except TimeoutError:
            counts.hangs += 1
            counts.fail("hang", request.describe())
            return
        except ConnectionError:
            answer = None
        if answer is None:
            counts.closed += 1
            return
        status, raw = answer
        _count(counts, request, status, raw, (time.perf_counter() - start) * 1000)
        return
    try:
        async with asyncio.timeout(timeout):
            url = yarl.URL(base + request.path, encoded=True)  # sent as written: no ``..`` resolved
            async with session.request(request.method, url, data=request.body, headers=request.headers, skip_auto_headers=("Content-Type",) if "Content-Type" not in request.headers else ()) as resp:
                raw = await resp.read()
                status = resp.status
    except TimeoutError:
        counts.hangs += 1
        counts.fail("hang", request.describe())
        return
    except aiohttp.ClientResponseError as exc:
        # An answer the client would not read as one, e.g. the parser's 400 to an over-long HEAD
        # request line carries a body (the server cannot know the method of a line it could not
        # read): the server answered, with a status; count that.
        _count(counts, request, exc.status, b"{}", (time.perf_counter() - start) * 1000)
        return
    except (aiohttp.ClientError, ConnectionError) as exc:
        counts.dropped += 1
        counts.fail(f"dropped ({type(exc).__name__}) after [{previous}]", request.describe())
        return
    except ValueError as exc:  # the client refused to send it (a header aiohttp will not write)
        counts.unsendable += 1
        counts.fail(f"unsendable ({exc})", request.describe())
        return
    _count(counts, request, status, raw, (time.perf_counter() - start) * 1000)


def _count(counts: Counts, request: FuzzRequest, status: int, raw: bytes, elapsed: float) -> None:
    if elapsed > counts.slowest_ms:
        counts.slowest_ms, counts.slowest = elapsed, request.describe(80)
    if 200 <= status < 300:
        counts.status_2xx += 1
    elif 400 <= status < 500:
        counts.status_4xx += 1
    elif status >= 500:
        counts.status_5xx += 1
        counts.fail(f"{status} {raw[:200]!r}", request.describe())
    else:
        counts.status_other += 1
        counts.fail(f"status {status}", request.describe())
    if _needs_json(request, status):
        try:
            strict_json(raw)
        except (ValueError, UnicodeDecodeError):
            counts.non_json += 1
            counts.fail(f"non-JSON {status} {raw[:120]!r}", request.describe())


def _parse_raw_answer(data: bytes) -> tuple[int, bytes] | None:
    """(status, body) of an HTTP/1.1 answer read to EOF; None if there is none."""
    head, sep, body = data.partition(b"\r\n\r\n")
    while sep and head.startswith(b"HTTP/1.1 1"):  # 100 Continue (or another 1xx) first
        head, sep, body = body.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1."):
        return None
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        body = out
    elif b"content-length" in headers:
        body = body[: int(headers[b"content-length"])]
    return status, body


async def send_raw(base: str, request: FuzzRequest, timeout: float = REQUEST_TIMEOUT) -> tuple[int, bytes] | None:
    """Write ``request.raw`` to a fresh connection, read to EOF; None when the server closed
    without an answer (its right for a message it cannot even frame)."""
    url = urllib.parse.urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        async with asyncio.timeout(timeout):
            writer.write(request.raw)
            await writer.drain()
            chunks = []
            while chunk := await reader.read(65536):
                chunks.append(chunk)
                if sum(map(len, chunks)) > 64 * 1024 * 1024:
                    break
    finally:
        writer.close()
    return _parse_raw_answer(b"".join(chunks))


async def run_ws(session: aiohttp.ClientSession, base: str, ws_case: WsSession, counts: Counts, timeout: float = REQUEST_TIMEOUT) -> None:
    """Open a websocket, send the messages, read what comes back for a moment: every text frame
    must be standard JSON; the server may close (oversized frame), never hang the handshake."""
    counts.ws_sessions += 1
    what = f"ws {ws_case.query[:80]} {[m[:40] for m in ws_case.messages]!r}"
    try:
        async with asyncio.timeout(timeout):
            async with session.ws_connect(base + "/ws" + ws_case.query, max_msg_size=0) as ws:
                for message in ws_case.messages:
                    if ws.closed:
                        break
                    await (ws.send_str(message) if isinstance(message, str) else ws.send_bytes(message))
                deadline = time.monotonic() + 0.2
                while not ws.closed and (left := deadline - time.monotonic()) > 0:
                    try:
                        msg = await ws.receive(timeout=left)
                    except TimeoutError:
                        break
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        try:
                            strict_json(msg.data.encode())
                        except ValueError:
                            counts.ws_non_json += 1
                            counts.fail("ws non-JSON", what)
                    elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break
    except TimeoutError:
        counts.hangs += 1
        counts.fail("ws hang", what)
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status >= 500:
            counts.status_5xx += 1
            counts.fail(f"ws handshake {exc.status}", what)
    except (aiohttp.ClientError, ConnectionError):
        pass  # the server closing a connection that sent an oversized frame is its right


async def run_campaign(base: str, seed: int, count: int, *, ws_count: int | None = None, max_seconds: float = 3600.0, token: str | None = None) -> Counts:
    """``count`` fuzzed requests (and ``ws_count`` websocket sessions, default count/20) to
    ``base``, one at a time, stopping early after ``max_seconds``."""
    counts = Counts()
    start = time.monotonic()
    ws_count = max(1, count // 20) if ws_count is None else ws_count
    headers = {"Authorization": f"Bearer {token}"} if token else None
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        sessions = ws_sessions(seed, ws_count)
        for i, request in enumerate(requests(seed, count)):
            if time.monotonic() - start > max_seconds:
                break
            await send_one(session, base, request, counts)
            if ws_count and i % max(1, count // ws_count) == 0:
                case = next(sessions, None)
                if case is not None:
                    await run_ws(session, base, case, counts)
    counts.seconds = time.monotonic() - start
    return counts
