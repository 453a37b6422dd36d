"""Graphs validated when a prompt was accepted, handed to the worker that runs it.

``POST /prompt`` validates (it must answer 400 with every problem); the worker then runs that
graph instead of validating again, as ComfyUI does. The registry cannot change while the process
lives (plugins load once), so the graph stays right; a file that vanished in between (a model, an
input image) fails the node that opens it with an ``execution_error`` naming node and input,
instead of a validation error. A prompt the worker finds no graph for (queued before a restart,
evicted, or a lost race) is validated again, so a missing entry costs time, never correctness.

An entry is added before the prompt is durable, never over another one, and removed if the
prompt is refused: a queued prompt can only ever be handed the graph validated for it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from latentgraph.validation import Graph

#: Graphs kept for prompts waiting in the queue; older ones are dropped (validated again later).
MAX_WAITING = 256


class ValidatedGraphs:
    def __init__(self, limit: int = MAX_WAITING) -> None:
        self.limit = limit
        self._graphs: OrderedDict[str, Graph] = OrderedDict()
        self._lock = threading.Lock()

    def offer(self, prompt_id: str, graph: Graph) -> bool:
        """Keep ``graph`` for ``prompt_id`` unless one is already kept (a duplicate id)."""
        with self._lock:
            if prompt_id in self._graphs:
                return False
            self._graphs[prompt_id] = graph
            while len(self._graphs) > self.limit:
                self._graphs.popitem(last=False)
            return True

    def withdraw(self, prompt_id: str, graph: Graph) -> None:
        """Forget ``graph`` (the prompt was refused), if it is still the one kept."""
        with self._lock:
            if self._graphs.get(prompt_id) is graph:
                del self._graphs[prompt_id]

    def take(self, prompt_id: str) -> Graph | None:
        with self._lock:
            return self._graphs.pop(prompt_id, None)

    def discard(self, prompt_ids: Iterable[str] | None = None) -> None:
        """Forget the graphs of deleted prompts (all of them when ``prompt_ids`` is None)."""
        with self._lock:
            if prompt_ids is None:
                self._graphs.clear()
            else:
                for prompt_id in prompt_ids:
                    self._graphs.pop(prompt_id, None)

    def __len__(self) -> int:
        return len(self._graphs)
