"""API-format workflows (ComfyUI's ``{"<id>": {"class_type", "inputs", "_meta"}}``) as typed data.

Parsing never raises on bad content: every structural problem becomes a structured error so a
user sees all of them at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from latentgraph import standard_json
from latentgraph.errors import ErrorDetail, ErrorReport

#: Wraps a literal list value so it is not read as a link: ``{"__value__": [1, 2, 3]}``.
LITERAL_LIST_KEY = "__value__"


class _Unreadable:
    """Stands in for an input value that could not be parsed (already reported)."""

    def __repr__(self) -> str:
        return "<unreadable>"


UNREADABLE = _Unreadable()


@dataclass(frozen=True, slots=True)
class Link:
    """A connection from output ``output`` of node ``node_id``."""

    node_id: str
    output: int

    def to_json(self) -> list[Any]:
        return [self.node_id, self.output]


@dataclass(slots=True)
class WorkflowNode:
    id: str
    class_type: str
    inputs: dict[str, Any]  # literal values and Link objects
    title: str = ""


@dataclass
class Workflow:
    nodes: dict[str, WorkflowNode] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        """Back to API-format JSON (literal lists wrapped, links as pairs)."""
        out: dict[str, Any] = {}
        for node in self.nodes.values():
            inputs = {}
            for name, value in node.inputs.items():
                if value is UNREADABLE:
                    continue
                if isinstance(value, Link):
                    inputs[name] = value.to_json()
                elif isinstance(value, list):
                    inputs[name] = {LITERAL_LIST_KEY: value}
                else:
                    inputs[name] = value
            entry: dict[str, Any] = {"class_type": node.class_type, "inputs": inputs}
            if node.title:
                entry["_meta"] = {"title": node.title}
            out[node.id] = entry
        return out


def parse_json_text(text: str | bytes, *, known_standard: bool = False) -> tuple[Any, ErrorReport]:
    """Standard JSON only (see :mod:`latentgraph.standard_json`): what the server would refuse,
    a file is refused for too, as a structured error naming the value's path. ``known_standard``:
    this very text passed before (the checks are skipped, the parse is the same)."""
    report = ErrorReport()
    try:
        return (json.loads(text) if known_standard else standard_json.loads(text)), report
    except standard_json.JsonInputError as exc:
        report.error = ErrorDetail(
            "invalid_prompt",
            "Workflow is not standard JSON",
            details=str(exc),
            extra_info={"path": exc.path, "reason": exc.kind},
        )
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        report.error = ErrorDetail(
            "invalid_prompt",
            "Workflow is not valid JSON",
            details=str(exc)[:300],
            extra_info={"line": getattr(exc, "lineno", None), "column": getattr(exc, "colno", None)},
        )
    return None, report


def parse_workflow(data: Any) -> tuple[Workflow, ErrorReport]:
    """Read an API-format workflow; returns what could be read plus every problem found."""
    report = ErrorReport()
    workflow = Workflow()
    if not isinstance(data, dict):
        report.error = ErrorDetail(
            "invalid_prompt",
            "Workflow must be a JSON object mapping node ids to nodes",
            details=f"got {type(data).__name__}",
        )
        return workflow, report
    if not data:  # as ComfyUI answers an empty graph (the editor shows its message)
        report.error = ErrorDetail("prompt_no_outputs", "Prompt has no outputs", details="the workflow has no nodes")
        return workflow, report
    no_class: list[str] = []
    for raw_id, entry in data.items():
        node_id = str(raw_id)
        if not isinstance(entry, dict):
            report.add(node_id, "", _malformed(f"node {node_id} must be an object, got {type(entry).__name__}"))
            continue
        class_type = entry.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            no_class.append(node_id)
            continue
        raw_inputs = entry.get("inputs", {})
        if not isinstance(raw_inputs, dict):
            report.add(node_id, class_type, _malformed(f"'inputs' of node {node_id} must be an object"))
            continue
        inputs: dict[str, Any] = {}
        for name, value in raw_inputs.items():
            kind = type(value)
            if kind is str or kind is int or kind is float or kind is bool:  # most literals
                inputs[name] = value
                continue
            parsed = _parse_value(value)
            if isinstance(parsed, ErrorDetail):
                parsed.extra_info["input_name"] = name
                report.add(node_id, class_type, parsed)
                inputs[name] = UNREADABLE
            else:
                inputs[name] = parsed
        meta = entry.get("_meta")
        title = meta.get("title", "") if isinstance(meta, dict) else ""
        workflow.nodes[node_id] = WorkflowNode(node_id, class_type, inputs, title if isinstance(title, str) else "")
    if no_class:  # ComfyUI's shape: a top-level error naming the node, which the editor shows as it is
        shown = ", ".join(f"'#{n[:50]}'" for n in no_class[:20]) + (f" and {len(no_class) - 20} more" if len(no_class) > 20 else "")
        report.error = ErrorDetail(
            "invalid_prompt",
            "Cannot execute because a node is missing the class_type property.",
            details=f"Node ID {shown}",
            extra_info={"node_id": no_class[0], "node_ids": no_class[:20]},
        )
    return workflow, report


def _parse_value(value: Any) -> Any:
    if isinstance(value, list):
        if (
            len(value) == 2
            and isinstance(value[0], (str, int))
            and not isinstance(value[0], bool)
            and isinstance(value[1], int)
            and not isinstance(value[1], bool)
        ):
            return Link(str(value[0]), value[1])
        return ErrorDetail(
            "bad_linked_input",
            "A list value must be a link [node_id, output_index]",
            details=f'got {standard_json.dumps(value)[:80]}; write a literal list as {{"{LITERAL_LIST_KEY}": [...]}}',
            extra_info={"received_value": value},
        )
    if isinstance(value, dict) and set(value) == {LITERAL_LIST_KEY}:
        return value[LITERAL_LIST_KEY]
    return value


def _malformed(message: str) -> ErrorDetail:
    return ErrorDetail("invalid_prompt", message)
