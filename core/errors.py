"""Structured errors, shaped like ComfyUI's so clients can show them unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class ErrorDetail:
    type: str
    message: str
    details: str = ""
    extra_info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "message": self.message,
            "details": self.details,
            "extra_info": self.extra_info,
        }


@dataclass(slots=True)
class NodeErrors:
    class_type: str
    errors: list[ErrorDetail] = field(default_factory=list)
    title: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "errors": [e.to_dict() for e in self.errors],
            "dependent_outputs": [],
            "class_type": self.class_type,
        }
        if self.title:
            out["title"] = self.title
        return out


@dataclass(slots=True)
class ErrorReport:
    """All problems found in a workflow before it runs."""

    error: ErrorDetail | None = None
    node_errors: dict[str, NodeErrors] = field(default_factory=dict)

    def add(self, node_id: str, class_type: str, error: ErrorDetail) -> None:
        self.node_errors.setdefault(node_id, NodeErrors(class_type)).errors.append(error)

    def __bool__(self) -> bool:
        return self.error is not None or bool(self.node_errors)

    def all_errors(self) -> list[tuple[str | None, ErrorDetail]]:
        found: list[tuple[str | None, ErrorDetail]] = []
        if self.error is not None:
            found.append((None, self.error))
        for node_id, ne in self.node_errors.items():
            found.extend((node_id, e) for e in ne.errors)
        return found

    def to_dict(self) -> dict[str, Any]:
        error = self.error
        if error is None and self.node_errors:
            error = ErrorDetail("prompt_outputs_failed_validation", "Prompt outputs failed validation")
        return {
            "error": error.to_dict() if error else None,
            "node_errors": {k: v.to_dict() for k, v in self.node_errors.items()},
        }

    def format(self) -> str:
        """Human-readable, one line per problem."""
        lines = []
        for node_id, err in self.all_errors():
            where = ""
            if node_id is not None:
                ne = self.node_errors[node_id]
                where = f"node {node_id} ({ne.class_type})"
                name = err.extra_info.get("input_name")
                if name:
                    where += f" input '{name}'"
                where += ": "
            detail = f" [{err.details}]" if err.details else ""
            lines.append(f"{where}{err.message}{detail}  <{err.type}>")
        return "\n".join(lines)


class LatentgraphError(Exception):
    """Base of errors meant for users: printed without a traceback."""


class WorkflowInvalid(LatentgraphError):
    def __init__(self, report: ErrorReport):
        self.report = report
        super().__init__(report.format() or "invalid workflow")


class Interrupted(LatentgraphError):
    """Raised inside a run when the interrupt flag is set."""


class NodeInputError(LatentgraphError):
    """A node found an input it cannot use at run time; names the input."""

    def __init__(self, input_name: str, message: str):
        self.input_name = input_name
        super().__init__(f"input '{input_name}': {message}")


@dataclass(slots=True)
class NodeFailure:
    """Why a run stopped at a node."""

    node_id: str
    class_type: str
    exception_type: str
    message: str
    traceback: list[str] = field(default_factory=list)
    plugin: str = ""
    input_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "node_type": self.class_type,
            "exception_type": self.exception_type,
            "exception_message": self.message,
            "traceback": self.traceback,
            "plugin": self.plugin,
            "input_name": self.input_name,
        }
