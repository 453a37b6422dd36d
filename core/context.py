"""What a running node can see: its id, the settings, the model memory, progress and interruption."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from latentgraph.errors import Interrupted
from latentgraph.events import EventSink, ImageSent, NodeProgress
from latentgraph.settings import Settings

if TYPE_CHECKING:
    from latentgraph.model_memory import ModelMemory
    from latentgraph.registry import NodeRegistry



class InterruptFlag:
    """Cooperative interruption: set from anywhere, checked between nodes and at each step."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()


class ExecutionContext:
    """Passed to ``Node.execute``. Cheap to build: one per executed node."""

    __slots__ = ("prompt_id", "node_id", "class_type", "settings", "registry", "extra", "_sink", "_interrupt", "_memory")

    def __init__(
        self,
        *,
        prompt_id: str,
        node_id: str,
        class_type: str,
        settings: Settings,
        registry: NodeRegistry,
        sink: EventSink,
        interrupt: InterruptFlag,
        extra: dict[str, Any],
        memory: ModelMemory | None = None,
    ) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.class_type = class_type
        self.settings = settings
        self.registry = registry
        #: Per-prompt data: ``prompt`` (API JSON), ``workflow`` (editor JSON, when known), …
        self.extra = extra
        self._sink = sink
        self._interrupt = interrupt
        self._memory = memory

    @property
    def memory(self) -> ModelMemory:
        """Where models' weights live: ``with ctx.memory.use(model.unet):`` before running one."""
        memory = self._memory
        if memory is None:  # a context made outside an engine (tests, tools)
            from latentgraph.model_memory import ModelMemory

            memory = self._memory = ModelMemory()  # no budget: use() does nothing
        return memory

    def check_interrupted(self) -> None:
        if self._interrupt.is_set():
            raise Interrupted(f"interrupted at node {self.node_id}")

    def send_image(self, image: Any, fmt: str = "PNG") -> None:
        """Send a picture to the client that queued the prompt (a websocket frame; nothing saved)."""
        self._sink(ImageSent(self.prompt_id, self.node_id, image, fmt))
        self.check_interrupted()

    def progress(self, value: int, total: int, preview: Callable[[], Any] | None = None) -> None:
        """Report a step of a long node; also the place where interruption takes effect."""
        self._sink(NodeProgress(self.prompt_id, self.node_id, value, total, preview))
        self.check_interrupted()
