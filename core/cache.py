"""Merkle-keyed result cache with a byte budget per device type and LRU eviction.

Keys come from the executor (node class, version, literal inputs, ancestors' keys), so equal keys
mean equal results. Values stay where they are: a GPU tensor stays on the GPU. A tensor storage
held by several entries (a LoRA clone shares its base model's weights) counts once against the
budget, and its bytes are freed only with the last entry that holds it.

With an active :class:`~latentgraph.model_memory.ModelMemory`, a model counts with its master
weights (where they live for good, usually CPU RAM); the copies on the compute device are the
manager's, within its own device budget, so a model is never counted twice or on the wrong device.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from latentgraph.sizing import Footprint, StorageKey, footprint

if TYPE_CHECKING:
    from latentgraph.model_memory import ModelMemory


@dataclass(slots=True)
class CacheEntry:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None
    #: Everything the entry holds, shared storages included.
    nbytes: dict[str, int]
    footprint: Footprint


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    rejected: int = 0  # values larger than their device's whole budget
    entries: int = 0
    bytes: dict[str, int] = field(default_factory=dict)
    budget: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "rejected": self.rejected,
            "entries": self.entries,
            "bytes": dict(self.bytes),
            "budget": dict(self.budget),
        }


class Cache:
    """Outlives a run: the server keeps one across prompts. Safe to read from another thread."""

    def __init__(
        self, budget: dict[str, int] | None = None, *, max_entries: int = 1_000_000, memory: ModelMemory | None = None
    ) -> None:
        self.budget = dict(budget or {})
        self.max_entries = max_entries
        #: The engine's model memory manager (None: models count as their tensors are now).
        self.memory = memory
        self._module_weights = memory.master_of if memory is not None and memory.active else None
        self._entries: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self._bytes: dict[str, int] = {}
        self._storage_refs: dict[StorageKey, int] = {}
        self._lock = threading.Lock()
        self._stats = CacheStats()

    def get(self, key: bytes) -> CacheEntry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self._stats.hits += 1
            return entry

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: bytes, outputs: tuple[Any, ...], ui: dict[str, Any] | None = None) -> bool:
        """Store a result; returns False if it is larger than its device's whole budget."""
        fp = footprint(outputs, self._module_weights)
        sizes = fp.by_device()
        for device, n in sizes.items():
            if n > self.budget_for(device):
                with self._lock:
                    self._stats.rejected += 1
                return False
        with self._lock:
            old = self._entries.pop(key, None)
            self._entries[key] = CacheEntry(outputs, ui, sizes, fp)
            self._account(fp, +1)
            if old is not None:
                self._account(old.footprint, -1)
            self._evict(sizes)
        return True

    def entries(self) -> list[CacheEntry]:
        """The entries, least recently used first (a snapshot: what ``/system_stats`` and tests read)."""
        with self._lock:
            return list(self._entries.values())

    def budget_for(self, device: str) -> int:
        return self.budget.get(device, self.budget.get("cpu", 1 << 62))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes.clear()
            self._storage_refs.clear()

    def stats(self) -> CacheStats:
        with self._lock:
            s = self._stats
            return CacheStats(
                s.hits, s.misses, s.evictions, s.rejected, len(self._entries), dict(self._bytes), dict(self.budget)
            )

    def _account(self, fp: Footprint, sign: int) -> None:
        """Add (+1) or remove (−1) one entry's bytes, counting each shared storage once."""
        for device, n in fp.unkeyed.items():
            self._bytes[device] = self._bytes.get(device, 0) + sign * n
        for storage, n in fp.storages.items():
            before = self._storage_refs.get(storage, 0)
            after = before + sign
            if after:
                self._storage_refs[storage] = after
            else:
                del self._storage_refs[storage]
            if not before or not after:  # its first holder came or its last one went
                self._bytes[storage[0]] = self._bytes.get(storage[0], 0) + sign * n

    def _evict(self, added: dict[str, int]) -> None:
        over = [d for d in added if self._bytes.get(d, 0) > self.budget_for(d)]
        if over or len(self._entries) > self.max_entries:
            for key in list(self._entries):
                if not over and len(self._entries) <= self.max_entries:
                    break
                entry = self._entries[key]
                if len(self._entries) > self.max_entries or any(entry.nbytes.get(d) for d in over):
                    del self._entries[key]
                    self._account(entry.footprint, -1)
                    self._stats.evictions += 1
                    over = [d for d in over if self._bytes.get(d, 0) > self.budget_for(d)]
