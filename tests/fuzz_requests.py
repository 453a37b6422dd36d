"""Requests of every shape for the fuzz campaign (``fuzz_kit``), per route, and websocket sessions.

:func:`requests`: HTTP requests for every route (``/prompt``, ``/queue``, ``/history``,
``/interrupt``, ``/free``, ``/upload/image`` multipart variants, ``/view`` query parameters,
``/workflow/convert``, ``/object_info/{x}``, ``/models/{x}``, the GETs, wrong methods and headers,
malformed HTTP), and :func:`ws_sessions`: websocket sessions of text and binary messages. Both are
drawn from ``random.Random(seed)``: the same seed gives the same requests.
"""

from __future__ import annotations

import copy
import random
import struct
import urllib.parse
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fuzz_mutations import Mutator, load_examples
from fuzz_values import dumps, weird_value

#: Request bodies stay under the server's default limit (16 MiB).
MAX_BODY = 15 * 1024 * 1024



# -- requests ----------------------------------------------------------------------------------
@dataclass
class FuzzRequest:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: answers that may be files (``/view``): not required to be JSON when 2xx.
    file_route: bool = False
    #: bytes written to the socket as they are (malformed HTTP no client library would send)
    raw: bytes | None = None

    def describe(self, limit: int = 160) -> str:
        if self.raw is not None:
            return f"raw {self.raw[:limit]!r}"
        body = "" if self.body is None else f" body[{len(self.body)}]={self.body[:limit]!r}"
        return f"{self.method} {self.path[:limit]} {self.headers}{body}"


def _json(method: str, path: str, value: Any, **kw: Any) -> FuzzRequest:
    return FuzzRequest(method, path, dumps(value).encode("utf-8", "surrogatepass"), {"Content-Type": "application/json"}, **kw)


def _q(value: Any) -> str:
    text = value if isinstance(value, str) else dumps(value)
    return urllib.parse.quote(text[:3000], safe="")


def tiny_png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x80\x10\x20" * width for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


class RequestMaker:
    """One request of each shape, drawn from ``rng``; :meth:`any` picks a shape."""

    def __init__(self, rng: random.Random, mutator: Mutator) -> None:
        self.rng = rng
        self.mut = mutator

    def any(self) -> FuzzRequest:
        shapes = [
            (self.prompt_api, 8),
            (self.prompt_envelope, 4),
            (self.convert, 6),
            (self.garbage_body, 3),
            (self.queue_or_history_post, 2),
            (self.interrupt, 1),
            (self.free, 1),
            (self.upload, 4),
            (self.view, 3),
            (self.info_path, 2),
            (self.gets, 2),
            (self.wrong_method, 1),
            (self.headers, 2),
            (self.raw_http, 2),
        ]
        while True:  # within the body limit: a bigger body only tests the 413
            request = self.rng.choices([s for s, _ in shapes], [w for _, w in shapes])[0]()
            if request.body is None or len(request.body) <= MAX_BODY:
                return request

    def _route(self, path: str) -> str:
        return self.rng.choice(["", "", "/api"]) + path

    def prompt_api(self) -> FuzzRequest:
        return _json("POST", self._route("/prompt"), {"prompt": self.mut.api_workflow(), "client_id": "fuzz"})

    def prompt_envelope(self) -> FuzzRequest:
        rng = self.rng
        body: dict[str, Any] = {"prompt": copy.deepcopy(rng.choice(self.mut.api))}
        for key in rng.sample(["client_id", "extra_data", "number", "front", "prompt_id", "partial_execution_targets", "zzz"], rng.randint(1, 3)):
            body[key] = weird_value(rng)
        if rng.random() < 0.3:
            body["extra_data"] = {"extra_pnginfo": {"workflow": self.mut.editor_workflow()}, "preview_method": weird_value(rng, big=False)}
        if rng.random() < 0.2:
            body = self.mut.tree(body, 2)
        return _json("POST", self._route("/prompt"), body)

    def convert(self) -> FuzzRequest:
        rng = self.rng
        wf = self.mut.editor_workflow() if rng.random() < 0.85 else self.mut.api_workflow()
        body = {"workflow": wf} if rng.random() < 0.3 else wf
        query = rng.choice(["", "", "?apply_seed_control=1", "?apply_seed_control=" + _q(weird_value(rng, big=False))])
        return _json("POST", self._route("/workflow/convert") + query, body)

    def garbage_body(self) -> FuzzRequest:
        rng = self.rng
        path = self._route(rng.choice(["/prompt", "/workflow/convert", "/queue", "/history", "/interrupt", "/free"]))
        body = rng.choice([
            b"",
            b"{",
            b"null",
            b"[]",
            b'"x"',
            b"1e999",
            b"\xff\xfe\x00{}",
            b"\xef\xbb\xbf{}",
            b'{"prompt": {}}' + b"\x00" * 10,
            b'{"a":1,"a":2}',
            bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 64, 4096]))),
            ("[" * 100_000).encode(),
            b"[" + b"[]," * 200_000 + b"[]]",
            dumps(weird_value(rng)).encode("utf-8", "surrogatepass"),
        ])
        ctype = rng.choice(["application/json", "application/json", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1", ""])
        return FuzzRequest("POST", path, body, {"Content-Type": ctype} if ctype else {})

    def queue_or_history_post(self) -> FuzzRequest:
        rng = self.rng
        body = {k: weird_value(rng) for k in rng.sample(["clear", "delete", "zzz"], rng.randint(0, 2))}
        if rng.random() < 0.3:
            body["delete"] = [weird_value(rng, big=False) for _ in range(rng.randint(0, 5))]
        return _json("POST", self._route(rng.choice(["/queue", "/history"])), body)

    def interrupt(self) -> FuzzRequest:
        rng = self.rng
        body = rng.choice([{}, {"prompt_id": weird_value(rng)}, weird_value(rng)])
        return _json("POST", self._route("/interrupt"), body)

    def free(self) -> FuzzRequest:
        rng = self.rng
        body = {k: weird_value(rng, big=False) for k in rng.sample(["unload_models", "free_memory", "zzz"], rng.randint(0, 3))}
        return _json("POST", self._route("/free"), body)

    def upload(self) -> FuzzRequest:
        rng = self.rng
        boundary = rng.choice(["fuzzb", "----WebKitFormBoundaryx", "a" * 70, "x y"])
        content = rng.choice([tiny_png(), tiny_png(1, 1)[:20], b"", b"GIF89a" + b"\x00" * 20, b"\x00" * 100, b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"ID3" + b"\x00" * 50, bytes(rng.getrandbits(8) for _ in range(200))])
        filename = rng.choice(["a.png", "", "\x00.png", "x" * 300 + ".png", "../../a.png", "/etc/a.png", "a/b.png", "🎨.png", "con.png", ".", "..", "a\\b.png", "a.png\r\nX: y", "a\"b.png"])
        fields: list[tuple[str, str | None, bytes]] = []
        if rng.random() < 0.85:
            fields.append(("image", filename, content))
        for name in rng.sample(["subfolder", "type", "overwrite", "zzz", "image"], rng.randint(0, 4)):
            value = weird_value(rng, big=False)
            fields.append((name, None, (value if isinstance(value, str) else dumps(value)).encode("utf-8", "surrogatepass")[:5000]))
        if rng.random() < 0.1:
            fields += [(f"f{i}", None, b"x") for i in range(rng.choice([40, 200]))]
        body = b"".join(
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"".encode()
            + (f'; filename="{fname}"'.encode("utf-8", "surrogatepass") if fname is not None else b"")
            + (b"\r\nContent-Type: image/png" if fname is not None and rng.random() < 0.5 else b"")
            + b"\r\n\r\n" + data + b"\r\n"
            for name, fname, data in fields
        )
        ending = rng.choice([f"--{boundary}--\r\n", f"--{boundary}--\r\n", "", f"--{boundary}", "--other--\r\n"])
        body += ending.encode()
        ctype = rng.choice([f"multipart/form-data; boundary={boundary}"] * 5 + ["multipart/form-data", "multipart/form-data; boundary=", f"multipart/mixed; boundary={boundary}", "application/json", "multipart/form-data; boundary=\"é\""])
        if rng.random() < 0.1:
            body = body[: rng.randrange(max(1, len(body)))]
        return FuzzRequest("POST", self._route("/upload/image"), body, {"Content-Type": ctype})

    def view(self) -> FuzzRequest:
        rng = self.rng
        params = []
        for name in rng.sample(["filename", "type", "subfolder", "preview", "channel", "zzz", "filename"], rng.randint(0, 5)):
            value = rng.choice([weird_value(rng, big=False), "a.png", "a.png [output]", "x [temp]", "webp;90", "jpeg;-5", "jpeg;1e400", "rgb", "a", "rgba", "input", "output", "temp", "..", "%00"])
            params.append(f"{name}={_q(value)}")
        return FuzzRequest(rng.choice(["GET", "GET", "GET", "HEAD"]), self._route("/view") + ("?" + "&".join(params) if params else ""), file_route=True)

    def info_path(self) -> FuzzRequest:
        rng = self.rng
        value = rng.choice([weird_value(rng, big=False), "KSampler", "checkpoints", "loras", "..", ".", "%2e%2e", "a/b", "x" * 5000, "SaveImage", "__proto__"])
        segment = _q(value) if rng.random() < 0.9 else str(value)[:200].replace("/", "")
        prefix = rng.choice(["/object_info/", "/models/", "/history/"])
        return FuzzRequest(rng.choice(["GET", "GET", "HEAD"]), self._route(prefix + (segment or "x")))

    def gets(self) -> FuzzRequest:
        rng = self.rng
        path = rng.choice(["/prompt", "/queue", "/history", "/system_stats", "/object_info", "/models", "/embeddings", "/extensions", "/features", "/plugins"])
        params = [f"{_q(rng.choice(['max_items', 'offset', 'token', 'clientId', 'zzz']))}={_q(weird_value(rng, big=False))}" for _ in range(rng.randint(0, 3))]
        return FuzzRequest(rng.choice(["GET", "GET", "HEAD", "OPTIONS"]), self._route(path) + ("?" + "&".join(params) if params else ""))

    def wrong_method(self) -> FuzzRequest:
        rng = self.rng
        path = rng.choice(["/prompt", "/queue", "/history", "/view", "/upload/image", "/interrupt", "/free", "/object_info", "/workflow/convert", "/ws", "/nowhere", "/"])
        # ``GET /`` is the editor's page, a file
        return FuzzRequest(rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS", "POST", "GET", "TRACE"]), self._route(path), b"{}", file_route=path == "/")

    def headers(self) -> FuzzRequest:
        rng = self.rng
        request = rng.choice([self.prompt_api, self.convert, self.free, self.interrupt])()
        header, value = rng.choice([
            ("Content-Type", "application/json; charset=utf-99"),
            ("Content-Type", "application/json; charset=utf-16"),
            ("Content-Type", "application/json; charset="),
            ("Content-Type", "application/json; charset=\"x\""),
            ("Content-Type", "text/html"),
            ("Content-Encoding", "gzip"),
            ("Content-Encoding", "deflate"),
            ("Content-Encoding", "br"),
            ("Content-Encoding", "zstd"),
            ("Content-Encoding", "x-unknown"),
            ("Transfer-Encoding", "chunked"),
            ("Origin", "null"),
            ("Origin", "http://evil.example"),
            ("Host", "evil.example"),
            ("Authorization", "Basic !!!"),
            ("Authorization", "Bearer é"),
            ("Accept", "text/html"),
            ("Cookie", "a=" + "b" * 4000),
            ("Expect", "100-continue"),
            ("Range", "bytes=0-1"),
        ])
        if header == "Transfer-Encoding":  # aiohttp writes the chunks itself when asked
            request.headers.pop("Content-Length", None)
        request.headers[header] = value
        return request

    def raw_http(self) -> FuzzRequest:
        """Malformed HTTP: request lines, headers, lengths and chunking aiohttp's parser refuses."""
        rng = self.rng
        body = b'{"prompt": {}}'
        head = rng.choice(["POST /prompt HTTP/1.1", "POST /api/interrupt HTTP/1.1", "GET /queue HTTP/1.1", "POST /upload/image HTTP/1.1"])
        common = "Host: 127.0.0.1\r\nConnection: close\r\n"
        cases = [
            lambda: b"GARBAGE\r\n\r\n",
            lambda: b"GET /queue HTTP/9.9\r\nConnection: close\r\n\r\n",
            lambda: b"GET /queue HTTP/1.1 extra\r\n\r\n",
            lambda: b"GET /" + b"a" * rng.choice([9000, 70000]) + b" HTTP/1.1\r\nConnection: close\r\n\r\n",
            lambda: b"G\x00T /queue HTTP/1.1\r\n\r\n",
            lambda: f"GET /queue?x=\x7f HTTP/1.1\r\n{common}\r\n".encode("latin-1"),
            lambda: f"{head}\r\n{common}X-Bad: a\x7fb\x01\r\nContent-Length: {len(body)}\r\n\r\n".encode("latin-1") + body,
            lambda: f"{head}\r\n{common}X-Nul: a\x00b\r\n\r\n".encode("latin-1"),
            lambda: f"{head}\r\n{common}NoColonHere\r\n\r\n".encode(),
            lambda: f"{head}\r\n{common}X-Big: {'b' * rng.choice([9000, 70000])}\r\n\r\n".encode(),
            lambda: (f"{head}\r\n{common}" + "".join(f"X-{i}: v\r\n" for i in range(rng.choice([120, 500]))) + "\r\n").encode(),
            lambda: f"{head}\r\n{common}Content-Length: -1\r\n\r\n".encode(),
            lambda: f"{head}\r\n{common}Content-Length: abc\r\n\r\n".encode(),
            lambda: f"{head}\r\n{common}Content-Length: 99999999999999999999999\r\n\r\n".encode(),
            lambda: f"{head}\r\n{common}Content-Length: 3\r\nContent-Length: 5\r\n\r\nabcde".encode(),
            lambda: f"{head}\r\n{common}Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + body,
            lambda: f"{head}\r\n{common}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".encode(),
            lambda: f"{head}\r\n{common}Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n".encode(),
            lambda: f"{head}\r\n{common}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n".encode(),
            lambda: f"{head}\r\n{common}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".encode(),
            lambda: f"{head}\r\n{common}Transfer-Encoding: identity\r\n\r\n".encode(),
            lambda: f"{head}\r\n{common}Content-Type: application/json; charset=\xff\r\nContent-Length: {len(body)}\r\n\r\n".encode("latin-1") + body,
            lambda: f"{head}\r\n{common}Content-Type: multipart/form-data; boundary=\x7f\r\nContent-Length: {len(body)}\r\n\r\n".encode("latin-1") + body,
            lambda: f"{head}\r\n{common}Authorization: Bearer \x7f\xff\r\n\r\n".encode("latin-1"),
            lambda: f"{head}\r\n{common}Content-Encoding: gzip\r\nContent-Length: 4\r\n\r\n\x1f\x8b\x08\x00".encode("latin-1"),
            lambda: f"{head}\r\n{common}Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body,
            lambda: f"{head}\r\n{common}Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n".encode(),
            lambda: f"GET /ws HTTP/1.1\r\n{common}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: !!\r\nSec-WebSocket-Version: 13\r\n\r\n".encode(),
            lambda: f"GET /ws HTTP/1.1\r\n{common}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 99\r\n\r\n".encode(),
            lambda: f"GET /ws HTTP/1.1\r\n{common}\r\n".encode(),
        ]
        return FuzzRequest("RAW", "", raw=rng.choice(cases)())


def requests(seed: int, count: int) -> Iterator[FuzzRequest]:
    """``count`` requests of every shape, the same for the same seed."""
    rng = random.Random(seed)
    api, editor = load_examples()
    maker = RequestMaker(rng, Mutator(rng, api, editor))
    for _ in range(count):
        yield maker.any()


# -- websocket messages ------------------------------------------------------------------------
@dataclass
class WsSession:
    query: str
    #: (text or binary message) in order
    messages: list[str | bytes]


def ws_sessions(seed: int, count: int) -> Iterator[WsSession]:
    rng = random.Random(seed ^ 0x5EED)
    for _ in range(count):
        query = rng.choice(["", "?clientId=fuzz", "?clientId=" + _q(weird_value(rng, big=False)), "?clientId=" + "x" * 5000, "?clientId=&clientId=a"])
        messages: list[str | bytes] = []
        for _ in range(rng.randint(1, 5)):
            messages.append(rng.choice([
                lambda: dumps({"type": "feature_flags", "data": weird_value(rng)}),
                lambda: dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}),
                lambda: dumps(weird_value(rng)),
                lambda: "{" * rng.choice([10, 5000]),
                lambda: "x" * rng.choice([10, 70_000, 2 * 1024 * 1024]),
                lambda: "",
                lambda: bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 16, 4096]))),
                lambda: b"\x00" * rng.choice([1, 2 * 1024 * 1024]),
            ])())
        yield WsSession(query, messages)
