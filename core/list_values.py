"""Values along links when a node outputs a list (ComfyUI's list outputs), and the helpers that
map a node over list inputs and check list outputs."""

from __future__ import annotations

import hashlib
from typing import Any

_blake2b = hashlib.blake2b
_SCALARS = (int, float, str, bool, type(None))


class NodeOutputError(Exception):
    """A node returned something that does not match its declared outputs."""


# Failure reports name an exception by module and class ("latentgraph.executor.NodeOutputError");
# it is re-exported there, and keeps that name.
NodeOutputError.__module__ = "latentgraph.executor"


class ListValue(tuple):
    """A list flowing along one link: each item is one value (ComfyUI's list outputs).

    ``ids`` names each item for the per-item cache: a digest of the item itself for plain values
    (int, float, str, bool, None), else of where it was made (node key, call, output, position).
    A list of one item is never wrapped: it is that item.
    """

    ids: tuple[bytes, ...]

    def __new__(cls, items: Any, ids: Any = ()) -> ListValue:
        self = super().__new__(cls, items)
        self.ids = tuple(ids)
        return self

    def __repr__(self) -> str:
        return f"ListValue({list(self)!r})"


def _content_id(value: Any) -> bytes | None:
    if type(value) in _SCALARS:
        return _blake2b(f"{type(value).__name__}:{value!r}".encode(), digest_size=16).digest()
    return None


def _as_list(items: list[Any], ids: list[bytes]) -> Any:
    """One item is the item itself; otherwise a :class:`ListValue`."""
    if len(items) == 1:
        return items[0]
    return ListValue(items, ids)


def _items(kwargs: dict[str, Any], lists: dict[str, ListValue] | None = None, length: int | None = None):
    """The keyword arguments of each call of a node mapped over its list inputs."""
    if lists is None:
        lists = {k: v for k, v in kwargs.items() if type(v) is ListValue}
        length = max((len(v) for v in lists.values()), default=1)
    for i in range(length or 0):
        item = dict(kwargs)
        for k, v in lists.items():
            if len(v):
                item[k] = v[i if i < len(v) else -1]
        yield item


def _listed(value: Any) -> list[Any]:
    if type(value) is ListValue:
        return list(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    raise NodeOutputError(f"an output declared as a list must be a list, got {type(value).__name__}")


def merge_outputs(output_is_list: tuple[bool, ...], results: list[tuple[tuple, dict | None, Any]], mapped: bool,
                  origins: list[bytes]) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
    """ComfyUI's merge of a node's calls: a list output's lists are joined; other outputs collect
    one value per call (a list when the node was mapped). Items are named by content, else by
    their call's ``origins`` digest, output and position."""
    uis = [ui for _, ui, _ in results if ui]
    ui: dict[str, Any] | None
    if not uis:
        ui = None
    elif len(results) == 1:
        ui = uis[0]
    else:
        ui = {k: [y for u in uis for y in (u.get(k) or ())] for k in uis[0]}
    merged = []
    for k, is_list in enumerate(output_is_list):
        if not is_list and not mapped:
            merged.append(results[0][0][k])
            continue
        items: list[Any] = []
        ids: list[bytes] = []
        for i, (outs, _, _) in enumerate(results):
            origin = origins[i]
            value = outs[k]
            if is_list:
                for j, x in enumerate(_listed(value)):
                    items.append(x)
                    ids.append(_content_id(x) or _blake2b(origin + bytes((k % 256,)) + j.to_bytes(8, "little"), digest_size=16).digest())
            else:
                items.append(value)
                ids.append(_content_id(value) or _blake2b(origin + bytes((k % 256,)), digest_size=16).digest())
        merged.append(_as_list(items, ids))
    return tuple(merged), ui
