"""The Ray actor of a cluster: one per device, holding its own :class:`Engine` (and cache).

The server (:mod:`latentgraph.server.cluster`) asks it to ``run`` a prompt and, meanwhile,
long-polls ``poll`` for what happened: the engine's own events (translated into websocket
messages by the server's :class:`~latentgraph.server.worker.ProtocolSink`, exactly as in
single-process mode), rendered previews, and output-name reservations. The actor is threaded
(``max_concurrency``), so ``poll`` and ``interrupt`` are served while ``run`` runs.

This module imports nothing from Ray: :func:`actor_class` wraps :class:`EngineWorker` when a
cluster is started, so the module stays importable without the optional extra.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentgraph.context import InterruptFlag
from latentgraph.events import NodeProgress
from latentgraph.output_names import EXTRA_KEY as OUTPUT_NAMES_KEY
from latentgraph.output_names import file_under, files_in

#: File suffixes of model files (as :mod:`latentgraph.model_folders`).
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".pkl", ".sft", ".gguf")


def required_models(prompt: dict[str, Any]) -> set[str]:
    """Model files an API-format prompt names: ``*_name`` inputs holding a model file name
    (``ckpt_name``, ``lora_name``, ``vae_name``, ``clip_name1``…)."""
    found: set[str] = set()
    for node in prompt.values() if isinstance(prompt, dict) else ():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for name, value in (inputs or {}).items() if isinstance(inputs, dict) else ():
            if isinstance(value, str) and "_name" in name and value.lower().endswith(MODEL_SUFFIXES):
                found.add(value)
    return found


def node_set(registry: Any) -> list[str]:
    """``node type:plugin`` of every node an engine loaded."""
    return sorted(f"{name}:{registry.owners.get(name, '')}" for name in registry.node_types)


def nodes_digest(registry: Any) -> str:
    """The node set an engine loaded (plugins included): equal digests, equal workflows accepted."""
    return hashlib.sha256("\n".join(node_set(registry)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class EngineSpec:
    """How a worker assembles its engine: the same plugin set as the server, its own data dir
    (same layout and model folder names; on one machine, the server's, so outputs land there)."""

    base_dir: str
    plugins_dir: str | None = None
    entry_points: bool = True
    builtins: bool = True
    allow: tuple[str, ...] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def build(self):
        from latentgraph.engine import Engine
        from latentgraph.settings import Settings

        settings = Settings.from_env(Path(self.base_dir), **self.overrides)
        return Engine.create(
            settings,
            builtins=self.builtins,
            entry_points=self.entry_points,
            plugins_dir=Path(self.plugins_dir) if self.plugins_dir else None,
            allow=list(self.allow) if self.allow is not None else None,
        )


class _Run:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.messages: list[tuple] = []
        self.done = False
        self.interrupt = InterruptFlag()

    def push(self, message: tuple) -> None:
        with self.cond:
            self.messages.append(message)
            self.cond.notify_all()


class _Names:
    """Output names: earlier attempts' (sent by the server), new ones streamed back to it."""

    def __init__(self, run: _Run, reserved: dict[str, tuple[str, bool]]) -> None:
        self.run = run
        self.names = dict(reserved)

    def reserved(self, key: str) -> tuple[str, bool] | None:
        return self.names.get(key)

    def reserve(self, key: str, folder_type: str, path: str, *, written: bool = False) -> None:
        self.names[key] = (path, written)
        self.run.push(("reserve", key, folder_type, path, written))


class EngineWorker:
    """One cluster worker. Plain Python; :func:`actor_class` makes it a Ray actor."""

    def __init__(self, name: str, spec: EngineSpec, preview_interval: float = 0.1, max_models: int = 64) -> None:
        from latentgraph.server.previews import PreviewThrottle

        self.name = name
        self.spec = spec
        self.engine = spec.build()
        self.digest = nodes_digest(self.engine.registry)
        self.throttle = PreviewThrottle(preview_interval)
        self.max_models = max_models
        #: Model files this worker loaded for prompts that ran, most recent last.
        self.models: OrderedDict[str, None] = OrderedDict()
        self.model_loads = 0
        self.ran: list[str] = []
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    # -- reports ------------------------------------------------------------------------------
    def hello(self) -> dict[str, Any]:
        """What the dispatcher routes by: the models held, the load, the node set."""
        if len(self.engine.cache) == 0:
            self.models.clear()
        with self._lock:
            running = [pid for pid, run in self._runs.items() if not run.done]
        return {
            "name": self.name,
            "host": _node_ip(),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "nodes": self.digest,
            "models": list(self.models),
            "model_loads": self.model_loads,
            "ran": list(self.ran[-200:]),
            "running": running,
            "device": str(self.engine.settings.device) if hasattr(self.engine.settings, "device") else "",
            "cache": self.engine.cache.stats().to_dict(),
        }

    def node_set(self) -> list[str]:
        return node_set(self.engine.registry)

    def plugin_errors(self) -> dict[str, list[str]]:
        host = self.engine.host
        return {name: list(getattr(info, "errors", [])) for name, info in getattr(host, "plugins", {}).items()
                if getattr(info, "errors", None)}

    # -- running ------------------------------------------------------------------------------
    def _run_for(self, prompt_id: str, *, fresh: bool = False) -> _Run:
        with self._lock:
            run = self._runs.get(prompt_id)
            if run is None or (fresh and run.done):
                run = self._runs[prompt_id] = _Run()
            return run

    def run(
        self,
        prompt_id: str,
        prompt: dict[str, Any],
        targets: list[str] | None,
        extra: dict[str, Any],
        preview: bool,
        reserved: dict[str, tuple[str, bool]],
        ship_files: bool,
    ) -> dict[str, Any]:
        """Run one prompt; its events go to :meth:`poll`. Returns the outcome (and, when the
        server is on another machine, the bytes of the files the outputs name)."""
        run = self._run_for(prompt_id, fresh=True)
        try:
            result = self._execute(run, prompt_id, prompt, targets, extra, preview, reserved, ship_files)
            result["report"] = self.hello()  # the dispatcher routes the next prompt by it
            return result
        finally:
            self.throttle.forget(prompt_id)
            with run.cond:
                run.done = True
                run.cond.notify_all()

    def _execute(self, run, prompt_id, prompt, targets, extra, preview, reserved, ship_files) -> dict[str, Any]:
        graph, report = self.engine.check(prompt, targets=targets or None)
        if graph is None:  # a model file missing on this worker, say
            node_id = next(iter(report.node_errors), None)
            return {
                "status": "invalid",
                "node_id": node_id,
                "class_type": report.node_errors[node_id].class_type if node_id else None,
                "message": report.format() or "invalid workflow",
            }
        needed = required_models(prompt)
        self.model_loads += len(needed - set(self.models))

        def sink(event: Any) -> None:
            if isinstance(event, NodeProgress) and event.preview is not None:
                render = event.preview
                run.push(("event", dataclasses.replace(event, preview=None)))
                if preview and self.throttle.allow(prompt_id):
                    self._render(run, event, render)
                return
            run.push(("event", event))

        extra = {**extra, OUTPUT_NAMES_KEY: _Names(run, reserved)}
        result = self.engine.run(graph, prompt_id=prompt_id, sink=sink, interrupt=run.interrupt, extra=extra)
        self.ran.append(prompt_id)
        if result.status == "success":
            for name in sorted(needed):
                self.models[name] = None
                self.models.move_to_end(name)
            while len(self.models) > self.max_models:
                self.models.popitem(last=False)
        files: dict[str, bytes] = {}
        if ship_files:
            roots = {"output": self.engine.settings.output_dir, "temp": self.engine.settings.temp_dir}
            for folder_type, rel in files_in(result.outputs):
                root = roots.get(folder_type)
                path = file_under(root, rel) if root is not None else None
                if path is not None and path.is_file():
                    files[f"{folder_type}/{rel}"] = path.read_bytes()
        return {"status": result.status, "outputs": result.outputs, "files": files}

    def _render(self, run: _Run, event: NodeProgress, render: Any) -> None:
        from latentgraph.server.previews import encode_jpeg, node_metadata

        try:
            image = render()
            if image is None:
                return
            jpeg = encode_jpeg(image)
        except Exception:  # a broken preview must not stop sampling
            return
        run.push(("preview", jpeg, node_metadata(event.node_id, event.prompt_id)))

    def poll(self, prompt_id: str, timeout: float = 0.25) -> tuple[list[tuple], bool]:
        """What happened since the last poll (waiting up to ``timeout`` for something), and
        whether the run is over (then everything has been handed out)."""
        run = self._run_for(prompt_id)
        with run.cond:
            if not run.messages and not run.done:
                run.cond.wait(timeout)
            messages, run.messages = run.messages, []
            done = run.done
        if done:
            with self._lock:
                if self._runs.get(prompt_id) is run:
                    del self._runs[prompt_id]
        return messages, done

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt ``prompt_id`` (every run when None: a new server adopting this worker)."""
        with self._lock:
            runs = [r for pid, r in self._runs.items() if prompt_id is None or pid == prompt_id]
        for run in runs:
            run.interrupt.set()
        return bool(runs)


def _node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:
        return socket.gethostname()


def actor_class():
    """:class:`EngineWorker` as a Ray actor class (threaded: ``poll`` runs beside ``run``)."""
    import ray

    return ray.remote(max_concurrency=8, max_restarts=-1, max_task_retries=0)(EngineWorker)
