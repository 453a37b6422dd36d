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
    ImageSent,
    NodeFinished,
    NodeProgress,
    NodesCached,
    NodeStarted,
)
from latentgraph.server.hub import Hub
from latentgraph.output_names import EXTRA_KEY as OUTPUT_NAMES_KEY
from latentgraph.output_names import file_under, files_in, remove_partials
from latentgraph.server.progress_state import NodeStates
from latentgraph.server.previews import PreviewThrottle, effective_method, encode_jpeg, encode_png, node_metadata
from latentgraph.server.store import HistoryEntry, HistoryStatus, QueueItem, Store
from latentgraph.server.validated import ValidatedGraphs

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
        announce: Callable[[str, dict[str, Any]], None] | None = None,
        send_image: Callable[[ImageSent], None] | None = None,
    ) -> None:
        self.prompt_id = prompt_id
        self.emit = emit
        self.preview = preview
        #: Delivers pictures nodes send themselves (always, whatever the preview setting).
        self.send_image = send_image
        #: Called with (node id, output) before an ``executed`` message goes out.
        self.announce = announce
        self.messages: list[list[Any]] = []
        self.status = "running"
        self.started: float | None = None
        self._cached_sent = False
        self._held: list[tuple[str, dict[str, Any]]] = []
        self._cached_nodes: set[str] = set()
        #: Per-node states for ``progress_state`` (the editor's running-node highlight).
        self.states = NodeStates(prompt_id)

    def _send(self, kind: str, data: dict[str, Any], *, record: bool = False, hold: bool = False) -> None:
        if record:
            self.messages.append([kind, data])
        if kind == "executed" and self.announce is not None:
            self.announce(data["node"], data["output"])
        if hold:  # the outcome goes out after history is written: a client may fetch it at once
            self._held.append((kind, data))
        else:
            self.emit(kind, data, False)

    def _send_states(self) -> None:
        self._send("progress_state", self.states.message())

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
            self.states.start(event.node_id)
            self._send_states()
        elif isinstance(event, NodeProgress):
            self.states.progress(event.node_id, event.value, event.max)
            self._send_states()
            self._send(
                "progress", {"value": event.value, "max": event.max, "prompt_id": self.prompt_id, "node": event.node_id}
            )
            if event.preview is not None and self.preview is not None:
                self.preview(event)
        elif isinstance(event, ImageSent):
            if self.send_image is not None:
                self.send_image(event)
        elif isinstance(event, NodeFinished):
            self.states.finish(event.node_id)
            self._send_states()
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
        if node_id is not None and node_id in self.states.nodes:
            self.states.fail(node_id)
            self._send_states()
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


class PromptOutputNames:
    """The output file names one prompt reserved, kept in the store until it finishes (see
    :mod:`latentgraph.output_names`)."""

    def __init__(self, store: Store, prompt_id: str) -> None:
        self.store = store
        self.prompt_id = prompt_id

    def reserved(self, key: str) -> tuple[str, bool] | None:
        name = self.store.reserved_name(self.prompt_id, key)
        return (name.path, name.written) if name is not None else None

    def reserve(self, key: str, folder_type: str, path: str, *, written: bool = False) -> None:
        self.store.reserve_name(self.prompt_id, key, folder_type, path, written=written)


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
        validated: ValidatedGraphs | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.hub = hub
        self.loop = loop
        #: Graphs ``POST /prompt`` validated; a prompt without one is validated here.
        self.validated = validated
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

        def announce(node_id: str, output: dict[str, Any]) -> None:
            try:  # recorded before clients hear of it, so a re-run after a crash keeps it
                self.store.record_announced(item.prompt_id, node_id, output)
            except Exception:
                log.exception("prompt %s: cannot record the output of node %s", item.prompt_id, node_id)

        sink = ProtocolSink(item.prompt_id, emit, preview=self._previewer(item), announce=announce,
                            send_image=lambda event, client_id=item.client_id: self._send_image(client_id, event))
        earlier: dict[str, dict[str, Any]] = {}
        outputs: dict[str, dict[str, Any]] = {}
        try:
            if item.attempts > 1:  # outputs of attempts the process died (or was stopped) in
                earlier = self.store.announced(item.prompt_id)
            if item.crashes >= self.store.max_crashes:
                self._refuse_crash_loop(item, sink)
            else:
                if item.crashes:
                    log.warning("prompt %s: running again after the process died %d time(s) running it", item.prompt_id, item.crashes)
                ran = self._execute(item, running, sink)
                if ran is None:  # server shutting down: it runs again next time
                    sink.done()
                    return
                outputs = ran
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
        outputs = {**earlier, **outputs}  # every file a client was told about stays referenced
        success = sink.status == "success"
        entry = HistoryEntry(
            item,
            outputs,
            HistoryStatus("success" if success else "error", success, sink.messages),
            started=sink.started,
            finished=time.time(),
        )
        try:
            self._drop_unreferenced_files(item.prompt_id, outputs)
            self.store.finish(entry)
        except Exception:  # the prompt stays queued in the database and runs again after restart
            log.exception("prompt %s: cannot record its history", item.prompt_id)
        self.completed += 1
        sink.done()
        self._post(self.hub.status_changed)

    def _execute(self, item: QueueItem, running: Running, sink: ProtocolSink) -> dict[str, dict[str, Any]] | None:
        """Run the prompt; its ui outputs, or None if the server is stopping (released)."""
        extra: dict[str, Any] = {**self.store.secrets(item.prompt_id), "client_id": item.client_id}
        extra[OUTPUT_NAMES_KEY] = PromptOutputNames(self.store, item.prompt_id)
        extra_pnginfo = item.extra_data.get("extra_pnginfo")
        if isinstance(extra_pnginfo, dict):
            extra["extra_pnginfo"] = extra_pnginfo
            extra["workflow"] = extra_pnginfo.get("workflow")
        graph = self.validated.take(item.prompt_id) if self.validated is not None else None
        if graph is None:  # accepted before a restart (plugins may differ now) or not kept: check again
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
            return {}
        result = self.engine.run(graph, prompt_id=item.prompt_id, sink=sink, interrupt=running.interrupt, extra=extra)
        if result.status == "interrupted" and self._stopping.is_set():
            self.store.release(item.prompt_id)
            return None
        return result.outputs

    def _refuse_crash_loop(self, item: QueueItem, sink: ProtocolSink) -> None:
        """The process died running this prompt ``max_crashes`` times: fail it, don't run it."""
        log.error("prompt %s: the process died %d times running it; failing it", item.prompt_id, item.crashes)
        sink(ExecutionStarted(item.prompt_id))
        sink.error(
            node_id=None,
            node_type=None,
            exception_type="latentgraph.server.PromptCrashLoop",
            message=(
                f"the server process died {item.crashes} times while running this prompt"
                f" (limit --max-prompt-crashes {self.store.max_crashes}); it was not run again"
            ),
            tb=[],
            executed=[],
        )

    def _drop_unreferenced_files(self, prompt_id: str, outputs: dict[str, dict[str, Any]]) -> None:
        """Files this prompt wrote that its history will not name (an attempt cut short), and
        temporary files a killed attempt left: removed, so no file is orphaned."""
        reserved = self.store.reserved_names(prompt_id)
        if not reserved:
            return
        settings = self.engine.settings
        roots = {"output": settings.output_dir, "temp": settings.temp_dir}
        referenced = set(files_in(outputs))
        for name in reserved:
            root = roots.get(name.folder_type)
            path = file_under(root, name.path) if root is not None else None
            if path is None:
                continue
            remove_partials(path)
            if name.written and (name.folder_type, name.path) not in referenced:
                path.unlink(missing_ok=True)

    def _previewer(self, item: QueueItem) -> Callable[[NodeProgress], None] | None:
        """Previews only when the prompt or the server default asks (ComfyUI's default: none)."""
        method = effective_method(item.extra_data.get("preview_method"), self.hub.preview_method)
        if method == "none":
            return None
        client_id = item.client_id
        return lambda event: self._preview(client_id, event)

    def _preview(self, client_id: str | None, event: NodeProgress) -> None:
        if not self.hub.is_listening(client_id) or not self.throttle.allow(event.prompt_id):
            return
        try:
            image = event.preview()
            if image is None:
                return
            jpeg = encode_jpeg(image)
        except Exception as exc:  # a broken preview must not stop sampling
            log.warning("preview for node %s failed: %s", event.node_id, exc)
            return
        self._post(self.hub.publish_preview, client_id, jpeg, node_metadata(event.node_id, event.prompt_id))

    def _send_image(self, client_id: str | None, event: ImageSent) -> None:
        try:
            png = encode_png(event.image)
        except Exception as exc:  # a picture that cannot be encoded must not stop the prompt
            log.warning("image from node %s could not be sent: %s", event.node_id, exc)
            return
        self._post(self.hub.publish_image, client_id, png)

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
