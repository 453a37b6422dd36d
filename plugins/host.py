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
from collections.abc import Callable, Iterable
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
#: Name of the built-in plugin (it cannot be disabled).
BUILTIN_NAME = "latentgraph"
#: The same error is recorded once; a plugin failing in a hook on every node must not grow memory.
MAX_ERRORS_PER_PLUGIN = 50


@dataclass
class PluginInfo:
    """What one plugin is, what it added and what went wrong (``latentgraph plugins``, ``/plugins``)."""

    name: str
    source: str  # "builtin", "entrypoint", "plugins-dir", "object"
    version: str = ""
    hooks: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    load_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    #: False when the allow-list (``LATENTGRAPH_PLUGINS``) skipped it: found but not loaded.
    enabled: bool = True
    #: Where it came from: module name, entry point value or file path.
    location: str = ""

    def error(self, message: str) -> None:
        if message not in self.errors and len(self.errors) < MAX_ERRORS_PER_PLUGIN:
            self.errors.append(message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "enabled": self.enabled,
            "location": self.location,
            "hooks": self.hooks,
            "nodes": self.nodes,
            "load_seconds": round(self.load_seconds, 4),
            "errors": self.errors,
        }


@dataclass(frozen=True)
class PluginSelection:
    """Which third-party plugins load: ``LATENTGRAPH_PLUGINS="a,b"`` allows only a and b,
    ``"-c"`` loads all but c, ``""`` loads none. The built-in nodes always load."""

    allow: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, names: Iterable[str] | None) -> PluginSelection:
        if names is None:
            return cls()
        if isinstance(names, str):
            names = names.split(",")
        cleaned = [n.strip() for n in names if n and n.strip()]
        deny = frozenset(n[1:].strip() for n in cleaned if n.startswith("-"))
        allow = [n for n in cleaned if not n.startswith("-")]
        if deny and not allow:
            return cls(None, deny)
        return cls(frozenset(allow), deny)

    def wants(self, name: str) -> bool:
        if name in self.deny:
            return False
        return self.allow is None or name in self.allow


class PluginHost:
    """One engine's plugins: the pluggy manager, what each plugin added, and what went wrong."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("latentgraph")
        self.pm.add_hookspecs(hookspecs)
        self.registry = NodeRegistry()
        self.plugins: dict[str, PluginInfo] = {}
        self.model_roots: list[Path] = []

    # -- loading ----------------------------------------------------------------------------
    def _info(self, name: str, source: str, version: str = "", location: str = "") -> PluginInfo:
        """A fresh info record; a second plugin claiming a taken name gets its own, marked."""
        key = name
        if key in self.plugins:
            key = f"{name} ({source}: {location or 'duplicate'})"
        info = PluginInfo(key, source, version, location=location)
        self.plugins[key] = info
        if key != name:
            info.error(f"a plugin named '{name}' is already loaded ({self.plugins[name].source}); this one is skipped")
        return info

    def add(self, plugin: object, name: str, source: str, version: str = "", location: str = "") -> PluginInfo:
        info = self._info(name, source, version, location)
        if info.errors:
            return info
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # invalid hookimpl signatures, unknown hooks
            info.error(f"cannot register: {exc}")
            log.warning("plugin %s cannot be registered: %s", name, exc)
            return info
        callers = self.pm.get_hookcallers(plugin) or []
        info.hooks = sorted(h.name for h in callers if h.has_spec())
        for unknown in sorted(h.name for h in callers if not h.has_spec()):
            import difflib

            close = difflib.get_close_matches(unknown, [n for n in dir(hookspecs) if not n.startswith("_")], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            info.error(f"@hookimpl '{unknown}' is not a latentgraph hook and is never called{hint}")
            log.warning("plugin %s: unknown hook %s%s", name, unknown, hint)
        return info

    def add_failed(
        self, name: str, source: str, exc: BaseException, version: str = "", location: str = "", seconds: float = 0.0
    ) -> PluginInfo:
        info = self._info(name, source, version, location)
        info.load_seconds = seconds
        info.error(f"import failed: {_describe_import_error(exc)}")
        log.warning("plugin %s failed to import: %s", name, exc)
        return info

    def add_disabled(self, name: str, source: str, version: str = "", location: str = "") -> PluginInfo:
        info = self._info(name, source, version, location)
        info.enabled = False
        return info

    def add_module(self, module_name: str, source: str, version: str = "", name: str | None = None) -> PluginInfo:
        name = name or module_name
        start = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
        except (Exception, SystemExit) as exc:
            return self.add_failed(name, source, exc, version, module_name, time.perf_counter() - start)
        info = self.add(module, name, source, version, module_name)
        info.load_seconds += time.perf_counter() - start
        return info

    def add_entry_points(self, selection: PluginSelection | None = None) -> None:
        selection = selection or PluginSelection()
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            version = ep.dist.version if ep.dist else ""
            if not selection.wants(ep.name):
                self.add_disabled(ep.name, "entrypoint", version, ep.value)
                continue
            start = time.perf_counter()
            try:
                obj = ep.load()
            except (Exception, SystemExit) as exc:
                self.add_failed(ep.name, "entrypoint", exc, version, ep.value, time.perf_counter() - start)
                continue
            if isinstance(obj, type):  # a class with @hookimpl methods: use an instance
                try:
                    obj = obj()
                except Exception as exc:
                    self.add_failed(ep.name, "entrypoint", exc, version, ep.value)
                    continue
            info = self.add(obj, ep.name, "entrypoint", version, ep.value)
            info.load_seconds += time.perf_counter() - start

    def add_plugins_dir(self, folder: Path, selection: PluginSelection | None = None) -> None:
        """Loose ``*.py`` modules and packages in a folder; ComfyUI custom nodes are adapted."""
        selection = selection or PluginSelection()
        if not folder.is_dir():
            return
        from latentgraph.plugins.comfy_v3 import install_comfy_api_alias

        install_comfy_api_alias()  # V3 custom-node files import comfy_api (docs/plugins.md)
        for path in sorted(folder.iterdir()):
            if path.name.startswith((".", "_")):
                continue
            if path.is_dir() and (path / "__init__.py").is_file():
                entry = path / "__init__.py"
            elif path.is_file() and path.suffix == ".py":
                entry = path
            else:
                continue
            name = path.stem if path.is_file() else path.name
            if not selection.wants(name):
                self.add_disabled(name, "plugins-dir", location=str(path))
                continue
            start = time.perf_counter()
            try:
                module = _import_path(name, entry)
            except (Exception, SystemExit) as exc:
                self.add_failed(name, "plugins-dir", exc, location=str(path), seconds=time.perf_counter() - start)
                continue
            plugin: object = module
            from latentgraph.plugins.comfy_adapter import ComfyNodePack

            if ComfyNodePack.is_pack(module) and not _has_hookimpls(module):
                plugin = ComfyNodePack(module)
            info = self.add(plugin, name, "plugins-dir", str(getattr(module, "__version__", "")), str(path))
            info.load_seconds += time.perf_counter() - start

    # -- building the registry -------------------------------------------------------------
    def build(self) -> NodeRegistry:
        """Collect every plugin's contributions, one implementation at a time."""
        for plugin, values in self._collect("register_types"):
            for type_spec in values:
                self._guard(plugin, "register_types", lambda t=type_spec: self._register_type(t))
        for plugin, values in self._collect("register_nodes"):
            for node_cls in values:
                self._guard(plugin, "register_nodes", lambda n=node_cls, p=plugin: self._register_node(n, p))
        for hook, table in (
            ("register_samplers", self.registry.samplers),
            ("register_schedulers", self.registry.schedulers),
            ("register_model_formats", self.registry.model_formats),
        ):
            for plugin, values in self._collect(hook):
                for item in values:
                    name = getattr(item, "name", None)
                    if not name or not isinstance(name, str):
                        self.plugins[plugin].error(f"{hook}: {item!r} has no name")
                    elif name in table:
                        self.plugins[plugin].error(f"{hook}: '{name}' is already registered")
                    else:
                        table[name] = item
        for plugin, values in self._collect("register_model_roots"):
            for value in values:
                try:
                    self.model_roots.append(Path(value))
                except TypeError:
                    self.plugins[plugin].error(f"register_model_roots: {value!r} is not a path")
        return self.registry

    def _impls(self, hook_name: str) -> list[Any]:
        """A hook's implementations in plugin load order (built-ins first), whatever
        ``tryfirst``/``trylast`` say: an earlier plugin's registrations always win."""
        order = {name: i for i, name in enumerate(self.plugins)}
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        return sorted(impls, key=lambda impl: order.get(impl.plugin_name, len(order)))

    def _register_type(self, type_spec: Any) -> None:
        from latentgraph.registry import TypeSpec

        if not isinstance(type_spec, TypeSpec):
            raise RegistrationError(f"{type_spec!r} is not a latentgraph.TypeSpec")
        known = self.registry.types.get(type_spec.name)
        if known is not None and not type_spec.accepts:
            return  # "this type exists": nothing to add (ComfyUI packs share custom types)
        self.registry.register_type(type_spec)

    def _register_node(self, node_cls: Any, plugin: str) -> None:
        if isinstance(node_cls, Exception):  # a plugin reporting a node it could not declare
            raise RegistrationError(str(node_cls))
        self.registry.register(node_cls, plugin)
        if node_cls.__dict__.get("plugin_name") is None:
            node_cls.plugin_name = plugin
        self.plugins[plugin].nodes.append(node_cls.spec.name)

    def _collect(self, hook_name: str) -> Iterable[tuple[str, list[Any]]]:
        """Each implementation's result, in load order; a raising implementation is reported.

        Time spent in registration hooks (often where node modules get imported) counts as the
        plugin's load time.
        """
        for impl in self._impls(hook_name):
            name = impl.plugin_name
            start = time.perf_counter()
            try:
                result = impl.function()
                values = list(result) if result is not None else []
            except Exception as exc:
                self.plugins[name].error(f"{hook_name} raised {_describe(exc)}")
                log.warning("plugin %s: %s raised %s", name, hook_name, exc)
                continue
            finally:
                self.plugins[name].load_seconds += time.perf_counter() - start
            yield name, values

    def _guard(self, plugin: str, hook: str, action: Callable[[], None]) -> None:
        try:
            action()
        except RegistrationError as exc:
            self.plugins[plugin].error(f"{hook}: {exc}")
            log.warning("plugin %s: %s", plugin, exc)

    # -- hooks used at run time -------------------------------------------------------------
    def lifecycle(self) -> LifecycleHooks:
        return LifecycleHooks(self)

    def call_safely(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call every implementation of a hook; one raising is reported, the others still run."""
        results = []
        for impl in self._impls(hook_name):
            try:
                results.append(impl.function(**{k: kwargs[k] for k in impl.argnames}))
            except Exception as exc:
                self.plugins[impl.plugin_name].error(f"{hook_name} raised {_describe(exc)}")
                log.warning("plugin %s: %s raised %s", impl.plugin_name, hook_name, exc)
        return results

    def describe(self) -> list[dict[str, Any]]:
        """Every plugin as a dict (``latentgraph plugins --json`` and ``GET /plugins``)."""
        return [info.to_dict() for info in self.plugins.values()]


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
    """Assemble a plugin host.

    ``allow`` selects third-party plugins by name (see :class:`PluginSelection`: ``"-name"``
    disables one); ``extra`` are ``(name, plugin_object)`` pairs registered as given (tests).
    """
    host = PluginHost()
    selection = PluginSelection.parse(allow)
    # torch is imported by nearly every node plugin: load it first so its seconds are not
    # reported as the load time of whichever plugin happens to import it first.
    importlib.import_module("torch")
    if builtins:
        from latentgraph import __version__

        for module_name in BUILTIN_PLUGINS:
            host.add_module(module_name, "builtin", __version__, name=BUILTIN_NAME)
    if entry_points:
        host.add_entry_points(selection)
    if plugins_dir is not None:
        host.add_plugins_dir(Path(plugins_dir), selection)
    for name, obj in extra:
        host.add(obj, name, "object", location=repr(obj))
    host.build()
    return host


def plugin_selection_from_env(environ: dict[str, str] | None = None) -> list[str] | None:
    """``LATENTGRAPH_PLUGINS`` as a list for ``allow`` (None when unset: everything loads)."""
    import os

    value = (os.environ if environ is None else environ).get("LATENTGRAPH_PLUGINS")
    return None if value is None else [p.strip() for p in value.split(",") if p.strip()]


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


def _describe_import_error(exc: BaseException) -> str:
    text = _describe(exc)
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if missing:
        from latentgraph.plugins.comfy_adapter import COMFY_INTERNAL_MODULES

        if missing.split(".")[0] == "comfy_api":
            text += " — latentgraph's comfy_api provides the V3 node API (comfy_api.latest / v0_0_2: io, ui) only"
        elif missing.split(".")[0] in COMFY_INTERNAL_MODULES:
            text += " — ComfyUI's own modules are not available in latentgraph; only self-contained custom nodes load"
    return text
