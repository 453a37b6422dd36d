"""Malformed request bodies get a 400 with the structured JSON error naming the field at fault;
ComfyUI-shaped bodies (unknown fields, lenient values) keep working."""

from __future__ import annotations

import aiohttp
import pytest
from server_kit import chain, run, serving
from test_server_files import form, png_bytes

from latentgraph.server.app import JsonError
from latentgraph.server.schemas import ClearOrDelete, PromptRequest, UploadForm, validate

NOT_JSON = {"data": b"{not json", "headers": {"Content-Type": "application/json"}}

# (route, body, error type, field at fault); a body that is a dict with "data" is sent raw.
MALFORMED = [
    ("/prompt", {"client_id": "x"}, "no_prompt", "prompt"),
    ("/prompt", {"prompt": ["1", "2"]}, "no_prompt", "prompt"),
    ("/prompt", {"prompt": chain(1), "number": "soon"}, "invalid_prompt", "number"),
    ("/prompt", {"prompt": chain(1), "number": 1e400}, "invalid_prompt", "number"),
    ("/prompt", {"prompt": chain(1), "number": 10**400}, "invalid_prompt", "number"),  # was a 500
    ("/prompt", {"prompt": chain(1), "client_id": 42}, "invalid_prompt", "client_id"),
    ("/prompt", {"prompt": chain(1), "prompt_id": "x" * 201}, "invalid_prompt", "prompt_id"),
    ("/prompt", {"prompt": chain(1), "front": "maybe"}, "invalid_prompt", "front"),
    ("/prompt", {"prompt": chain(1), "extra_data": []}, "invalid_prompt", "extra_data"),
    ("/prompt", {"prompt": chain(1), "extra_data": {"extra_pnginfo": "x"}}, "invalid_prompt", "extra_data.extra_pnginfo"),
    ("/prompt", {"prompt": chain(1), "partial_execution_targets": ["4", 4]}, "invalid_prompt", "partial_execution_targets[1]"),
    ("/prompt", [chain(1)], "invalid_prompt", None),
    ("/prompt", NOT_JSON, "invalid_json", None),
    ("/queue", {"delete": "abc"}, "bad_request", "delete"),
    ("/queue", {"delete": [1, 2]}, "bad_request", "delete[0]"),
    ("/queue", {"clear": "please"}, "bad_request", "clear"),
    ("/queue", "clear", "bad_request", None),
    ("/queue", NOT_JSON, "invalid_json", None),
    ("/history", {"delete": None}, "bad_request", "delete"),
    ("/history", {"clear": [True]}, "bad_request", "clear"),
    ("/history", NOT_JSON, "invalid_json", None),
    ("/interrupt", {"prompt_id": 7}, "bad_request", "prompt_id"),
    ("/interrupt", [1], "bad_request", None),
    ("/interrupt", NOT_JSON, "invalid_json", None),
    ("/free", {"unload_models": "please"}, "bad_request", "unload_models"),
    ("/free", {"free_memory": {}}, "bad_request", "free_memory"),
    ("/free", NOT_JSON, "invalid_json", None),
    ("/workflow/convert", {"hello": 1}, "invalid_editor_workflow", "workflow"),
    ("/workflow/convert", {"workflow": [1]}, "invalid_editor_workflow", "workflow"),
    ("/workflow/convert", {"workflow": {"a": 1}}, "invalid_editor_workflow", "workflow"),
    ("/workflow/convert", {"nodes": "none"}, "invalid_editor_workflow", "workflow"),
    ("/workflow/convert", NOT_JSON, "invalid_json", None),
]


def assert_json_error(status, body, kind, field):
    assert status == 400, body
    assert isinstance(body, dict), body  # JSON, never HTML
    assert set(body) == {"error", "node_errors"} and body["node_errors"] == {}
    error = body["error"]
    assert set(error) == {"type", "message", "details", "extra_info"}
    assert error["type"] == kind and error["message"]
    if field is not None:
        assert error["extra_info"]["field"] == field
        assert error["message"].startswith(f"{field}: ")
        assert all({"field", "type", "message"} <= set(e) for e in error["extra_info"]["errors"])


def test_every_malformed_body_is_a_400_naming_its_field(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            for api in ("", "/api"):
                for path, body, kind, field in MALFORMED:
                    if isinstance(body, dict) and "data" in body:
                        status, reply = await client.post(api + path, **body)
                    else:
                        status, reply = await client.post(api + path, body)
                    try:
                        assert_json_error(status, reply, kind, field)
                    except AssertionError as exc:
                        raise AssertionError(f"{path} {body!r}: {exc}") from None
            # Nothing malformed reached the queue.
            status, queue = await client.get("/queue")
            assert queue == {"queue_running": [], "queue_pending": []}

    run(go())


def test_comfyui_shaped_bodies_still_accepted(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            ws = await client.ws("kim")
            # Unknown fields are ignored; extra_data keeps the client's own keys; "" ids mean none.
            reply = await client.submit(
                chain(1, steps=200, delay=0.01),
                "kim",
                prompt_id="",
                extra_data={"extra_pnginfo": {"workflow": {"nodes": []}}, "mine": [1]},
                some_future_field={"x": 1},
            )
            blocker = reply["prompt_id"]
            assert len(blocker) == 36
            await ws.until("progress", prompt_id=blocker)
            # ComfyUI takes a number given as a string; null extra_data and front are defaults.
            pending = await client.submit(chain(2), "kim", number="7", extra_data=None, front=None)
            assert pending["number"] == 7
            status, queue = await client.get("/queue")
            running = queue["queue_running"][0]
            # create_time (ms) is added by the server, as ComfyUI does
            assert all(isinstance(item[3].pop("create_time"), int) for item in (running, queue["queue_pending"][0]))
            assert running[3] == {"extra_pnginfo": {"workflow": {"nodes": []}}, "mine": [1], "client_id": "kim"}
            assert queue["queue_pending"][0][3] == {"client_id": "kim"}
            status, body = await client.post("/queue", {"delete": [pending["prompt_id"]], "extra": True})
            assert (status, body) == (200, {"deleted": 1})
            status, body = await client.post("/interrupt", {"prompt_id": ""})  # "" interrupts whatever runs
            assert (status, body) == (200, {"interrupted": True})
            await ws.until_done(blocker)
            status, body = await client.post("/history", {"clear": 1})
            assert (status, body) == (200, {"deleted": 1})
            status, body = await client.post("/free", data=b"")  # an empty body is {}
            assert (status, body) == (200, {"freed": False})

    run(go())


def test_upload_form_fields_are_checked(lg_settings):
    async def go():
        async with serving(lg_settings) as client:
            status, body = await client.post("/upload/image", data=form(png_bytes(), type="elsewhere"))
            assert_json_error(status, body, "bad_request", "type")
            status, body = await client.post("/upload/image", data=form(png_bytes(), overwrite="perhaps"))
            assert_json_error(status, body, "bad_request", "overwrite")
            status, body = await client.post("/upload/image", data=aiohttp.FormData({"type": ""}, default_to_multipart=True))
            assert status == 400 and body["error"]["message"] == "no 'image' file in the upload"
            assert not any(lg_settings.input_dir.rglob("*.png"))

    run(go())


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({}, ("input", False)), ({"type": "", "overwrite": ""}, ("input", False)),
     ({"type": "temp", "overwrite": "true"}, ("temp", True)), ({"overwrite": "1"}, ("input", True)),
     ({"overwrite": "false"}, ("input", False))],
)
def test_upload_form_defaults_and_switches(fields, expected):
    form = validate(UploadForm, fields)
    assert (form.type, form.overwrite) == expected


def test_every_error_is_listed_with_its_path():
    with pytest.raises(JsonError) as info:
        validate(PromptRequest, {"prompt": {"1": {}}, "number": "soon", "partial_execution_targets": [1, "2"]})
    error = info.value.body["error"]
    assert [e["field"] for e in error["extra_info"]["errors"]] == ["number", "partial_execution_targets[0]"]
    assert error["message"].endswith("(and 1 more)")
    assert "partial_execution_targets[0]" in error["details"] and "API-format workflow" in error["details"]
    assert validate(ClearOrDelete, {}).delete == []
