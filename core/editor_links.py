"""Reading the links of an editor-format workflow, whichever of the editor's JSON forms they take.

The editor has saved links as ``[id, from_node, from_slot, to_node, to_slot, type]`` arrays and,
newer, as objects ``{id, origin_id, origin_slot, target_id, target_slot, type}``, as a list or keyed
by id. Everything downstream sees one :class:`EditorLink` shape, with ids as strings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class EditorLink:
    id: str
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int
    type: str = "*"


def as_int(value: Any) -> int | None:
    """An id, slot or mode read from editor JSON as an int; None for what is not one.

    Ints, finite floats (JavaScript writes ``2.0``) and numeric strings convert; ``Infinity``,
    ``NaN``, booleans, huge digit strings and anything else give None, so every caller reports
    the entry instead of raising.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= 30:
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def parse_links(raw: Any) -> tuple[dict[str, EditorLink], list[str]]:
    """Links in array form, object form, or an object keyed by id; returns (links, problems)."""
    items: Iterable[Any]
    if raw is None:
        items = []
    elif isinstance(raw, dict):
        items = raw.values()
    elif isinstance(raw, list):
        items = raw
    else:
        return {}, [f"'links' must be a list, got {type(raw).__name__}"]
    links: dict[str, EditorLink] = {}
    problems: list[str] = []
    for item in items:
        link = _parse_link(item)
        if link is None:
            problems.append(f"unreadable link entry {str(item)[:80]}")
        else:
            links[link.id] = link
    return links, problems


def _parse_link(item: Any) -> EditorLink | None:
    if isinstance(item, (list, tuple)) and len(item) >= 5:
        lid, origin, oslot, target, tslot = item[:5]
        ltype = item[5] if len(item) > 5 else "*"
    elif isinstance(item, dict):
        try:
            lid, origin, oslot = item["id"], item["origin_id"], item["origin_slot"]
            target, tslot, ltype = item["target_id"], item["target_slot"], item.get("type", "*")
        except KeyError:
            return None
    else:
        return None
    origin_slot, target_slot = as_int(oslot), as_int(tslot)
    if lid is None or origin is None or target is None or origin_slot is None or target_slot is None:
        return None
    return EditorLink(str(lid), str(origin), origin_slot, str(target), target_slot, str(ltype))


def types_compatible(a: str, b: str) -> bool:
    """Whether two socket types may connect: equal, a wildcard, or sharing one of a ``"A,B"`` list."""
    if a == b or a in ("*", "") or b in ("*", ""):
        return True
    return bool(set(a.split(",")) & set(b.split(",")))


def input_name(inp: Mapping[str, Any]) -> str:
    """The node input an ``inputs[]`` entry stands for (a widget turned socket names its widget)."""
    widget = inp.get("widget")
    if isinstance(widget, dict) and widget.get("name"):
        return str(widget["name"])
    return str(inp.get("name") or "")
