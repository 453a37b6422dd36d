"""Model weights that follow the compute device within a byte budget.

Every weight (parameter or buffer) of a model the manager knows has a *master* on the offload
device (CPU RAM) and, while loaded, a *device copy* that the tensor's ``.data`` points at. A node
says which models it is about to run (``with ctx.memory.use(unet, controlnet):``); the manager
loads them, evicting the least recently used other models first. A model too large for what is
left is loaded partly: the modules it could not load are *streamed* — copied to the device just
before their ``forward`` and dropped right after — so resident bytes stay within the budget.

The unit of residency is the weight, not the model: a LoRA clone shares its base model's
unpatched Parameter objects, so loading both costs the base once plus the patched weights.
Modules whose weights are offloaded carry forward hooks, so a call site without a ``use`` scope
still computes correctly (by streaming), only slower.

Without a budget the manager is inactive: ``use`` returns at once, nothing is copied or hooked.
With a budget on the CPU (compute device = offload device) the device copies are clones: the
logic and the byte counts are real and the results bit-identical, which is how it is tested
without a GPU.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from latentgraph.sizing import copy_nbytes

if TYPE_CHECKING:
    import torch

    from latentgraph.settings import Settings

#: ``device_budget = "auto"`` leaves this much of the device's memory to activations and other
#: tensors: a fifth, at least 1 GiB (a heuristic, not measured here: the project has no GPU).
AUTO_RESERVE_SHARE = 0.2
AUTO_RESERVE_MIN = 1024**3


@dataclass
class ModelStats:
    name: str
    nbytes: int
    resident: int
    pinned: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.nbytes, "resident": self.resident, "in_use": self.pinned,
                "partial": 0 < self.resident < self.nbytes}


@dataclass
class MemoryStats:
    device: str
    offload_device: str
    active: bool
    budget: int | None
    #: Bytes of device copies now (``resident``) and at most since the last ``reset_peak``.
    resident: int = 0
    peak: int = 0
    loads: int = 0  # weights copied to the device
    offloads: int = 0  # device copies dropped
    streamed: int = 0  # weights copied for one forward call (partial loading)
    models: list[ModelStats] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device, "offload_device": self.offload_device, "active": self.active,
            "budget": self.budget, "resident": self.resident, "peak": self.peak, "loads": self.loads,
            "offloads": self.offloads, "streamed": self.streamed, "models": [m.to_dict() for m in self.models],
        }


@dataclass(eq=False)
class _Weight:
    ref: Any  # weakref.ref to the Parameter / buffer
    master: Any  # the tensor on the offload device
    nbytes: int
    loaded: bool = False
    #: Copied for one forward call; dropped when the call returns, never evicted meanwhile.
    transient: bool = False
    #: How many models in a ``use`` block hold this weight (never evicted while > 0).
    pins: int = 0


@dataclass(eq=False)
class _Unit:
    """A module holding weights directly (a Linear, a GroupNorm…): the grain of partial loading."""

    weights: list[_Weight]
    nbytes: int
    owner: Any = None  # weakref.ref to its _Model, if registered through one


@dataclass(eq=False)
class _Model:
    name: str
    units: list[_Unit]
    weights: list[_Weight]
    nbytes: int
    last_used: int = 0
    pinned: int = 0


class ModelMemory:
    """One per engine; passed to nodes as ``ctx.memory``. Thread-safe."""

    def __init__(self, device: Any = "cpu", budget_bytes: int | None = None, offload_device: Any = "cpu") -> None:
        self.budget = None if budget_bytes is None else int(budget_bytes)
        self.active = self.budget is not None
        self.device, self.offload_device = device, offload_device
        self._nothing = contextlib.nullcontext()  # what use() returns when inactive: no work at all
        if self.active:  # an inactive manager never imports torch
            import torch

            self.device, self.offload_device = torch.device(device), torch.device(offload_device)
        self._lock = threading.RLock()
        self._weights: dict[int, _Weight] = {}
        self._units: dict[int, _Unit] = {}
        self._models: dict[int, _Model] = {}
        self._dead: deque[tuple[str, int]] = deque()  # filled by weakref callbacks, emptied under the lock
        self._streaming: dict[int, list[_Weight]] = {}
        self._clock = itertools.count(1)
        self._resident = 0
        self._peak = 0
        self._counts = {"loads": 0, "offloads": 0, "streamed": 0}
        # Plain functions, not bound methods: deep-copying a module (a LoRA clone) copies its hooks,
        # and must not copy the manager with them.
        self._pre_hook = lambda module, args: self._before_forward(module)
        self._post_hook = lambda module, args, out: self._after_forward(module)

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelMemory:
        if settings.device_budget is None:
            return cls(settings.device)
        from latentgraph.device import device_memory, pick_device

        device = pick_device(settings.device)
        budget = settings.device_budget
        if budget == "auto":  # what the device holds, less room for activations; nothing to manage on the CPU
            total = device_memory(device)
            budget = None if total is None else total - max(AUTO_RESERVE_MIN, int(total * AUTO_RESERVE_SHARE))
        return cls(device, budget, settings.offload_device)

    # -- what nodes call ------------------------------------------------------------------------
    def use(self, *modules: Any) -> contextlib.AbstractContextManager[None]:
        """Run ``modules`` (``torch.nn.Module``; None is skipped) on the compute device inside the block."""
        return self._use(modules) if self.active else self._nothing

    @contextlib.contextmanager
    def _use(self, modules: tuple[Any, ...]) -> Iterator[None]:
        with self._lock:
            models = list({id(m): self._register(m) for m in modules if m is not None}.values())
            stamp = next(self._clock)
            for model in models:
                self._pin(model, +1)
                model.last_used = stamp
        try:
            with self._lock:
                self._load(models)
            yield
        finally:
            with self._lock:
                for model in models:
                    self._pin(model, -1)

    @staticmethod
    def _pin(model: _Model, sign: int) -> None:
        model.pinned += sign
        for w in model.weights:
            w.pins += sign

    def master_of(self, module: Any) -> list[Any]:
        """The tensors that hold ``module``'s weights for good (what a cache should count): the
        masters of a known module; its own tensors when inactive. Registers the module."""
        if not self.active:
            return [*module.parameters(), *module.buffers()]
        with self._lock:
            model = self._register(module)
            self._fit()
            return [w.master for w in model.weights]

    def offload_all(self) -> int:
        """Drop every device copy not in use by a running node (``/free``); returns the bytes freed."""
        if not self.active:
            return 0
        with self._lock:
            self._purge()
            before = self._resident
            for w in list(self._weights.values()):
                if w.loaded and not w.transient and not w.pins:
                    self._offload(w)
            return before - self._resident

    def reset_peak(self) -> None:
        with self._lock:
            self._peak = self._resident

    def stats(self) -> MemoryStats:
        with self._lock:
            self._purge()
            models = [
                ModelStats(m.name, m.nbytes, sum(w.nbytes for w in m.weights if w.loaded), m.pinned > 0)
                for m in sorted(self._models.values(), key=lambda m: -m.last_used)
            ]
            return MemoryStats(str(self.device), str(self.offload_device), self.active, self.budget, self._resident,
                               self._peak, models=models, **self._counts)

    # -- registration ---------------------------------------------------------------------------
    def _register(self, module: Any) -> _Model:
        self._purge()
        model = self._models.get(id(module))
        if model is not None:
            return model
        units: list[_Unit] = []
        for sub in module.modules():
            unit = self._units.get(id(sub)) or self._adopt_unit(sub)
            if unit is not None:
                units.append(unit)
        weights = list({id(w): w for u in units for w in u.weights}.values())
        model = _Model(type(module).__name__, units, weights, sum(w.nbytes for w in weights), next(self._clock))
        self._models[id(module)] = model
        weakref.finalize(module, self._dead.append, ("model", id(module)))
        for unit in units:
            if unit.owner is None:
                unit.owner = weakref.ref(model)
        return model

    def _adopt_unit(self, module: Any) -> _Unit | None:
        tensors = [t for t in (*module._parameters.values(), *module._buffers.values()) if t is not None]
        if not tensors:
            return None
        weights = [self._adopt(t) for t in tensors]
        unit = _Unit(weights, sum(w.nbytes for w in weights))
        self._units[id(module)] = unit
        if self._pre_hook not in module._forward_pre_hooks.values():  # a copy has them already
            module.register_forward_pre_hook(self._pre_hook)
            module.register_forward_hook(self._post_hook)
        weakref.finalize(module, self._dead.append, ("unit", id(module)))
        return unit

    def _adopt(self, tensor: Any) -> _Weight:
        w = self._weights.get(id(tensor))
        if w is not None:
            return w
        data = tensor.data
        on_offload = _same_device(data.device, self.offload_device)
        master = data if on_offload else data.to(self.offload_device)
        w = _Weight(weakref.ref(tensor, lambda _r, key=id(tensor): self._dead.append(("weight", key))), master,
                    copy_nbytes(data))
        self._weights[id(tensor)] = w
        if not on_offload:
            if _same_device(data.device, self.device):
                w.loaded = True  # the loader put it on the device: that copy counts as loaded
                self._add_resident(w.nbytes)
            else:
                tensor.data = master
        return w

    def _purge(self) -> None:
        """Forget models, modules and weights that were garbage collected."""
        while self._dead:
            kind, key = self._dead.popleft()
            if kind == "model":
                self._models.pop(key, None)
            elif kind == "unit":
                self._units.pop(key, None)
            else:
                w = self._weights.pop(key, None)
                if w is not None and w.loaded:
                    self._resident -= w.nbytes  # its device copy died with it

    # -- loading and eviction ---------------------------------------------------------------------
    def _load(self, models: list[_Model]) -> None:
        """Load ``models`` (pinned) fully if they fit after evicting others, else partly."""
        missing = {id(w): w for m in models for w in m.weights if not w.loaded}
        if not missing:
            return
        need = sum(w.nbytes for w in missing.values())
        self._fit(need)
        room = self.budget - self._resident
        if need <= room:
            for w in missing.values():
                self._load_weight(w)
            return
        units = [u for m in models for u in m.units if any(not w.loaded for w in u.weights)]
        headroom = max(u.nbytes for u in units)  # one streamed module at a time must still fit
        for unit in units:
            cost = sum(w.nbytes for w in unit.weights if not w.loaded)
            if self._resident + cost + headroom <= self.budget:
                for w in unit.weights:
                    if not w.loaded:
                        self._load_weight(w)

    def _fit(self, need: int = 0, spare: _Model | None = None) -> None:
        """Evict least recently used models not in use (nor ``spare``) until ``need`` more bytes fit."""
        if self._resident + need <= self.budget:
            return
        for model in sorted(self._models.values(), key=lambda m: m.last_used):
            if model.pinned or model is spare:
                continue
            for w in model.weights:
                if w.loaded and not w.transient and not w.pins:
                    self._offload(w)
            if self._resident + need <= self.budget:
                return

    def _load_weight(self, w: _Weight, transient: bool = False) -> None:
        import torch

        tensor = w.ref()
        if tensor is None:
            return
        with torch.inference_mode(False), torch.no_grad():
            tensor.data = w.master.to(self.device, copy=True)
        w.loaded, w.transient = True, transient
        self._counts["streamed" if transient else "loads"] += 1
        self._add_resident(w.nbytes)

    def _offload(self, w: _Weight) -> None:
        import torch

        tensor = w.ref()
        if tensor is not None:
            with torch.inference_mode(False), torch.no_grad():
                tensor.data = w.master
        w.loaded = w.transient = False
        self._counts["offloads"] += 1
        self._resident -= w.nbytes

    def _add_resident(self, n: int) -> None:
        self._resident += n
        if self._resident > self._peak:
            self._peak = self._resident

    # -- streaming: forward hooks of modules whose weights are offloaded ----------------------------
    def _before_forward(self, module: Any) -> None:
        unit = self._units.get(id(module))
        if unit is not None and all(w.loaded for w in unit.weights):
            return
        with self._lock:
            self._purge()
            unit = self._units.get(id(module)) or self._adopt_unit_late(module)
            missing = [w for w in unit.weights if not w.loaded]
            if not missing:
                return
            owner = unit.owner() if unit.owner is not None else None
            self._fit(sum(w.nbytes for w in missing), spare=owner)  # never the model now running
            for w in missing:
                self._load_weight(w, transient=True)
            self._streaming.setdefault(id(module), []).extend(missing)

    def _after_forward(self, module: Any) -> None:
        if id(module) not in self._streaming:
            return
        with self._lock:
            for w in self._streaming.pop(id(module), ()):
                if w.transient:
                    self._offload(w)

    def _adopt_unit_late(self, module: Any) -> _Unit:
        """A module first seen in its forward call: a copy of a known module (hooks are copied
        with it) sharing some of its weights."""
        unit = self._adopt_unit(module)
        return unit if unit is not None else _Unit([], 0)


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)
