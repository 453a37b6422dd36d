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
