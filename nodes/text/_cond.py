"""Small helpers shared by the conditioning nodes of this package."""

from __future__ import annotations

from typing import Any

from latentgraph.errors import NodeInputError


def check_conditioning(value: Any, name: str) -> list:
    if not isinstance(value, list) or not all(isinstance(e, (tuple, list)) and len(e) == 2 for e in value):
        raise NodeInputError(name, f"expected CONDITIONING, got {type(value).__name__}")
    return value


def with_values(conditioning: list, values: dict[str, Any], append: bool = False) -> list:
    """Each entry with ``values`` set in a copy of its extras (``append``: lists are extended)."""
    out = []
    for emb, extras in conditioning:
        extras = dict(extras)
        for key, value in values.items():
            if append and isinstance(extras.get(key), list):
                value = [*extras[key], *value]
            extras[key] = value
        out.append((emb, extras))
    return out
