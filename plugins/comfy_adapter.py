"""Runs ComfyUI custom-node modules (``NODE_CLASS_MAPPINGS`` / ``comfy_entrypoint``) as latentgraph nodes.

A V1 node class declares itself with class attributes (``INPUT_TYPES``, ``RETURN_TYPES``,
``FUNCTION`` …); :func:`adapt_comfy_class` reads them into a :class:`ComfyDeclaration`, as the V3
reader (:mod:`latentgraph.plugins.comfy_v3`) does from ``define_schema()``, and
:func:`build_node_type` makes an ordinary :class:`~latentgraph.Node` subclass of either, so
validation, caching, ``/object_info`` and error reporting treat it like any other node. Values already have ComfyUI's shapes (IMAGE
``[B,H,W,C]`` float, LATENT ``{"samples": tensor}``, CONDITIONING ``[(emb, extras)]``); MODEL, CLIP
and VAE are latentgraph's own objects, and ``comfy.*`` modules do not exist here.
What is and is not supported is listed in docs/plugins.md ("ComfyUI custom nodes").
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar

from latentgraph.context import ExecutionContext
from latentgraph.node import ANY_TYPE, CORE_CONNECTION_TYPES, WIDGET_TYPES, ExecutionBlocker, InputSpec, Node, NodeResult, NodeSpec, OutputSpec
from latentgraph.plugins.hookspecs import hookimpl
from latentgraph.registry import RegistrationError, TypeSpec
from latentgraph.settings import Settings

#: Modules of ComfyUI itself that custom nodes commonly import; named in import errors.
COMFY_INTERNAL_MODULES = frozenset(
    {"comfy", "comfy_extras", "comfy_execution", "comfy_api", "folder_paths", "nodes", "server",
     "execution", "node_helpers", "latent_preview", "model_management"}
)


class ComfyNode(Node):
    """Base of adapted ComfyUI nodes (V1 and V3): calls the class's function with the inputs.

    Lists, lazy inputs, expansion and async map onto the engine's own (``NodeSpec.input_is_list``,
    ``Out(is_list=)``, ``In(lazy=)``, ``NodeResult.expand``, ``async def execute``). V1 and V3
    differ only in what the function is called on and how hidden values reach it
    (:meth:`_target`, :meth:`_arguments`); one target serves a node's ``check_lazy_status``
    calls and its run.
    """

    comfy_class: ClassVar[type]
    #: The class's function that runs the node (V1 ``FUNCTION``; V3 ``execute``).
    function_name: ClassVar[str]
    #: Its lazy-input check, when it has one.
    lazy_check_name: ClassVar[str | None] = None
    #: Its ``IS_CHANGED``/``fingerprint_inputs`` and ``VALIDATE_INPUTS``/``validate_inputs``.
    fingerprint_name: ClassVar[str | None] = None
    validate_name: ClassVar[str | None] = None
    #: Hidden values it asked for: name → ComfyUI kind ("PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID", …).
    hidden_inputs: ClassVar[Mapping[str, str]] = {}
    #: Whether results may carry a subgraph to expand (V3 asks for it in its schema).
    allows_expand: ClassVar[bool] = True
    _target_obj: Any = None

    def _target(self, ctx: ExecutionContext) -> Any:
        """V1: a fresh instance of the class; hidden values arrive as keyword arguments."""
        if self._target_obj is None:
            self._target_obj = self.comfy_class()
        return self._target_obj

    def _arguments(self, ctx: ExecutionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        listed = self.spec.input_is_list
        for name, kind in self.hidden_inputs.items():
            value = hidden_value(kind, ctx)
            inputs[name] = [value] if listed else value
        return inputs

    def _call(self, ctx: ExecutionContext, inputs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return getattr(self._target(ctx), self.function_name), self._arguments(ctx, inputs)

    def _result(self, ctx: ExecutionContext, returned: Any) -> NodeResult:
        result = to_node_result(returned, len(self.spec.outputs))
        if result.expand is not None and not self.allows_expand:
            raise TypeError(f"{self.spec.name} returned a subgraph to expand, but its schema does not set enable_expand=True")
        if result.ui is not None:
            result.ui = render_ui(result.ui, ctx)
        return result

    def execute(self, ctx: ExecutionContext, **inputs: Any) -> NodeResult:
        function, arguments = self._call(ctx, inputs)
        return self._result(ctx, function(**arguments))

    def check_lazy_status(self, ctx: ExecutionContext, **inputs: Any) -> list[str]:
        if self.lazy_check_name is None:  # as in ComfyUI: lazy inputs nobody asks for stay None
            return []
        check = getattr(self._target(ctx), self.lazy_check_name)
        return list(_call_with(check, self._arguments(ctx, inputs)) or [])


class AsyncExecution:
    """Mixed in before a :class:`ComfyNode` base when the class's function is ``async def``:
    the node then runs on the engine's event loop."""

    async def execute(self, ctx: ExecutionContext, **inputs: Any) -> NodeResult:
        function, arguments = self._call(ctx, inputs)  # type: ignore[attr-defined]
        return self._result(ctx, await function(**arguments))  # type: ignore[attr-defined]


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
    if kind in ("AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"):
        return extra.get(kind.lower())  # sent by the client in extra_data, when it does
    return None  # DYNPROMPT: not available


def to_node_result(returned: Any, n_outputs: int) -> NodeResult:
    """Accept what a ComfyUI node function may return: a tuple/list, ``{"ui", "result",
    "expand"}``, or a V3 ``NodeOutput`` (``None`` is no outputs)."""
    ui = expand = None
    if hasattr(returned, "args") and hasattr(returned, "block_execution"):  # V3 NodeOutput
        ui, expand = returned.ui, returned.expand
        blocked = returned.block_execution
        returned = (ExecutionBlocker(blocked),) * n_outputs if blocked is not None else returned.args
    elif isinstance(returned, dict):
        ui = returned.get("ui")
        expand = returned.get("expand")
        returned = returned.get("result", ())
    if isinstance(returned, ExecutionBlocker):  # one blocker stands for every output (ComfyUI's rule)
        returned = (returned,) * n_outputs
    if returned is None:
        returned = ()
    if not isinstance(returned, (tuple, list)):
        raise TypeError(f"a node must return a tuple, a dict with 'result'/'ui' or a NodeOutput, got {type(returned).__name__}")
    outputs = tuple(returned)
    if len(outputs) != n_outputs and not (expand is not None and not outputs):
        raise TypeError(f"the node returned {len(outputs)} value(s) for its {n_outputs} outputs")
    return NodeResult(outputs, ui, expand)


def render_ui(ui: Any, ctx: ExecutionContext) -> dict[str, Any]:
    """A node's ``ui``: a dict, or a V3 ``ui.*`` object (previews write their files now).
    Tuples become lists, as they would in JSON, so list runs merge them like any ui value."""
    if hasattr(ui, "render"):
        ui = ui.render(ctx)
    elif hasattr(ui, "as_dict"):
        ui = ui.as_dict()
    if not isinstance(ui, Mapping):
        raise TypeError(f"ui must be a dict or a ui.* object, got {type(ui).__name__}")
    return {key: list(value) if isinstance(value, tuple) else value for key, value in ui.items()}


# -- one declaration, whichever schema it was written in ----------------------------------------
#: ``{"required": {name: (TYPE, options)}, "optional": {...}}``: V1's ``INPUT_TYPES()`` shape, which
#: the V3 reader also produces from ``define_schema()``.
DeclaredInputs = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class ComfyDeclaration:
    """What a ComfyUI node class declares, read once from a V1 class or a V3 schema; every
    adapted node type is built from one of these by :func:`build_node_type`."""

    class_type: str
    comfy_class: type
    inputs: DeclaredInputs
    #: Reads the inputs again (COMBO choices often list files on disk and must stay current).
    reread: Callable[[], DeclaredInputs]
    outputs: tuple[OutputSpec, ...]
    function_name: str
    hidden: Mapping[str, str] = field(default_factory=dict)
    display_name: str = ""
    category: str = "custom"
    description: str = ""
    output_node: bool = False
    input_is_list: bool = False
    lazy_check_name: str | None = None
    fingerprint_name: str | None = None
    validate_name: str | None = None
    allows_expand: bool = True


@dataclass(frozen=True)
class _LiveChoices:
    """COMBO choices declared again each time they are asked for; the first ones if that fails."""

    reread: Callable[[], DeclaredInputs]
    section: str
    name: str
    initial: tuple[str, ...]

    def __call__(self, settings: Settings, registry: Any) -> list[str]:
        try:
            kind, options = _split_declaration(self.reread()[self.section][self.name])
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


#: Options the adapter turns into InputSpec fields; the others go to the editor as they are.
_MAPPED_OPTIONS = frozenset({"default", "min", "max", "step", "tooltip", "lazy", "control_after_generate",
                             "multiline", "options"})


def _editor_options(options: Mapping[str, Any]) -> dict[str, Any] | None:
    """Editor hints (``forceInput``, ``display_name``, ``label_on`` …) passed to ``/object_info``."""
    plain = (str, int, float, bool, list, tuple, dict)
    extra = {k: v for k, v in options.items() if k not in _MAPPED_OPTIONS and isinstance(v, plain)}
    return extra or None


def _input_spec(reread: Callable[[], DeclaredInputs], section: str, name: str, declared: Any,
                unchecked: frozenset[str]) -> InputSpec:
    kind, options = _split_declaration(declared)
    common: dict[str, Any] = {"required": section == "required", "tooltip": str(options.get("tooltip") or ""),
                              "lazy": bool(options.get("lazy", False)), "editor_options": _editor_options(options)}
    choices = _combo_choices(kind, options)
    if choices is not None:
        default = options.get("default", choices[0] if choices else None)
        return InputSpec(name, "COMBO", choices=_LiveChoices(reread, section, name, choices), default=default,
                         control_after_generate=bool(options.get("control_after_generate", False)), **common)
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


def output_type(kind: Any) -> str:
    if isinstance(kind, (list, tuple)):
        return "COMBO"  # a node that outputs one of a list of choices
    if not isinstance(kind, str) or not kind:
        raise RegistrationError(f"entry {kind!r} is not a type name")
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
    """``IS_CHANGED``/``fingerprint_inputs``: a new value re-runs the node; NaN (never equal to
    itself) means always."""
    value = _call_with(getattr(cls.comfy_class, cls.fingerprint_name), inputs)
    if isinstance(value, float) and math.isnan(value):
        return None
    return repr(value)


def _check_inputs(cls: type[ComfyNode], settings: Settings, inputs: Mapping[str, Any]) -> list[str]:
    """``VALIDATE_INPUTS``/``validate_inputs``: ``True`` passes; anything else is the error shown."""
    verdict = _call_with(getattr(cls.comfy_class, cls.validate_name), inputs, {"input_types": {}})
    if verdict is True:
        return []
    if isinstance(verdict, str) and verdict:
        return [verdict]
    return [f"{cls.validate_name} of {cls.spec.name} returned {verdict!r}"]


def build_node_type(decl: ComfyDeclaration, base: type[ComfyNode] = ComfyNode) -> type[ComfyNode]:
    """The latentgraph node type for one declaration; raises RegistrationError naming the node."""
    validate = getattr(decl.comfy_class, decl.validate_name) if decl.validate_name else None
    unchecked = _parameters(validate)[0] if validate is not None else frozenset()
    try:
        inputs = [
            _input_spec(decl.reread, section, name, declared, unchecked)
            for section in ("required", "optional")
            for name, declared in (decl.inputs.get(section) or {}).items()
        ]
    except RegistrationError as exc:
        raise RegistrationError(f"ComfyUI node '{decl.class_type}': {exc}") from None
    spec = NodeSpec(
        name=decl.class_type,
        inputs=tuple(inputs),
        outputs=decl.outputs,
        display_name=decl.display_name,
        category=decl.category or "custom",
        description=decl.description,
        output_node=decl.output_node,
        # IS_CHANGED may say "changed" for identical inputs: the executor then asks fingerprint().
        deterministic=decl.fingerprint_name is None,
        input_is_list=decl.input_is_list,
    )
    attrs: dict[str, Any] = {
        "spec": spec,
        "comfy_class": decl.comfy_class,
        "function_name": decl.function_name,
        "lazy_check_name": decl.lazy_check_name,
        "fingerprint_name": decl.fingerprint_name,
        "validate_name": decl.validate_name,
        "hidden_inputs": dict(decl.hidden),
        "allows_expand": decl.allows_expand,
        "__module__": decl.comfy_class.__module__,
        "__doc__": decl.comfy_class.__doc__,
    }
    if decl.fingerprint_name is not None:
        attrs["fingerprint"] = classmethod(_fingerprint)
    if decl.validate_name is not None:
        attrs["check_inputs"] = classmethod(_check_inputs)
    function = getattr(decl.comfy_class, decl.function_name)
    bases = (AsyncExecution, base) if inspect.iscoroutinefunction(function) else (base,)
    return type(decl.comfy_class.__name__, bases, attrs)


# -- V1: class attributes ---------------------------------------------------------------------------
def adapt_comfy_class(class_type: str, comfy_class: Any, display_name: str = "") -> type[ComfyNode]:
    """Build the latentgraph node type for one V1 ComfyUI node class; raises RegistrationError."""
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
    try:
        hidden: dict[str, str] = {}
        for name, decl in (declared.get("hidden") or {}).items():
            kind = decl[0] if isinstance(decl, (tuple, list)) and decl else decl
            hidden[name] = str(kind)
        return_types = tuple(comfy_class.RETURN_TYPES or ())
        names = tuple(getattr(comfy_class, "RETURN_NAMES", None) or ())
        if len(output_is_list) > len(return_types):
            raise RegistrationError(f"OUTPUT_IS_LIST has {len(output_is_list)} entries for {len(return_types)} RETURN_TYPES")
        try:
            outputs = tuple(
                OutputSpec(output_type(kind), str(names[i]) if i < len(names) else "",
                           is_list=i < len(output_is_list) and output_is_list[i])
                for i, kind in enumerate(return_types)
            )
        except RegistrationError as exc:
            raise RegistrationError(f"RETURN_TYPES {exc}") from None
    except RegistrationError as exc:
        raise RegistrationError(f"ComfyUI node '{class_type}': {exc}") from None

    return build_node_type(ComfyDeclaration(
        class_type=class_type,
        comfy_class=comfy_class,
        inputs=declared,
        reread=comfy_class.INPUT_TYPES,
        outputs=outputs,
        function_name=function_name,
        hidden=hidden,
        display_name=display_name,
        category=str(getattr(comfy_class, "CATEGORY", "") or "custom"),
        description=str(getattr(comfy_class, "DESCRIPTION", "") or (comfy_class.__doc__ or "").strip()),
        output_node=bool(getattr(comfy_class, "OUTPUT_NODE", False)),
        input_is_list=bool(getattr(comfy_class, "INPUT_IS_LIST", False)),
        lazy_check_name="check_lazy_status" if callable(getattr(comfy_class, "check_lazy_status", None)) else None,
        fingerprint_name="IS_CHANGED" if getattr(comfy_class, "IS_CHANGED", None) is not None else None,
        validate_name="VALIDATE_INPUTS" if getattr(comfy_class, "VALIDATE_INPUTS", None) is not None else None,
    ))


def connection_types(node_type: type[Node]) -> set[str]:
    """Connection types a node uses that latentgraph does not know out of the box."""
    used = {part for inp in node_type.spec.inputs for part in inp.type.split(",")}
    used |= {out.type for out in node_type.spec.outputs}
    return used - CORE_CONNECTION_TYPES - WIDGET_TYPES - {ANY_TYPE}


class ComfyNodePack:
    """A plugin object wrapping one ComfyUI custom-node module.

    As in ComfyUI, ``NODE_CLASS_MAPPINGS`` (V1 or V3 classes) is read if the module has it,
    else the V3 extension ``comfy_entrypoint()`` lists the classes. Custom connection types the
    classes use (``SIGMAS``, ``MY_TYPE`` …) become new connection types. A class that cannot be
    adapted is reported as an error of the pack; the others load.
    """

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self._adapted: list[type[ComfyNode] | RegistrationError] | None = None

    def __repr__(self) -> str:
        return f"ComfyNodePack({self.module.__name__})"

    @staticmethod
    def is_pack(module: ModuleType) -> bool:
        return hasattr(module, "NODE_CLASS_MAPPINGS") or hasattr(module, "comfy_entrypoint")

    def _classes(self) -> list[tuple[str | None, Any, str]]:
        """``(class_type or None for "the schema's node_id", class, display name)``."""
        # imported here: the V3 reader builds on this module
        from latentgraph.plugins.comfy_v3 import extension_nodes

        mappings = getattr(self.module, "NODE_CLASS_MAPPINGS", None)
        if mappings is None:
            return [(None, node_cls, "") for node_cls in extension_nodes(self.module)]
        if not isinstance(mappings, Mapping):
            raise RegistrationError("NODE_CLASS_MAPPINGS must be a dict of class_type → class")
        display = getattr(self.module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {}
        return [(str(k), v, str(display.get(k, "") or "")) for k, v in mappings.items()]

    def adapted(self) -> list[type[ComfyNode] | RegistrationError]:
        if self._adapted is None:
            from latentgraph.plugins.comfy_v3 import adapt_v3_class, is_v3_class

            found: list[type[ComfyNode] | RegistrationError] = []
            try:
                classes = self._classes()
            except RegistrationError as exc:
                classes, found = [], [exc]
            for class_type, comfy_class, display in classes:
                try:
                    if class_type is None or is_v3_class(comfy_class):
                        found.append(adapt_v3_class(comfy_class, class_type, display))
                    else:
                        found.append(adapt_comfy_class(str(class_type), comfy_class, display))
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
