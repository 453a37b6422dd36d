"""``/view`` and ``/upload/image``: round trips, confinement to their folders, size limits."""

from __future__ import annotations

import io
import os

import aiohttp
import pytest
from PIL import Image
from server_kit import run, serving

from latentgraph.server import ServerConfig
from latentgraph.server.security import UnsafePath, relative_parts, resolve_inside, safe_filename


def png_bytes(color=(255, 0, 0), size=(8, 6), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def form(data: bytes, filename: str = "pic.png", **fields: str) -> aiohttp.FormData:
    fd = aiohttp.FormData()
    fd.add_field("image", data, filename=filename, content_type="application/octet-stream")
    for key, value in fields.items():
        fd.add_field(key, value)
    return fd


def test_upload_then_view_round_trip(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            data = png_bytes()
            status, body = await client.post("/upload/image", data=form(data, "cat.png", subfolder="pets"))
            assert status == 200 and body == {"name": "cat.png", "subfolder": "pets", "type": "input"}
            assert (lg_settings.input_dir / "pets" / "cat.png").read_bytes() == data
            async with client.session.get(client.url("/view?filename=cat.png&subfolder=pets&type=input")) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "image/png"
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert await resp.read() == data
            # The same image again reuses the name; a different one gets a numbered name.
            status, body = await client.post("/upload/image", data=form(data, "cat.png", subfolder="pets"))
            assert body["name"] == "cat.png"
            other = png_bytes((0, 255, 0))
            status, body = await client.post("/upload/image", data=form(other, "cat.png", subfolder="pets"))
            assert body["name"] == "cat (1).png"
            status, body = await client.post("/api/upload/image", data=form(other, "cat.png", subfolder="pets", overwrite="true"))
            assert body["name"] == "cat.png"
            assert (lg_settings.input_dir / "pets" / "cat.png").read_bytes() == other
            # Into the temp folder, fetched back as a webp preview.
            status, body = await client.post("/upload/image", data=form(data, "t.png", type="temp"))
            assert body["type"] == "temp" and (lg_settings.temp_dir / "t.png").is_file()
            async with client.session.get(client.url("/view?filename=t.png&type=temp&preview=webp;80")) as resp:
                assert resp.status == 200 and resp.headers["Content-Type"] == "image/webp"
                assert Image.open(io.BytesIO(await resp.read())).format == "WEBP"

    run(go())


def test_upload_type_is_sniffed_not_trusted(lg_settings):
    """The content decides whether an upload is taken and how /view serves it; the client's name
    is kept as ComfyUI keeps it (never renamed by type)."""

    async def go():
        async with serving(lg_settings) as client:
            jpeg = png_bytes(fmt="JPEG")
            status, body = await client.post("/upload/image", data=form(jpeg, "photo.png"))
            assert status == 200 and body["name"] == "photo.png"
            status, body = await client.post("/upload/image", data=form(png_bytes(), "page.html"))
            assert status == 200 and body["name"] == "page.html"
            async with client.session.get(client.url("/view?filename=page.html&type=input")) as resp:
                assert resp.headers["Content-Type"] == "image/png" and resp.headers["X-Content-Type-Options"] == "nosniff"
            status, body = await client.post("/upload/image", data=form(b"<script>alert(1)</script>", "evil.png"))
            assert status == 415 and body["error"]["type"] == "unsupported_media_type"
            assert not (lg_settings.input_dir / "evil.png").exists()
            status, body = await client.post("/upload/image", data=form(png_bytes(), "../../escape.png"))
            assert status == 200 and "/" not in body["name"] and body["name"].endswith("escape.png")
            assert (lg_settings.input_dir / body["name"]).is_file()
            status, body = await client.post("/upload/image", data=aiohttp.FormData({"subfolder": "x"}))
            assert status == 400

    run(go())


def test_upload_and_body_size_limits(lg_settings):
    async def go():
        config = ServerConfig(max_upload_bytes=20_000, max_body_bytes=10_000)
        async with serving(lg_settings, config=config) as client:
            noise = io.BytesIO()
            Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(noise, format="PNG")
            assert 10_000 < len(noise.getvalue()) < 20_000  # above the JSON limit, below the upload one
            status, body = await client.post("/upload/image", data=form(noise.getvalue(), "noise.png"))
            assert status == 200, body
            big = png_bytes(size=(400, 400), fmt="BMP")  # ~480 kB
            status, body = await client.post("/upload/image", data=form(big, "big.bmp"))
            assert status == 413 and body["error"]["type"] == "too_large"
            status, body = await client.post("/prompt", {"prompt": {"1": {"class_type": "SrvNumber", "inputs": {"value": 1}}}, "pad": "x" * 20_000})
            assert status == 413 and body["error"]["type"] == "too_large"

            async def chunks():  # no Content-Length: the limit holds while streaming
                for _ in range(20):
                    yield b" " * 1000

            status, body = await client.post("/prompt", data=chunks(), headers={"Content-Type": "application/json"})
            assert status == 413

    run(go())


def test_view_rejects_path_traversal(lg_settings, tmp_path):
    out = lg_settings.output_dir
    (out / "sub").mkdir(parents=True)
    (out / "ok.png").write_bytes(png_bytes())
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (out / "leak.png").symlink_to(secret)
    (out / "sub" / "outside").symlink_to(tmp_path, target_is_directory=True)
    (out / "inside.png").symlink_to(out / "ok.png")

    async def go():
        async with serving(lg_settings) as client:
            status, _ = await client.get("/view?filename=ok.png")
            assert status == 200
            status, _ = await client.get("/view?filename=inside.png")  # a link within the folder is fine
            assert status == 200
            attempts = [
                "/view?filename=../secret.txt",
                "/view?filename=secret.txt&subfolder=..",
                "/view?filename=secret.txt&subfolder=sub/../..",
                "/view?filename=%2e%2e%2fsecret.txt",
                "/view?filename=..%5csecret.txt",
                "/view?filename=" + str(secret),
                "/view?filename=secret.txt&subfolder=" + str(tmp_path),
                "/view?filename=leak.png",
                "/view?filename=secret.txt&subfolder=sub/outside",
                "/view?filename=ok.png%00.txt",
                "/view?filename=ok.png&type=../..",
            ]
            for url in attempts:
                status, body = await client.get(url)
                assert status in (400, 403), (url, status)
                assert isinstance(body, dict) and "error" in body, url
                assert b"top secret" not in str(body).encode()
            status, _ = await client.get("/view?filename=%252e%252e%252fsecret.txt")  # just an odd name
            assert status == 404

    run(go())


def test_upload_cannot_escape_its_folder(lg_settings, tmp_path):
    lg_settings.input_dir.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (lg_settings.input_dir / "link").symlink_to(outside, target_is_directory=True)
    (lg_settings.input_dir / "victim.png").symlink_to(outside / "victim.png")

    async def go():
        async with serving(lg_settings) as client:
            for subfolder in ("..", "../outside", "/tmp", "link", "a/../../..", "C:\\Windows"):
                status, body = await client.post("/upload/image", data=form(png_bytes(), "x.png", subfolder=subfolder))
                assert status in (400, 403), (subfolder, status, body)
            status, body = await client.post("/upload/image", data=form(png_bytes(), "victim.png", overwrite="true"))
            assert status == 403
            assert list(outside.iterdir()) == []

    run(go())


def test_safe_path_helpers(tmp_path):
    assert relative_parts("a/b\\c") == ("a", "b", "c")
    assert relative_parts("") == ()
    for bad in ("..", "a/../../b", "/etc/passwd", "\\\\server\\share", "C:/x", "a\x00b"):
        with pytest.raises(UnsafePath):
            relative_parts(bad)
    assert resolve_inside(tmp_path, "a", "b.png") == (tmp_path / "a" / "b.png").resolve()
    os.symlink("/", tmp_path / "root")
    with pytest.raises(UnsafePath):
        resolve_inside(tmp_path, "root", "etc")
    assert safe_filename("../../x.png") == "x.png"
    assert safe_filename(".hidden") == "hidden"
    assert safe_filename("") == "upload"
