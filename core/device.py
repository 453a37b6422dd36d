"""Device and dtype policy, decided at run time: CUDA fp16 > MPS fp16 > CPU fp32."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def pick_device(preference: str = "auto") -> torch.device:
    import torch

    if preference and preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, preference: str = "auto") -> torch.dtype:
    import torch

    if preference and preference != "auto":
        try:
            return getattr(torch, _DTYPES[preference])
        except KeyError:
            raise ValueError(f"unknown dtype {preference!r}; use one of {sorted(_DTYPES)}") from None
    return torch.float16 if device.type in ("cuda", "mps") else torch.float32


def weights_device(settings: Any) -> torch.device:
    """Where a loader should put new weights: the offload device when a device budget is set (the
    engine's model memory copies them to the compute device when a node runs them, so a load never
    needs room on the device), else the compute device."""
    import torch

    if getattr(settings, "device_budget", None) is not None:
        return torch.device(settings.offload_device)
    return pick_device(settings.device)


def device_memory(device: torch.device) -> int | None:
    """Total memory of a GPU in bytes (MPS: what Metal recommends using), None for the CPU."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type == "mps":
        recommended = getattr(getattr(torch, "mps", None), "recommended_max_memory", None)
        return int(recommended()) if recommended is not None else None
    return None
