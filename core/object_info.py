"""Node descriptions in the shape of ComfyUI's ``GET /object_info`` (editors read this)."""

from __future__ import annotations

from typing import Any

from latentgraph.node import InputSpec, Node
from latentgraph.registry import NodeRegistry
from latentgraph.settings import Settings


def describe_input(inp: InputSpec, settings: Settings, registry: NodeRegistry) -> list[Any]:
    options: dict[str, Any] = {}
    for key in ("default", "min", "max", "step"):
        value = getattr(inp, key)
        if value is not None:
            options[key] = value
    if inp.multiline:
        options["multiline"] = True
    if inp.tooltip:
        options["tooltip"] = inp.tooltip
    if inp.control_after_generate:
        options["control_after_generate"] = True
    if inp.lazy:
        options["lazy"] = True
    if inp.editor_options:
        options.update(inp.editor_options)
    if inp.type == "COMBO":
        try:
            choices = inp.resolve_choices(settings, registry)
        except Exception:  # a broken choice source must not break the whole listing
            choices = []
        return [choices, options]
    return [inp.type, options] if options else [inp.type]


#: The plugin name built-in nodes are registered under.
BUILTIN_OWNER = "latentgraph"


def editor_module(node_type: type[Node], owner: str) -> str:
    """``python_module`` as ComfyUI's editor reads it: ``nodes…`` is a core node (badged as
    such), ``custom_nodes.<pack>`` a plugin's; anything else would be badged "unknown"."""
    if owner in ("", BUILTIN_OWNER):
        module = node_type.__module__
        rest = module.removeprefix("latentgraph.nodes").lstrip(".") if module.startswith("latentgraph.nodes") else ""
        return f"nodes.{rest}" if rest else "nodes"
    return f"custom_nodes.{owner}"


def describe_node(node_type: type[Node], settings: Settings, registry: NodeRegistry, name: str | None = None) -> dict[str, Any]:
    spec = node_type.spec
    required = {i.name: describe_input(i, settings, registry) for i in spec.inputs if i.required}
    optional = {i.name: describe_input(i, settings, registry) for i in spec.inputs if not i.required}
    info: dict[str, Any] = {
        "input": {"required": required, "optional": optional},
        "input_order": {"required": list(required), "optional": list(optional)},
        "output": [o.type for o in spec.outputs],
        "output_is_list": list(spec.output_is_list),
        "output_name": [o.label for o in spec.outputs],
        "name": name or spec.name,
        "display_name": spec.title,
        "description": spec.description,
        "python_module": editor_module(node_type, registry.owners.get(spec.name, "")),
        "category": spec.category,
        "output_node": spec.output_node,
        "version": spec.version,
        "deterministic": spec.deterministic,
        "plugin": registry.owners.get(spec.name, ""),
        "module": node_type.__module__,
    }
    if name and name != spec.name:
        info["alias_of"] = spec.name
    return info


def object_info(registry: NodeRegistry, settings: Settings, class_type: str | None = None) -> dict[str, Any]:
    """Every node type (aliases included, marked ``alias_of``), or just ``class_type``."""
    names = [class_type] if class_type else [*registry.node_types, *registry.aliases]
    out = {}
    for name in names:
        node_type = registry.get(name)
        if node_type is not None:
            out[name] = describe_node(node_type, settings, registry, name)
    return out
