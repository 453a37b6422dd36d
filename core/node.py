"""The node contract: how built-in and third-party nodes declare themselves and run.

A node type is a subclass of :class:`Node` with a :class:`NodeSpec` in ``spec``; everything the
engine, the validator, ``/object_info`` and the editor need is read from that one declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from latentgraph.context import ExecutionContext
    from latentgraph.registry import NodeRegistry
    from latentgraph.settings import Settings

#: Types whose values are literals in the workflow (widgets in an editor).
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
#: Connection-only types every installation knows; plugins may add more.
CORE_CONNECTION_TYPES = frozenset(
    {"MODEL", "CLIP", "VAE", "CONDITIONING", "LATENT", "IMAGE", "MASK", "LORA", "UPSCALE_MODEL"}
)
#: Accepts or produces any type.
ANY_TYPE = "*"

#: Fixed choices, or a function of the settings and registry (files on disk, registered samplers).
Choices = Sequence[str] | Callable[["Settings", "NodeRegistry"], Sequence[str]]


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One named input of a node type: a widget value or a connection."""

    name: str
    type: str
    required: bool = True
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: Choices | None = None
    multiline: bool = False
    tooltip: str = ""
    #: For INT seeds: the editor shows a "control after generate" widget after this one.
    control_after_generate: bool = False
    #: COMBO only: False lets values outside the listed choices through to ``check_inputs``
    #: (e.g. ComfyUI's ``"name.png [output]"`` annotations).
    strict_choices: bool = True
    #: Extra editor options passed through to ``/object_info`` (e.g. ``{"image_upload": True}``).
    editor_options: Mapping[str, Any] | None = None
    #: Evaluated only when the node asks for it (``Node.check_lazy_status``); until then the
    #: node sees ``None``. Still linked in the workflow (as in ComfyUI).
    lazy: bool = False

    @property
    def is_widget(self) -> bool:
        return self.type in WIDGET_TYPES

    def resolve_choices(self, settings: Settings, registry: NodeRegistry) -> list[str]:
        """COMBO choices; a callable is evaluated now (e.g. the files on disk)."""
        if self.choices is None:
            return []
        if callable(self.choices):
            return list(self.choices(settings, registry))
        return list(self.choices)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    type: str
    name: str = ""
    #: The node returns a Python list for this output; each item is one value downstream, and a
    #: node after it runs once per item (ComfyUI's ``OUTPUT_IS_LIST``).
    is_list: bool = False

    @property
    def label(self) -> str:
        return self.name or self.type


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """Everything the engine knows about a node type, declared once."""

    name: str
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()
    display_name: str = ""
    category: str = "utils"
    description: str = ""
    version: str = "1"
    output_node: bool = False
    #: False for nodes whose result can change with identical inputs (random, reads a changing
    #: file). Such a node is never served from cache unless ``Node.fingerprint`` returns a value.
    deterministic: bool = True
    #: Other class names that resolve to this node type (e.g. ComfyUI's names).
    aliases: tuple[str, ...] = ()
    #: Older forms of a node this type now runs: ``(class_type, inputs that only the old form
    #: has)``. A workflow node of that class with all those inputs resolves to this type.
    legacy_forms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: The node receives every input as a whole list (one call), instead of being run once per
    #: item of its list inputs (ComfyUI's ``INPUT_IS_LIST``).
    input_is_list: bool = False
    input_by_name: Mapping[str, InputSpec] = field(init=False, repr=False, compare=False)
    #: Names of the lazy inputs (derived).
    lazy_inputs: frozenset[str] = field(init=False, repr=False, compare=False)
    #: Per output: declared as a list (derived; ``/object_info``'s ``output_is_list``).
    output_is_list: tuple[bool, ...] = field(init=False, repr=False, compare=False)
    any_list_output: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_by_name", {i.name: i for i in self.inputs})
        object.__setattr__(self, "lazy_inputs", frozenset(i.name for i in self.inputs if i.lazy))
        object.__setattr__(self, "output_is_list", tuple(o.is_list for o in self.outputs))
        object.__setattr__(self, "any_list_output", any(self.output_is_list))

    @property
    def title(self) -> str:
        return self.display_name or self.name

    @property
    def widget_inputs(self) -> tuple[InputSpec, ...]:
        return tuple(i for i in self.inputs if i.is_widget)


@dataclass(slots=True)
class NodeResult:
    """What ``Node.execute`` returns when it has more to say than its output values."""

    outputs: tuple[Any, ...] = ()
    #: Shown to the user: e.g. ``{"images": [{"filename", "subfolder", "type"}]}``.
    ui: dict[str, Any] | None = None
    #: Node expansion: a subgraph (API-format dict or :class:`GraphBuilder`) run in this node's
    #: place; ``outputs`` may then hold links ``[local_id, output]`` into it (``ref.out(i)``).
    expand: Any = None


@dataclass(frozen=True, slots=True)
class ExecutionBlocker:
    """An output value that stops the nodes reading it (ComfyUI's ``ExecutionBlocker``).

    A node that receives one as any input does not run: each of its outputs is a blocker too, so
    everything after it is skipped (an output node saves nothing). With a ``message`` the node
    that receives it fails with "Execution Blocked: <message>", naming that node; ``None``
    blocks silently. Prefer lazy inputs where a node decides which branch runs."""

    message: str | None = None


class Node:
    """Base class of every node type. Instances are created per execution and hold no state."""

    spec: ClassVar[NodeSpec]

    #: Set by the plugin host: the plugin that registered this type (for error messages).
    plugin_name: ClassVar[str] = "latentgraph"

    def execute(self, ctx: ExecutionContext, **inputs: Any) -> tuple[Any, ...] | NodeResult:
        """Run the node. May be ``async def``: it then runs on the engine's event loop."""
        raise NotImplementedError

    def check_lazy_status(self, ctx: ExecutionContext, **inputs: Any) -> list[str]:
        """Names of lazy inputs still needed; called before ``execute`` with the inputs known so
        far (a lazy input not evaluated yet is ``None``) and again after those are evaluated,
        until it asks for nothing new. The default asks for every lazy input (eager)."""
        return [name for name in self.spec.lazy_inputs if inputs.get(name) is None]

    @classmethod
    def fingerprint(cls, settings: Settings, inputs: Mapping[str, Any]) -> str | None:
        """A string that changes when the node's hidden dependencies change (file mtime, …).

        Mixed into the cache key. For non-deterministic nodes, ``None`` means "never cached".
        """
        return None

    @classmethod
    def check_inputs(cls, settings: Settings, inputs: Mapping[str, Any]) -> list[str | tuple[str, str]]:
        """Extra validation of literal inputs before anything runs.

        Returns problems: a message, or ``(input_name, message)`` to name the input at fault.
        """
        return []


def In(name: str, type: str, **kw: Any) -> InputSpec:  # noqa: N802 - reads like a declaration
    """Shorthand for :class:`InputSpec`."""
    return InputSpec(name=name, type=type, **kw)


def Out(type: str, name: str = "", *, is_list: bool = False) -> OutputSpec:  # noqa: N802
    return OutputSpec(type=type, name=name, is_list=is_list)


class GraphRef:
    """A node added to a :class:`GraphBuilder`; ``out(i)`` links to its output ``i``."""

    __slots__ = ("id", "class_type", "inputs")

    def __init__(self, id: str, class_type: str, inputs: dict[str, Any]) -> None:
        self.id, self.class_type, self.inputs = id, class_type, inputs

    def out(self, index: int) -> list[Any]:
        return [self.id, index]

    def __getitem__(self, index: int) -> list[Any]:
        return [self.id, index]

    def set_input(self, name: str, value: Any) -> None:
        if value is None:
            self.inputs.pop(name, None)
        else:
            self.inputs[name] = value


class GraphBuilder:
    """Builds the subgraph a node returns to expand into (``NodeResult(outputs, expand=g)``).

    Ids are local ("1", "2", … or your own): the engine prefixes them with the expanding node's
    id and call index (``"7.0.1"``), so they are stable from run to run and never collide. A
    link may also name a node of the enclosing workflow by its id.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, GraphRef] = {}
        self._next = 1

    def node(self, class_type: str, id: str | None = None, **inputs: Any) -> GraphRef:
        if id is None:
            id = str(self._next)
            self._next += 1
        if id in self.nodes:
            return self.nodes[id]
        ref = self.nodes[id] = GraphRef(id, class_type, {k: v for k, v in inputs.items() if v is not None})
        return ref

    def lookup_node(self, id: str) -> GraphRef | None:
        return self.nodes.get(id)

    def finalize(self) -> dict[str, Any]:
        return {nid: {"class_type": ref.class_type, "inputs": dict(ref.inputs)} for nid, ref in self.nodes.items()}
