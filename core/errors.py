"""Structured errors, shaped like ComfyUI's so clients can show them unchanged."""

from __future__ import annotations

import json
import math
import traceback
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ReportLimits:
    """How much of an error report is written out.

    A report holds every problem found (work linear in the workflow), but what leaves the process
    is bounded whatever was sent: a 12k-node cycle or 12k unknown nodes must answer in kilobytes,
    not megabytes. What is left out is counted in ``error.extra_info.omitted``.
    """

    #: Nodes listed in ``node_errors``, and errors listed per node.
    max_nodes: int = 50
    max_errors_per_node: int = 10
    #: Characters of a ``message`` or ``details``, of a node id, class type or title.
    max_text: int = 1000
    #: Characters (as JSON) of a value echoed in ``extra_info`` (``received_value``…); longer
    #: values become a clipped JSON text.
    max_value: int = 200
    #: Keys of one ``extra_info``.
    max_extra_keys: int = 20
    #: Bytes of JSON after which no further node is listed (one more node at most).
    max_bytes: int = 32 * 1024
    #: Lines of :meth:`ErrorReport.format`; frames of a failure's traceback.
    max_lines: int = 50


LIMITS = ReportLimits()


def clip(text: Any, limit: int = LIMITS.max_text) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out."""
    text = text if isinstance(text, str) else str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


class _Full(Exception):
    pass


def preview(value: Any, limit: int = LIMITS.max_value) -> tuple[str, bool]:
    """JSON-like text of ``value`` written only up to ``limit`` characters (work O(limit), any
    depth, any size); returns ``(text, exact)`` — ``exact`` when the text is the whole value as
    standard JSON (no NaN/Infinity, no non-JSON types, nothing cut)."""
    out: list[str] = []
    left = limit
    exact = True

    def put(piece: str) -> None:
        nonlocal left
        if len(piece) > left:
            out.append(piece[: max(left, 0)])
            left = -1
            raise _Full
        out.append(piece)
        left -= len(piece)

    def walk(v: Any, depth: int) -> None:
        nonlocal exact
        if v is None or isinstance(v, bool):
            put("null" if v is None else ("true" if v else "false"))
        elif isinstance(v, int):
            exact = exact and v.bit_length() < 64
            put(str(v) if v.bit_length() < 14_000 else "<an integer of over 4,000 digits>")
        elif isinstance(v, float):
            if math.isfinite(v):
                put(repr(v))
            else:
                exact = False
                put("NaN" if v != v else ("Infinity" if v > 0 else "-Infinity"))
        elif isinstance(v, str):
            put(json.dumps(v[: max(left, 0) + 1]))
        elif isinstance(v, (list, tuple, dict)):
            if depth >= 32:
                exact = False
                put("…")
                return
            items = v.items() if isinstance(v, dict) else ((None, x) for x in v)
            put("{" if isinstance(v, dict) else "[")
            for i, (k, x) in enumerate(items):
                if i:
                    put(", ")
                if isinstance(v, dict):
                    exact = exact and isinstance(k, str)
                    walk(str(k), depth + 1)
                    put(": ")
                walk(x, depth + 1)
            put("}" if isinstance(v, dict) else "]")
        else:
            exact = False
            put(clip(repr(v), max(left, 0) + 1))

    try:
        walk(value, 0)
    except _Full:
        return "".join(out) + "…", False
    except Exception:  # a hostile __repr__ or the like: say so rather than fail the report
        return f"<unprintable {type(value).__name__}>", False
    return "".join(out), exact


def echo(value: Any, limit: int = LIMITS.max_value) -> Any:
    """``value`` itself when it is small standard JSON, otherwise its clipped text."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and len(value) <= limit):
        return value
    if isinstance(value, int) and value.bit_length() < 64:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    text, exact = preview(value, limit)
    return value if exact else text


@dataclass(slots=True)
class ErrorDetail:
    type: str
    message: str
    details: str = ""
    extra_info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, limits: ReportLimits = LIMITS) -> dict[str, Any]:
        """Bounded and standard JSON, whatever the values echoed (see :class:`ReportLimits`)."""
        extra = {}
        for i, (key, value) in enumerate(self.extra_info.items()):
            if i >= limits.max_extra_keys:
                break
            extra[clip(key, 100)] = echo(value, limits.max_value)
        return {
            "type": clip(self.type, 100),
            "message": clip(self.message, limits.max_text),
            "details": clip(self.details, limits.max_text),
            "extra_info": extra,
        }


@dataclass(slots=True)
class NodeErrors:
    class_type: str
    errors: list[ErrorDetail] = field(default_factory=list)
    title: str = ""

    def to_dict(self, limits: ReportLimits = LIMITS) -> dict[str, Any]:
        """The first ``limits.max_errors_per_node`` errors (the caller counts the rest)."""
        out: dict[str, Any] = {
            "errors": [e.to_dict(limits) for e in self.errors[: limits.max_errors_per_node]],
            "dependent_outputs": [],
            "class_type": clip(self.class_type, limits.max_text),
        }
        if self.title:
            out["title"] = clip(self.title, limits.max_text)
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

    def to_dict(self, limits: ReportLimits = LIMITS) -> dict[str, Any]:
        """ComfyUI's ``{error, node_errors}``, bounded by ``limits``: the first nodes in workflow
        order, then ``error.extra_info.omitted = {node_errors, errors}`` counts the rest."""
        listed: dict[str, Any] = {}
        size = omitted_nodes = omitted_errors = 0
        for node_id, node in self.node_errors.items():
            if len(listed) >= limits.max_nodes or size >= limits.max_bytes:
                omitted_nodes += 1
                omitted_errors += len(node.errors)
                continue
            entry, key = node.to_dict(limits), clip(node_id, 200)
            omitted_errors += len(node.errors) - len(entry["errors"])
            size += len(json.dumps(entry)) + len(key)
            listed[key] = entry
        error = self.error
        if error is None and self.node_errors:
            error = ErrorDetail("prompt_outputs_failed_validation", "Prompt outputs failed validation")
        top = error.to_dict(limits) if error else None
        if top is not None and (omitted_nodes or omitted_errors):
            total = sum(len(n.errors) for n in self.node_errors.values())
            top["extra_info"]["omitted"] = {"node_errors": omitted_nodes, "errors": omitted_errors}
            shown = f"{total - omitted_errors} of {total} errors in {len(listed)} of {len(self.node_errors)} nodes listed"
            top["details"] = f"{top['details']} ({shown})" if top["details"] else shown
        return {"error": top, "node_errors": listed}

    def format(self, limits: ReportLimits = LIMITS) -> str:
        """Human-readable, one line per problem (the first ``limits.max_lines``, then a count)."""
        lines = []
        found = self.all_errors()
        for node_id, err in found[: limits.max_lines]:
            where = ""
            if node_id is not None:
                ne = self.node_errors[node_id]
                where = f"node {node_id} ({ne.class_type})"
                name = err.extra_info.get("input_name")
                if name:
                    where += f" input '{name}'"
                where += ": "
            detail = f" [{clip(err.details, limits.max_text)}]" if err.details else ""
            lines.append(clip(f"{where}{clip(err.message, limits.max_text)}{detail}  <{err.type}>", 3 * limits.max_text))
        if len(found) > limits.max_lines:
            lines.append(f"… and {len(found) - limits.max_lines} more problem(s)")
        return "\n".join(lines)


class LatentgraphError(Exception):
    """Base of errors meant for users: printed without a traceback."""


class WorkflowInvalid(LatentgraphError):
    def __init__(self, report: ErrorReport):
        self.report = report
        super().__init__(report.format() or "invalid workflow")


class Interrupted(LatentgraphError):
    """Raised inside a run when the interrupt flag is set."""


class ExecutionBlocked(LatentgraphError):
    """A node received an :class:`~latentgraph.node.ExecutionBlocker` that carries a message."""


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

    @classmethod
    def from_exception(cls, node_id: str, class_type: str, plugin: str, exc: BaseException) -> NodeFailure:
        """The report of a node that raised ``exc`` (a plugin's node says which plugin)."""
        message = str(exc) or type(exc).__name__
        if plugin and plugin != "latentgraph":
            message = f"{message} (node type from plugin '{plugin}')"
        return cls(
            node_id=node_id,
            class_type=class_type,
            exception_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            message=message,
            traceback=traceback.format_exception(type(exc), exc, exc.__traceback__),
            plugin=plugin,
            input_name=exc.input_name if isinstance(exc, NodeInputError) else None,
        )

    def to_dict(self, limits: ReportLimits = LIMITS) -> dict[str, Any]:
        """Bounded: the message, and the last ``limits.max_lines`` traceback entries, clipped."""
        return {
            "node_id": self.node_id,
            "node_type": self.class_type,
            "exception_type": self.exception_type,
            "exception_message": clip(self.message, 4 * limits.max_text),
            "traceback": [clip(line, limits.max_text) for line in self.traceback[-limits.max_lines :]],
            "plugin": self.plugin,
            "input_name": self.input_name,
        }
