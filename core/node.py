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
    input_by_name: Mapping[str, InputSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_by_name", {i.name: i for i in self.inputs})

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


class Node:
    """Base class of every node type. Instances are created per execution and hold no state."""

    spec: ClassVar[NodeSpec]

    #: Set by the plugin host: the plugin that registered this type (for error messages).
    plugin_name: ClassVar[str] = "latentgraph"

    def execute(self, ctx: ExecutionContext, **inputs: Any) -> tuple[Any, ...] | NodeResult:
        raise NotImplementedError

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


def Out(type: str, name: str = "") -> OutputSpec:  # noqa: N802
    return OutputSpec(type=type, name=name)
