"""Runs a validated graph: only what the outputs need, only what the cache cannot serve.

Each node's cache key is a hash of its class, version, literal inputs and the keys of the nodes
feeding it (Merkle style), so an edit re-runs exactly the edited node and its descendants.
Intermediate values are dropped as soon as their last consumer has run; the cache keeps what fits.
"""

from __future__ import annotations

import hashlib
import os
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from latentgraph.cache import Cache
from latentgraph.context import ExecutionContext, InterruptFlag
from latentgraph.errors import Interrupted, NodeFailure, NodeInputError
from latentgraph.events import (
    EventSink,
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSucceeded,
    NodeFinished,
    NodesCached,
    NodeStarted,
    null_sink,
)
from latentgraph.node import Node, NodeResult
from latentgraph.registry import NodeRegistry
from latentgraph.settings import Settings
from latentgraph.validation import Graph, PlannedNode


class Hooks(Protocol):
    """Lifecycle hooks (the plugin host provides them); ``enabled`` False skips all calls."""

    enabled: bool

    def before_node(self, prompt_id: str, node_id: str, class_type: str) -> None: ...
    def after_node(self, prompt_id: str, node_id: str, class_type: str, seconds: float) -> None: ...
    def on_execution_error(self, prompt_id: str, failure: NodeFailure) -> None: ...


@dataclass
class RunResult:
    prompt_id: str
    status: str  # "success", "error", "interrupted"
    #: UI output of each output node, e.g. ``{"9": {"images": [...]}}``.
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    failure: NodeFailure | None = None
    interrupted_at: str | None = None
    total_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt_id,
            "status": self.status,
            "outputs": self.outputs,
            "executed": self.executed,
            "cached": self.cached,
            "seconds": {k: round(v, 6) for k, v in self.seconds.items()},
            "total_seconds": round(self.total_seconds, 6),
            "error": self.failure.to_dict() if self.failure else None,
            "interrupted_at": self.interrupted_at,
        }


class NodeOutputError(Exception):
    """A node returned something that does not match its declared outputs."""


class Executor:
    """Executes graphs against one cache; outlives a run."""

    def __init__(
        self,
        registry: NodeRegistry,
        cache: Cache,
        settings: Settings,
        hooks: Hooks | None = None,
    ) -> None:
        self.registry = registry
        self.cache = cache
        self.settings = settings
        self.hooks = hooks if hooks is not None and hooks.enabled else None

    def run(
        self,
        graph: Graph,
        *,
        prompt_id: str | None = None,
        sink: EventSink = null_sink,
        interrupt: InterruptFlag | None = None,
        extra: dict[str, Any] | None = None,
    ) -> RunResult:
        started = time.perf_counter()
        prompt_id = prompt_id or uuid.uuid4().hex
        interrupt = interrupt or InterruptFlag()
        extra = {"prompt": graph.source, **(extra or {})}
        result = RunResult(prompt_id, "success")
        sink(ExecutionStarted(prompt_id, tuple(graph.order)))

        keys = self._keys(graph)
        values, to_run = self._plan(graph, keys, result)
        running = set(to_run)
        result.cached = [nid for nid in graph.order if nid not in running]
        sink(NodesCached(prompt_id, tuple(result.cached)))  # also when empty, like ComfyUI

        # How many pending consumers each value still has: dropped at zero.
        pending: dict[str, int] = {}
        for nid in to_run:
            for link in graph.nodes[nid].links.values():
                pending[link.node_id] = pending.get(link.node_id, 0) + 1

        current: PlannedNode | None = None
        try:
            for nid in to_run:
                if interrupt.is_set():
                    raise Interrupted(f"interrupted before node {nid}")
                current = node = graph.nodes[nid]
                outputs, ui, seconds = self._execute(node, values, prompt_id, sink, interrupt, extra)
                values[nid] = outputs
                self.cache.put(keys[nid], outputs, ui)
                result.executed.append(nid)
                result.seconds[nid] = seconds
                if ui is not None and node.spec.output_node:
                    result.outputs[nid] = ui
                sink(NodeFinished(prompt_id, nid, node.class_type, ui, seconds))
                for link in node.links.values():
                    left = pending[link.node_id] - 1
                    pending[link.node_id] = left
                    if left == 0:
                        values.pop(link.node_id, None)
                if pending.get(nid, 0) == 0:
                    values.pop(nid, None)
        except Interrupted:
            result.status = "interrupted"
            result.interrupted_at = current.id if current is not None and current.id not in result.executed else None
            sink(
                ExecutionInterrupted(
                    prompt_id,
                    result.interrupted_at,
                    current.class_type if result.interrupted_at and current else None,
                    tuple(result.executed),
                )
            )
        except _NodeFailed as failed:
            result.status = "error"
            result.failure = failed.failure
            if self.hooks:
                self.hooks.on_execution_error(prompt_id, failed.failure)
            sink(ExecutionFailed(prompt_id, failed.failure, tuple(result.executed)))
        else:
            sink(ExecutionSucceeded(prompt_id, result.outputs))
        finally:
            values.clear()
        result.total_seconds = time.perf_counter() - started
        return result

    # -- planning ---------------------------------------------------------------------------
    def _keys(self, graph: Graph) -> dict[str, bytes]:
        """Merkle cache keys in dependency order."""
        keys: dict[str, bytes] = {}
        fingerprints: dict[type[Node], bool] = {}
        blake2b = hashlib.blake2b
        for nid in graph.order:
            node = graph.nodes[nid]
            node_type = node.node_type
            spec = node_type.spec
            parts = [spec.name, spec.version, node.literal_key]
            for name, link in sorted(node.links.items()):
                parts.append(f"{name}={keys[link.node_id].hex()}:{link.output}")
            has_fp = fingerprints.get(node_type)
            if has_fp is None:
                has_fp = fingerprints[node_type] = node_type.fingerprint.__func__ is not Node.fingerprint.__func__
            if has_fp or not spec.deterministic:
                parts.append(self._fingerprint(node))
            keys[nid] = blake2b("\x1f".join(parts).encode(), digest_size=16).digest()
        return keys

    def _fingerprint(self, node: PlannedNode) -> str:
        try:
            fp = node.node_type.fingerprint(self.settings, node.literals)
        except Exception:  # cannot tell what changed: treat as changed
            fp = None
        if fp is None and not node.spec.deterministic:
            return "nonce:" + os.urandom(8).hex()  # never served from cache
        return f"fp:{fp}"

    def _plan(self, graph: Graph, keys: dict[str, bytes], result: RunResult) -> tuple[dict[str, tuple], list[str]]:
        """Walk back from the outputs: a cached node ends the walk along its branch."""
        values: dict[str, tuple] = {}
        needed = set(graph.outputs)
        to_run: list[str] = []
        for nid in reversed(graph.order):
            if nid not in needed:
                continue
            entry = self.cache.get(keys[nid])
            node = graph.nodes[nid]
            if entry is not None:
                values[nid] = entry.outputs
                if node.spec.output_node and entry.ui is not None:
                    result.outputs[nid] = entry.ui
                continue
            to_run.append(nid)
            needed.update(link.node_id for link in node.links.values())
        to_run.reverse()
        return values, to_run

    # -- running one node -------------------------------------------------------------------
    def _execute(
        self,
        node: PlannedNode,
        values: dict[str, tuple],
        prompt_id: str,
        sink: EventSink,
        interrupt: InterruptFlag,
        extra: dict[str, Any],
    ) -> tuple[tuple[Any, ...], dict[str, Any] | None, float]:
        kwargs = dict(node.literals)
        for name, link in node.links.items():
            kwargs[name] = values[link.node_id][link.output]
        sink(NodeStarted(prompt_id, node.id, node.class_type))
        hooks = self.hooks
        if hooks:
            hooks.before_node(prompt_id, node.id, node.class_type)
        ctx = ExecutionContext(
            prompt_id=prompt_id,
            node_id=node.id,
            class_type=node.class_type,
            settings=self.settings,
            registry=self.registry,
            sink=sink,
            interrupt=interrupt,
            extra=extra,
        )
        start = time.perf_counter()
        try:
            returned = node.node_type().execute(ctx, **kwargs)
            outputs, ui = _normalise(node, returned)
        except Interrupted:
            raise
        except Exception as exc:
            raise _NodeFailed(_failure(node, exc)) from exc
        seconds = time.perf_counter() - start
        if hooks:
            hooks.after_node(prompt_id, node.id, node.class_type, seconds)
        return outputs, ui, seconds


class _NodeFailed(Exception):
    def __init__(self, failure: NodeFailure) -> None:
        self.failure = failure


def _normalise(node: PlannedNode, returned: Any) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
    if isinstance(returned, NodeResult):
        outputs, ui = tuple(returned.outputs), returned.ui
    elif isinstance(returned, tuple):
        outputs, ui = returned, None
    elif returned is None and not node.spec.outputs:
        outputs, ui = (), None
    else:
        raise NodeOutputError(f"execute() must return a tuple or NodeResult, got {type(returned).__name__}")
    if len(outputs) != len(node.spec.outputs):
        raise NodeOutputError(f"execute() returned {len(outputs)} value(s) for {len(node.spec.outputs)} declared output(s)")
    return outputs, ui


def _failure(node: PlannedNode, exc: Exception) -> NodeFailure:
    plugin = node.node_type.plugin_name
    message = str(exc) or type(exc).__name__
    if plugin and plugin != "latentgraph":
        message = f"{message} (node type from plugin '{plugin}')"
    return NodeFailure(
        node_id=node.id,
        class_type=node.class_type,
        exception_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=message,
        traceback=traceback.format_exception(type(exc), exc, exc.__traceback__),
        plugin=plugin,
        input_name=exc.input_name if isinstance(exc, NodeInputError) else None,
    )

