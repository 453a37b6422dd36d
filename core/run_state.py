"""The state of one executor run, and what one node execution carries between its steps."""

from __future__ import annotations

import concurrent.futures
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from latentgraph.context import InterruptFlag
from latentgraph.errors import NodeFailure
from latentgraph.events import EventSink
from latentgraph.node import Node
from latentgraph.validation import Graph, PlannedNode



@dataclass
class RunResult:
    """What a run did: its status, the output nodes' UI outputs, what ran and what the cache served."""

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


class _Run:
    """The state of one run: values, what is pending, and the nodes added by expansion."""

    def __init__(self, graph: Graph, keys: dict[str, bytes], result: RunResult, prompt_id: str,
                 sink: EventSink, interrupt: InterruptFlag, extra: dict[str, Any]) -> None:
        self.graph = graph
        self.nodes: dict[str, PlannedNode] = graph.nodes  # copied on the first expansion
        self.keys = keys
        self.result = result
        self.prompt_id = prompt_id
        self.sink = sink
        self.interrupt = interrupt
        self.extra = extra
        self.values: dict[str, tuple] = {}
        #: How many pending consumers each value still has: dropped at zero.
        self.pending: dict[str, int] = {}
        #: Nodes whose links are counted in ``pending``.
        self.planned: set[str] = set()
        self.queue: deque[str] = deque()
        #: Async nodes in flight: node id → (future, continuation).
        self.inflight: dict[str, tuple[concurrent.futures.Future, Any]] = {}
        #: In flight, or waiting for something in flight.
        self.blocked: set[str] = set()
        self.deferred: list[str] = []
        #: Node instances kept between a lazy node's checks and its execution.
        self.instances: dict[str, Node] = {}
        #: Expanding nodes waiting for their subgraphs: id → (per-call results, ui list, mapped, start).
        self.expansions: dict[str, Any] = {}
        #: Expanded node id → the workflow node it came from.
        self.origin: dict[str, str] = {}

    def count_links(self, nid: str) -> None:
        if nid in self.planned:
            return
        self.planned.add(nid)
        pending = self.pending
        for link in self.nodes[nid].links.values():
            pending[link.node_id] = pending.get(link.node_id, 0) + 1

    def release(self, node_id: str) -> None:
        left = self.pending.get(node_id, 0) - 1
        self.pending[node_id] = left
        if left <= 0:
            self.values.pop(node_id, None)


@dataclass(slots=True)
class _Calls:
    """What the calls of one node execution need to become its outputs."""

    #: Per call: the per-item cache entry that served it, or None.
    served: list[Any]
    #: Per call: where to store its result in the per-item cache, or None.
    put_keys: list[bytes | None]
    #: Per call: the digest its list items are named after.
    origins: list[bytes]
    mapped: bool
    start: float


class _NodeFailed(Exception):
    def __init__(self, failure: NodeFailure) -> None:
        self.failure = failure
