"""Runs a validated graph: only what the outputs need, only what the cache cannot serve.

Each node's cache key is a hash of its class, version, literal inputs and the keys of the nodes
feeding it (Merkle style), so an edit re-runs exactly the edited node and its descendants.
Intermediate values are dropped as soon as their last consumer has run; the cache keeps what fits.

ComfyUI's execution model on top of that (docs/plugins.md, "Lists, lazy inputs, expansion, async"):

- **Lists.** An output declared ``is_list`` carries a :class:`ListValue`; a node fed one runs once
  per item (longest list wins, shorter ones repeat their last item), unless it declares
  ``input_is_list`` and takes the whole lists. Each item's result is also cached on its own,
  keyed by the items it read, so a list that grows re-runs only the new items.
- **Lazy inputs** are left out of the plan; ``check_lazy_status`` names the ones a node needs, and
  only those branches are planned (through the cache) and run.
- **Expansion.** A node may return a subgraph (``NodeResult(expand=...)``); its nodes get stable
  ids ``<node>.<call>.<local id>``, are validated, keyed and cached like any other, and the node's
  outputs are read from them. Failures inside name the workflow node that expanded.
- **Async.** ``async def execute`` runs on the engine's event loop thread; the executor keeps
  running nodes that do not depend on it and collects it when done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import inspect
import os
import time
import uuid
from typing import Any, Protocol

from latentgraph.cache import Cache
from latentgraph.context import ExecutionContext, InterruptFlag
from latentgraph.async_runner import AsyncRunner
from latentgraph.errors import ExecutionBlocked, Interrupted, NodeFailure
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
from latentgraph.cache_keys import needs_fingerprint, node_key
from latentgraph.expansion import expand_node, resolve_expansion
from latentgraph.list_values import ListValue, NodeOutputError, _items, merge_outputs
from latentgraph.model_memory import ModelMemory
from latentgraph.node import ExecutionBlocker, Node, NodeResult
from latentgraph.registry import NodeRegistry
from latentgraph.run_state import RunResult, _Calls, _NodeFailed, _Run
from latentgraph.settings import Settings
from latentgraph.validation import Graph, PlannedNode

__all__ = ["AsyncRunner", "Executor", "Hooks", "ListValue", "NodeOutputError", "RunResult"]

_blake2b = hashlib.blake2b


class Hooks(Protocol):
    """Lifecycle hooks (the plugin host provides them); ``enabled`` False skips all calls."""

    enabled: bool

    def before_node(self, prompt_id: str, node_id: str, class_type: str) -> None: ...
    def after_node(self, prompt_id: str, node_id: str, class_type: str, seconds: float) -> None: ...
    def on_execution_error(self, prompt_id: str, failure: NodeFailure) -> None: ...


class Executor:
    """Executes graphs against one cache; outlives a run. Several threads may run at once."""

    def __init__(
        self,
        registry: NodeRegistry,
        cache: Cache,
        settings: Settings,
        hooks: Hooks | None = None,
        memory: ModelMemory | None = None,
    ) -> None:
        self.registry = registry
        self.cache = cache
        self.settings = settings
        self.hooks = hooks if hooks is not None and hooks.enabled else None
        #: Where model weights live; every node's ``ctx.memory``.
        self.memory = memory
        self.runner = AsyncRunner()

    def close(self) -> None:
        self.runner.close()

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
        run = _Run(graph, keys, result, prompt_id, sink, interrupt, extra)
        values, to_run, lazy_seen = self._plan(graph, keys, result)
        run.values = values
        running = set(to_run)
        if lazy_seen:  # nodes behind a lazy input of a node that runs are neither run nor cached (yet)
            reached = self._reached(graph, running)
            result.cached = [nid for nid in graph.order if nid not in running and nid in reached]
        else:
            result.cached = [nid for nid in graph.order if nid not in running]
        sink(NodesCached(prompt_id, tuple(result.cached)))  # also when empty, like ComfyUI

        pending = run.pending
        for nid in to_run:
            for link in graph.nodes[nid].links.values():
                pending[link.node_id] = pending.get(link.node_id, 0) + 1
        run.planned = running
        queue = run.queue
        queue.extend(to_run)

        current: PlannedNode | None = None
        done = result.seconds  # a node is done once it has a time
        values, put, executed, ui_outputs, hooks = run.values, self.cache.put, result.executed, result.outputs, self.hooks
        execute, popleft = self._execute, queue.popleft
        try:
            while queue or run.inflight:
                if not queue:
                    self._collect(run)
                    continue
                nid = popleft()
                if nid in done:  # already run early for a lazy input or an expansion
                    continue
                current = node = run.nodes[nid]
                if interrupt.is_set():
                    raise Interrupted(f"interrupted before node {nid}")
                if run.blocked and self._waits(run, node):
                    run.blocked.add(nid)
                    run.deferred.append(nid)
                    continue
                finished = execute(node, run)
                if finished is None:
                    continue
                # commit (inline: this loop is the per-node overhead; see _commit)
                outputs, ui, seconds = finished
                values[nid] = outputs
                put(run.keys[nid], outputs, ui)
                executed.append(nid)
                done[nid] = seconds
                if ui is not None and node.spec.output_node:
                    ui_outputs[nid] = ui
                sink(NodeFinished(prompt_id, nid, node.class_type, ui, seconds))
                if hooks:
                    hooks.after_node(prompt_id, nid, node.class_type, seconds)
                for link in node.links.values():
                    left = pending[link.node_id] - 1
                    pending[link.node_id] = left
                    if left == 0:
                        values.pop(link.node_id, None)
                if pending.get(nid, 0) == 0:
                    values.pop(nid, None)
        except Interrupted:
            self._cancel(run)
            result.status = "interrupted"
            if current is not None and current.id not in done:
                result.interrupted_at = run.origin.get(current.id, current.id)
            at = result.interrupted_at
            sink(
                ExecutionInterrupted(
                    prompt_id,
                    at,
                    run.nodes[at].class_type if at is not None else None,
                    tuple(result.executed),
                )
            )
        except _NodeFailed as failed:
            self._cancel(run)
            result.status = "error"
            result.failure = failed.failure
            if self.hooks:
                self.hooks.on_execution_error(prompt_id, failed.failure)
            sink(ExecutionFailed(prompt_id, failed.failure, tuple(result.executed)))
        else:
            sink(ExecutionSucceeded(prompt_id, result.outputs))
        finally:
            run.values.clear()
            run.instances.clear()
            run.expansions.clear()
        result.total_seconds = time.perf_counter() - started
        return result

    # -- planning ---------------------------------------------------------------------------
    def _keys(self, graph: Graph) -> dict[str, bytes]:
        """Merkle cache keys in dependency order."""
        keys: dict[str, bytes] = {}
        fingerprinted: dict[type[Node], bool] = {}
        nodes = graph.nodes
        for nid in graph.order:
            node = nodes[nid]
            node_type = node.node_type
            has_fp = fingerprinted.get(node_type)
            if has_fp is None:
                has_fp = fingerprinted[node_type] = needs_fingerprint(node_type)
            keys[nid] = node_key(node, keys, self._fingerprint(node) if has_fp else None)
        return keys

    def _fingerprint(self, node: PlannedNode) -> str:
        try:
            fp = node.node_type.fingerprint(self.settings, node.literals)
        except Exception:  # cannot tell what changed: treat as changed
            return "nonce:" + os.urandom(8).hex()
        if fp is None and not node.spec.deterministic:
            return "nonce:" + os.urandom(8).hex()  # never served from cache
        return f"fp:{fp}"

    def _plan(self, graph: Graph, keys: dict[str, bytes], result: RunResult) -> tuple[dict[str, tuple], list[str], bool]:
        """Walk back from the outputs: a cached node ends the walk along its branch; so does a
        lazy input (planned when its node asks for it)."""
        values: dict[str, tuple] = {}
        needed = set(graph.outputs)
        to_run: list[str] = []
        lazy_seen = False
        get, need = self.cache.get, needed.add
        for nid in reversed(graph.order):
            if nid not in needed:
                continue
            entry = get(keys[nid])
            node = graph.nodes[nid]
            if entry is not None:
                values[nid] = entry.outputs
                if node.spec.output_node and entry.ui is not None:
                    result.outputs[nid] = entry.ui
                continue
            to_run.append(nid)
            lazy = node.spec.lazy_inputs
            if lazy:
                lazy_seen = True
                needed.update(link.node_id for name, link in node.links.items() if name not in lazy)
            else:
                for link in node.links.values():
                    need(link.node_id)
        to_run.reverse()
        return values, to_run, lazy_seen

    @staticmethod
    def _reached(graph: Graph, running: set[str]) -> set[str]:
        """Nodes the outputs reach without passing a lazy input of a node that runs."""
        reached: set[str] = set()
        stack = list(graph.outputs)
        while stack:
            nid = stack.pop()
            if nid in reached:
                continue
            reached.add(nid)
            node = graph.nodes[nid]
            lazy = node.spec.lazy_inputs if nid in running else ()
            stack.extend(link.node_id for name, link in node.links.items() if name not in lazy)
        return reached

    def _require(self, run: _Run, targets: list[str]) -> list[str]:
        """Make ``targets`` available: from the cache where it can, else plan them (and what they
        need) to run now. Returns the nodes to run, in dependency order."""
        values, nodes, result = run.values, run.nodes, run.result
        order: list[str] = []
        seen: set[str] = set()
        stack: list[tuple[str, bool]] = [(t, False) for t in reversed(targets)]
        while stack:
            nid, ready = stack.pop()
            if ready:
                order.append(nid)
                continue
            if nid in seen or nid in values or nid in run.blocked:
                continue
            seen.add(nid)
            entry = self.cache.get(run.keys[nid])
            node = nodes[nid]
            if entry is not None:
                values[nid] = entry.outputs
                result.cached.append(nid)
                if node.spec.output_node and entry.ui is not None:
                    result.outputs[nid] = entry.ui
                continue
            stack.append((nid, True))
            lazy = node.spec.lazy_inputs
            for name, link in reversed(list(node.links.items())):
                if name not in lazy:
                    stack.append((link.node_id, False))
        for nid in order:
            run.count_links(nid)
        return order

    @staticmethod
    def _waits(run: _Run, node: PlannedNode) -> bool:
        """Whether a node reads something in flight (or waiting for it)."""
        blocked = run.blocked
        if any(link.node_id in blocked for link in node.links.values()):
            return True
        expansion = run.expansions.get(node.id)
        return expansion is not None and any(t in blocked for t in expansion[2])

    # -- running one node -------------------------------------------------------------------
    def _commit(self, run: _Run, node: PlannedNode, outputs: tuple, ui: dict[str, Any] | None, seconds: float) -> None:
        nid = node.id
        result = run.result
        run.values[nid] = outputs
        self.cache.put(run.keys[nid], outputs, ui)
        result.executed.append(nid)
        result.seconds[nid] = seconds
        if ui is not None and node.spec.output_node:
            result.outputs[nid] = ui
        run.sink(NodeFinished(run.prompt_id, nid, node.class_type, ui, seconds))
        if self.hooks:
            self.hooks.after_node(run.prompt_id, nid, node.class_type, seconds)
        pending, values = run.pending, run.values
        for link in node.links.values():
            left = pending[link.node_id] - 1
            pending[link.node_id] = left
            if left == 0:
                values.pop(link.node_id, None)
        if pending.get(nid, 0) == 0:
            values.pop(nid, None)

    def _blocked(self, run: _Run, node: PlannedNode, blocker: ExecutionBlocker) -> tuple[tuple[Any, ...], None, float]:
        """A node reading a blocker does not run: it fails with the blocker's message, or (no
        message) passes a silent blocker on through every output."""
        if blocker.message is not None:
            raise _NodeFailed(self._failure(run, node, ExecutionBlocked(f"Execution Blocked: {blocker.message}")))
        return tuple(blocker for _ in node.spec.outputs), None, 0.0

    def _execute(self, node: PlannedNode, run: _Run) -> tuple[tuple[Any, ...], dict[str, Any] | None, float] | None:
        """Run one node; ``None`` when it cannot finish yet (it asked for lazy inputs, expanded,
        or awaits): it is queued again or collected when its coroutine is done."""
        if run.expansions and node.id in run.expansions:
            return resolve_expansion(self, node, run)
        spec = node.spec
        values = run.values
        kwargs = dict(node.literals)
        mapped = False
        lazy = spec.lazy_inputs
        for name, link in node.links.items():
            try:
                value = values[link.node_id][link.output]
            except KeyError:
                if name not in lazy:
                    raise
                kwargs[name] = None
                continue
            if type(value) is ListValue:
                mapped = True
            elif type(value) is ExecutionBlocker:
                return self._blocked(run, node, value)
            kwargs[name] = value
        instance = (run.instances.pop(node.id, None) if lazy else None) or node.node_type()
        ctx = ExecutionContext(
            prompt_id=run.prompt_id,
            node_id=node.id,
            class_type=node.class_type,
            settings=self.settings,
            registry=self.registry,
            sink=run.sink,
            interrupt=run.interrupt,
            extra=run.extra,
            memory=self.memory,
        )
        if lazy:
            try:
                wanted = self._lazy_wanted(node, instance, ctx, kwargs, mapped, run)
            except Interrupted:
                raise
            except Exception as exc:
                raise _NodeFailed(self._failure(run, node, exc)) from exc
            if wanted:
                sources = [node.links[name].node_id for name in wanted]
                first = self._require(run, sources)
                run.instances[node.id] = instance
                run.queue.appendleft(node.id)
                run.queue.extendleft(reversed(first))
                return None
        run.sink(NodeStarted(run.prompt_id, node.id, node.class_type))
        hooks = self.hooks
        if hooks:
            hooks.before_node(run.prompt_id, node.id, node.class_type)
        start = time.perf_counter()
        try:
            if mapped and not spec.input_is_list:
                calls, state = self._map(node, run, instance, ctx, kwargs, start)
            else:
                if spec.input_is_list:
                    kwargs = {k: list(v) if type(v) is ListValue else [v] for k, v in kwargs.items()}
                returned = instance.execute(ctx, **kwargs)
                if type(returned) is tuple and not spec.any_list_output:  # the common case
                    if len(returned) != len(spec.outputs):
                        raise _count_error(spec, returned)
                    return returned, None, time.perf_counter() - start
                calls = [returned]
                state = _Calls([None], [None], [run.keys[node.id]], False, start)
            if any(inspect.iscoroutine(c) for c in calls):
                return self._submit(run, node, calls, state)
            return self._finish(run, node, calls, state)
        except (Interrupted, _NodeFailed):
            raise
        except Exception as exc:
            raise _NodeFailed(self._failure(run, node, exc)) from exc

    def _lazy_wanted(self, node: PlannedNode, instance: Node, ctx: ExecutionContext, kwargs: dict[str, Any],
                     mapped: bool, run: _Run) -> list[str]:
        """Lazy inputs the node asks for that are linked and not evaluated yet."""
        if node.spec.input_is_list:
            asked = [instance.check_lazy_status(ctx, **{k: list(v) if type(v) is ListValue else [v] for k, v in kwargs.items()})]
        elif mapped:
            asked = [instance.check_lazy_status(ctx, **item) for item in _items(kwargs)]
        else:
            asked = [instance.check_lazy_status(ctx, **kwargs)]
        names: list[str] = []
        for answer in asked:
            if inspect.iscoroutine(answer):
                answer = self.runner.run(answer)
            for name in answer or ():
                if (isinstance(name, str) and name in node.spec.lazy_inputs and name in node.links
                        and node.links[name].node_id not in run.values and name not in names):
                    names.append(name)
        return names

    def _map(self, node: PlannedNode, run: _Run, instance: Node, ctx: ExecutionContext,
             kwargs: dict[str, Any], start: float) -> tuple[list[Any], _Calls]:
        """Run the node once per item of its list inputs (longest list; shorter ones repeat
        their last item), each item's result served from or stored in the per-item cache."""
        spec = node.spec
        lists = {k: v for k, v in kwargs.items() if type(v) is ListValue}
        state = _Calls([], [], [], True, start)
        if any(len(v) == 0 for v in lists.values()):
            return [], state
        length = max(len(v) for v in lists.values())
        per_item = spec.deterministic
        base = ""
        if per_item:
            parts = [spec.name, spec.version, node.literal_key]
            if node.node_type.fingerprint.__func__ is not Node.fingerprint.__func__:
                fp = self._fingerprint(node)
                per_item = not fp.startswith("nonce:")
                parts.append(fp)
            for name, link in sorted(node.links.items()):
                if name not in lists:
                    known = name in kwargs and (kwargs[name] is not None or link.node_id in run.values)
                    parts.append(f"{name}={run.keys[link.node_id].hex() if known else '-'}:{link.output}")
            base = "\x1f".join(parts)
        calls: list[Any] = []
        for i, item in enumerate(_items(kwargs, lists, length)):
            if per_item:
                ids = "".join(f"\x1f{k}#{v.ids[min(i, len(v) - 1)].hex()}" for k, v in sorted(lists.items()))
                key = _blake2b(("item\x1f" + base + ids).encode(), digest_size=16).digest()
                entry = self.cache.get(key)
                state.origins.append(key)
                state.put_keys.append(key)
                if entry is not None:
                    calls.append(None)
                    state.served.append(entry)
                    continue
            else:
                state.origins.append(_blake2b(run.keys[node.id] + i.to_bytes(8, "little"), digest_size=16).digest())
                state.put_keys.append(None)
            ctx.check_interrupted()
            calls.append(instance.execute(ctx, **item))
            state.served.append(None)
        return calls, state

    def _submit(self, run: _Run, node: PlannedNode, calls: list[Any], state: _Calls) -> None:
        """Start a node's coroutines on the engine loop; collected by :meth:`_collect`."""

        async def gather() -> list[Any]:
            return list(await asyncio.gather(*(c if inspect.iscoroutine(c) else _ready(c) for c in calls)))

        future = self.runner.submit(gather())
        run.inflight[node.id] = (future, state)
        run.blocked.add(node.id)
        return None

    def _collect(self, run: _Run) -> None:
        """Wait for one async node (or more) to finish; re-queue what was waiting for it."""
        while True:
            futures = {f: nid for nid, (f, _) in run.inflight.items()}
            done, _ = concurrent.futures.wait(futures, timeout=0.05, return_when=concurrent.futures.FIRST_COMPLETED)
            if done:
                break
            if run.interrupt.is_set():
                raise Interrupted(f"interrupted at node {next(iter(run.inflight))}")
        for future in done:
            nid = futures[future]
            _, state = run.inflight.pop(nid)
            node = run.nodes[nid]
            try:
                returned = future.result()
                finished = self._finish(run, node, returned, state)
            except (Interrupted, _NodeFailed):
                raise
            except BaseException as exc:  # noqa: BLE001 - CancelledError too
                raise _NodeFailed(self._failure(run, node, exc)) from exc
            if finished is not None:
                self._commit(run, node, *finished)
        run.blocked = set(run.inflight)
        if run.deferred:
            run.queue.extendleft(reversed(run.deferred))
            run.deferred = []

    def _cancel(self, run: _Run) -> None:
        for future, _ in run.inflight.values():
            future.cancel()
        run.inflight.clear()

    def _finish(self, run: _Run, node: PlannedNode, calls: list[Any],
                state: _Calls) -> tuple[tuple[Any, ...], dict[str, Any] | None, float] | None:
        """Per-call results → the node's outputs (lists merged), or an expansion to run first."""
        spec = node.spec
        if not state.mapped and type(calls[0]) is tuple and not spec.any_list_output:
            outputs = calls[0]  # the common case
            if len(outputs) != len(spec.outputs):
                raise _count_error(spec, outputs)
            return outputs, None, time.perf_counter() - state.start
        results: list[tuple[tuple, dict | None, Any]] = []
        expanding = False
        for returned, entry, key in zip(calls, state.served, state.put_keys):
            if entry is not None:  # from the per-item cache
                results.append((entry.outputs, entry.ui, None))
                continue
            outputs, ui, expand = _normalise(node, returned)
            if expand is not None:
                expanding = True
            elif key is not None:
                self.cache.put(key, outputs, ui)
            results.append((outputs, ui, expand))
        if expanding:
            return expand_node(self, run, node, results, state)
        outputs, ui = merge_outputs(node.spec.output_is_list, results, state.mapped, state.origins)
        return outputs, ui, time.perf_counter() - state.start

    def _failure(self, run: _Run, node: PlannedNode, exc: BaseException) -> NodeFailure:
        failure = NodeFailure.from_exception(node.id, node.class_type, node.node_type.plugin_name, exc)
        origin = run.origin.get(node.id)
        if origin is not None:
            top = run.nodes[origin]
            failure.message = f"{failure.message} (in node '{node.id}' ({node.class_type}) expanded from node '{origin}')"
            failure.node_id, failure.class_type = origin, top.class_type
        return failure



async def _ready(value: Any) -> Any:
    return value





def _count_error(spec: Any, outputs: tuple) -> NodeOutputError:
    return NodeOutputError(f"execute() returned {len(outputs)} value(s) for {len(spec.outputs)} declared output(s)")


def _normalise(node: PlannedNode, returned: Any) -> tuple[tuple[Any, ...], dict[str, Any] | None, Any]:
    expand = None
    if isinstance(returned, NodeResult):
        outputs, ui, expand = tuple(returned.outputs), returned.ui, returned.expand
    elif isinstance(returned, tuple):
        outputs, ui = returned, None
    elif returned is None and not node.spec.outputs:
        outputs, ui = (), None
    else:
        raise NodeOutputError(f"execute() must return a tuple or NodeResult, got {type(returned).__name__}")
    if expand is not None and not outputs and node.spec.outputs:
        outputs = (None,) * len(node.spec.outputs)
    if len(outputs) != len(node.spec.outputs):
        raise _count_error(node.spec, outputs)
    return outputs, ui, expand
