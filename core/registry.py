"""The registry of node types, connection types and extension tables of one engine.

Filled by the plugin host from pluggy hooks; an object passed around, never a module global.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from latentgraph.node import ANY_TYPE, CORE_CONNECTION_TYPES, WIDGET_TYPES, InputSpec, Node, NodeSpec


class RegistrationError(ValueError):
    """A node or type declaration the registry refuses."""


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """A connection type; ``accepts`` lists other output types that may feed an input of it."""

    name: str
    accepts: tuple[str, ...] = ()
    description: str = ""


@dataclass
class NodeRegistry:
    node_types: dict[str, type[Node]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    #: class_type → [(inputs only an older form has, type that runs it)] (``NodeSpec.legacy_forms``).
    legacy: dict[str, list[tuple[frozenset[str], str]]] = field(default_factory=dict)
    types: dict[str, TypeSpec] = field(default_factory=dict)
    #: Extension tables filled by ``register_samplers`` / ``register_schedulers`` /
    #: ``register_model_formats``: name → definition, owned by the nodes that use them.
    samplers: dict[str, Any] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)
    model_formats: dict[str, Any] = field(default_factory=dict)
    #: class type → name of the plugin that registered it.
    owners: dict[str, str] = field(default_factory=dict)
    #: Counts registrations: a validation remembered at one generation is stale at another.
    generation: int = 0

    def __post_init__(self) -> None:
        for name in sorted(CORE_CONNECTION_TYPES | WIDGET_TYPES):
            self.types.setdefault(name, TypeSpec(name))

    # -- node types -------------------------------------------------------------------------
    def get(self, class_type: str, inputs: Iterable[str] | None = None) -> type[Node] | None:
        """The node type of ``class_type``; with the node's ``inputs``, older forms of a node are
        recognised (see ``NodeSpec.legacy_forms``)."""
        if inputs is not None and class_type in self.legacy:
            names = set(inputs)
            for markers, target in self.legacy[class_type]:
                if markers <= names:
                    return self.node_types.get(target)
        found = self.node_types.get(class_type)
        if found is None and class_type in self.aliases:
            found = self.node_types.get(self.aliases[class_type])
        return found

    def __contains__(self, class_type: str) -> bool:
        return self.get(class_type) is not None

    def canonical_name(self, class_type: str) -> str:
        return self.aliases.get(class_type, class_type)

    def register(self, node_cls: type[Node], plugin: str = "latentgraph") -> None:
        spec = self.check_node(node_cls)
        for name in (spec.name, *spec.aliases):
            if name in self.node_types or name in self.aliases:
                owner = self.owners.get(self.canonical_name(name), "?")
                raise RegistrationError(f"node type '{name}' is already registered by plugin '{owner}'")
        self.node_types[spec.name] = node_cls
        for alias in spec.aliases:
            self.aliases[alias] = spec.name
        for old_class, markers in spec.legacy_forms:
            self.legacy.setdefault(old_class, []).append((frozenset(markers), spec.name))
        self.owners[spec.name] = plugin
        self.generation += 1

    def register_all(self, node_types: Iterable[type[Node]], plugin: str = "latentgraph") -> None:
        for node_cls in node_types:
            self.register(node_cls, plugin)

    def check_node(self, node_cls: Any) -> NodeSpec:
        """Refuse declarations the engine could not run or describe."""
        if not (isinstance(node_cls, type) and issubclass(node_cls, Node)):
            raise RegistrationError(f"{node_cls!r} is not a latentgraph.Node subclass")
        spec = getattr(node_cls, "spec", None)
        if not isinstance(spec, NodeSpec):
            raise RegistrationError(f"{node_cls.__name__} has no NodeSpec in 'spec'")
        if not spec.name or not isinstance(spec.name, str):
            raise RegistrationError(f"{node_cls.__name__}: node name must be a non-empty string")
        seen: set[str] = set()
        for inp in spec.inputs:
            if not isinstance(inp, InputSpec) or not inp.name:
                raise RegistrationError(f"{spec.name}: inputs must be named InputSpec objects")
            if inp.name in seen:
                raise RegistrationError(f"{spec.name}: input '{inp.name}' declared twice")
            seen.add(inp.name)
            for part in inp.type.split(","):
                if part != ANY_TYPE and part not in self.types:
                    raise RegistrationError(f"{spec.name}: input '{inp.name}' has unknown type '{part}'")
            if inp.type == "COMBO" and inp.choices is None:
                raise RegistrationError(f"{spec.name}: COMBO input '{inp.name}' has no choices")
        for out in spec.outputs:
            if out.type != ANY_TYPE and out.type not in self.types:
                raise RegistrationError(f"{spec.name}: output has unknown type '{out.type}'")
        if type(node_cls).__dict__.get("execute") is None and node_cls.execute is Node.execute:
            raise RegistrationError(f"{spec.name}: no execute() method")
        return spec

    # -- connection types -------------------------------------------------------------------
    def register_type(self, spec: TypeSpec) -> None:
        if spec.name in self.types:
            raise RegistrationError(f"type '{spec.name}' is already registered")
        self.types[spec.name] = spec
        self.generation += 1

    def compatible(self, output_type: str, input_type: str) -> bool:
        """Whether an output of ``output_type`` may feed an input declared as ``input_type``."""
        if output_type == input_type or ANY_TYPE in (output_type, input_type):
            return True
        for want in input_type.split(","):
            if want == output_type:
                return True
            spec = self.types.get(want)
            if spec is not None and output_type in spec.accepts:
                return True
            if want == "COMBO" and output_type == "STRING":
                return True
        return False
