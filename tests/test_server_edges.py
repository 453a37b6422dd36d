"""Bad input gets a 4xx in standard JSON, never a 500, and ComfyUI's protocol edges work.

Every test runs a real loopback server through ``make_runner`` (as ``latentgraph serve`` does), and
every answer is parsed with ``parse_constant`` raising: ``NaN``/``Infinity`` are not JSON.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import math
import struct

import aiohttp
import pytest
import server_nodes
from PIL import Image
from server_kit import Client, run

from latentgraph import In, Node, NodeResult, NodeSpec, hookimpl
from latentgraph.server import ServerConfig, create_app
from latentgraph.model_folders import ALIASES, FOLDERS
from latentgraph.server.routes_files import MAX_PARTS
from latentgraph.server.runner import make_runner
from latentgraph.server.store import Store
from latentgraph.testing import make_engine

TOKEN = "edge-token"


class SrvUnbounded(Node):
    """A FLOAT without bounds, as many ComfyUI nodes declare it (``max: float("inf")``)."""

    spec = NodeSpec(name="SrvUnbounded", inputs=(In("x", "FLOAT", default=1.0, min=-math.inf, max=math.inf),), output_node=True)

    def execute(self, ctx, x):
        return NodeResult(ui={"x": [x]})


class UnboundedPlugin:
    @hookimpl
    def register_nodes(self):
        return [SrvUnbounded]


@contextlib.asynccontextmanager
async def edge_server(settings, config: ServerConfig | None = None):
    """The app behind ``make_runner`` on a free loopback port; yields a :class:`Client`."""
    engine = make_engine(settings, server_nodes, UnboundedPlugin())
    store = Store(settings.base_dir / "queue.sqlite3")
    runner = make_runner(create_app(engine, store, config or ServerConfig()))
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            yield Client(f"http://127.0.0.1:{port}", session, config.auth_token if config else None)
    finally:
        await runner.cleanup()
        store.close()


def _no_constants(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def strict(raw: bytes):
    """``raw`` as JSON the way a browser reads it: ``NaN``/``Infinity`` refused."""
    return json.loads(raw, parse_constant=_no_constants)


async def send(client: Client, method: str, path: str, **kw) -> tuple[int, bytes, aiohttp.ClientResponse]:
    async with client.session.request(method, client.url(path), headers=client._headers(kw.pop("headers", None)), **kw) as resp:
        return resp.status, await resp.read(), resp


def assert_4xx(status: int, raw: bytes, settings, *, field: str | None = None, code: int | None = None) -> dict:
    """A 4xx whose body is standard JSON in the project's error shape, naming no server path."""
    assert 400 <= status < 500 if code is None else status == code, raw[:300]
    body = strict(raw)
    assert set(body) == {"error", "node_errors"}, body
    assert set(body["error"]) == {"type", "message", "details", "extra_info"}
    text = raw.decode()
    assert str(settings.base_dir) not in text and "/tmp/" not in text, text[:300]
    if field is not None:
        assert body["error"]["extra_info"]["field"] == field, body
        assert body["error"]["message"].startswith(f"{field}: "), body
    return body


def prompt_text(inputs_value: str, *, extra: str = "{}", number: str = "null") -> str:
    """A /prompt body with ``inputs_value`` spliced raw into node 1's inputs (``x`` of SrvUnbounded)."""
    return '{"prompt": {"1": {"class_type": "SrvUnbounded", "inputs": {"x": %s}}}, "extra_data": %s, "number": %s}' % (
        inputs_value,
        extra,
        number,
    )


# (bad body, field named in the error); each was a 500, or accepted and stored as non-standard JSON.
BAD_BODIES = {
    "nested_1000": ('{"prompt": ' + "[" * 1000 + "]" * 1000 + "}", None),
    "nested_100000": ('{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}", None),
    "int_5000_digits": (prompt_text("9" * 5000), "prompt.1.inputs.x"),
    "float_given_10**400": (prompt_text(str(10**400)), "prompt.1.inputs.x"),
    "float_given_10**308_squared": (prompt_text(str(10**309)), "prompt.1.inputs.x"),
    "nan_input": (prompt_text("NaN"), "prompt.1.inputs.x"),
    "infinity_unknown_input": ('{"prompt": {"1": {"class_type": "SrvUnbounded", "inputs": {"x": 1, "zzz": -Infinity}}}}', "prompt.1.inputs.zzz"),
    "1e400_in_extra_data": (prompt_text("1", extra='{"mine": [1, 1e400]}'), "extra_data.mine[1]"),
    "number_1e308": (prompt_text("1", number="1e308"), "number"),
    "number_infinity": (prompt_text("1", number="Infinity"), "number"),
    "lone_surrogate": (prompt_text('"\\ud800"'), "prompt.1.inputs.x"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_non_standard_json_bodies_are_400_naming_the_field(lg_settings, case):
    body, field = BAD_BODIES[case]

    async def go():
        async with edge_server(lg_settings) as client:
            status, raw, _ = await send(client, "POST", "/prompt", data=body.encode(), headers={"Content-Type": "application/json"})
            assert_4xx(status, raw, lg_settings, field=field, code=400)
            # Nothing was stored: the queue and history stay standard JSON.
            for path in ("/queue", "/history"):
                status, raw, _ = await send(client, "GET", path)
                assert status == 200 and strict(raw) in ({"queue_running": [], "queue_pending": []}, {})

    run(go())


def test_huge_body_is_parsed_off_the_loop_and_still_refused(lg_settings):
    """A 2 MB body (parsed in a thread) with one NaN deep inside: refused like a small one."""
    filler = ", ".join(f'"k{i}": {i}' for i in range(150_000))
    body = '{"prompt": {"1": {"class_type": "SrvUnbounded", "inputs": {"x": 1}}}, "extra_data": {%s, "late": NaN}}' % filler

    async def go():
        async with edge_server(lg_settings) as client:
            status, raw, _ = await send(client, "POST", "/prompt", data=body.encode(), headers={"Content-Type": "application/json"})
            assert_4xx(status, raw, lg_settings, field="extra_data.late", code=400)

    run(go())


def test_responses_never_carry_nan_or_infinity(lg_settings):
    """One encoder for every response: a node declaring ``max: inf`` is described with ``null``."""

    async def go():
        async with edge_server(lg_settings) as client:
            status, raw, _ = await send(client, "GET", "/object_info/SrvUnbounded")
            assert status == 200
            spec = strict(raw)["SrvUnbounded"]["input"]["required"]["x"][1]
            assert spec["max"] is None and spec["min"] is None and spec["default"] == 1.0

    run(go())


def test_http_parser_errors_are_json(lg_settings):
    """Requests aiohttp's own parser refuses answer in JSON too, without echoing the bytes."""
    requests = {
        "bad header": b"GET /queue HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
        "bad method": b"G\x01T /queue HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "line too long": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "bad chunking": b"POST /prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "two lengths": b"POST /prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
    }

    async def go():
        async with edge_server(lg_settings) as client:
            port = int(client.base.rsplit(":", 1)[1])
            for name, data in requests.items():
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(data)
                await writer.drain()
                raw = await asyncio.wait_for(reader.read(65536), 10)
                writer.close()
                head, _, body = raw.partition(b"\r\n\r\n")
                status = int(head.split()[1])
                assert b"application/json" in head.lower(), (name, head)
                assert_4xx(status, body, lg_settings)
                assert b"Bad Header" not in body

    run(go())


# -- multipart ------------------------------------------------------------------------------
def png(mode="RGBA", color=(10, 20, 30, 128), size=(4, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


MULTIPART_CASES = {
    "no boundary": (b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\nabc', "multipart/form-data"),
    "no end": (b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\nabc', "multipart/form-data; boundary=x"),
    "garbage": (b"\x00\xff" * 100, "multipart/form-data; boundary=x"),
    "nested": (
        b'--x\r\nContent-Type: multipart/mixed; boundary=y\r\n\r\n--y\r\nContent-Disposition: form-data; name="image"\r\n\r\nabc\r\n--y--\r\n--x--\r\n',
        "multipart/form-data; boundary=x",
    ),
    "too many parts": (
        b"".join(b'--x\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i for i in range(MAX_PARTS + 1)) + b"--x--\r\n",
        "multipart/form-data; boundary=x",
    ),
}


@pytest.mark.parametrize("case", list(MULTIPART_CASES))
def test_malformed_multipart_is_400(lg_settings, case):
    data, content_type = MULTIPART_CASES[case]

    async def go():
        async with edge_server(lg_settings) as client:
            status, raw, _ = await send(client, "POST", "/upload/image", data=data, headers={"Content-Type": content_type})
            assert_4xx(status, raw, lg_settings, code=400)

    run(go())


def test_many_tiny_form_fields_are_refused_quickly(lg_settings):
    """80k tiny fields stalled the loop for 9 s; past MAX_PARTS the upload is refused at once."""
    data = b"".join(b'--x\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n' for _ in range(80_000)) + b"--x--\r\n"

    async def go():
        async with edge_server(lg_settings) as client:
            start = asyncio.get_running_loop().time()
            status, raw, _ = await send(client, "POST", "/upload/image", data=data, headers={"Content-Type": "multipart/form-data; boundary=x"})
            assert_4xx(status, raw, lg_settings, code=400)
            assert asyncio.get_running_loop().time() - start < 5

    run(go())


@pytest.mark.parametrize("name", ["a" * 300 + ".png", "é" * 200 + ".png", "a\x00b.png", "\x00", "x." + "p" * 300])
def test_hostile_upload_names_are_stored_safely_or_refused(lg_settings, name):
    """NUL and 300-character names: a safe name under 255 bytes, or a 4xx; never a 500 or a path."""

    async def go():
        async with edge_server(lg_settings) as client:
            body = (
                b'--x\r\nContent-Disposition: form-data; name="image"; filename="' + name.encode() + b'"\r\n'
                b"Content-Type: image/png\r\n\r\n" + png() + b"\r\n--x--\r\n"
            )
            status, raw, _ = await send(client, "POST", "/upload/image", data=body, headers={"Content-Type": "multipart/form-data; boundary=x"})
            if status == 200:
                saved = strict(raw)["name"]
                assert "\x00" not in saved and len(saved.encode()) <= 255
                assert (lg_settings.input_dir / saved).is_file()
            else:
                assert_4xx(status, raw, lg_settings)

    run(go())


def test_hostile_subfolder_and_view_names_are_4xx(lg_settings):
    async def go():
        async with edge_server(lg_settings) as client:
            fd = aiohttp.FormData()
            fd.add_field("image", png(), filename="a.png", content_type="image/png")
            fd.add_field("subfolder", "é" * 200)
            status, raw, _ = await send(client, "POST", "/upload/image", data=fd)
            assert_4xx(status, raw, lg_settings)
            for query in ("filename=" + "a" * 300, "filename=a%00b", "filename=x.png&subfolder=" + "/".join(["b" * 250] * 20)):
                status, raw, _ = await send(client, "GET", "/view?" + query)
                assert_4xx(status, raw, lg_settings)

    run(go())


# -- protocol edges -------------------------------------------------------------------------
def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_with_the_token_as_password(lg_settings):
    async def go():
        async with edge_server(lg_settings, ServerConfig(auth_token=TOKEN)) as client:
            client.token = None
            status, raw, resp = await send(client, "GET", "/queue")
            assert status == 401
            assert any(v.startswith("Basic") for v in resp.headers.getall("WWW-Authenticate"))
            for user in ("", "anyone", "ünïcode"):
                status, raw, _ = await send(client, "GET", "/queue", headers=basic(user, TOKEN))
                assert status == 200, user
            status, raw, _ = await send(client, "GET", "/queue", headers=basic("user", "wrong"))
            assert_4xx(status, raw, lg_settings, code=401)
            bad = {"Authorization": "Basic !!!not-base64"}
            status, raw, _ = await send(client, "GET", "/queue", headers=bad)
            assert_4xx(status, raw, lg_settings, code=401)
            no_colon = {"Authorization": "Basic " + base64.b64encode(TOKEN.encode()).decode()}
            status, raw, _ = await send(client, "GET", "/queue", headers=no_colon)
            assert status == 401  # the token is the password, after the colon
            ws = await client.session.ws_connect(client.url("/ws?clientId=b"), headers=basic("u", TOKEN))
            await ws.close()

    run(go())


def test_view_channels_and_annotated_names(lg_settings):
    lg_settings.output_dir.mkdir(parents=True, exist_ok=True)
    (lg_settings.output_dir / "pic.png").write_bytes(png(color=(10, 20, 30, 128)))
    lg_settings.input_dir.mkdir(parents=True, exist_ok=True)
    (lg_settings.input_dir / "flat.png").write_bytes(png(mode="RGB", color=(1, 2, 3)))

    async def go():
        async with edge_server(lg_settings) as client:
            status, raw, resp = await send(client, "GET", "/view?filename=pic.png&channel=a")
            assert status == 200 and resp.headers["Content-Type"] == "image/png"
            img = Image.open(io.BytesIO(raw))
            assert img.mode == "RGBA" and img.getpixel((0, 0)) == (0, 0, 0, 128)  # alpha kept, colour black
            status, raw, _ = await send(client, "GET", "/view?filename=flat.png&type=input&channel=a")
            assert Image.open(io.BytesIO(raw)).getpixel((1, 1)) == (0, 0, 0, 255)  # no alpha: opaque
            status, raw, _ = await send(client, "GET", "/view?filename=pic.png&channel=rgb")
            img = Image.open(io.BytesIO(raw))
            assert img.mode == "RGB" and img.getpixel((0, 0)) == (10, 20, 30)
            status, raw, _ = await send(client, "GET", "/view?filename=pic.png&channel=rgba")
            assert raw == (lg_settings.output_dir / "pic.png").read_bytes()
            status, raw, resp = await send(client, "GET", "/view?filename=pic.png&channel=a&preview=jpeg;50")
            assert resp.headers["Content-Type"] == "image/webp"  # alpha wanted: webp, as ComfyUI
            # ComfyUI's annotated names: the folder in brackets overrides ``type``.
            status, raw, _ = await send(client, "GET", "/view?filename=flat.png [input]&type=output")
            assert status == 200 and raw == (lg_settings.input_dir / "flat.png").read_bytes()
            status, raw, _ = await send(client, "GET", "/view?filename=pic.png [output]")
            assert status == 200
            status, raw, _ = await send(client, "GET", "/view?filename=pic.png [input]")
            assert_4xx(status, raw, lg_settings, code=404)

    run(go())


def test_head_and_options_on_every_get_route(lg_settings):
    async def go():
        async with edge_server(lg_settings) as client:
            paths = ["/queue", "/api/queue", "/history", "/prompt", "/object_info", "/system_stats", "/models",
                     "/models/checkpoints", "/embeddings", "/extensions", "/features", "/plugins",
                     "/plugins/server_nodes/hello"]
            for path in paths:
                status, body, resp = await send(client, "HEAD", path)
                assert status == 200 and body == b"", path
                assert resp.headers["Content-Type"].startswith("application/json"), path
                status, body, resp = await send(client, "OPTIONS", path)
                assert status == 204, path
                allowed = {m.strip() for m in resp.headers["Allow"].split(",")}
                assert {"GET", "HEAD", "OPTIONS"} <= allowed, (path, allowed)
                assert not any(h.lower().startswith("access-control-") for h in resp.headers), path
            _, _, resp = await send(client, "OPTIONS", "/prompt")
            assert {"GET", "POST"} <= set(map(str.strip, resp.headers["Allow"].split(",")))
            status, raw, _ = await send(client, "OPTIONS", "/no/such/route")
            assert_4xx(status, raw, lg_settings, code=404)
            # A preflight from another origin is refused like any cross-origin request: no CORS widening.
            status, raw, resp = await send(client, "OPTIONS", "/prompt", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
            assert_4xx(status, raw, lg_settings, code=403)
            assert "Access-Control-Allow-Origin" not in resp.headers
            status, raw, resp = await send(client, "DELETE", "/queue")
            assert_4xx(status, raw, lg_settings, code=405)
            assert "GET" in resp.headers["Allow"]

    run(go())


def mp4_bytes() -> bytes:
    return struct.pack(">I", 24) + b"ftypisom" + b"\x00\x00\x02\x00isomiso2" + struct.pack(">I", 8) + b"free"


def wav_bytes() -> bytes:
    pcm = b"\x00\x00" * 100
    return b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16) + b"data" + struct.pack("<I", len(pcm)) + pcm


def test_video_and_audio_uploads_like_comfyui_editor(lg_settings):
    async def go():
        async with edge_server(lg_settings) as client:
            for name, data, mime in (("clip.mp4", mp4_bytes(), "video/mp4"), ("voice.wav", wav_bytes(), "audio/wav"), ("odd.name", mp4_bytes(), "video/mp4")):
                fd = aiohttp.FormData()
                fd.add_field("image", data, filename=name, content_type="application/octet-stream")
                fd.add_field("type", "input")
                status, raw, _ = await send(client, "POST", "/upload/image", data=fd)
                assert status == 200 and strict(raw) == {"name": name, "subfolder": "", "type": "input"}  # not renamed
                assert (lg_settings.input_dir / name).read_bytes() == data
                status, raw, resp = await send(client, "GET", f"/view?filename={name}&type=input")
                assert status == 200 and raw == data and resp.headers["Content-Type"] == mime
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
            fd = aiohttp.FormData()
            fd.add_field("image", b"<html><script>alert(1)</script>", filename="page.mp4")
            fd.add_field("subfolder", "../out")
            status, raw, _ = await send(client, "POST", "/upload/image", data=fd)
            assert_4xx(status, raw, lg_settings)
            fd = aiohttp.FormData()
            fd.add_field("image", mp4_bytes(), filename="../../escape.mp4")
            status, raw, _ = await send(client, "POST", "/upload/image", data=fd)
            saved = strict(raw)["name"]
            assert status == 200 and saved.endswith("escape.mp4") and "/" not in saved and (lg_settings.input_dir / saved).is_file()

    run(go())


def test_every_comfyui_model_folder_is_listed(lg_settings):
    loras = lg_settings.model_dirs("loras")[0]
    loras.mkdir(parents=True)
    (loras / "style.safetensors").write_bytes(b"x")
    clip = lg_settings.model_dirs("clip")[0]
    clip.mkdir(parents=True)
    (clip / "t5.safetensors").write_bytes(b"x")

    async def go():
        async with edge_server(lg_settings) as client:
            status, raw, _ = await send(client, "GET", "/models")
            assert strict(raw) == list(FOLDERS)
            for folder in (*FOLDERS, *ALIASES):
                status, raw, _ = await send(client, "GET", f"/models/{folder}")
                assert status == 200, folder
                names = strict(raw)
                expected = {"loras": ["style.safetensors"], "text_encoders": ["t5.safetensors"], "clip": ["t5.safetensors"]}
                if folder in expected:
                    assert set(expected[folder]) <= set(names), folder
                else:  # empty, or what the package itself ships (its demo checkpoints)
                    assert isinstance(names, list) and not {"style.safetensors", "t5.safetensors"} & set(names), folder
            for folder in ("nowhere", "custom_nodes"):
                status, raw, _ = await send(client, "GET", f"/api/models/{folder}")
                assert_4xx(status, raw, lg_settings, code=404)

    run(go())


def test_system_stats_masks_the_auth_token(lg_settings, monkeypatch):
    import sys

    monkeypatch.setattr(sys, "argv", ["latentgraph", "serve", "--auth-token", TOKEN, "--auth-token=" + TOKEN, "--auth", TOKEN, "--port", "0"])

    async def go():
        async with edge_server(lg_settings, ServerConfig(auth_token=TOKEN)) as client:
            status, raw, _ = await send(client, "GET", "/system_stats")
            assert status == 200 and TOKEN.encode() not in raw
            argv = strict(raw)["system"]["argv"]
            assert argv == ["latentgraph", "serve", "--auth-token", "***", "--auth-token=***", "--auth", "***", "--port", "0"]

    run(go())


def test_no_500_names_a_path(lg_settings, monkeypatch):
    """An unexpected failure is a 500 that names the exception type only; the log has the rest."""
    from latentgraph.server import routes_info

    def broken(*args, **kwargs):
        raise OSError(2, "No such file", str(lg_settings.base_dir / "secret"))

    monkeypatch.setattr(routes_info.model_folders, "list_folder", broken)

    async def go():
        async with edge_server(lg_settings) as client:
            status, raw, _ = await send(client, "GET", "/models/loras")
            assert status == 500
            body = strict(raw)
            assert body["error"]["type"] == "internal_error" and "FileNotFoundError" in body["error"]["message"]
            assert str(lg_settings.base_dir) not in raw.decode()

    run(go())
