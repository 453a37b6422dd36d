"""What every LATENT node here shares: checking a LATENT input, and keeping an EmptyLatent
(``latents.EmptyLatentSpec``: zeros whose shape the sampling model decides) symbolic for as long
as no model or real latent has fixed its format.

The rules, the same for every node:

* all LATENT inputs still empty → the node works on ComfyUI's placeholder zeros ``[B, 4, H/8, W/8]``
  and the result is published as a new empty latent of the resulting pixel size and batch (zeros
  in give zeros out for every node of this package), so the model that samples it still decides
  its real shape;
* some inputs real → the empty ones are built in the format of the first real one (its channels
  and ``downscale``), as a sampler would build them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.nodes.latents import (
    DEFAULT_DOWNSCALE,
    DOWNSCALE_KEY,
    EMPTY_KEY,
    EmptyLatentSpec,
    latent_samples,
    plain_latent,
)

__all__ = ["DOWNSCALE_KEY", "check_latent", "downscale_of", "pending", "operands", "publish", "unary"]


def check_latent(latent: Any, name: str) -> dict[str, Any]:
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), Tensor):
        raise NodeInputError(name, "expected a LATENT (a dict with a 'samples' tensor)")
    if latent["samples"].ndim != 4:
        raise NodeInputError(name, f"samples must be [batch, channels, height, width], got {tuple(latent['samples'].shape)}")
    return latent


def pending(latent: dict[str, Any]) -> EmptyLatentSpec | None:
    """The EmptyLatent request behind ``latent``, if its samples are still the placeholder."""
    spec = latent.get(EMPTY_KEY)
    if isinstance(spec, EmptyLatentSpec) and latent["samples"] is spec.placeholder:
        return spec
    return None


def downscale_of(latent: dict[str, Any]) -> int:
    """Pixels per latent cell (ComfyUI's nodes assume 8)."""
    return int(latent.get(DOWNSCALE_KEY, DEFAULT_DOWNSCALE))


def operands(**latents: Any) -> tuple[list[Tensor], EmptyLatentSpec | None, int]:
    """Samples of several LATENT inputs in one format: ``(samples, spec, downscale)``.

    ``spec`` is the first input's EmptyLatent request when every input is still empty (the
    samples are then the placeholders), else None and the empty inputs are built like the
    first real one.
    """
    checked = {name: check_latent(latent, name) for name, latent in latents.items()}
    real = [latent for latent in checked.values() if pending(latent) is None]
    if not real:
        first = next(iter(checked.values()))
        return [latent["samples"] for latent in checked.values()], pending(first), DEFAULT_DOWNSCALE
    ref = real[0]
    f, channels = downscale_of(ref), int(ref["samples"].shape[1])
    return [latent_samples(latent, f, channels, name) for name, latent in checked.items()], None, f


def publish(base: dict[str, Any], samples: Tensor, spec: EmptyLatentSpec | None, downscale: int | None = None,
            **extra: Any) -> dict[str, Any]:
    """``base`` (other keys kept, as ComfyUI's ``samples.copy()``) with new samples.

    With ``spec`` (all inputs were empty) the result is an empty latent again: the pixel size is
    the request's along axes whose cell count did not change, else cells × 8.
    """
    if spec is None:
        if downscale is not None:
            extra[DOWNSCALE_KEY] = downscale
        return plain_latent(base, samples, **extra)
    old = spec.placeholder.shape
    width = spec.width if samples.shape[3] == old[3] else int(samples.shape[3]) * DEFAULT_DOWNSCALE
    height = spec.height if samples.shape[2] == old[2] else int(samples.shape[2]) * DEFAULT_DOWNSCALE
    placeholder = torch.zeros(samples.shape, dtype=samples.dtype)
    new_spec = EmptyLatentSpec(width, height, int(samples.shape[0]), placeholder)
    return {**plain_latent(base, placeholder, **extra), EMPTY_KEY: new_spec, DOWNSCALE_KEY: DEFAULT_DOWNSCALE}


def unary(latent: Any, name: str, fn, **extra: Any) -> dict[str, Any]:
    """Apply ``fn(samples) → samples`` to one LATENT input, keeping an empty latent empty."""
    latent = check_latent(latent, name)
    return publish(latent, fn(latent["samples"]), pending(latent), **extra)
