"""Measures how many bytes a cached value holds on each device type (tensors, models, …).

Measured, not guessed: tensor storages are counted once each, module parameters and buffers
included. A :class:`Footprint` names the storages, so a cache can count a storage shared by
several values (a LoRA-patched model clone shares most of its base model) once overall. Torch is
only consulted if it has been imported (no tensor can exist otherwise).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable
from typing import Any

_SCALARS = (int, float, str, bool, bytes, type(None))
_MAX_DEPTH = 6


#: Identifies one tensor storage while it is alive: (device type, device index, data pointer).
StorageKey = tuple[str, int, int]


@dataclasses.dataclass(frozen=True)
class Footprint:
    """The bytes a value holds: its tensor storages by key, plus sizes that cannot be keyed
    (``cache_nbytes()`` of custom objects, meta tensors)."""

    storages: dict[StorageKey, int] = dataclasses.field(default_factory=dict)
    unkeyed: dict[str, int] = dataclasses.field(default_factory=dict)

    def by_device(self) -> dict[str, int]:
        sizes = dict(self.unkeyed)
        for (device, _, _), n in self.storages.items():
            sizes[device] = sizes.get(device, 0) + n
        return sizes


#: Given a module, the tensors that hold its weights for good (a model memory manager answers with
#: the masters, so device copies that come and go are not counted as the value's own bytes).
ModuleWeights = Callable[[Any], Iterable[Any]]


def footprint(value: Any, module_weights: ModuleWeights | None = None) -> Footprint:
    fp = Footprint()
    if type(value) is tuple and all(type(v) in _SCALARS for v in value):
        return fp  # fast path: the common case of small literal outputs
    _walk(value, fp, set(), sys.modules.get("torch"), 0, module_weights)
    return fp


def copy_nbytes(t: Any) -> int:
    """Bytes a compact copy of ``t`` takes (a model's weight copied to a device), whatever its storage."""
    return int(t.numel() * t.element_size())


def nbytes_by_device(value: Any) -> dict[str, int]:
    return footprint(value).by_device()


def _walk(value: Any, fp: Footprint, seen: set[int], torch: Any, depth: int, module_weights: ModuleWeights | None) -> None:
    if type(value) in _SCALARS or depth > _MAX_DEPTH or id(value) in seen:
        return
    seen.add(id(value))
    if torch is not None:
        if isinstance(value, torch.Tensor):
            _add_tensor(value, fp)
            return
        if isinstance(value, torch.nn.Module):
            tensors = module_weights(value) if module_weights else (*value.parameters(), *value.buffers())
            for t in tensors:
                _add_tensor(t, fp)
            return
    custom = getattr(value, "cache_nbytes", None)
    if callable(custom) and not isinstance(value, type):
        for device, n in custom().items():
            fp.unkeyed[device] = fp.unkeyed.get(device, 0) + int(n)
        return
    if isinstance(value, dict):
        for v in value.values():
            _walk(v, fp, seen, torch, depth + 1, module_weights)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            _walk(v, fp, seen, torch, depth + 1, module_weights)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _walk(getattr(value, f.name, None), fp, seen, torch, depth + 1, module_weights)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        for v in vars(value).values():
            _walk(v, fp, seen, torch, depth + 1, module_weights)


def _add_tensor(t: Any, fp: Footprint) -> None:
    device = t.device.type
    try:
        storage = t.untyped_storage()
        ptr, n = storage.data_ptr(), storage.nbytes()
    except (RuntimeError, NotImplementedError):  # meta or sparse tensors
        ptr, n = 0, t.numel() * t.element_size()
    if ptr:
        index = t.device.index
        fp.storages[(device, -1 if index is None else index, ptr)] = int(n)
    elif n:
        fp.unkeyed[device] = fp.unkeyed.get(device, 0) + int(n)
