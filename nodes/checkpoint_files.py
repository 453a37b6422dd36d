"""Reading weight files safely: safetensors lazily, pickles only as plain tensors.

A ``.ckpt``/``.pt`` is a pickle, and unpickling can run arbitrary code. We only ever call
``torch.load(weights_only=True)``; a file that needs more than tensors, dicts and numbers is
refused with a message saying so, never executed.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from latentgraph.errors import LatentgraphError

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class CheckpointError(LatentgraphError):
    """A model file we cannot use: unknown architecture, corrupt, truncated or unsafe."""


@dataclass
class WeightFile:
    """The tensors of one file, read on demand (shapes without loading, subsets by prefix)."""

    path: Path
    keys: list[str]
    metadata: dict[str, str] = field(default_factory=dict)
    #: Everything, for pickles (already in memory); None for safetensors (read lazily).
    _tensors: dict[str, torch.Tensor] | None = None
    _shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __contains__(self, key: str) -> bool:
        return key in self._shapes

    def shape(self, key: str) -> tuple[int, ...] | None:
        return self._shapes.get(key)

    def with_prefix(self, prefix: str) -> list[str]:
        return [k for k in self.keys if k.startswith(prefix)]

    def has_prefix(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.keys)

    def get(self, key: str) -> torch.Tensor:
        return self.tensors([key])[key]

    def tensors(self, keys: Iterable[str]) -> dict[str, torch.Tensor]:
        """Load some tensors (CPU); the rest of a multi-GB file stays on disk."""
        keys = list(keys)
        if self._tensors is not None:
            return {k: self._tensors[k] for k in keys}
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt", device="cpu") as f:
                return {k: f.get_tensor(k) for k in keys}
        except Exception as exc:  # the file changed under us or is damaged past its header
            raise CheckpointError(f"cannot read tensors from {self.path.name}: {exc}") from exc

    def prefixed(self, *prefixes: str) -> dict[str, torch.Tensor]:
        return self.tensors(k for k in self.keys if k.startswith(prefixes))


def open_weights(path: str | Path) -> WeightFile:
    """Open a safetensors or pickle weight file; raise :class:`CheckpointError` with the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _open_safetensors(path)
    if suffix in PICKLE_SUFFIXES:
        return _open_pickle(path)
    raise CheckpointError(
        f"{path.name}: unsupported file type {suffix!r}; use {', '.join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)}"
    )


def _open_safetensors(path: Path) -> WeightFile:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            keys = list(f.keys())
            metadata = dict(f.metadata() or {})
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
    except Exception as exc:
        raise CheckpointError(
            f"{path.name} is not a readable safetensors file (truncated or corrupt download?): {exc}"
        ) from exc
    return WeightFile(path, keys, metadata, None, shapes)


def _open_pickle(path: Path) -> WeightFile:
    try:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            data = torch.load(str(path), map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refusing to load {path.name}: it contains Python objects, not just tensors, and unpickling "
            f"them could run arbitrary code ({_unsafe_global(exc)}). Only plain-tensor checkpoints are loaded; "
            f"convert it to .safetensors with a tool you trust."
        ) from None
    except Exception as exc:
        raise CheckpointError(f"{path.name} is not a readable checkpoint (truncated or corrupt?): {_first_line(exc)}") from None
    tensors = _flatten_state_dict(data)
    if not tensors:
        raise CheckpointError(f"{path.name} holds no tensors")
    return WeightFile(path, list(tensors), {}, tensors, {k: tuple(v.shape) for k, v in tensors.items()})


def _flatten_state_dict(data: object) -> dict[str, torch.Tensor]:
    """Lightning checkpoints wrap weights in ``{"state_dict": …}``; keep only tensors."""
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}


def _unsafe_global(exc: BaseException) -> str:
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return f"it wants {found.group(1)}" if found else "it is not a plain tensor pickle"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.lower().startswith(("weights only load failed", "please file an issue")):
            return line.split(". ")[0][:200]
    return text.splitlines()[0][:200] if text else type(exc).__name__
