"""Informational routes, ``/free``, and plugin routes (isolated from a plugin that misbehaves)."""

from __future__ import annotations

from server_kit import chain, run, serving

from latentgraph import hookimpl


class BrokenRoutes:
    @hookimpl
    def register_routes(self, app, prefix):
        raise RuntimeError("cannot add my routes")


class GreedyRoutes:
    @hookimpl
    def register_routes(self, app, prefix):
        from aiohttp import web

        async def hijack(request):
            return web.json_response({"hijacked": True})

        app.router.add_get("/prompt-stealer", hijack)  # outside its prefix: refused
        app.router.add_get(prefix + "/fine", hijack)


def test_object_info_models_and_stats(lg_settings):
    ckpts = lg_settings.model_dirs("checkpoints")[0]
    ckpts.mkdir(parents=True)
    (ckpts / "a.safetensors").write_bytes(b"x")
    emb = lg_settings.model_dirs("embeddings")[0]
    emb.mkdir(parents=True)
    (emb / "style.pt").write_bytes(b"x")

    async def go():
        async with serving(lg_settings) as client:
            status, info = await client.get("/object_info")
            assert status == 200 and info["SrvWait"]["input"]["required"]["steps"][0] == "INT"
            assert info["SrvShow"]["output_node"] is True
            status, one = await client.get("/api/object_info/SrvAdd")
            assert list(one) == ["SrvAdd"] and one["SrvAdd"]["output"] == ["INT"]
            status, none = await client.get("/object_info/Nope")
            assert status == 200 and none == {}
            status, folders = await client.get("/models")
            assert "checkpoints" in folders
            status, names = await client.get("/models/checkpoints")
            assert "a.safetensors" in names
            status, _ = await client.get("/models/nowhere")
            assert status == 404
            status, names = await client.get("/embeddings")
            assert names == ["style", "redcircle"]  # the data dir's, then the one that ships with the package
            status, ext = await client.get("/extensions")
            assert ext == []
            ws = await client.ws("stats")
            pid = (await client.submit(chain(1), "stats"))["prompt_id"]
            await ws.until_done(pid)
            status, stats = await client.get("/system_stats")
            assert stats["system"]["python_version"] and stats["system"]["ram_total"] > 0
            device = stats["devices"][0]
            assert device["type"] == "cpu" and device["cache"]["budget"] > 0
            assert stats["cache"]["entries"] == 4
            status, body = await client.post("/free", {"unload_models": True, "free_memory": True})
            assert status == 200 and body["freed"] is True
            status, stats = await client.get("/system_stats")
            assert stats["cache"]["entries"] == 0
            # After /free the same prompt runs again (nothing cached).
            pid = (await client.submit(chain(1), "stats"))["prompt_id"]
            msgs = await ws.until_done(pid)
            assert next(d for k, d in msgs if k == "execution_cached")["nodes"] == []

    run(go())


def test_plugin_routes_are_prefixed_and_isolated(lg_settings):
    async def go():
        async with serving(lg_settings, BrokenRoutes(), GreedyRoutes()) as client:
            status, body = await client.get("/plugins/server_nodes/hello")
            assert status == 200 and body == {"hello": "from a plugin"}
            status, body = await client.get("/api/plugins/GreedyRoutes/fine")
            assert status == 200
            status, _ = await client.get("/prompt-stealer")
            assert status == 404
            status, plugins = await client.get("/plugins")
            by_name = {p["name"]: p for p in plugins}
            assert "SrvWait" in by_name["server_nodes"]["nodes"]
            assert any("cannot add my routes" in e for e in by_name["BrokenRoutes"]["errors"])
            assert any("outside" in e for e in by_name["GreedyRoutes"]["errors"])
            # The server works normally.
            status, _ = await client.get("/queue")
            assert status == 200

    run(go())
