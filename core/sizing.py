"""Measures how many bytes a cached value holds on each device type (tensors, models, …).

Measured, not guessed: tensor storages are counted once each, module parameters and buffers
included. Torch is only consulted if it has been imported (no tensor can exist otherwise).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

_SCALARS = (int, float, str, bool, bytes, type(None))
_MAX_DEPTH = 6


def nbytes_by_device(value: Any) -> dict[str, int]:
    sizes: dict[str, int] = {}
    if type(value) is tuple and all(type(v) in _SCALARS for v in value):
        return sizes  # fast path: the common case of small literal outputs
    torch = sys.modules.get("torch")
    _walk(value, sizes, set(), torch, 0)
    return sizes


def _walk(value: Any, sizes: dict[str, int], seen: set[int], torch: Any, depth: int) -> None:
    if type(value) in _SCALARS or depth > _MAX_DEPTH or id(value) in seen:
        return
    seen.add(id(value))
    if torch is not None:
        if isinstance(value, torch.Tensor):
            _add_tensor(value, sizes, seen)
            return
        if isinstance(value, torch.nn.Module):
            for t in (*value.parameters(), *value.buffers()):
                _add_tensor(t, sizes, seen)
            return
    custom = getattr(value, "cache_nbytes", None)
    if callable(custom) and not isinstance(value, type):
        for device, n in custom().items():
            sizes[device] = sizes.get(device, 0) + int(n)
        return
    if isinstance(value, dict):
        for v in value.values():
            _walk(v, sizes, seen, torch, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            _walk(v, sizes, seen, torch, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _walk(getattr(value, f.name, None), sizes, seen, torch, depth + 1)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        for v in vars(value).values():
            _walk(v, sizes, seen, torch, depth + 1)


def _add_tensor(t: Any, sizes: dict[str, int], seen: set[int]) -> None:
    try:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        n = storage.nbytes()
    except (RuntimeError, NotImplementedError):  # meta or sparse tensors
        key, n = id(t), t.numel() * t.element_size()
    if key and -key in seen:
        return
    seen.add(-key)
    device = t.device.type
    sizes[device] = sizes.get(device, 0) + int(n)
