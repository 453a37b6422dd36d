"""``progress_state``: every started node's state in the running prompt, as ComfyUI sends it.

The editor highlights the nodes whose state is ``running`` and draws their progress from this
message (``executing`` alone is not enough for the newest frontend). One snapshot is sent when a
node starts, at each of its progress ticks, when it finishes and when it fails; nodes not yet
started (``pending``) are left out, as in ComfyUI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PENDING, RUNNING, FINISHED, ERROR = "pending", "running", "finished", "error"


@dataclass
class NodeStates:
    prompt_id: str
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _set(self, node_id: str, state: str, value: float | None = None, max_: float | None = None) -> None:
        entry = self.nodes.setdefault(node_id, {"value": 0, "max": 1})
        entry["state"] = state
        if value is not None:
            entry["value"] = value
        if max_ is not None:
            entry["max"] = max_

    def start(self, node_id: str) -> None:
        self._set(node_id, RUNNING, 0, 1)

    def progress(self, node_id: str, value: float, max_: float) -> None:
        self._set(node_id, RUNNING, value, max_)

    def finish(self, node_id: str) -> None:
        entry = self.nodes.get(node_id)
        self._set(node_id, FINISHED, entry["max"] if entry else 1)

    def fail(self, node_id: str) -> None:
        self._set(node_id, ERROR)

    def message(self) -> dict[str, Any]:
        """``{prompt_id, nodes: {id: {value, max, state, node_id, prompt_id, display_node_id,
        parent_node_id, real_node_id}}}``; no node is expanded at run time here, so each node
        is its own display and real node."""
        return {
            "prompt_id": self.prompt_id,
            "nodes": {
                node_id: {
                    "value": entry["value"], "max": entry["max"], "state": entry["state"], "node_id": node_id,
                    "prompt_id": self.prompt_id, "display_node_id": node_id, "parent_node_id": None,
                    "real_node_id": node_id,
                }
                for node_id, entry in self.nodes.items()
            },
        }
