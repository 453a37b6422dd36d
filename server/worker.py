"""The one worker thread: takes prompts from the store in order and runs them on the engine.

The engine (and its cache) is shared across prompts, so a re-submitted, edited workflow re-runs
only what changed. Core events are translated into ComfyUI's websocket messages here, in the
worker thread, and handed to the event loop with ``call_soon_threadsafe``; the loop never waits
for the engine.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from latentgraph.context import InterruptFlag
from latentgraph.engine import Engine
from latentgraph.events import (
    Event,
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSucceeded,
    NodeFinished,
    NodeProgress,
    NodesCached,
    NodeStarted,
)
from latentgraph.server.hub import Hub
from latentgraph.server.previews import PreviewThrottle, encode_frame
from latentgraph.store import HistoryEntry, HistoryStatus, QueueItem, Store

log = logging.getLogger("latentgraph.server")


def now_ms() -> int:
    return int(time.time() * 1000)


class ProtocolSink:
    """An engine event sink that speaks ComfyUI's websocket protocol for one prompt.

    ``emit(kind, data, final)`` receives each message; the status messages ComfyUI keeps in
    history (start, cached, and the final outcome) are collected in ``messages``.
    """

    def __init__(
        self,
        prompt_id: str,
        emit: Callable[[str, dict[str, Any], bool], None],
        *,
        preview: Callable[[NodeProgress], None] | None = None,
    ) -> None:
        self.prompt_id = prompt_id
        self.emit = emit
        self.preview = preview
        self.messages: list[list[Any]] = []
        self.status = "running"
        self.started: float | None = None
        self._cached_sent = False
        self._held: list[tuple[str, dict[str, Any]]] = []
        self._cached_nodes: set[str] = set()

    def _send(self, kind: str, data: dict[str, Any], *, record: bool = False, hold: bool = False) -> None:
        if record:
            self.messages.append([kind, data])
        if hold:  # the outcome goes out after history is written: a client may fetch it at once
            self._held.append((kind, data))
        else:
            self.emit(kind, data, False)

    def _cached(self, nodes: tuple[str, ...] = ()) -> None:
        self._cached_sent = True
        self._send("execution_cached", {"nodes": list(nodes), "prompt_id": self.prompt_id, "timestamp": now_ms()}, record=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, ExecutionStarted):
            self.started = time.time()
            self._send("execution_start", {"prompt_id": self.prompt_id, "timestamp": now_ms()}, record=True)
            return
        if isinstance(event, NodesCached):
            self._cached(event.nodes)
            self._cached_nodes.update(event.nodes)
            return
        if not self._cached_sent:  # ComfyUI always says which nodes were cached, even none
            self._cached()
        if isinstance(event, NodeStarted):
            self._send("executing", {"node": event.node_id, "display_node": event.node_id, "prompt_id": self.prompt_id})
        elif isinstance(event, NodeProgress):
            self._send(
                "progress", {"value": event.value, "max": event.max, "prompt_id": self.prompt_id, "node": event.node_id}
            )
            if event.preview is not None and self.preview is not None:
                self.preview(event)
        elif isinstance(event, NodeFinished):
            if event.ui:
                self._send(
                    "executed",
                    {"node": event.node_id, "display_node": event.node_id, "output": event.ui, "prompt_id": self.prompt_id},
                )
        elif isinstance(event, ExecutionSucceeded):
            self.status = "success"
            for node_id, ui in event.outputs.items():  # like ComfyUI: cached outputs are shown again
                if node_id in self._cached_nodes and ui:
                    self._send(
                        "executed", {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": self.prompt_id}
                    )
            self._send("execution_success", {"prompt_id": self.prompt_id, "timestamp": now_ms()}, record=True, hold=True)
        elif isinstance(event, ExecutionFailed):
            self.status = "error"
            f = event.failure
            self.error(
                node_id=f.node_id if f else None,
                node_type=f.class_type if f else None,
                exception_type=f.exception_type if f else "Exception",
                message=f.message if f else "unknown error",
                tb=f.traceback if f else [],
                executed=list(event.executed),
                input_name=f.input_name if f else None,
            )
        elif isinstance(event, ExecutionInterrupted):
            self.status = "interrupted"
            self._send(
                "execution_interrupted",
                {
                    "prompt_id": self.prompt_id,
                    "node_id": event.node_id,
                    "node_type": event.class_type,
                    "executed": list(event.executed),
                    "timestamp": now_ms(),
                },
                record=True,
                hold=True,
            )

    def error(
        self,
        *,
        node_id: str | None,
        node_type: str | None,
        exception_type: str,
        message: str,
        tb: list[str],
        executed: list[str],
        input_name: str | None = None,
    ) -> None:
        self.status = "error"
        if not self._cached_sent and self.started is not None:
            self._cached()
        self._send(
            "execution_error",
            {
                "prompt_id": self.prompt_id,
                "node_id": node_id,
                "node_type": node_type,
                "executed": executed,
                "exception_message": message,
                "exception_type": exception_type,
                "traceback": tb,
                "current_inputs": {},
                "current_outputs": {},
                "input_name": input_name,
                "timestamp": now_ms(),
            },
            record=True,
            hold=True,
        )

    def done(self) -> None:
        """The outcome, then ``executing {node: null}``: the prompt is over."""
        for kind, data in self._held:
            self.emit(kind, data, False)
        self._held.clear()
        self.emit("executing", {"node": None, "display_node": None, "prompt_id": self.prompt_id}, True)


@dataclass
class Running:
    item: QueueItem
    interrupt: InterruptFlag = field(default_factory=InterruptFlag)


class Worker:
    """Runs queued prompts one at a time in a daemon thread."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        hub: Hub,
        loop: asyncio.AbstractEventLoop,
        *,
        preview_interval: float = 0.1,
    ) -> None:
        self.engine = engine
        self.store = store
        self.hub = hub
        self.loop = loop
        self.throttle = PreviewThrottle(preview_interval)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._running: Running | None = None
        self._thread = threading.Thread(target=self._main, name="latentgraph-worker", daemon=True)
        self._outbox: deque[tuple[Callable[..., Any], tuple, dict]] = deque()
        self._outbox_lock = threading.Lock()
        self._drain_scheduled = False
        self.completed = 0

    # -- control (any thread) -----------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupt the running prompt (it stays queued and runs after restart) and join."""
        self._stopping.set()
        self.interrupt()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt the running prompt (only if it is ``prompt_id`` when one is given)."""
        with self._lock:
            running = self._running
            if running is None or (prompt_id is not None and running.item.prompt_id != prompt_id):
                return False
            running.interrupt.set()
            return True

    @property
    def running_id(self) -> str | None:
        running = self._running
        return running.item.prompt_id if running else None

    # -- the thread ---------------------------------------------------------------------------
    def _main(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                item = self.store.claim_next()
            except Exception:
                log.exception("cannot read the queue")
                self._wake.wait(1.0)
                continue
            if item is None:
                self._wake.wait(1.0)
                continue
            self._post(self.hub.status_changed)
            try:
                self._run(item)
            except Exception:  # the worker must survive anything a prompt does
                log.exception("prompt %s: unexpected failure in the worker", item.prompt_id)

    def _run(self, item: QueueItem) -> None:
        running = Running(item)
        with self._lock:
            if self._stopping.is_set():  # claimed just as the server began to stop
                self.store.release(item.prompt_id)
                return
            self._running = running
        client_id = item.client_id

        def emit(kind: str, data: dict[str, Any], final: bool) -> None:
            self._post(self.hub.publish, item.prompt_id, client_id, kind, data, final=final)

        sink = ProtocolSink(item.prompt_id, emit, preview=lambda ev: self._preview(client_id, ev))
        outputs: dict[str, dict[str, Any]] = {}
        try:
            extra_pnginfo = item.extra_data.get("extra_pnginfo")
            extra: dict[str, Any] = {"client_id": client_id}
            if isinstance(extra_pnginfo, dict):
                extra["extra_pnginfo"] = extra_pnginfo
                extra["workflow"] = extra_pnginfo.get("workflow")
            graph, report = self.engine.check(item.prompt, targets=item.outputs_to_execute or None)
            if graph is None:  # valid when accepted, but something changed since (a model file, a plugin)
                sink(ExecutionStarted(item.prompt_id))
                node_id = next(iter(report.node_errors), None)
                sink.error(
                    node_id=node_id,
                    node_type=report.node_errors[node_id].class_type if node_id else None,
                    exception_type="latentgraph.errors.WorkflowInvalid",
                    message=report.format() or "invalid workflow",
                    tb=[],
                    executed=[],
                )
            else:
                result = self.engine.run(
                    graph, prompt_id=item.prompt_id, sink=sink, interrupt=running.interrupt, extra=extra
                )
                outputs = result.outputs
                if result.status == "interrupted" and self._stopping.is_set():
                    self.store.release(item.prompt_id)  # server shutting down: run it again next time
                    sink.done()
                    return
        except Exception as exc:
            log.exception("prompt %s failed outside any node", item.prompt_id)
            sink.error(
                node_id=None,
                node_type=None,
                exception_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                message=str(exc) or type(exc).__name__,
                tb=traceback.format_exception(type(exc), exc, exc.__traceback__),
                executed=[],
            )
        finally:
            with self._lock:
                self._running = None
            self.throttle.forget(item.prompt_id)
        status = sink.status if sink.status != "running" else "error"
        entry = HistoryEntry(
            item,
            outputs,
            HistoryStatus(status, status == "success", sink.messages),
            started=sink.started,
            finished=time.time(),
        )
        try:
            self.store.finish(entry)
        except Exception:  # the prompt stays queued in the database and runs again after restart
            log.exception("prompt %s: cannot record its history", item.prompt_id)
        self.completed += 1
        sink.done()
        self._post(self.hub.status_changed)

    def _preview(self, client_id: str | None, event: NodeProgress) -> None:
        if not self.hub.is_listening(client_id) or not self.throttle.allow(event.prompt_id):
            return
        try:
            image = event.preview()
            if image is None:
                return
            frame = encode_frame(image)
        except Exception as exc:  # a broken preview must not stop sampling
            log.warning("preview for node %s failed: %s", event.node_id, exc)
            return
        self._post(self.hub.publish_binary, client_id, frame)

    def _post(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``fn`` on the loop, in posting order. Calls posted while the loop has not yet
        drained earlier ones ride along with them: one wake-up for a burst of messages."""
        with self._outbox_lock:
            self._outbox.append((fn, args, kwargs))
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: the server is gone
            pass

    def _drain(self) -> None:
        with self._outbox_lock:
            calls = list(self._outbox)
            self._outbox.clear()
            self._drain_scheduled = False
        for fn, args, kwargs in calls:
            try:
                fn(*args, **kwargs)
            except Exception:
                log.exception("delivering a message failed")
