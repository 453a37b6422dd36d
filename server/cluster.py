"""Scale-out on Ray (``latentgraph serve --workers ray[://ADDRESS]``): one queue, many workers.

The server keeps its SQLite queue and history as the one source of truth. A dispatcher thread
claims the next prompt whenever a worker is idle and hands it to the worker that already holds
its models (workers report the model files they hold); ties and cold starts go to the least
loaded worker. Each worker is a Ray actor (:mod:`latentgraph.server.ray_worker`, one per GPU or
CPU slot) with its own engine and cache; a whole prompt runs on one worker.

On the server each worker has a :class:`Slot`: a :class:`~latentgraph.server.worker.Worker`
whose ``_execute`` runs the prompt remotely and feeds the engine events it streams back into the
same :class:`~latentgraph.server.worker.ProtocolSink`, so websocket clients, history and output
bookkeeping are exactly those of single-process mode.

Faults: a worker lost mid-prompt (actor killed, node gone) puts the prompt back at the head of
the queue; after ``max_attempts`` losses it fails with ``latentgraph.server.WorkerLost``. Ray
restarts a killed actor (``max_restarts=-1``); the dispatcher probes lost workers and gives them
work again once they answer. Actors are named and detached, so a restarted server adopts the
live cluster (warm caches included) and resumes dispatching.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentgraph.engine import Engine
from latentgraph.events import ExecutionStarted
from latentgraph.output_names import file_under, write_atomically
from latentgraph.server.hub import Hub
from latentgraph.server.previews import effective_method
from latentgraph.server.ray_worker import EngineSpec, actor_class, node_set, nodes_digest, required_models
from latentgraph.server.worker import ProtocolSink, Running, Worker
from latentgraph.server.store import QueueItem, Store

log = logging.getLogger("latentgraph.server.cluster")

ACTOR_PREFIX = "latentgraph-worker-"
NAMESPACE = "latentgraph"
#: Prompts a worker may hold (one running, one waiting): a busy worker that has a prompt's
#: models is preferred over an idle one that must load them.
MAX_PER_WORKER = 2
POLL_SECONDS = 0.25
#: A worker that does not answer a poll for this long is treated as lost.
POLL_TIMEOUT = 60.0
PROBE_SECONDS = 2.0


class ClusterUnavailable(RuntimeError):
    """Ray is not installed or the cluster cannot be reached."""


@dataclass(frozen=True)
class ClusterConfig:
    """``--workers ray[://ADDRESS]``: where the cluster is, and how to build each worker."""

    spec: EngineSpec
    #: ``ray.init`` address: None starts (or joins ``$RAY_ADDRESS``) a local cluster; ``auto``,
    #: ``HOST:PORT`` or ``ray://HOST:10001`` join a running one.
    address: str | None = None
    #: Workers the server creates; None: one per GPU in the cluster, else one per CPU.
    count: int | None = None
    #: Worker losses a prompt survives (then it fails with a clear error).
    max_attempts: int = 3
    namespace: str = NAMESPACE
    #: Extra ``ray.init`` arguments when the server starts a local cluster itself.
    init_options: dict[str, Any] = field(default_factory=dict)


def parse_workers(text: str) -> str | None:
    """``ray`` → None (local); ``ray://ADDRESS`` → the address for ``ray.init`` (``ray://HOST:PORT``
    for a Ray Client port 10001, else ``HOST:PORT`` of the head, or ``auto``)."""
    if text == "ray":
        return None
    if not text.startswith("ray://") or len(text) <= len("ray://"):
        raise ValueError(f"--workers: expected 'ray' or 'ray://ADDRESS', got {text!r}")
    rest = text[len("ray://"):]
    if rest == "auto":
        return "auto"
    return text if rest.endswith(":10001") else rest


def require_ray():
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable(
            "--workers ray needs Ray: pip install 'latentgraph[ray]' (or pip install 'ray[default]')"
        ) from None
    return ray


def _lost_errors() -> tuple[type[BaseException], ...]:
    import ray.exceptions as rex

    names = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "GetTimeoutError", "NodeDiedError",
             "WorkerCrashedError", "ObjectLostError", "OwnerDiedError")
    return tuple(getattr(rex, n) for n in names if hasattr(rex, n))


class WorkerLost(Exception):
    pass


class Slot(Worker):
    """The server side of one worker actor: runs the prompts handed to it, one at a time."""

    def __init__(self, cluster: ClusterDispatcher, name: str, actor: Any, index: int) -> None:
        super().__init__(cluster.engine, cluster.store, cluster.hub, cluster.loop, preview_interval=cluster.preview_interval)
        self._thread.name = f"latentgraph-{name}"
        self.cluster = cluster
        self.name = name
        self.actor = actor
        self.index = index
        self.backlog: deque[QueueItem] = deque()
        self.info: dict[str, Any] = {}
        self.healthy = False
        self.refused: str | None = None
        self.routed: list[str] = []
        self._probe_at = 0.0
        self._held = 0  # prompts handed here and not yet over
        self._held_lock = threading.Lock()

    @property
    def load(self) -> int:
        return self._held

    @property
    def models(self) -> set[str]:
        return set(self.info.get("models", ()))

    def assign(self, item: QueueItem) -> None:
        self.routed.append(item.prompt_id)
        with self._held_lock:
            self._held += 1
        self.backlog.append(item)
        self._wake.set()

    def probe(self, timeout: float = 10.0) -> bool:
        """Ask the actor for its report; healthy if it answers with the server's node set."""
        import ray

        try:
            info = ray.get(self.actor.hello.remote(), timeout=timeout)
        except Exception as exc:
            if self.healthy:
                log.warning("worker %s does not answer: %s", self.name, type(exc).__name__)
            self.healthy = False
            return False
        if info.get("nodes") != self.cluster.digest:
            if self.healthy or self.info.get("pid") != info.get("pid"):  # once per actor process
                self.refused = f"worker {self.name} on {info.get('hostname')} loaded a different node set; refused"
                try:
                    theirs = set(ray.get(self.actor.node_set.remote(), timeout=timeout))
                    errors = ray.get(self.actor.plugin_errors.remote(), timeout=timeout)
                    ours = set(node_set(self.engine.registry))
                    self.refused += (f": missing {sorted(ours - theirs)[:10]}, extra {sorted(theirs - ours)[:10]}"
                                     f"{f', plugin errors {errors}' if errors else ''}")
                except Exception:
                    pass
                log.error("%s", self.refused)
            self.info, self.healthy = info, False
            return False
        was = self.healthy
        self.info, self.healthy, self.refused = info, True, None
        if not was:
            log.info("worker %s ready on %s (pid %s)", self.name, info.get("hostname"), info.get("pid"))
            self.cluster.notify()
        return True

    # -- the thread ---------------------------------------------------------------------------
    def _main(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                item = self.backlog.popleft()
            except IndexError:
                self._wake.wait(1.0)
                continue
            try:
                self._run(item)
            except Exception:
                log.exception("prompt %s: unexpected failure in worker %s", item.prompt_id, self.name)
            finally:
                with self._held_lock:
                    self._held -= 1
            if self.healthy:
                self.probe()
            self.cluster.notify()
        self.give_back()  # the server is stopping: these run after the next start

    def give_back(self) -> None:
        """Prompts waiting here go back to the queue (this worker was lost)."""
        while True:
            try:
                item = self.backlog.popleft()
            except IndexError:
                return
            with self._held_lock:
                self._held -= 1
            self.store.release(item.prompt_id)

    def _execute(self, item: QueueItem, running: Running, sink: ProtocolSink) -> dict[str, dict[str, Any]] | None:
        import ray

        extra: dict[str, Any] = {**self.store.secrets(item.prompt_id), "client_id": item.client_id}
        extra_pnginfo = item.extra_data.get("extra_pnginfo")
        if isinstance(extra_pnginfo, dict):
            extra["extra_pnginfo"] = extra_pnginfo
            extra["workflow"] = extra_pnginfo.get("workflow")
        # validated when accepted; the worker checks it again against its own files and models
        # (and reports a failure as this prompt's execution_error), so the head does not
        preview = effective_method(item.extra_data.get("preview_method"), self.hub.preview_method) != "none"
        ship = self.info.get("host") != self.cluster.host
        lost = _lost_errors()
        try:
            ref = self.actor.run.remote(
                item.prompt_id, item.prompt, item.outputs_to_execute or None, extra, preview,
                self.cluster.reserved(item.prompt_id), ship,
            )
            forwarded = False
            while True:
                if running.interrupt.is_set() and not forwarded:
                    self.actor.interrupt.remote(item.prompt_id)
                    forwarded = True
                messages, done = ray.get(self.actor.poll.remote(item.prompt_id, POLL_SECONDS), timeout=POLL_TIMEOUT)
                for message in messages:
                    self._deliver(item, sink, message)
                if done:
                    break
            result = ray.get(ref, timeout=POLL_TIMEOUT)
        except lost as exc:
            return self._lost(item, sink, exc)
        if isinstance(result.get("report"), dict):
            self.info = result["report"]
        if result["status"] == "invalid":
            self._invalid(sink, result["node_id"], result["class_type"], f"on worker {self.name}: {result['message']}")
            return {}
        self._store_files(result.get("files") or {})
        if result["status"] == "interrupted" and self._stopping.is_set():
            self.store.release(item.prompt_id)
            return None
        return result["outputs"]

    def _deliver(self, item: QueueItem, sink: ProtocolSink, message: tuple) -> None:
        kind = message[0]
        if kind == "event":
            sink(message[1])
        elif kind == "preview":
            if self.hub.is_listening(item.client_id):
                self._post(self.hub.publish_preview, item.client_id, message[1], message[2])
        elif kind == "reserve":
            _, key, folder_type, path, written = message
            self.store.reserve_name(item.prompt_id, key, folder_type, path, written=written)

    def _store_files(self, files: dict[str, bytes]) -> None:
        """Files of a worker on another machine, shipped back: into the server's folders."""
        roots = {"output": self.engine.settings.output_dir, "temp": self.engine.settings.temp_dir}
        for name, data in files.items():
            folder_type, _, rel = name.partition("/")
            root = roots.get(folder_type)
            path = file_under(root, rel) if root is not None else None
            if path is None:
                log.warning("worker %s shipped a file outside the output folders: %r; dropped", self.name, name)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, data, replace=True)

    def _invalid(self, sink: ProtocolSink, node_id: str | None, class_type: str | None, message: str) -> None:
        sink(ExecutionStarted(sink.prompt_id))
        sink.error(node_id=node_id, node_type=class_type, exception_type="latentgraph.errors.WorkflowInvalid",
                   message=message, tb=[], executed=[])

    def _lost(self, item: QueueItem, sink: ProtocolSink, exc: BaseException) -> dict[str, Any] | None:
        self.healthy = False
        self.give_back()
        losses = self.cluster.record_loss(item.prompt_id, self.name)
        limit = self.cluster.config.max_attempts
        if self._stopping.is_set() or losses < limit:
            log.warning("prompt %s: worker %s lost (%s); queued again (loss %d of %d)",
                        item.prompt_id, self.name, type(exc).__name__, losses, limit)
            self.store.release(item.prompt_id)
            sink.emit = lambda *a, **k: None  # not over: the next attempt speaks for it
            self.cluster.notify()
            return None
        workers = ", ".join(self.cluster.losses.get(item.prompt_id, []))
        log.error("prompt %s: lost %d workers (%s); failing it", item.prompt_id, losses, workers)
        if sink.started is None:
            sink(ExecutionStarted(item.prompt_id))
        sink.error(
            node_id=None,
            node_type=None,
            exception_type="latentgraph.server.WorkerLost",
            message=(f"the cluster worker running this prompt was lost {losses} times ({workers});"
                     f" it was not run again (limit {limit})"),
            tb=traceback.format_exception_only(type(exc), exc),
            executed=[],
        )
        return {}


class ClusterDispatcher:
    """Stands where the single :class:`Worker` stands (``state.worker``): same control methods."""

    def __init__(self, engine: Engine, store: Store, hub: Hub, loop: asyncio.AbstractEventLoop,
                 config: ClusterConfig, *, preview_interval: float = 0.1) -> None:
        self.engine = engine
        self.store = store
        self.hub = hub
        self.loop = loop
        self.config = config
        self.preview_interval = preview_interval
        self.digest = nodes_digest(engine.registry)
        self.slots: dict[str, Slot] = {}
        #: prompt id → names of the workers lost while running it.
        self.losses: dict[str, list[str]] = {}
        #: prompt id → worker names it was sent to, in order (the last one finished it).
        self.routes: dict[str, list[str]] = {}
        self.host: str = ""
        self._started_ray = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name="latentgraph-cluster", daemon=True)

    # -- the Worker interface -----------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        # each slot's stop interrupts its prompt and joins its thread: in parallel, so N slots
        # stop within one timeout rather than N
        stoppers = [threading.Thread(target=slot.stop, args=(timeout,), name=f"stop-{slot.name}")
                    for slot in list(self.slots.values())]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        for slot in list(self.slots.values()):
            slot.give_back()
        if self._started_ray:
            import ray

            ray.shutdown()

    def interrupt(self, prompt_id: str | None = None) -> bool:
        return any([slot.interrupt(prompt_id) for slot in list(self.slots.values())])

    @property
    def running_id(self) -> str | None:
        return next((s.running_id for s in self.slots.values() if s.running_id), None)

    @property
    def completed(self) -> int:
        return sum(s.completed for s in self.slots.values())

    # -- reports ------------------------------------------------------------------------------
    def workers(self) -> list[dict[str, Any]]:
        """Each worker's last report, with the dispatcher's view (healthy, load, routed)."""
        return [
            {**slot.info, "name": name, "healthy": slot.healthy, "refused": slot.refused, "load": slot.load,
             "routed": list(slot.routed)}
            for name, slot in sorted(self.slots.items())
        ]

    def record_loss(self, prompt_id: str, worker: str) -> int:
        lost = self.losses.setdefault(prompt_id, [])
        lost.append(worker)
        return len(lost)

    def reserved(self, prompt_id: str) -> dict[str, tuple[str, bool]]:
        """Output names earlier attempts reserved, by key (sent to the worker that runs it next)."""
        with self.store._reading() as db:  # noqa: SLF001 - the store has no by-key listing
            rows = db.execute("SELECT key, path, written FROM output_names WHERE prompt_id = ?", (prompt_id,)).fetchall()
        return {key: (path, bool(written)) for key, path, written in rows}

    # -- the dispatcher thread ------------------------------------------------------------------
    def _connect(self) -> None:
        ray = require_ray()
        if self.host:
            return
        if not ray.is_initialized():
            options: dict[str, Any] = {"namespace": self.config.namespace, "log_to_driver": False}
            if self.config.address is None:
                options.update({"include_dashboard": False, **self.config.init_options})
                self._started_ray = True
            try:
                ray.init(address=self.config.address, **options)
            except Exception as exc:  # unreachable address, bad credentials…: say so, no traceback
                raise ClusterUnavailable(f"cannot reach the Ray cluster at {self.config.address or 'a new local one'}: "
                                         f"{type(exc).__name__}: {str(exc)[:300]}") from None
        self.host = ray.util.get_node_ip_address()

    def _wanted(self) -> int:
        import ray

        if self.config.count is not None:
            return self.config.count
        resources = ray.cluster_resources()
        return int(resources.get("GPU", 0)) or max(1, int(resources.get("CPU", 1)))

    def _ensure_actors(self) -> None:
        """Adopt (or create) this server's workers and any other worker that joined the cluster."""
        import ray

        use_gpu = self.config.count is None and ray.cluster_resources().get("GPU", 0) > 0
        cls = actor_class()
        for i in range(self._wanted()):
            name = f"{ACTOR_PREFIX}{i}"
            if name in self.slots:
                continue
            actor = cls.options(
                name=name, namespace=self.config.namespace, lifetime="detached", get_if_exists=True,
                num_cpus=0 if use_gpu else 1, num_gpus=1 if use_gpu else 0,
            ).remote(name, self.config.spec, self.preview_interval)
            self._add(name, actor)
        try:
            named = ray.util.list_named_actors(all_namespaces=True)
        except Exception:
            named = []
        for entry in named:
            name, namespace = (entry["name"], entry["namespace"]) if isinstance(entry, dict) else (entry, self.config.namespace)
            if namespace != self.config.namespace or not name.startswith(ACTOR_PREFIX) or name in self.slots:
                continue
            try:
                self._add(name, ray.get_actor(name, namespace=namespace))
            except ValueError:
                continue

    def _add(self, name: str, actor: Any) -> None:
        slot = Slot(self, name, actor, len(self.slots))
        self.slots[name] = slot
        actor.interrupt.remote(None)  # a run a previous server started: its prompt is queued again
        slot.start()

    def _probe(self) -> None:
        now = time.monotonic()
        for slot in list(self.slots.values()):
            if not slot.healthy and slot.load == 0 and now >= slot._probe_at:
                slot._probe_at = now + PROBE_SECONDS
                slot.probe(timeout=1.0)

    def _main(self) -> None:
        last_scan = 0.0
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                if time.monotonic() - last_scan > 5.0:
                    last_scan = time.monotonic()
                    self._ensure_actors()
                self._probe()
                self._dispatch()
            except Exception:
                log.exception("cluster dispatcher")
            self._wake.wait(0.5)

    def _dispatch(self) -> None:
        while not self._stopping.is_set():
            healthy = [s for s in self.slots.values() if s.healthy]
            if not any(s.load == 0 for s in healthy):
                return
            item = self.store.claim_next()
            if item is None:
                return
            slot = self.choose(item, healthy)
            self.routes.setdefault(item.prompt_id, []).append(slot.name)
            log.info("prompt %s → %s", item.prompt_id, slot.name)
            slot.assign(item)
            self._post_status()

    def choose(self, item: QueueItem, slots: list[Slot]) -> Slot:
        """The worker holding most of the prompt's models; then the least loaded, then the one
        holding fewest models (a cold start spreads the models out), then the first."""
        needed = required_models(item.prompt)
        open_slots = [s for s in slots if s.load < MAX_PER_WORKER] or slots
        return min(open_slots, key=lambda s: (-len(needed & s.models), s.load, len(s.models), s.index))

    def _post_status(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.hub.status_changed)
        except RuntimeError:
            pass


def start_cluster(engine: Engine, store: Store, hub: Hub, loop: asyncio.AbstractEventLoop, config: ClusterConfig,
                  *, preview_interval: float = 0.1) -> ClusterDispatcher:
    require_ray()
    dispatcher = ClusterDispatcher(engine, store, hub, loop, config, preview_interval=preview_interval)
    dispatcher._connect()  # in the calling (main) thread: Ray installs its handlers there
    dispatcher.start()
    return dispatcher


def spec_from_args(args: Any, engine: Engine) -> EngineSpec:
    """The worker engine recipe of ``latentgraph serve``'s own engine options."""
    from latentgraph.cli import _allow_list

    options = (("device", args.device), ("dtype", args.dtype), ("device_budget", getattr(args, "device_budget", None)))
    overrides = {k: v for k, v in options if v is not None and v != ""}
    plugins_dir = None if args.no_plugins else str(Path(args.plugins_dir) if args.plugins_dir else engine.settings.base_dir / "plugins")
    allow = _allow_list()
    return EngineSpec(
        base_dir=str(engine.settings.base_dir), plugins_dir=plugins_dir, entry_points=not args.no_plugins,
        allow=tuple(allow) if allow is not None else None, overrides=overrides,
    )
