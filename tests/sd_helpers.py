"""Shared helpers for the model-loading tests: settings with model folders, contexts, tiny files."""

from __future__ import annotations

from pathlib import Path

from latentgraph import ExecutionContext, InterruptFlag, Settings
from latentgraph.plugins import load_plugins

SHIPPED_TINY = "tiny-sd1.safetensors"


class Env:
    """A base dir with models/<kind>/ folders, the built-in plugins and a context factory."""

    def __init__(self, base: Path, **settings_overrides):
        self.base = Path(base)
        for kind in ("checkpoints", "vae", "loras"):
            (self.base / "models" / kind).mkdir(parents=True, exist_ok=True)
        self.host = load_plugins(entry_points=False)
        self.registry = self.host.registry
        settings_overrides.setdefault("device", "cpu")
        self.settings = Settings.from_env(self.base, environ={}, **settings_overrides).with_model_roots(*self.host.model_roots)
        self.events: list = []

    def folder(self, kind: str) -> Path:
        return self.base / "models" / kind

    def ctx(self, class_type: str = "test") -> ExecutionContext:
        return ExecutionContext(
            prompt_id="p",
            node_id="1",
            class_type=class_type,
            settings=self.settings,
            registry=self.registry,
            sink=self.events.append,
            interrupt=InterruptFlag(),
            extra={},
        )

    def run(self, class_type: str, **inputs):
        node_cls = self.registry.get(class_type)
        assert node_cls is not None, class_type
        return node_cls().execute(self.ctx(class_type), **inputs)
