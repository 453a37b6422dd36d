"""The server's pure parts: event → message translation, replay log, preview framing, throttle."""

from __future__ import annotations

import io

from PIL import Image

from latentgraph.errors import NodeFailure
from latentgraph.events import (
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSucceeded,
    NodeFinished,
    NodeProgress,
    NodesCached,
    NodeStarted,
)
from latentgraph.server.hub import PromptLog, encode
from latentgraph.server.previews import (
    PreviewThrottle,
    decode_frame,
    decode_metadata_frame,
    effective_method,
    encode_frame,
    encode_jpeg,
    legacy_frame,
    metadata_frame,
)
from latentgraph.server.worker import ProtocolSink


def collect():
    sent = []
    return sent, lambda kind, data, final: sent.append((kind, data, final))


def test_sink_translates_a_cached_run_like_comfyui():
    sent, emit = collect()
    previews = []
    sink = ProtocolSink("p1", emit, preview=previews.append)
    sink(ExecutionStarted("p1", ("1", "2", "3")))
    sink(NodesCached("p1", ("1", "3")))
    sink(NodeStarted("p1", "2", "Add"))
    sink(NodeProgress("p1", "2", 1, 2, preview=lambda: None))
    sink(NodeFinished("p1", "2", "Add", None, 0.1))
    sink(ExecutionSucceeded("p1", {"3": {"value": [1]}}))
    states = [d for k, d, _ in sent if k == "progress_state"]  # the editor's per-node states
    assert [s["nodes"]["2"]["state"] for s in states] == ["running", "running", "finished"]
    sent[:] = [m for m in sent if m[0] != "progress_state"]
    # The outcome waits until the worker has written history.
    assert [k for k, _, _ in sent] == ["execution_start", "execution_cached", "executing", "progress", "executed"]
    assert sent[-1][1] == {"node": "3", "display_node": "3", "output": {"value": [1]}, "prompt_id": "p1"}
    sink.done()
    assert [k for k, _, _ in sent][-2:] == ["execution_success", "executing"]
    assert sent[-1] == ("executing", {"node": None, "display_node": None, "prompt_id": "p1"}, True)
    assert len(previews) == 1
    assert [m[0] for m in sink.messages] == ["execution_start", "execution_cached", "execution_success"]
    assert sink.status == "success"


def test_sink_always_sends_execution_cached_and_reports_failures():
    sent, emit = collect()
    sink = ProtocolSink("p2", emit)
    sink(ExecutionStarted("p2", ("1",)))
    sink(NodeStarted("p2", "1", "Boom"))
    failure = NodeFailure("1", "Boom", "builtins.RuntimeError", "kaboom", ["Traceback…"], "tests", None)
    sink(ExecutionFailed("p2", failure, ()))
    sink.done()
    assert [d["nodes"]["1"]["state"] for k, d, _ in sent if k == "progress_state"] == ["running", "error"]
    sent[:] = [m for m in sent if m[0] != "progress_state"]
    kinds = [k for k, _, _ in sent]
    assert kinds == ["execution_start", "execution_cached", "executing", "execution_error", "executing"]
    error = sent[3][1]
    assert error["node_id"] == "1" and error["node_type"] == "Boom" and error["exception_message"] == "kaboom"
    assert error["exception_type"] == "builtins.RuntimeError" and error["traceback"] == ["Traceback…"]
    assert sink.status == "error"

    sent, emit = collect()
    sink = ProtocolSink("p3", emit)
    sink(ExecutionStarted("p3", ("1",)))
    sink(ExecutionInterrupted("p3", "1", "Wait", ()))
    sink.done()
    assert [k for k, _, _ in sent] == ["execution_start", "execution_cached", "execution_interrupted", "executing"]
    assert sink.status == "interrupted"


def test_replay_log_collapses_progress_and_is_bounded():
    log = PromptLog("c", limit=5)
    for kind, data in [
        ("execution_start", {}),
        ("executing", {"node": "1"}),
        *[("progress", {"node": "1", "value": i}) for i in range(100)],
        ("executing", {"node": "2"}),
        ("progress", {"node": "2", "value": 0}),
    ]:
        log.add(kind, data, encode(kind, data))
    texts = list(log.messages)
    assert len(texts) == 5
    assert '"value":99' in texts[2] and texts[1].startswith('{"type":"executing"')

    small = PromptLog("c", limit=3)
    for i in range(10):
        small.add("executing", {"node": str(i)}, encode("executing", {"node": str(i)}))
    assert [m for m in small.messages] == [encode("executing", {"node": str(i)}) for i in (7, 8, 9)]


def test_preview_frames_and_throttle():
    frame = encode_frame(Image.new("RGBA", (1024, 768), (10, 20, 30, 255)))
    event, fmt, data = decode_frame(frame)
    assert (event, fmt) == (1, 1)
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG" and max(img.size) == 512
    throttle = PreviewThrottle(0.5)
    assert throttle.allow("p", now=10.0)
    assert not throttle.allow("p", now=10.2)
    assert throttle.allow("other", now=10.2)
    assert throttle.allow("p", now=10.6)
    throttle.forget("p")
    assert throttle.allow("p", now=10.61)


def test_a_client_too_far_behind_is_disconnected_without_holding_up_others():
    import asyncio

    from latentgraph.server.hub import Hub

    class StuckSocket:
        closed = False

        def __init__(self):
            self.sent, self.close_codes = [], []
            self.release = asyncio.Event()

        async def send_str(self, text):
            await self.release.wait()  # a client that stopped reading
            self.sent.append(text)

        async def send_bytes(self, data):
            await self.send_str(data)

        async def close(self, code=None, message=b""):
            self.close_codes.append(code)
            self.closed = True

    class FastSocket(StuckSocket):
        async def send_str(self, text):
            self.sent.append(text)

    async def go():
        hub = Hub(lambda: 0, max_backlog=10)
        slow, fast = StuckSocket(), FastSocket()
        hub.attach(slow, "slow")
        hub.attach(fast, "fast")
        for i in range(30):
            hub.publish(f"p{i}", None, "executing", {"node": "1", "prompt_id": f"p{i}"})
            hub.publish_preview(None, b"jpeg", {"node_id": "1", "prompt_id": f"p{i}"})
            await asyncio.sleep(0)  # the loop turns between messages, as it does in the server
        await asyncio.sleep(0.05)
        assert not hub.is_listening("slow") and slow.close_codes
        assert hub.is_listening("fast")
        texts = [t for t in fast.sent if isinstance(t, str)]
        assert len(texts) == 31  # status + every message
        frames = [t for t in fast.sent if isinstance(t, bytes)]
        assert 1 <= len(frames) <= 30

    asyncio.run(go())


def test_preview_method_rule_and_metadata_framing():
    # ComfyUI's rule: a named method wins; "default", a missing or unknown value → the default.
    assert effective_method("auto", "none") == "auto"
    assert [effective_method(v, "none") for v in (None, "default", "TAESD", 3)] == ["none"] * 4
    assert effective_method("none", "latent2rgb") == "none"
    jpeg = encode_jpeg(Image.new("RGB", (600, 300)))
    assert Image.open(io.BytesIO(jpeg)).size == (512, 256)
    frame = metadata_frame(jpeg, {"node_id": "3", "prompt_id": "p"})
    assert frame[:4] == b"\x00\x00\x00\x04"
    assert decode_metadata_frame(frame) == ({"node_id": "3", "prompt_id": "p", "image_type": "image/jpeg"}, jpeg)
    assert decode_frame(legacy_frame(jpeg)) == (1, 1, jpeg)


def test_outputs_are_recorded_before_clients_hear_of_them():
    order = []
    sink = ProtocolSink(
        "p1",
        lambda kind, data, final: order.append(("emit", kind)),
        announce=lambda node, output: order.append(("record", node, output)),
    )
    sink(ExecutionStarted("p1", ("1",)))
    sink(NodeFinished("p1", "1", "Show", {"value": [1]}, 0.1))
    assert order[-2:] == [("record", "1", {"value": [1]}), ("emit", "executed")]
