"""A fuzz campaign against a running ``latentgraph serve``: mutated workflows and every request shape.

Everything is drawn from ``random.Random(seed)``: a seed names one campaign exactly, so a failure
found by the long run in ``bench/server_abuse.py`` replays in the suite. Three parts:

- :class:`Mutator`: mutations of the example workflows (``workflows/*.json`` in API format,
  ``workflows/editor/*.json`` in the editor's format): type swaps, NaN/Infinity, huge integers,
  deep nesting, unicode and NUL, missing and extra fields, links to nowhere, cycles, wrong slot
  indices, long strings within the limits.
- :func:`requests`: HTTP requests for every route (``/prompt``, ``/queue``, ``/history``,
  ``/interrupt``, ``/free``, ``/upload/image`` multipart variants, ``/view`` query parameters,
  ``/workflow/convert``, ``/object_info/{x}``, ``/models/{x}``, the GETs, wrong methods and
  headers), and :func:`ws_sessions`: websocket sessions of text and binary messages.
- :func:`run_campaign`: sends them to ``base`` one at a time, each with a timeout, and counts
  2xx/4xx/5xx, hangs, dropped connections and non-JSON answers (``NaN``/``Infinity`` count as
  non-JSON, as a browser's ``JSON.parse`` would have it).

Bodies are written by :func:`dumps`, not ``json.dumps``: it must emit what no encoder would (``NaN``,
integers of 5,000 digits, lone surrogates, nesting deeper than Python recurses).
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import random
import re
import struct
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yarl

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
#: A request gets this long to answer before it counts as a hang.
REQUEST_TIMEOUT = 10.0
#: Request bodies stay under the server's default limit (16 MiB).
MAX_BODY = 15 * 1024 * 1024
#: Failures kept (with the request that caused them) for the report.
MAX_SAMPLES = 20


# -- JSON text, including what is not JSON ----------------------------------------------------
@dataclass(frozen=True)
class Raw:
    """Text spliced into a body as is (``NaN``, ``1e400``, 5,000 digits, ``[[[…]]]``)."""

    text: str


def dumps(value: Any) -> str:
    """JSON text of ``value``; floats that are not finite come out as ``NaN``/``Infinity``."""
    spliced: list[str] = []

    def splice(item: Any) -> str:
        if not isinstance(item, Raw):
            raise TypeError(type(item).__name__)
        spliced.append(item.text)
        return f"\x00raw{len(spliced) - 1}\x00"

    try:
        text = json.dumps(value, default=splice)
    except (RecursionError, ValueError, TypeError):
        return _dumps_slowly(value)
    return _SPLICED.sub(lambda m: spliced[int(m[1])], text) if spliced else text


_SPLICED = re.compile(r'"\\u0000raw(\d+)\\u0000"')


def _dumps_slowly(value: Any) -> str:
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:  # iterative: fuzzed values may nest deeper than Python recurses
        item = stack.pop()
        if isinstance(item, Raw):
            out.append(item.text)
        elif isinstance(item, str):
            out.append(json.dumps(item))
        elif item is None or isinstance(item, bool):
            out.append(json.dumps(item))
        elif isinstance(item, int):
            out.append(str(item) if item.bit_length() < 13_000 else "9" * 3900)
        elif isinstance(item, float):
            out.append("NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity") if math.isinf(item) else repr(item))
        elif isinstance(item, dict):
            parts: list[Any] = [Raw("}")]
            for i, (k, v) in enumerate(reversed(list(item.items()))):
                parts.append(v)
                parts.append(Raw(json.dumps(str(k)) + ":"))
                if i < len(item) - 1:
                    parts.append(Raw(","))
            parts.append(Raw("{"))
            stack.extend(parts)
        elif isinstance(item, (list, tuple)):
            parts = [Raw("]")]
            for i, v in enumerate(reversed(list(item))):
                parts.append(v)
                if i < len(item) - 1:
                    parts.append(Raw(","))
            parts.append(Raw("["))
            stack.extend(parts)
        else:
            out.append(json.dumps(str(item)))
    return "".join(out)


def _nested(rng: random.Random) -> Raw:
    depth = rng.choice([20, 60, 99, 101, 500, 1200, 5000])
    left, right = rng.choice([("[", "]"), ('{"a":', "}")])
    return Raw(left * depth + "0" + right * depth)


def weird_value(rng: random.Random, *, big: bool = True) -> Any:
    """One value of a kind that breaks naive servers."""
    choices = [
        lambda: math.nan,
        lambda: math.inf,
        lambda: -math.inf,
        lambda: Raw("1e400"),
        lambda: Raw("-1e400"),
        lambda: Raw(str(10**400)),
        lambda: Raw("9" * rng.choice([4300, 4301, 5000])),
        lambda: 2**63,
        lambda: -(2**63) - 1,
        lambda: 2**64 + 1,
        lambda: 1e308,
        lambda: -0.0,
        lambda: 5e-324,
        lambda: rng.randint(-(10**30), 10**30),
        lambda: rng.choice([0, 1, -1, 7, 255, 65535]),
        lambda: rng.random() * 1000,
        lambda: "",
        lambda: "\x00",
        lambda: "a\x00b",
        lambda: Raw('"\\ud800"'),
        lambda: Raw('"\\udfff\\ud800x"'),
        lambda: "\u202e\u200b\ufeff",
        lambda: "🎨" * rng.randint(1, 50),
        lambda: "../../../etc/passwd",
        lambda: "C:\\Windows\\win.ini",
        lambda: "%s%n{0}${x}",
        lambda: "<script>alert(1)</script>",
        lambda: True,
        lambda: False,
        lambda: None,
        lambda: [],
        lambda: {},
        lambda: [None],
        lambda: {"": None},
        lambda: ["1", 0],
        lambda: ["999999", 0],
        lambda: [0, "0"],
        lambda: {"__value__": [1, 2]},
        lambda: _nested(rng),
    ]
    if big:
        choices += [
            lambda: "x" * rng.choice([4096, 65536, 300_000]),
            lambda: list(range(rng.choice([1000, 20000]))),
            lambda: {str(i): i for i in range(rng.choice([500, 5000]))},
        ]
    return rng.choice(choices)()


# -- workflow mutations ------------------------------------------------------------------------
def load_examples() -> tuple[list[dict], list[dict]]:
    """(API-format examples, editor-format examples), parsed from ``workflows/``."""
    api = [json.loads(p.read_text()) for p in sorted(WORKFLOWS.glob("*.json"))]
    editor = [json.loads(p.read_text()) for p in sorted((WORKFLOWS / "editor").glob("*.json"))]
    return api, editor


def _paths(value: Any, prefix: tuple = (), limit: int = 2000) -> list[tuple]:
    """Every container path in ``value`` (bounded), for picking a spot to mutate."""
    out: list[tuple] = []
    stack = [(prefix, value)]
    while stack and len(out) < limit:
        path, item = stack.pop()
        if isinstance(item, dict):
            out.append(path)
            stack.extend((path + (k,), v) for k, v in item.items())
        elif isinstance(item, list):
            out.append(path)
            stack.extend((path + (i,), v) for i, v in enumerate(item))
    return out


def _links_to(inputs: Any, nid: str) -> bool:
    return isinstance(inputs, dict) and any(isinstance(v, list) and v[:1] == [nid] for v in inputs.values())


def _get(value: Any, path: tuple) -> Any:
    for key in path:
        value = value[key]
    return value


class Mutator:
    """Mutations of API-format and editor-format workflows, all drawn from ``rng``."""

    def __init__(self, rng: random.Random, api: list[dict], editor: list[dict]) -> None:
        self.rng = rng
        self.api = api
        self.editor = editor

    # generic: any JSON tree
    def tree(self, value: Any, rounds: int = 1) -> Any:
        """``rounds`` random edits anywhere in ``value``: replace, delete, add, duplicate, swap type."""
        rng = self.rng
        value = copy.deepcopy(value)
        for _ in range(rounds):
            paths = _paths(value)
            if not paths:
                return weird_value(rng)
            path = rng.choice(paths)
            holder = _get(value, path)
            keys = list(holder) if isinstance(holder, dict) else list(range(len(holder)))
            op = rng.randrange(6)
            if op == 0 and keys:  # replace a value
                holder[rng.choice(keys)] = weird_value(rng)
            elif op == 1 and keys:  # delete one
                del holder[rng.choice(keys) if isinstance(holder, dict) else rng.choice(keys)]
            elif op == 2:  # add one
                if isinstance(holder, dict):
                    holder[rng.choice(["extra", "", "\x00", "__proto__", "constructor", "🎨", "x" * 500])] = weird_value(rng)
                else:
                    holder.insert(rng.randint(0, len(holder)), weird_value(rng))
            elif op == 3 and keys:  # duplicate one (as a sibling)
                k = rng.choice(keys)
                if isinstance(holder, dict):
                    holder[f"{k}_copy"] = copy.deepcopy(holder[k])
                else:
                    holder.append(copy.deepcopy(holder[k]))
            elif op == 4 and keys:  # swap the type: str↔number↔list↔dict
                k = rng.choice(keys)
                old = holder[k]
                holder[k] = {str: lambda v: 1, int: lambda v: str(v), float: lambda v: [v], list: lambda v: {"0": v}, dict: lambda v: list(v.values()), bool: lambda v: "true"}.get(type(old), lambda v: 0)(old)
            elif path:  # replace the container itself
                parent = _get(value, path[:-1])
                parent[path[-1]] = weird_value(rng)
        return value

    # API format: {"id": {"class_type", "inputs"}}
    def api_workflow(self) -> Any:
        rng = self.rng
        wf = copy.deepcopy(rng.choice(self.api))
        for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
            wf = self._api_once(wf)
            if not isinstance(wf, dict):
                break
        return wf

    def _api_once(self, wf: dict) -> Any:
        rng = self.rng
        ids = [k for k, v in wf.items() if isinstance(v, dict)]
        if not ids:
            return self.tree(wf)
        nid = rng.choice(ids)
        node = wf[nid]
        inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else None
        names = list(inputs) if inputs else []
        op = rng.randrange(16)
        if op == 0:
            del wf[nid]
        elif op == 1:
            node.pop("class_type", None)
        elif op == 2:
            node["class_type"] = rng.choice([weird_value(rng, big=False), "NoSuchNode", "SaveImage", "KSampler", "PreviewImage", "", "__init__"])
        elif op == 3:
            node["inputs"] = weird_value(rng)
        elif op == 4 and names:
            inputs[rng.choice(names)] = weird_value(rng)
        elif op == 5 and names:
            del inputs[rng.choice(names)]
        elif op == 6 and inputs is not None:
            inputs[rng.choice(["extra", "zzz", "", "\x00"])] = weird_value(rng)
        elif op == 7 and names:  # a link to nowhere
            inputs[rng.choice(names)] = [rng.choice(["999", "", "x" * 300, "\x00", nid + "0"]), 0]
        elif op == 8 and names:  # a wrong slot index
            other = rng.choice(ids)
            inputs[rng.choice(names)] = [other, rng.choice([-1, 3, 99, 2**31, 2**64, 1.5, math.nan, "0", None, [0]])]
        elif op == 9 and names:  # a malformed link
            inputs[rng.choice(names)] = rng.choice([[nid], [nid, 0, 0], [[nid], 0], [None, None], [1, 0], [{"a": 1}, 0]])
        elif op == 10 and names:  # a cycle: link this node to one of its dependants, or itself
            dependants = [k for k in ids if k in wf and isinstance(wf[k], dict) and _links_to(wf[k].get("inputs"), nid)]
            inputs[rng.choice(names)] = [rng.choice(dependants or [nid]), 0]
        elif op == 11:  # a weird node id
            wf[rng.choice(["", "\x00", "-1", "1e400", "x" * 1000, "🎨", " 3", "03"])] = copy.deepcopy(node)
        elif op == 12:
            wf[nid] = weird_value(rng)
        elif op == 13:
            node["_meta"] = weird_value(rng)
        elif op == 14 and len(wf) < 100:  # many nodes (within the node limit)
            for i in range(rng.choice([50, 500, 3000])):
                wf[f"c{i}"] = copy.deepcopy(node)
        else:
            return self.tree(wf, rng.randint(1, 3))
        return wf

    # editor format: {"nodes": [...], "links": [[id, from, from_slot, to, to_slot, type]], ...}
    def editor_workflow(self) -> Any:
        rng = self.rng
        wf = copy.deepcopy(rng.choice(self.editor))
        for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
            wf = self._editor_once(wf)
            if not isinstance(wf, dict):
                break
        return wf

    def _editor_once(self, wf: dict) -> Any:
        rng = self.rng
        nodes = [n for n in wf.get("nodes", []) if isinstance(n, dict)] if isinstance(wf.get("nodes"), list) else []
        links = wf.get("links") if isinstance(wf.get("links"), list) else []
        node_ids = [n.get("id") for n in nodes]
        op = rng.randrange(16)
        if op == 0 and links:  # a link to nowhere
            link = rng.choice(links)
            if isinstance(link, list) and len(link) >= 5:
                link[rng.choice([1, 3])] = rng.choice([9999, -1, 0, "4", None, math.inf, 2**64])
        elif op == 1 and links:  # wrong slot indices
            link = rng.choice(links)
            if isinstance(link, list) and len(link) >= 5:
                link[rng.choice([2, 4])] = rng.choice([-1, 7, 99, 2**31, 2**64, 1.5, math.nan, math.inf, "0", None])
        elif op == 2 and len(nodes) >= 2 and links:  # a cycle: the last node feeds the first
            first, last = nodes[0], nodes[-1]
            new_id = max((l[0] for l in links if isinstance(l, list) and l and isinstance(l[0], int)), default=0) + 1
            links.append([new_id, last.get("id"), 0, first.get("id"), 0, "*"])
            first.setdefault("inputs", []).append({"name": "loop", "type": "*", "link": new_id}) if isinstance(first.get("inputs", []), list) else None
        elif op == 3 and nodes:  # widgets of the wrong types or counts
            node = rng.choice(nodes)
            values = node.get("widgets_values")
            if isinstance(values, list) and values and rng.random() < 0.7:
                values[rng.randrange(len(values))] = weird_value(rng)
            else:
                node["widgets_values"] = weird_value(rng)
        elif op == 4 and nodes:
            rng.choice(nodes)["mode"] = rng.choice([math.inf, math.nan, -1, 2, 4, 99, 2**64, "0", None, Raw("1e400")])
        elif op == 5 and nodes:
            rng.choice(nodes)["type"] = rng.choice(["NoSuchNode", "", None, 1, "Reroute", "PrimitiveNode", "Note", "SaveImage"])
        elif op == 6 and nodes:  # an input's link to nowhere
            node = rng.choice(nodes)
            ins = node.get("inputs")
            if isinstance(ins, list) and ins and isinstance(ins[0], dict):
                rng.choice(ins)["link"] = rng.choice([9999, -1, math.inf, "1", [1], 2**64])
        elif op == 7 and nodes:  # an output's links to nowhere
            node = rng.choice(nodes)
            outs = node.get("outputs")
            if isinstance(outs, list) and outs and isinstance(outs[0], dict):
                rng.choice(outs)["links"] = rng.choice([[9999], None, [math.nan], "1", [[1]], list(range(200))])
        elif op == 8 and nodes:  # duplicate node ids
            wf["nodes"].append(copy.deepcopy(rng.choice(nodes)))
        elif op == 9 and nodes:
            rng.choice(nodes)["id"] = rng.choice([weird_value(rng, big=False), node_ids[0] if node_ids else 1])
        elif op == 10:
            wf["links"] = weird_value(rng)
        elif op == 11:
            wf["nodes"] = weird_value(rng)
        elif op == 12:  # a subgraph definition, possibly broken
            wf.setdefault("definitions", {})
            if isinstance(wf["definitions"], dict):
                wf["definitions"]["subgraphs"] = rng.choice([
                    weird_value(rng),
                    [{"id": "sg", "nodes": copy.deepcopy(nodes[:2]), "links": [], "inputs": [], "outputs": []}],
                    [{"id": "sg", "nodes": [{"id": 1, "type": "sg", "mode": 0}], "links": []}],
                ])
                if nodes and rng.random() < 0.5:
                    rng.choice(nodes)["type"] = "sg"
        elif op == 13 and links:  # a link of the wrong shape
            links[rng.randrange(len(links))] = rng.choice([[], [1], {"id": 1}, None, "1", [1, 2, 3, 4, 5, 6, 7, 8], weird_value(rng)])
        elif op == 14 and 0 < len(nodes) < 100:  # many nodes (within the limits)
            for i in range(rng.choice([50, 500, 2000])):
                extra = copy.deepcopy(rng.choice(nodes))
                extra["id"] = 100_000 + i
                wf["nodes"].append(extra)
        else:
            return self.tree(wf, rng.randint(1, 3))
        return wf


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
        common = f"Host: 127.0.0.1\r\nConnection: close\r\n"
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
