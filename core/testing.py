"""Testing kit for graph and plugin authors; also a pytest plugin (entry point ``pytest11``).

Fixtures:
    ``lg_settings``  Settings rooted in a fresh temporary data dir.
    ``lg_engine``    A factory: ``lg_engine(*plugins, builtins=True)`` → an in-process :class:`Engine`
                     with the given plugin objects (modules or classes with ``@hookimpl``) registered.
    ``tiny_checkpoint``  Path of a tiny random SD1 checkpoint in the data dir's models/checkpoints.

Build workflows in Python with :class:`WorkflowBuilder`, run them with ``engine.run(wf.to_api())``
and assert on ``result.executed``, ``result.cached``, ``result.outputs`` and ``result.failure``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from latentgraph.settings import Settings
from latentgraph.workflow import LITERAL_LIST_KEY


@dataclass(frozen=True)
class NodeRef:
    id: str

    def __getitem__(self, output: int) -> list[Any]:
        return [self.id, output]


@dataclass
class WorkflowBuilder:
    """``a = wf.add("Const", value=1); wf.add("Add", a=a[0], b=2); wf.to_api()``"""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1), repr=False)

    def add(self, class_type: str, *, id: str | None = None, title: str = "", **inputs: Any) -> NodeRef:
        node_id = id or str(next(self._ids))
        while id is None and node_id in self.nodes:
            node_id = str(next(self._ids))
        values = {}
        for name, value in inputs.items():
            is_link = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)
            values[name] = value if is_link or not isinstance(value, list) else {LITERAL_LIST_KEY: value}
        entry: dict[str, Any] = {"class_type": class_type, "inputs": values}
        if title:
            entry["_meta"] = {"title": title}
        self.nodes[node_id] = entry
        return NodeRef(node_id)

    def set(self, node: NodeRef | str, **inputs: Any) -> None:
        self.nodes[node.id if isinstance(node, NodeRef) else node]["inputs"].update(inputs)

    def to_api(self) -> dict[str, Any]:
        import copy

        return copy.deepcopy(self.nodes)


def make_engine(settings: Settings, *plugins: object, builtins: bool = True, **kwargs: Any):
    from latentgraph.engine import Engine

    extra = [(getattr(p, "__name__", type(p).__name__), p) for p in plugins]
    return Engine.create(settings, builtins=builtins, entry_points=False, extra_plugins=extra, **kwargs)


@pytest.fixture
def lg_settings(tmp_path: Path) -> Settings:
    return Settings.from_env(tmp_path / "lg-data", environ={}, device="cpu")


@pytest.fixture
def lg_engine(lg_settings: Settings):
    def factory(*plugins: object, builtins: bool = True, **kwargs: Any):
        return make_engine(lg_settings, *plugins, builtins=builtins, **kwargs)

    return factory


@pytest.fixture
def tiny_checkpoint(lg_settings: Settings) -> Path:
    from latentgraph.nodes.tiny_models import make_tiny_checkpoint

    path = lg_settings.model_dirs("checkpoints")[0] / "tiny-test-sd1.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    make_tiny_checkpoint(path, arch="sd1", seed=0)
    return path
