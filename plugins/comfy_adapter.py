"""Runs ComfyUI custom-node modules (``NODE_CLASS_MAPPINGS``) as latentgraph nodes.

A ComfyUI node class declares itself with class attributes (``INPUT_TYPES``, ``RETURN_TYPES``,
``FUNCTION`` …). :func:`adapt_comfy_class` reads them once and builds an ordinary
:class:`~latentgraph.Node` subclass around the class, so validation, caching, ``/object_info`` and
error reporting treat it like any other node. Values already have ComfyUI's shapes (IMAGE
``[B,H,W,C]`` float, LATENT ``{"samples": tensor}``, CONDITIONING ``[(emb, extras)]``); MODEL, CLIP
and VAE are latentgraph's own objects, and ``comfy.*`` modules do not exist here.
What is and is not supported is listed in docs/plugins.md ("ComfyUI custom nodes").
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

from latentgraph.context import ExecutionContext
from latentgraph.node import ANY_TYPE, CORE_CONNECTION_TYPES, WIDGET_TYPES, InputSpec, Node, NodeResult, NodeSpec, OutputSpec
from latentgraph.plugins.hookspecs import hookimpl
from latentgraph.registry import RegistrationError, TypeSpec
from latentgraph.settings import Settings

#: Hidden inputs we can supply, by ComfyUI's name for them.
SUPPORTED_HIDDEN = frozenset({"PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID"})
#: Modules of ComfyUI itself that custom nodes commonly import; named in import errors.
COMFY_INTERNAL_MODULES = frozenset(
    {"comfy", "comfy_extras", "comfy_execution", "comfy_api", "folder_paths", "nodes", "server",
     "execution", "node_helpers", "latent_preview", "model_management"}
)


class ComfyNode(Node):
    """Base of adapted ComfyUI nodes: calls ``FUNCTION`` on a fresh instance with kwargs.

    Lists, lazy inputs, expansion and async map onto the engine's own (``NodeSpec.input_is_list``,
    ``Out(is_list=)``, ``In(lazy=)``, ``NodeResult.expand``, ``async def execute``); one instance
    of the ComfyUI class serves a node's ``check_lazy_status`` calls and its ``FUNCTION``.
    """

    comfy_class: ClassVar[type]
    #: kwarg name → ComfyUI hidden kind ("PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID", …).
    hidden_inputs: ClassVar[Mapping[str, str]] = {}
    _obj: Any = None

    def comfy_object(self) -> Any:
        if self._obj is None:
            self._obj = self.comfy_class()
        return self._obj

    def _with_hidden(self, ctx: ExecutionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        listed = self.spec.input_is_list
        for name, kind in self.hidden_inputs.items():
            value = hidden_value(kind, ctx)
            inputs[name] = [value] if listed else value
        return inputs

    def execute(self, ctx: ExecutionContext, **inputs: Any) -> NodeResult:
        function = getattr(self.comfy_object(), self.comfy_class.FUNCTION)
        returned = function(**self._with_hidden(ctx, inputs))
        return to_node_result(returned, len(self.spec.outputs))

    def check_lazy_status(self, ctx: ExecutionContext, **inputs: Any) -> list[str]:
        check = getattr(self.comfy_object(), "check_lazy_status", None)
        if check is None:  # as in ComfyUI: lazy inputs nobody asks for stay None
            return []
        return list(_call_with(check, self._with_hidden(ctx, inputs)) or [])


class AsyncComfyNode(ComfyNode):
    """An adapted ComfyUI class whose ``FUNCTION`` is ``async def``: runs on the engine's loop."""

    async def execute(self, ctx: ExecutionContext, **inputs: Any) -> NodeResult:  # type: ignore[override]
        function = getattr(self.comfy_object(), self.comfy_class.FUNCTION)
        returned = await function(**self._with_hidden(ctx, inputs))
        return to_node_result(returned, len(self.spec.outputs))


def hidden_value(kind: str, ctx: ExecutionContext) -> Any:
    """What ComfyUI would pass for a hidden input, taken from the per-prompt data."""
    extra = ctx.extra or {}
    if kind == "PROMPT":
        return extra.get("prompt")
    if kind == "UNIQUE_ID":
        return ctx.node_id
    if kind == "EXTRA_PNGINFO":
        if extra.get("extra_pnginfo") is not None:
            return extra["extra_pnginfo"]
        return {"workflow": extra["workflow"]} if extra.get("workflow") is not None else None
    return None  # DYNPROMPT, API keys …: not available


def to_node_result(returned: Any, n_outputs: int) -> NodeResult:
    """Accept what a ComfyUI ``FUNCTION`` may return: a tuple/list, or ``{"ui", "result"}``."""
    ui = expand = None
    if isinstance(returned, dict):
        ui = returned.get("ui")
        expand = returned.get("expand")
        returned = returned.get("result", ())
    if returned is None:
        returned = ()
    if not isinstance(returned, (tuple, list)):
        raise TypeError(f"FUNCTION must return a tuple or a dict with 'result'/'ui', got {type(returned).__name__}")
    outputs = tuple(returned)
    if len(outputs) != n_outputs and not (expand is not None and not outputs):
        raise TypeError(f"FUNCTION returned {len(outputs)} value(s) for {n_outputs} RETURN_TYPES")
    return NodeResult(outputs, ui, expand)


# -- reading a ComfyUI class --------------------------------------------------------------------
@dataclass(frozen=True)
class _LiveChoices:
    """COMBO choices re-read from ``INPUT_TYPES`` each time (they often list files on disk)."""

    comfy_class: type
    section: str
    name: str
    initial: tuple[str, ...]

    def __call__(self, settings: Settings, registry: Any) -> list[str]:
        try:
            declared = self.comfy_class.INPUT_TYPES()[self.section][self.name]
            kind, options = _split_declaration(declared)
            found = _combo_choices(kind, options)
        except Exception:
            found = None
        return list(found if found is not None else self.initial)


def _split_declaration(declared: Any) -> tuple[Any, dict[str, Any]]:
    if isinstance(declared, str):
        return declared, {}
    if isinstance(declared, (tuple, list)) and declared:
        options = declared[1] if len(declared) > 1 and isinstance(declared[1], dict) else {}
        return declared[0], options
    raise RegistrationError(f"input declaration {declared!r} is not (TYPE, options)")


def _combo_choices(kind: Any, options: Mapping[str, Any]) -> tuple[str, ...] | None:
    if isinstance(kind, (list, tuple)):
        values = kind
    elif kind == "COMBO" and isinstance(options.get("options"), (list, tuple)):
        values = options["options"]
    else:
        return None
    return tuple(v if isinstance(v, str) else str(v) for v in values)


def _input_spec(comfy_class: type, section: str, name: str, declared: Any, unchecked: frozenset[str]) -> InputSpec:
    kind, options = _split_declaration(declared)
    common: dict[str, Any] = {"required": section == "required", "tooltip": str(options.get("tooltip", "")),
                              "lazy": bool(options.get("lazy", False))}
    choices = _combo_choices(kind, options)
    if choices is not None:
        default = options.get("default", choices[0] if choices else None)
        return InputSpec(name, "COMBO", choices=_LiveChoices(comfy_class, section, name, choices),
                         default=default, **common)
    if not isinstance(kind, str) or not kind:
        raise RegistrationError(f"input '{name}': type {kind!r} is neither a type name nor a list of choices")
    if kind in ("INT", "FLOAT"):
        ranged = name not in unchecked  # VALIDATE_INPUTS takes over range checks of inputs it names
        return InputSpec(
            name, kind, default=options.get("default"),
            min=options.get("min") if ranged else None, max=options.get("max") if ranged else None,
            step=options.get("step"),
            control_after_generate=bool(options.get("control_after_generate", False)), **common,
        )
    if kind == "STRING":
        return InputSpec(name, kind, default=options.get("default"), multiline=bool(options.get("multiline")), **common)
    if kind == "BOOLEAN":
        return InputSpec(name, kind, default=options.get("default"), **common)
    return InputSpec(name, kind, **common)


def _output_type(kind: Any) -> str:
    if isinstance(kind, (list, tuple)):
        return "COMBO"  # a node that outputs one of a list of choices
    if not isinstance(kind, str) or not kind:
        raise RegistrationError(f"RETURN_TYPES entry {kind!r} is not a type name")
    return kind


def _parameters(function: Any) -> tuple[frozenset[str], bool]:
    """Named parameters of a callable and whether it takes ``**kwargs``."""
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return frozenset(), True
    names = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def _call_with(function: Any, values: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> Any:
    """Call a class method with the inputs it names (all of them if it takes ``**kwargs``)."""
    names, takes_all = _parameters(function)
    args = dict(values) if takes_all else {k: v for k, v in values.items() if k in names}
    for key, value in (extra or {}).items():
        if key in names:
            args[key] = value
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        params = ()
    for p in params:  # a linked input is not known before the run: ComfyUI passes nothing, we pass None
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty and p.name not in args:
            args[p.name] = None
    return function(**args)


def _fingerprint(cls: type[ComfyNode], settings: Settings, inputs: Mapping[str, Any]) -> str | None:
    """``IS_CHANGED``: a new value re-runs the node; NaN (never equal to itself) means always."""
    value = _call_with(cls.comfy_class.IS_CHANGED, inputs)
    if isinstance(value, float) and math.isnan(value):
        return None
    return repr(value)


def _check_inputs(cls: type[ComfyNode], settings: Settings, inputs: Mapping[str, Any]) -> list[str]:
    """``VALIDATE_INPUTS``: ``True`` passes; anything else is the error shown to the user."""
    verdict = _call_with(cls.comfy_class.VALIDATE_INPUTS, inputs, {"input_types": {}})
    if verdict is True:
        return []
    if isinstance(verdict, str) and verdict:
        return [verdict]
    return [f"VALIDATE_INPUTS of {cls.spec.name} returned {verdict!r}"]


def adapt_comfy_class(class_type: str, comfy_class: Any, display_name: str = "") -> type[ComfyNode]:
    """Build the latentgraph node type for one ComfyUI node class; raises RegistrationError."""
    if not isinstance(comfy_class, type):
        raise RegistrationError(f"ComfyUI node '{class_type}': {comfy_class!r} is not a class")
    for attr in ("INPUT_TYPES", "RETURN_TYPES", "FUNCTION"):
        if not hasattr(comfy_class, attr):
            raise RegistrationError(f"ComfyUI node '{class_type}': no {attr}")
    function_name = comfy_class.FUNCTION
    if not isinstance(function_name, str) or not callable(getattr(comfy_class, function_name, None)):
        raise RegistrationError(f"ComfyUI node '{class_type}': FUNCTION {function_name!r} is not a method of the class")
    output_is_list = tuple(bool(x) for x in (getattr(comfy_class, "OUTPUT_IS_LIST", None) or ()))
    try:
        declared = comfy_class.INPUT_TYPES()
    except Exception as exc:
        raise RegistrationError(f"ComfyUI node '{class_type}': INPUT_TYPES() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(declared, Mapping):
        raise RegistrationError(f"ComfyUI node '{class_type}': INPUT_TYPES() must return a dict")

    validate = getattr(comfy_class, "VALIDATE_INPUTS", None)
    unchecked = _parameters(validate)[0] if validate is not None else frozenset()
    inputs: list[InputSpec] = []
    hidden: dict[str, str] = {}
    try:
        for section in ("required", "optional"):
            for name, decl in (declared.get(section) or {}).items():
                inputs.append(_input_spec(comfy_class, section, name, decl, unchecked))
        for name, decl in (declared.get("hidden") or {}).items():
            kind = decl[0] if isinstance(decl, (tuple, list)) and decl else decl
            hidden[name] = str(kind)
        return_types = tuple(comfy_class.RETURN_TYPES or ())
        names = tuple(getattr(comfy_class, "RETURN_NAMES", None) or ())
        if len(output_is_list) > len(return_types):
            raise RegistrationError(f"OUTPUT_IS_LIST has {len(output_is_list)} entries for {len(return_types)} RETURN_TYPES")
        outputs = tuple(
            OutputSpec(_output_type(kind), str(names[i]) if i < len(names) else "",
                       is_list=i < len(output_is_list) and output_is_list[i])
            for i, kind in enumerate(return_types)
        )
    except RegistrationError as exc:
        raise RegistrationError(f"ComfyUI node '{class_type}': {exc}") from None

    is_changed = getattr(comfy_class, "IS_CHANGED", None)
    spec = NodeSpec(
        name=class_type,
        inputs=tuple(inputs),
        outputs=outputs,
        display_name=display_name,
        category=str(getattr(comfy_class, "CATEGORY", "") or "custom"),
        description=str(getattr(comfy_class, "DESCRIPTION", "") or (comfy_class.__doc__ or "").strip()),
        output_node=bool(getattr(comfy_class, "OUTPUT_NODE", False)),
        # IS_CHANGED may say "changed" for identical inputs: the executor then asks fingerprint().
        deterministic=is_changed is None,
        input_is_list=bool(getattr(comfy_class, "INPUT_IS_LIST", False)),
    )
    attrs: dict[str, Any] = {
        "spec": spec,
        "comfy_class": comfy_class,
        "hidden_inputs": hidden,
        "__module__": comfy_class.__module__,
        "__doc__": comfy_class.__doc__,
    }
    if is_changed is not None:
        attrs["fingerprint"] = classmethod(_fingerprint)
    if validate is not None:
        attrs["check_inputs"] = classmethod(_check_inputs)
    base = AsyncComfyNode if inspect.iscoroutinefunction(getattr(comfy_class, function_name)) else ComfyNode
    return type(comfy_class.__name__, (base,), attrs)


def connection_types(node_type: type[Node]) -> set[str]:
    """Connection types a node uses that latentgraph does not know out of the box."""
    used = {part for inp in node_type.spec.inputs for part in inp.type.split(",")}
    used |= {out.type for out in node_type.spec.outputs}
    return used - CORE_CONNECTION_TYPES - WIDGET_TYPES - {ANY_TYPE}


class ComfyNodePack:
    """A plugin object wrapping one module that exports ``NODE_CLASS_MAPPINGS``.

    Custom connection types the classes use (``SIGMAS``, ``MY_TYPE`` …) become new connection
    types. A class that cannot be adapted is reported as an error of the pack; the others load.
    """

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self._adapted: list[type[ComfyNode] | RegistrationError] | None = None

    def __repr__(self) -> str:
        return f"ComfyNodePack({self.module.__name__})"

    def adapted(self) -> list[type[ComfyNode] | RegistrationError]:
        if self._adapted is None:
            mappings = getattr(self.module, "NODE_CLASS_MAPPINGS")
            if not isinstance(mappings, Mapping):
                raise TypeError("NODE_CLASS_MAPPINGS must be a dict of class_type → class")
            display = getattr(self.module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {}
            found: list[type[ComfyNode] | RegistrationError] = []
            for class_type, comfy_class in mappings.items():
                try:
                    found.append(adapt_comfy_class(str(class_type), comfy_class, str(display.get(class_type, ""))))
                except RegistrationError as exc:
                    found.append(exc)
            self._adapted = found
        return self._adapted

    @hookimpl
    def register_types(self) -> list[TypeSpec]:
        names: set[str] = set()
        for node_type in self.adapted():
            if isinstance(node_type, type):
                names |= connection_types(node_type)
        return [TypeSpec(n, description="custom type of a ComfyUI node pack") for n in sorted(names)]

    @hookimpl
    def register_nodes(self) -> Sequence[type[ComfyNode] | RegistrationError]:
        return self.adapted()
