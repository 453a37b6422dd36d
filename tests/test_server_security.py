"""Token auth, cross-origin and foreign-Host refusal."""

from __future__ import annotations

import aiohttp
import pytest
from server_kit import chain, run, serving

from latentgraph.server import ServerConfig

TOKEN = "s3cret-token"


def test_without_a_token_everything_is_open(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            status, _ = await client.get("/queue")
            assert status == 200
            ws = await client.ws("open")
            assert ws.sid == "open"

    run(go())


def test_token_required_on_every_route_and_the_websocket(lg_settings):
    async def go():
        async with serving(lg_settings, config=ServerConfig(auth_token=TOKEN)) as client:
            # Authorised via the header (the kit adds it) and via the query parameter.
            status, _ = await client.get("/queue")
            assert status == 200
            client.token = None
            status, _ = await client.get(f"/object_info?token={TOKEN}")
            assert status == 200
            for method, path in (
                ("GET", "/queue"),
                ("GET", "/api/history"),
                ("POST", "/prompt"),
                ("GET", "/view?filename=x.png"),
                ("POST", "/upload/image"),
                ("GET", "/system_stats"),
                ("GET", "/plugins/server_nodes/hello"),
                ("GET", "/no/such/route"),
            ):
                status, body = await client.request(method, path)
                assert status == 401, (method, path)
                assert body["error"]["type"] == "unauthorized"
            status, _ = await client.get("/queue", headers={"Authorization": "Bearer wrong"})
            assert status == 401
            status, _ = await client.get("/queue?token=wrong")
            assert status == 401
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await client.session.ws_connect(client.url("/ws?clientId=x"))
            assert info.value.status == 401
            ws = await client.ws("ok", token=TOKEN)
            assert ws.sid == "ok"
            client.token = TOKEN
            reply = await client.submit(chain(1), "ok")
            await ws.until_done(reply["prompt_id"])

    run(go())


def test_cross_origin_requests_are_refused(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            host = client.base.split("://", 1)[1]
            status, _ = await client.get("/queue", headers={"Origin": f"http://{host}"})
            assert status == 200
            for origin in ("http://evil.example", f"http://evil.example:{host.split(':')[1]}", "null", "http://127.0.0.1:1"):
                status, body = await client.post("/prompt", {"prompt": chain(1)}, headers={"Origin": origin})
                assert status == 403, origin
                assert body["error"]["type"] == "forbidden"
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await client.session.ws_connect(client.url("/ws?clientId=x"), headers={"Origin": "http://evil.example"})
            assert info.value.status == 403
            # DNS rebinding: a foreign Host name on a loopback-bound server.
            status, body = await client.get("/queue", headers={"Host": "evil.example"})
            assert status == 403
            status, body = await client.get("/queue", headers={"Host": f"localhost:{host.split(':')[1]}"})
            assert status == 200
            # Behind a TLS proxy: no port on one side, same name: accepted, as in ComfyUI.
            status, _ = await client.get("/queue", headers={"Host": "localhost", "Origin": "https://localhost"})
            assert status == 200

    run(go())


def test_public_bind_accepts_any_host_name(lg_settings):
    async def go():
        config = ServerConfig(auth_token=TOKEN, allowed_hosts=None)
        async with serving(lg_settings, config=config) as client:
            status, _ = await client.get("/queue", headers={"Host": "gpu-box.lan:8188"})
            assert status == 200

    run(go())


def test_loopback_detection_for_the_public_bind_warning():
    from latentgraph import serve_cli

    assert serve_cli.is_loopback("127.0.0.1") and serve_cli.is_loopback("::1") and serve_cli.is_loopback("localhost")
    assert not serve_cli.is_loopback("0.0.0.0") and not serve_cli.is_loopback("192.168.1.5")
    assert "without --auth-token" in serve_cli.public_bind_warning("0.0.0.0", None)
    assert serve_cli.public_bind_warning("0.0.0.0", TOKEN) is None
    assert serve_cli.public_bind_warning("127.0.0.1", None) is None
