"""One assembled engine: plugins → registry, settings, cache and executor, reused across runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from latentgraph.cache import Cache
from latentgraph.context import InterruptFlag
from latentgraph.errors import ErrorReport, WorkflowInvalid
from latentgraph.events import EventSink, null_sink
from latentgraph.executor import Executor
from latentgraph.run_state import RunResult
from latentgraph.model_memory import ModelMemory
from latentgraph.registry import NodeRegistry
from latentgraph.settings import Settings
from latentgraph.validation import Graph, validate
from latentgraph.validation_memo import ValidationMemo
from latentgraph.workflow import Workflow, parse_json_text, parse_workflow


class Engine:
    def __init__(
        self,
        registry: NodeRegistry,
        settings: Settings,
        *,
        cache: Cache | None = None,
        host: Any = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.cache = cache if cache is not None else Cache(settings.cache_budget, memory=ModelMemory.from_settings(settings))
        #: Where model weights live (the cache's manager, so both count a model the same way); nodes
        #: reach it as ``ctx.memory``.
        self.memory = self.cache.memory if self.cache.memory is not None else ModelMemory.from_settings(settings)
        self.host = host
        #: The last workflow validated: an identical re-run is not validated again.
        self.memo = ValidationMemo(registry)
        self.executor = Executor(registry, self.cache, settings, host.lifecycle() if host is not None else None,
                                 memory=self.memory)

    @classmethod
    def create(
        cls,
        settings: Settings | None = None,
        *,
        builtins: bool = True,
        entry_points: bool = True,
        plugins_dir: Path | None = None,
        allow: Iterable[str] | None = None,
        extra_plugins: Iterable[tuple[str, object]] = (),
        cache: Cache | None = None,
    ) -> Engine:
        """Load plugins and assemble an engine. ``extra_plugins`` are ``(name, plugin_object)``."""
        from latentgraph.plugins import load_plugins

        settings = settings or Settings.from_env()
        host = load_plugins(
            builtins=builtins,
            entry_points=entry_points,
            plugins_dir=plugins_dir,
            allow=allow,
            extra=extra_plugins,
        )
        settings = settings.with_model_roots(*host.model_roots)
        engine = cls(host.registry, settings, cache=cache, host=host)
        host.call_safely("startup", registry=host.registry, settings=settings)
        return engine

    def close(self) -> None:
        """Stop the event loop async nodes run on (started by the first one; a daemon thread)."""
        self.executor.close()

    def check(self, workflow: Any, *, targets: Iterable[str] | None = None) -> tuple[Graph | None, ErrorReport]:
        """Parse and validate API-format JSON (text, dict or :class:`Workflow`)."""
        targets = tuple(targets) if targets is not None else None
        snapshot = None if isinstance(workflow, Workflow) else self.memo.snapshot(workflow)
        if isinstance(workflow, (str, bytes)):
            workflow, report = parse_json_text(workflow, known_standard=self.memo.holds(snapshot))
            if report:
                return None, report
        source = None
        if not isinstance(workflow, Workflow):
            source = workflow
            if snapshot is not None and type(source) is dict:
                graph = self.memo.recall(snapshot, targets, self.settings, source)
                if graph is not None:
                    return graph, ErrorReport()
            workflow, report = parse_workflow(workflow)
        else:
            report = ErrorReport()
        if report.error is not None:
            return None, report
        graph, report = validate(workflow, self.registry, self.settings, report=report, targets=targets, source=source)
        if graph is not None and snapshot is not None:
            self.memo.remember(snapshot, targets, self.settings, graph)
        return graph, report

    def validate(self, workflow: Any, *, targets: Iterable[str] | None = None) -> Graph:
        graph, report = self.check(workflow, targets=targets)
        if graph is None:
            raise WorkflowInvalid(report)
        return graph

    def run(
        self,
        workflow: Any,
        *,
        prompt_id: str | None = None,
        sink: EventSink = null_sink,
        interrupt: InterruptFlag | None = None,
        extra: dict[str, Any] | None = None,
        targets: Iterable[str] | None = None,
    ) -> RunResult:
        """Validate (unless given a :class:`Graph`) and execute; raises :class:`WorkflowInvalid`."""
        graph = workflow if isinstance(workflow, Graph) else self.validate(workflow, targets=targets)
        return self.executor.run(
            graph, prompt_id=prompt_id or uuid.uuid4().hex, sink=sink, interrupt=interrupt,
            extra=extra,
        )
