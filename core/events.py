"""Events the executor emits while it runs a workflow.

A sink is any callable taking an :class:`Event`; the CLI draws progress bars from them and the
server turns them into websocket messages. Nothing here knows about either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from latentgraph.errors import NodeFailure


@dataclass(frozen=True, slots=True)
class Event:
    prompt_id: str


@dataclass(frozen=True, slots=True)
class ExecutionStarted(Event):
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodesCached(Event):
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeStarted(Event):
    node_id: str = ""
    class_type: str = ""


@dataclass(frozen=True, slots=True)
class NodeProgress(Event):
    node_id: str = ""
    value: int = 0
    max: int = 0
    #: Lazily renders a small RGB ``PIL.Image`` of the current state; only called by sinks
    #: that want previews.
    preview: Callable[[], Any] | None = None


@dataclass(frozen=True, slots=True)
class ImageSent(Event):
    """A node sends a picture to the client itself (SaveImageWebsocket): a ``PIL.Image`` and the
    format to send it in; sinks that show nothing ignore it."""

    node_id: str = ""
    image: Any = None
    format: str = "PNG"


@dataclass(frozen=True, slots=True)
class NodeFinished(Event):
    node_id: str = ""
    class_type: str = ""
    ui: dict[str, Any] | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ExecutionFailed(Event):
    failure: NodeFailure | None = None
    executed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExecutionInterrupted(Event):
    node_id: str | None = None
    class_type: str | None = None
    executed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExecutionSucceeded(Event):
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


EventSink = Callable[[Event], None]


def null_sink(event: Event) -> None:
    """A sink that drops everything."""


class EventLog(list):
    """A sink that keeps every event; handy in tests and for replaying to reconnecting clients."""

    def __call__(self, event: Event) -> None:
        self.append(event)

    def of(self, kind: type[Event]) -> list[Any]:
        return [e for e in self if isinstance(e, kind)]
