"""``comfy_execution.graph_utils`` for custom nodes: the subgraph builder of node expansion, and
``ExecutionBlocker`` (latentgraph's own, :class:`latentgraph.node.ExecutionBlocker`).

It is :class:`latentgraph.node.GraphBuilder` with the extra calls ComfyUI's builder offers. Ids need
no prefix here: the engine prefixes a subgraph's ids with the expanding node's id and call index
itself, so ``prefix`` and ``set_default_prefix`` are accepted and have nothing to do.
"""

from __future__ import annotations

from typing import Any

from latentgraph.node import ExecutionBlocker
from latentgraph.node import GraphBuilder as _Builder
from latentgraph.node import GraphRef

__all__ = ["ExecutionBlocker", "GraphBuilder", "Node", "is_link"]


def is_link(value: Any) -> bool:
    """A ``[node id, output index]`` reference (what ``node.out(i)`` gives)."""
    return (isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], (str, int))
            and isinstance(value[1], int) and not isinstance(value[1], bool))


class Node(GraphRef):
    """A node of a :class:`GraphBuilder`, with ComfyUI's accessors."""

    __slots__ = ()

    def get_input(self, name: str) -> Any:
        return self.inputs.get(name)

    def set_override_display_id(self, display_id: str) -> None:
        """Accepted; progress events name the expanded node by its own (prefixed) id."""

    def serialize(self) -> dict[str, Any]:
        return {"class_type": self.class_type, "inputs": dict(self.inputs)}


class GraphBuilder(_Builder):
    def __init__(self, prefix: str | None = None) -> None:
        super().__init__()

    @classmethod
    def set_default_prefix(cls, prefix_root: str, call_index: int, graph_index: int = 0) -> None:
        """ComfyUI's executor sets this; latentgraph's engine prefixes ids itself."""

    @classmethod
    def alloc_prefix(cls, root: str | None = None, call_index: int | None = None, graph_index: int | None = None) -> str:
        return ""

    def node(self, class_type: str, id: str | None = None, **inputs: Any) -> Node:
        ref = super().node(class_type, id, **inputs)
        if not isinstance(ref, Node):
            ref = self.nodes[ref.id] = Node(ref.id, ref.class_type, ref.inputs)
        return ref

    def replace_node_output(self, node_id: str, index: int, new_value: Any) -> None:
        """Every input linked to ``[node_id, index]`` takes ``new_value`` instead (a link or a value)."""
        for ref in self.nodes.values():
            for name, value in list(ref.inputs.items()):
                if is_link(value) and str(value[0]) == str(node_id) and value[1] == index:
                    ref.set_input(name, new_value)

    def remove_node(self, id: str) -> None:
        self.nodes.pop(id, None)
