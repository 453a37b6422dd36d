"""Progress bars for headless runs: one tqdm bar per long node, drawn from executor events."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

from latentgraph.events import Event, NodeFinished, NodeProgress, NodeStarted


class ProgressPrinter:
    """An event sink; use as a context manager so a bar never outlives the run."""

    def __init__(self, graph: Any, *, enabled: bool = True, stream=None) -> None:
        self.graph = graph
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._bar: tqdm | None = None

    def __call__(self, event: Event) -> None:
        if not self.enabled:
            return
        if isinstance(event, NodeProgress):
            if self._bar is None:
                node = self.graph.nodes.get(event.node_id)
                label = f"{event.node_id} {node.class_type if node else ''}".strip()
                self._bar = tqdm(total=event.max, desc=label, file=self.stream, leave=False, dynamic_ncols=True)
            self._bar.total = event.max
            self._bar.n = event.value
            self._bar.refresh()
        elif isinstance(event, (NodeStarted, NodeFinished)):
            self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()
