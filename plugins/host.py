"""Finds, loads and isolates plugins, and builds the node registry from their hooks.

Each hook implementation is called on its own, so a plugin that fails to import, raises in a hook
or declares a bad node is reported and skipped while the engine and other plugins keep working.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import sys
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from latentgraph.errors import NodeFailure
from latentgraph.plugins import hookspecs
from latentgraph.registry import NodeRegistry, RegistrationError

log = logging.getLogger("latentgraph.plugins")

ENTRY_POINT_GROUP = "latentgraph"
#: Built-in plugin modules, registered under the name "latentgraph".
BUILTIN_PLUGINS = ("latentgraph.nodes.builtin",)


@dataclass
class PluginInfo:
    name: str
    source: str  # "builtin", "entrypoint", "plugins-dir", "object"
    version: str = ""
    hooks: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    load_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "hooks": self.hooks,
            "nodes": self.nodes,
            "load_seconds": round(self.load_seconds, 4),
            "errors": self.errors,
        }


class PluginHost:
    """One engine's plugins: the pluggy manager, what each plugin added, and what went wrong."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("latentgraph")
        self.pm.add_hookspecs(hookspecs)
        self.registry = NodeRegistry()
        self.plugins: dict[str, PluginInfo] = {}
        self.model_roots: list[Path] = []

    # -- loading ----------------------------------------------------------------------------
    def add(self, plugin: object, name: str, source: str, version: str = "") -> PluginInfo:
        info = self.plugins.setdefault(name, PluginInfo(name, source, version))
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # invalid hookimpl signatures, duplicate names
            info.errors.append(f"cannot register: {exc}")
            return info
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        return info

    def add_module(self, module_name: str, source: str, version: str = "", name: str | None = None) -> PluginInfo:
        name = name or module_name
        start = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            info = self.plugins.setdefault(name, PluginInfo(name, source, version))
            info.errors.append(f"import failed: {_describe(exc)}")
            log.warning("plugin %s failed to import: %s", name, exc)
            return info
        info = self.add(module, name, source, version)
        info.load_seconds += time.perf_counter() - start
        return info

    def add_entry_points(self, allow: set[str] | None = None) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if allow is not None and ep.name not in allow:
                continue
            start = time.perf_counter()
            version = ep.dist.version if ep.dist else ""
            try:
                obj = ep.load()
            except Exception as exc:
                self.plugins[ep.name] = PluginInfo(ep.name, "entrypoint", version, errors=[f"import failed: {_describe(exc)}"])
                continue
            info = self.add(obj, ep.name, "entrypoint", version)
            info.load_seconds += time.perf_counter() - start

    def add_plugins_dir(self, folder: Path, allow: set[str] | None = None) -> None:
        """Loose ``*.py`` modules and packages in a folder; ComfyUI custom nodes are adapted."""
        if not folder.is_dir():
            return
        for path in sorted(folder.iterdir()):
            if path.name.startswith((".", "_")):
                continue
            if path.is_dir() and (path / "__init__.py").is_file():
                entry = path / "__init__.py"
            elif path.suffix == ".py":
                entry = path
            else:
                continue
            name = path.stem if path.is_file() else path.name
            if allow is not None and name not in allow:
                continue
            start = time.perf_counter()
            try:
                module = _import_path(name, entry)
            except Exception as exc:
                self.plugins[name] = PluginInfo(name, "plugins-dir", errors=[f"import failed: {_describe(exc)}"])
                log.warning("plugin %s failed to import: %s", name, exc)
                continue
            plugin: object = module
            if hasattr(module, "NODE_CLASS_MAPPINGS") and not _has_hookimpls(module):
                from latentgraph.plugins.comfy_adapter import ComfyNodePack

                plugin = ComfyNodePack(module)
            info = self.add(plugin, name, "plugins-dir", str(getattr(module, "__version__", "")))
            info.load_seconds += time.perf_counter() - start

    # -- building the registry -------------------------------------------------------------
    def build(self) -> NodeRegistry:
        """Collect every plugin's contributions, one implementation at a time."""
        for spec_list in self._collect("register_types"):
            plugin, values = spec_list
            for t in values:
                self._guard(plugin, "register_types", lambda t=t: self.registry.register_type(t))
        for plugin, values in self._collect("register_nodes"):
            for node_cls in values:
                def reg(node_cls=node_cls, plugin=plugin):
                    self.registry.register(node_cls, plugin)
                    if node_cls.__dict__.get("plugin_name") is None:
                        node_cls.plugin_name = plugin
                    self.plugins[plugin].nodes.append(node_cls.spec.name)
                self._guard(plugin, "register_nodes", reg)
        for hook, table in (
            ("register_samplers", self.registry.samplers),
            ("register_schedulers", self.registry.schedulers),
            ("register_model_formats", self.registry.model_formats),
        ):
            for plugin, values in self._collect(hook):
                for item in values:
                    name = getattr(item, "name", None)
                    if not name:
                        self.plugins[plugin].errors.append(f"{hook}: {item!r} has no name")
                    elif name in table:
                        self.plugins[plugin].errors.append(f"{hook}: '{name}' is already registered")
                    else:
                        table[name] = item
        for _plugin, values in self._collect("register_model_roots"):
            self.model_roots.extend(Path(v) for v in values)
        return self.registry

    def _collect(self, hook_name: str) -> Iterable[tuple[str, list[Any]]]:
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            name = impl.plugin_name
            try:
                result = impl.function()
                values = list(result) if result is not None else []
            except Exception as exc:
                self.plugins[name].errors.append(f"{hook_name} raised {_describe(exc)}")
                log.warning("plugin %s: %s raised %s", name, hook_name, exc)
                continue
            yield name, values

    def _guard(self, plugin: str, hook: str, action) -> None:
        try:
            action()
        except RegistrationError as exc:
            self.plugins[plugin].errors.append(f"{hook}: {exc}")
            log.warning("plugin %s: %s", plugin, exc)

    # -- hooks used at run time -------------------------------------------------------------
    def lifecycle(self) -> LifecycleHooks:
        return LifecycleHooks(self)

    def call_safely(self, hook_name: str, **kwargs: Any) -> list[Any]:
        results = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                results.append(impl.function(**{k: kwargs[k] for k in impl.argnames}))
            except Exception as exc:
                self.plugins[impl.plugin_name].errors.append(f"{hook_name} raised {_describe(exc)}")
                log.warning("plugin %s: %s raised %s", impl.plugin_name, hook_name, exc)
        return results


class LifecycleHooks:
    """before/after/error hooks for the executor; absent when no plugin implements them."""

    def __init__(self, host: PluginHost) -> None:
        self._host = host
        hook = host.pm.hook
        self.enabled = any(
            getattr(hook, n).get_hookimpls() for n in ("before_node", "after_node", "on_execution_error")
        )

    def before_node(self, prompt_id: str, node_id: str, class_type: str) -> None:
        self._host.call_safely("before_node", prompt_id=prompt_id, node_id=node_id, class_type=class_type)

    def after_node(self, prompt_id: str, node_id: str, class_type: str, seconds: float) -> None:
        self._host.call_safely(
            "after_node", prompt_id=prompt_id, node_id=node_id, class_type=class_type, seconds=seconds
        )

    def on_execution_error(self, prompt_id: str, failure: NodeFailure) -> None:
        self._host.call_safely("on_execution_error", prompt_id=prompt_id, failure=failure)


def load_plugins(
    *,
    builtins: bool = True,
    entry_points: bool = True,
    plugins_dir: Path | None = None,
    allow: Iterable[str] | None = None,
    extra: Iterable[tuple[str, object]] = (),
) -> PluginHost:
    """Assemble a plugin host. ``allow`` limits third-party plugins to those names."""
    host = PluginHost()
    allowed = set(allow) if allow is not None else None
    if builtins:
        from latentgraph import __version__

        for module_name in BUILTIN_PLUGINS:
            host.add_module(module_name, "builtin", __version__, name="latentgraph")
    if entry_points:
        host.add_entry_points(allowed)
    if plugins_dir is not None:
        host.add_plugins_dir(Path(plugins_dir), allowed)
    for name, obj in extra:
        host.add(obj, name, "object")
    host.build()
    return host


def _has_hookimpls(module: ModuleType) -> bool:
    return any(hasattr(getattr(module, n, None), "latentgraph_impl") for n in dir(module))


def _import_path(name: str, entry: Path) -> ModuleType:
    module_name = f"latentgraph_plugin_{name}"
    spec = importlib.util.spec_from_file_location(
        module_name, entry, submodule_search_locations=[str(entry.parent)] if entry.name == "__init__.py" else None
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {entry}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _describe(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"
