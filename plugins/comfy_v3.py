"""Runs ComfyUI V3 custom nodes (``comfy_api.latest`` ``io.ComfyNode`` classes) as latentgraph nodes.

A V3 class declares itself in ``define_schema()`` and runs in the class method ``execute``.
:func:`adapt_v3_class` reads the schema into the same :class:`ComfyDeclaration` a V1 class gives,
so both become node types through :func:`build_node_type`: one mapping of inputs, outputs, lists,
lazy inputs, expansion, async, caching and validation. What V3 adds is only how the class is
called: on a throw-away subclass whose ``hidden`` holds this run's hidden values.

Custom-node files import ``comfy_api``: :func:`install_comfy_api_alias` makes that name resolve to
latentgraph's :mod:`latentgraph.plugins.comfy_api` when a plugins folder is loaded.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
import pkgutil
import sys
import threading
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any

from latentgraph.context import ExecutionContext
from latentgraph.node import OutputSpec
from latentgraph.plugins import comfy_api
from latentgraph.plugins.comfy_adapter import (
    ComfyDeclaration,
    ComfyNode,
    DeclaredInputs,
    build_node_type,
    hidden_value,
    output_type,
)
from latentgraph.plugins.comfy_api.latest import ComfyExtension, io
from latentgraph.registry import RegistrationError

log = logging.getLogger("latentgraph.plugins")

#: The names custom-node files import our compatibility packages under.
ALIAS = "comfy_api"
EXECUTION_ALIAS = "comfy_execution"


def install_comfy_api_alias() -> bool:
    """Make ``import comfy_api`` (and ``comfy_api.latest``, ``comfy_api.v0_0_2`` …) give
    :mod:`latentgraph.plugins.comfy_api`, for the custom-node files about to be imported.

    Every submodule is entered under both names, so ``io.ComfyNode`` is one class whichever name
    a file used. ``comfy_execution`` (``graph_utils.GraphBuilder`` for expanding nodes) is entered
    the same way. Python has one module table per process, so this is process-wide; it is done
    only when a plugins folder is loaded, and never over a real ``comfy_api``/``comfy_execution``
    (ComfyUI's own, if importable here): then False is returned and custom nodes use that one at
    their own risk.
    """
    from latentgraph.plugins import comfy_execution

    installed = True
    for alias, package in ((ALIAS, comfy_api), (EXECUTION_ALIAS, comfy_execution)):
        present = sys.modules.get(alias)
        if present is not None and present is not package:
            log.warning("a module named %s is already loaded (%s); custom nodes will use it", alias, present)
            installed = False
            continue
        sys.modules[alias] = package
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            module = importlib.import_module(info.name)
            sys.modules[alias + info.name.removeprefix(package.__name__)] = module
    return installed


def is_v3_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, io.ComfyNode)


class V3ComfyNode(ComfyNode):
    """Base of adapted V3 nodes: class methods run on a subclass carrying ``hidden``."""

    function_name = "execute"

    def _target(self, ctx: ExecutionContext) -> Any:
        if self._target_obj is None:
            holder = io.HiddenHolder({name: hidden_value(kind, ctx) for name, kind in self.hidden_inputs.items()})
            cls = self.comfy_class
            self._target_obj = type(cls.__name__, (cls,), {"hidden": holder, "__module__": cls.__module__,
                                                            "__qualname__": cls.__qualname__})
        return self._target_obj

    def _arguments(self, ctx: ExecutionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        return inputs  # hidden values are on cls.hidden, not arguments


def _overrides(node_cls: type, name: str) -> bool:
    """Whether the class (or a base of its own) defines ``name`` instead of io.ComfyNode."""
    found = getattr(node_cls, name)
    return getattr(found, "__func__", found) is not getattr(io.ComfyNode, name).__func__


def _schema(node_cls: type) -> io.Schema:
    schema = node_cls.define_schema()
    if not isinstance(schema, io.Schema):
        raise TypeError(f"define_schema() returned {type(schema).__name__}, not io.Schema")
    return schema


def declared_inputs(node_cls: type) -> DeclaredInputs:
    """A V3 class's inputs in V1's ``INPUT_TYPES()`` shape (called again for live COMBO choices)."""
    sections: dict[str, dict[str, Any]] = {"required": {}, "optional": {}}
    for item in _schema(node_cls).inputs or []:
        sections["optional" if item.optional else "required"][item.id] = item.declaration()
    return sections


def _output_spec(item: io.Output) -> OutputSpec:
    return OutputSpec(output_type(item.get_io_type()), item.name, is_list=bool(item.is_output_list))


def adapt_v3_class(node_cls: Any, class_type: str | None = None, display_name: str = "") -> type[V3ComfyNode]:
    """Build the latentgraph node type for one V3 node class; raises RegistrationError.

    ``class_type`` is the name it is registered under (``NODE_CLASS_MAPPINGS`` key); by default
    the schema's ``node_id``, as ``comfy_entrypoint`` extensions register.
    """
    label = class_type or getattr(node_cls, "__name__", repr(node_cls))
    if not is_v3_class(node_cls):
        raise RegistrationError(f"ComfyUI node '{label}': {node_cls!r} is not an io.ComfyNode class")
    for name in ("define_schema", "execute"):
        if not _overrides(node_cls, name):
            raise RegistrationError(f"ComfyUI node '{label}': no {name}() class method")
    try:
        schema = _schema(node_cls)
        problems = schema.problems()
        if problems:
            raise ValueError("; ".join(problems))
        inputs = declared_inputs(node_cls)
        outputs = tuple(_output_spec(o) for o in schema.outputs or [])
        hidden = {kind.name: kind.value for kind in schema.hidden_kinds()}
    except RegistrationError as exc:
        raise RegistrationError(f"ComfyUI node '{label}': output {exc}") from None
    except Exception as exc:
        raise RegistrationError(f"ComfyUI node '{label}': define_schema() is unusable: {type(exc).__name__}: {exc}") from exc
    return build_node_type(ComfyDeclaration(
        class_type=class_type or schema.node_id,
        comfy_class=node_cls,
        inputs=inputs,
        reread=functools.partial(declared_inputs, node_cls),
        outputs=outputs,
        function_name="execute",
        hidden=hidden,
        display_name=display_name or schema.display_name or "",
        category=schema.category,
        description=schema.description or "",
        output_node=schema.is_output_node,
        input_is_list=schema.is_input_list,
        lazy_check_name="check_lazy_status" if _overrides(node_cls, "check_lazy_status") else None,
        fingerprint_name="fingerprint_inputs" if _overrides(node_cls, "fingerprint_inputs") else None,
        validate_name="validate_inputs" if _overrides(node_cls, "validate_inputs") else None,
        allows_expand=schema.enable_expand,
    ), V3ComfyNode)


# -- comfy_entrypoint -----------------------------------------------------------------------------
def _run(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine to the end from synchronous loading code, even if this thread already
    runs an event loop (then on a short-lived thread with its own)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=work, name="comfy_entrypoint")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def extension_nodes(module: ModuleType) -> list[type]:
    """The V3 classes a module's ``comfy_entrypoint()`` extension lists; raises RegistrationError."""
    entrypoint = getattr(module, "comfy_entrypoint")
    if not callable(entrypoint):
        raise RegistrationError("comfy_entrypoint is not callable")

    async def nodes() -> Any:
        extension = entrypoint()
        if inspect.isawaitable(extension):
            extension = await extension
        if not isinstance(extension, ComfyExtension):
            raise RegistrationError(f"comfy_entrypoint() returned {type(extension).__name__}, not a ComfyExtension")
        return await extension.get_node_list()

    try:
        found = _run(nodes)
    except RegistrationError:
        raise
    except Exception as exc:
        raise RegistrationError(f"comfy_entrypoint raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(found, (list, tuple)):
        raise RegistrationError(f"get_node_list() returned {type(found).__name__}, not a list of node classes")
    return list(found)
