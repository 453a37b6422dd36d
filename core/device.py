"""Device and dtype policy, decided at run time: CUDA fp16 > MPS fp16 > CPU fp32."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
