"""The routes ComfyUI's web editor calls, on a real loopback server, without a browser: their
shapes (ComfyUI's), persistence under ``<data dir>/user/<user>/``, confinement like ``/view``,
``progress_state``, one connection per client id, editor-shaped errors, ``python_module``, and
legacy editor-format forms."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from editor_kit import Editor, convert, inputs_of, registry  # noqa: F401 - registry is a fixture
from PIL import Image
from server_kit import chain, run, serving

from latentgraph.server import ServerConfig

SETTINGS = "user/default/comfy.settings.json"


def editor_dir(tmp_path: Path) -> Path:
    """A stand-in frontend build: what ``--editor-dir`` points at."""
    folder = tmp_path / "frontend"
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_text("<!doctype html><title>editor</title>")
    (folder / "assets" / "app.js").write_text("export const x = 1;")
    (folder / "assets" / "favicon.ico").write_bytes(b"\0\0\1\0")
    (tmp_path / "secret.txt").write_text("outside")
    return folder


async def raw(client, method: str, path: str, **kw) -> tuple[int, bytes, aiohttp.typedefs.LooseHeaders]:
    async with client.session.request(method, client.url(path), **kw) as resp:
        return resp.status, await resp.read(), resp.headers


# -- settings and users --------------------------------------------------------------------------
def test_settings_persist_per_user_under_the_data_dir(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            status, body = await client.get("/settings")
            assert status == 200 and body["Comfy.Notification.ShowVersionUpdates"] is False  # no api.comfy.org
            assert (await client.post("/settings/Comfy.LinkRenderMode", 2))[0] == 200
            assert (await client.post("/api/settings", {"Comfy.Locale": "fr", "x.nested": {"a": [1]}}))[0] == 200
            assert await client.get("/settings/Comfy.LinkRenderMode") == (200, 2)
            assert await client.get("/settings/never.set") == (200, None)
            status, body = await client.get("/settings")
            assert body["Comfy.Locale"] == "fr" and body["x.nested"] == {"a": [1]} and body["Comfy.LinkRenderMode"] == 2
            # concurrent saves of different settings all land
            await asyncio.gather(*(client.post(f"/settings/k{i}", i) for i in range(20)))
            status, body = await client.get("/settings")
            assert all(body[f"k{i}"] == i for i in range(20))
            assert (await client.post("/settings", [1, 2]))[0] == 400
            assert (await client.post("/settings/x", data=b"{bad", headers={"Content-Type": "application/json"}))[0] == 400

    run(go())
    stored = json.loads((lg_settings.base_dir / SETTINGS).read_text())
    assert stored["Comfy.LinkRenderMode"] == 2 and "Comfy.Notification.ShowVersionUpdates" not in stored


def test_a_corrupt_settings_file_reads_as_defaults(lg_settings):
    path = lg_settings.base_dir / SETTINGS
    path.parent.mkdir(parents=True)
    path.write_text("{not json")

    async def go():
        async with serving(lg_settings) as client:
            status, body = await client.get("/settings")
            assert status == 200 and body["Comfy.Notification.ShowVersionUpdates"] is False
            await client.post("/settings/a", 1)
            assert (await client.get("/settings"))[1]["a"] == 1

    run(go())


def test_users_single_and_multi(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            assert await client.get("/users") == (200, {"storage": "server", "migrated": False})
            assert (await client.post("/users", {"username": "bob"}))[0] == 400  # single-user server
        async with serving(lg_settings, config=ServerConfig(multi_user=True)) as client:
            status, user_id = await client.post("/users", {"username": "Bob Smith"})
            assert status == 200 and user_id.startswith("Bob-Smith_")
            assert (await client.post("/users", {"username": "Bob Smith"}))[0] == 400  # duplicate
            assert (await client.post("/users", {"username": "__system"}))[0] == 400
            status, body = await client.get("/users")
            assert body == {"storage": "server", "users": {user_id: "Bob Smith"}}
            assert (await client.post("/settings/a", 1, headers={"Comfy-User": user_id}))[0] == 200
            assert (await client.get("/settings/a", headers={"Comfy-User": user_id}))[1] == 1
            assert (await client.get("/settings/a"))[1] is None  # the default user is someone else
            assert (await client.get("/settings", headers={"Comfy-User": "nobody"}))[0] == 401
            assert (await client.get("/settings", headers={"Comfy-User": "../x"}))[0] == 401
            return user_id

    user_id = run(go())
    assert json.loads((lg_settings.base_dir / "user" / user_id / "comfy.settings.json").read_text()) == {"a": 1}


# -- user data -----------------------------------------------------------------------------------
def test_userdata_save_list_move_delete(lg_settings):
    user = lg_settings.base_dir / "user/default"
    wf = json.dumps({"nodes": [], "links": []}).encode()

    async def go():
        async with serving(lg_settings) as client:
            assert await client.get("/userdata?dir=workflows&recurse=true&full_info=true") == (200, [])
            status, body = await client.post("/userdata/workflows%2Fa%20b.json", data=wf)
            assert (status, body) == (200, "workflows/a b.json")
            assert (user / "workflows" / "a b.json").read_bytes() == wf
            assert (await client.post("/userdata/workflows%2Fa%20b.json?overwrite=false", data=b"{}"))[0] == 409
            status, info = await client.post("/api/userdata/workflows%2Fsub%2Fc.json?full_info=true", data=b"{}")
            assert status == 200 and info["path"] == "workflows/sub/c.json" and info["size"] == 2
            assert set(info) == {"path", "size", "modified", "created"}
            status, data, headers = await raw(client, "GET", "/userdata/workflows%2Fa%20b.json")
            assert status == 200 and data == wf
            assert await client.get("/userdata?dir=workflows") == (200, ["a b.json"])
            assert await client.get("/userdata?dir=workflows&recurse=true") == (200, ["a b.json", "sub/c.json"])
            assert (await client.get("/userdata?dir=workflows&recurse=true&split=true"))[1][1] == ["sub/c.json", "sub", "c.json"]
            status, listing = await client.get("/userdata?dir=workflows&recurse=true&full_info=true")
            assert [e["path"] for e in listing] == ["a b.json", "sub/c.json"]
            assert (await client.get("/userdata"))[0] == 400
            status, v2 = await client.get("/v2/userdata?path=workflows")
            assert [(e["type"], e["path"]) for e in v2] == [("directory", "workflows/sub"), ("file", "workflows/a b.json"),
                                                             ("file", "workflows/sub/c.json")]
            assert (await client.get("/v2/userdata"))[0] == 200
            assert (await client.get("/v2/userdata?path=nothere"))[0] == 404
            assert (await client.get("/v2/userdata?path=workflows%2Fa%20b.json"))[0] == 400
            status, body = await client.post("/userdata/workflows%2Fa%20b.json/move/workflows%2Fd.json")
            assert (status, body) == (200, "workflows/d.json")
            assert (await client.post("/userdata/workflows%2Fd.json/move/workflows%2Fsub%2Fc.json?overwrite=false"))[0] == 409
            assert (await client.post("/userdata/workflows%2Fnope.json/move/workflows%2Fe.json"))[0] == 404
            assert (await raw(client, "DELETE", "/userdata/workflows%2Fd.json"))[0] == 204
            assert (await raw(client, "DELETE", "/userdata/workflows%2Fd.json"))[0] == 404
            assert (await client.get("/userdata/workflows%2Fd.json"))[0] == 404

    run(go())
    assert sorted(p.name for p in (user / "workflows").rglob("*")) == ["c.json", "sub"]


def test_files_the_editor_always_asks_for_have_empty_defaults(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            status, data, headers = await raw(client, "GET", "/api/userdata/user.css")
            assert status == 200 and data == b"" and headers["Content-Type"].startswith("text/css")
            assert await client.get("/userdata/comfy.templates.json") == (200, [])
            assert await client.get("/userdata/workflows%2F.index.json") == (200, {"favorites": []})
            await client.post("/userdata/comfy.templates.json", data=b'[{"name": "t"}]')
            assert await client.get("/userdata/comfy.templates.json") == (200, [{"name": "t"}])

    run(go())


@pytest.mark.parametrize("name", ["..%2F..%2Fescape.json", "%2Fetc%2Fpasswd", "workflows%2F..%2F..%2F..%2Fx.json",
                                  "a%00b.json", "C:%5Cx.json", "..%5C..%5Cx.json"])
def test_userdata_stays_inside_the_users_folder(lg_settings, name):
    async def go():
        async with serving(lg_settings) as client:
            assert (await client.post(f"/userdata/{name}", data=b"x"))[0] in (400, 403, 404)
            assert (await client.get(f"/userdata/{name}"))[0] in (400, 403, 404)
            assert (await raw(client, "DELETE", f"/userdata/{name}"))[0] in (400, 403, 404)
            assert (await client.post(f"/userdata/ok.json/move/{name}"))[0] in (400, 403, 404)
            assert (await client.get(f"/userdata?dir={name}"))[0] in (400, 403, 404)

    run(go())
    outside = [p for p in lg_settings.base_dir.parent.rglob("*") if p.is_file() and "user" not in p.parts]
    assert not [p for p in outside if p.name in ("escape.json", "x.json", "passwd")]


def test_userdata_refuses_symlinks_leading_out(lg_settings, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"secret": 1}')
    user = lg_settings.base_dir / "user/default"
    user.mkdir(parents=True)
    os.symlink(secret, user / "link.json")
    os.symlink(tmp_path, user / "linkdir")

    async def go():
        async with serving(lg_settings) as client:
            assert (await client.get("/userdata/link.json"))[0] == 403
            assert (await client.post("/userdata/link.json", data=b"{}"))[0] == 403
            assert (await client.post("/userdata/linkdir%2Fnew.json", data=b"{}"))[0] == 403
            assert (await client.get("/userdata?dir=linkdir"))[0] == 403

    run(go())
    assert secret.read_text() == '{"secret": 1}' and not (tmp_path / "new.json").exists()


# -- jobs ------------------------------------------------------------------------------------------
def test_jobs_list_the_queue_and_history(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("jobs")
            done = []
            for value in (1, 2):
                body = await client.submit(chain(value), "jobs", extra_data={"extra_pnginfo": {"workflow": {"id": f"wf{value}"}}})
                await ws.until("executing", node=None, prompt_id=body["prompt_id"])
                done.append(body["prompt_id"])
            status, body = await client.get("/api/jobs?limit=1")
            assert status == 200 and body["pagination"] == {"offset": 0, "limit": 1, "total": 2, "has_more": True}
            job = body["jobs"][0]
            assert job["id"] == done[1] and job["status"] == "completed"  # newest first
            assert job["workflow_id"] == "wf2" and job["outputs_count"] == 0 and "create_time" in job  # values, not files
            assert job["execution_end_time"] >= job["execution_start_time"]
            status, body = await client.get("/jobs?sort_order=asc&offset=1")
            assert [j["id"] for j in body["jobs"]] == [done[1]] and body["pagination"]["has_more"] is False
            assert (await client.get("/jobs?workflow_id=wf1"))[1]["pagination"]["total"] == 1
            assert (await client.get("/jobs?status=pending,in_progress"))[1]["jobs"] == []
            for bad in ("status=done", "limit=0", "limit=x", "offset=x", "sort_by=name", "sort_order=up"):
                status, body = await client.get(f"/jobs?{bad}")
                assert status == 400 and body["error"]["extra_info"]["field"] == bad.split("=")[0]
            status, job = await client.get(f"/jobs/{done[0]}")
            assert status == 200 and list(job["outputs"]["4"]) == ["value"]
            assert job["workflow"]["prompt"]["1"]["class_type"] == "SrvNumber"
            assert job["execution_status"]["status_str"] == "success"
            assert (await client.get("/jobs/unknown"))[0] == 404

    run(go())


def test_jobs_show_pending_and_failed(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("f")
            slow = await client.submit(chain(1, steps=20, delay=0.05), "f")
            pending = await client.submit(chain(2), "f")
            await ws.until("executing", node="3", prompt_id=slow["prompt_id"])
            status, body = await client.get("/jobs")
            states = {j["id"]: j["status"] for j in body["jobs"]}
            assert states == {slow["prompt_id"]: "in_progress", pending["prompt_id"]: "pending"}
            await client.post("/interrupt")
            await ws.until("executing", node=None, prompt_id=pending["prompt_id"])
            status, job = await client.get(f"/jobs/{slow['prompt_id']}")
            assert job["status"] == "failed"

    run(go())


# -- models, metadata, internal --------------------------------------------------------------------
def test_model_library_routes(lg_settings):
    from safetensors.numpy import save_file

    folder = lg_settings.base_dir / "models/checkpoints/sub"
    folder.mkdir(parents=True)
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(folder / "mine.safetensors"), metadata={"modelspec.title": "Mine"})
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(folder / "plain.safetensors"))
    (folder / ".hidden.safetensors").write_bytes(b"x")

    async def go():
        async with serving(lg_settings) as client:
            status, folders = await client.get("/experiment/models")
            names = [f["name"] for f in folders]
            assert status == 200 and "checkpoints" in names and "loras" in names and "configs" not in names
            assert all(isinstance(f["folders"], list) for f in folders)
            status, files = await client.get("/experiment/models/checkpoints")
            mine = [f for f in files if f["name"] == "sub/mine.safetensors"]
            assert status == 200 and mine and mine[0]["pathIndex"] == 0 and mine[0]["size"] > 0
            assert not [f for f in files if ".hidden" in f["name"]]
            assert (await client.get("/experiment/models/unet"))[0] == 200  # legacy name
            assert (await client.get("/experiment/models/nope"))[0] == 404
            assert (await client.get("/experiment/models/preview/checkpoints/0/sub/mine.webp"))[0] == 404
            meta = await client.get("/view_metadata/checkpoints?filename=sub/mine.safetensors")
            assert meta == (200, {"modelspec.title": "Mine"})
            assert (await client.get("/view_metadata/checkpoints?filename=sub/plain.safetensors"))[0] == 404
            assert (await client.get("/view_metadata/checkpoints?filename=../../x.safetensors"))[0] == 404
            assert (await client.get("/view_metadata/checkpoints?filename=sub/mine.ckpt"))[0] == 404
            status, paths = await client.get("/internal/folder_paths")
            assert status == 200 and str(lg_settings.base_dir / "models/checkpoints") in paths["checkpoints"]

    run(go())


def test_internal_files_and_logs(lg_settings):
    out = lg_settings.output_dir
    out.mkdir(parents=True)
    for i, name in enumerate(["old.png", "new.png"]):
        (out / name).write_bytes(b"x")
        os.utime(out / name, (1000 + i, 1000 + i))
    (out / ".hidden.png").write_bytes(b"x")
    (out / "folder").mkdir()

    async def go():
        async with serving(lg_settings) as client:
            assert await client.get("/internal/files/output") == (200, ["new.png", "old.png"])
            assert await client.get("/internal/files/temp") == (200, [])
            assert (await client.get("/internal/files/models"))[0] == 400
            import logging

            logging.getLogger("latentgraph.server").warning("hello from the test")
            status, text = await client.get("/internal/logs")
            assert status == 200 and "hello from the test" in text
            status, body = await client.get("/internal/logs/raw")
            assert any("hello from the test" in e["m"] for e in body["entries"]) and set(body["size"]) == {"cols", "rows"}
            assert (await client.request("PATCH", "/internal/logs/subscribe", json={"clientId": "x", "enabled": True}))[0] == 200
            assert (await client.request("PATCH", "/internal/logs/subscribe", json={}))[0] == 400

    run(go())


# -- the editor's files ----------------------------------------------------------------------------
def test_editor_files_are_served_at_the_root_and_confined(lg_settings, tmp_path):
    folder = editor_dir(tmp_path)

    async def go():
        async with serving(lg_settings, config=ServerConfig(editor_dir=folder)) as client:
            status, data, headers = await raw(client, "GET", "/")
            assert status == 200 and b"<title>editor</title>" in data and headers["Cache-Control"] == "no-cache"
            status, data, headers = await raw(client, "GET", "/assets/app.js")
            assert status == 200 and headers["Content-Type"].startswith("application/javascript")
            assert (await raw(client, "HEAD", "/assets/app.js"))[0] == 200
            assert (await raw(client, "GET", "/favicon.ico"))[:2] == (200, b"\0\0\1\0")
            assert (await raw(client, "GET", "/user.css"))[:2] == (200, b"")
            assert (await raw(client, "GET", "/assets/missing.js"))[0] == 404
            for evil in ("/..%2Fsecret.txt", "/assets/..%2F..%2Fsecret.txt", "/%2e%2e/secret.txt"):
                status, data, _ = await raw(client, "GET", evil)
                assert status in (403, 404) and b"outside" not in data
            # the API is not shadowed by the catch-all
            assert (await client.get("/prompt"))[1] == {"exec_info": {"queue_remaining": 0}}
            assert (await client.get("/api/i18n")) == (200, {})
            # the page's own requests pass the Origin check
            origin = client.base
            assert (await client.post("/settings/a", 1, headers={"Origin": origin}))[0] == 200
            assert (await client.post("/settings/a", 1, headers={"Origin": "http://evil.example"}))[0] == 403
        async with serving(lg_settings) as client:  # --no-editor
            assert (await raw(client, "GET", "/"))[0] == 404
            assert (await raw(client, "GET", "/assets/app.js"))[0] == 404

    run(go())


def test_small_editor_routes(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            assert await client.get("/workflow_templates") == (200, {})
            assert await client.get("/global_subgraphs") == (200, {})
            assert (await client.get("/global_subgraphs/x"))[0] == 404
            status, body = await client.get("/system_stats")
            assert {"comfyui_version", "required_frontend_version", "installed_templates_version",
                    "required_templates_version"} <= set(body["system"])
            assert body["system"]["required_frontend_version"] == "1.35.9"

    run(go())


# -- websocket ------------------------------------------------------------------------------------
def test_progress_state_marks_the_running_node(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("ps")
            body = await client.submit(chain(1, steps=3), "ps")
            messages = await ws.until_done(body["prompt_id"])
            states = [d for kind, d in messages if kind == "progress_state"]
            assert states and all(s["prompt_id"] == body["prompt_id"] for s in states)
            running = [s for s in states if s["nodes"].get("3", {}).get("state") == "running"]
            assert running and {"value", "max", "state", "node_id", "display_node_id", "parent_node_id",
                                "real_node_id", "prompt_id"} <= set(running[-1]["nodes"]["3"])
            assert any(s["nodes"]["3"]["value"] == 3 and s["nodes"]["3"]["max"] == 3 for s in running)
            last = states[-1]["nodes"]
            assert {n: e["state"] for n, e in last.items()} == {"1": "finished", "2": "finished", "3": "finished", "4": "finished"}

    run(go())


def test_progress_state_marks_a_failed_node(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("err")
            body = await client.submit({"1": {"class_type": "SrvNumber", "inputs": {"value": 1}},
                                        "2": {"class_type": "SrvBoom", "inputs": {"value": ["1", 0], "fail": True}},
                                        "3": {"class_type": "SrvShow", "inputs": {"value": ["2", 0]}}}, "err")
            messages = await ws.until_done(body["prompt_id"])
            states = [d for kind, d in messages if kind == "progress_state"]
            assert states[-1]["nodes"]["2"]["state"] == "error"

    run(go())


def test_only_the_newest_connection_of_a_client_gets_its_events(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            old = await client.ws("same")
            new = await client.ws("same")
            body = await client.submit(chain(5), "same")
            await new.until_done(body["prompt_id"])
            await asyncio.sleep(0.2)
            with pytest.raises((asyncio.TimeoutError, TimeoutError)):
                while True:
                    await old.receive(timeout=0.3)
            assert not old.of(body["prompt_id"])
            await new.ws.close()  # the older one is not promoted; a reconnect is the newest again
            again = await client.ws("same")
            body = await client.submit(chain(6), "same")
            await again.until_done(body["prompt_id"])

    run(go())


# -- errors, object_info --------------------------------------------------------------------------
def test_errors_in_the_editors_shapes(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            status, body = await client.post("/prompt", {"prompt": {"7": {"inputs": {}}, **chain(1)}})
            assert status == 400 and body["error"]["type"] == "invalid_prompt"
            assert "'#7'" in body["error"]["details"] and body["error"]["extra_info"]["node_id"] == "7"
            assert "7" not in body["node_errors"]
            status, body = await client.post("/prompt", {"prompt": {}})
            assert status == 400 and body["error"]["type"] == "prompt_no_outputs" and body["node_errors"] == {}

    run(go())


def test_python_module_tells_core_nodes_from_plugins(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            status, info = await client.get("/object_info")
            assert info["KSampler"]["python_module"].split(".")[0] == "nodes"
            assert info["CheckpointLoaderSimple"]["python_module"].split(".")[0] == "nodes"
            plugin = info["SrvShow"]["python_module"]
            assert plugin.startswith("custom_nodes.") and plugin != "custom_nodes."
            assert info["KSampler"]["module"].startswith("latentgraph.nodes")

    run(go())


# -- mask upload -----------------------------------------------------------------------------------
def _png(mode: str, size, color) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_mask_puts_the_mask_in_the_originals_alpha(lg_settings):
    def form(mask: bytes, ref: dict) -> aiohttp.FormData:
        fd = aiohttp.FormData()
        fd.add_field("image", mask, filename="clipspace-mask-1.png", content_type="image/png")
        fd.add_field("original_ref", json.dumps(ref))
        fd.add_field("type", "input")
        fd.add_field("subfolder", "clipspace")
        return fd

    async def go():
        async with serving(lg_settings) as client:
            fd = aiohttp.FormData()
            fd.add_field("image", _png("RGB", (4, 3), (10, 20, 30)), filename="pic.png")
            assert (await client.post("/upload/image", data=fd))[0] == 200
            mask = _png("RGBA", (4, 3), (0, 0, 0, 77))
            status, body = await client.post("/upload/mask", data=form(mask, {"filename": "pic.png", "type": "input", "subfolder": ""}))
            assert status == 200 and body == {"name": "clipspace-mask-1.png", "subfolder": "clipspace", "type": "input"}
            with Image.open(lg_settings.input_dir / "clipspace" / "clipspace-mask-1.png") as img:
                assert img.mode == "RGBA" and img.getpixel((0, 0)) == (10, 20, 30, 77)
            status, _ = await client.post("/upload/mask", data=form(mask, {"filename": "../../x.png", "type": "input"}))
            assert status == 403
            assert (await client.post("/upload/mask", data=form(mask, {"filename": "none.png", "type": "input"})))[0] == 404
            fd = aiohttp.FormData()
            fd.add_field("image", mask, filename="m.png")
            fd.add_field("original_ref", "{not json")
            assert (await client.post("/upload/mask", data=fd))[0] == 400

    run(go())


# -- editor-format legacy forms --------------------------------------------------------------------
def test_legacy_editor_forms_convert(registry):
    ed = Editor()
    ed.node(1, "Seeded", widgets=[42, True, 7, "", None], outputs=["INT"])  # true control, trailing empties
    ed.node(2, "Seeded", widgets=[43, False, 8], outputs=["INT"])
    ed.node(3, "Add", widgets=[], outputs=["INT"])  # saved without widget values: defaults
    ed.node(4, "Show", inputs=[("value", "*")])
    ed.link(1, 0, 4, "value")
    result = convert(registry, ed.json())
    assert result.ok, result.report.format()
    assert inputs_of(result.prompt, "1") == {"seed": 42, "offset": 7}
    assert inputs_of(result.prompt, "2") == {"seed": 43, "offset": 8}
    assert inputs_of(result.prompt, "3") == {"b": 0, "scale": 1.0}  # the widgets' defaults
    applied = convert(registry, ed.json(), apply_controls=True)
    assert inputs_of(applied.prompt, "2")["seed"] == 43  # false: fixed
