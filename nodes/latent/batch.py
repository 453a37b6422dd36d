"""Latent batches: pick, repeat, join, rebatch, and how a batch's noise is seeded.

``batch_index`` (ComfyUI's key) records which image of a larger batch each latent is, so a sampler
draws for latent i the noise the full batch would have given that index (``sampling.run.
prepare_noise``): a latent picked from a batch re-samples to the same picture.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.latent.arithmetic import repeat_to_batch, reshape_like
from latentgraph.nodes.latent.base import check_latent, downscale_of, operands, pending, publish
from latentgraph.nodes.sampling.run import BATCH_INDEX_KEY, NOISE_MASK_KEY

CATEGORY = "latent/batch"


def _mask_batch(mask: Tensor) -> Tensor:
    return mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])


def from_batch(latent: dict[str, Any], batch_index: int, length: int) -> dict[str, Any]:
    """Latents ``batch_index … batch_index + length − 1`` (clamped to the batch), their masks and
    their original batch positions."""
    samples = latent["samples"]
    n = int(samples.shape[0])
    start = min(n - 1, int(batch_index))
    length = min(n - start, int(length))
    out = publish(latent, samples[start : start + length].clone(), pending(latent))
    mask = latent.get(NOISE_MASK_KEY)
    if isinstance(mask, Tensor):
        mask = _mask_batch(mask)
        out[NOISE_MASK_KEY] = mask.clone() if mask.shape[0] == 1 else repeat_to_batch(mask, n)[start : start + length].clone()
    indices = latent.get(BATCH_INDEX_KEY)
    out[BATCH_INDEX_KEY] = list(range(start, start + length)) if indices is None else list(indices)[start : start + length]
    return out


def repeat_batch(latent: dict[str, Any], amount: int) -> dict[str, Any]:
    """The batch ``amount`` times over; batch indices continue past the original range."""
    samples = latent["samples"]
    amount = int(amount)
    out = publish(latent, samples.repeat(amount, 1, 1, 1), pending(latent))
    mask = latent.get(NOISE_MASK_KEY)
    if isinstance(mask, Tensor) and _mask_batch(mask).shape[0] > 1:  # one mask serves any batch as it is
        out[NOISE_MASK_KEY] = repeat_to_batch(_mask_batch(mask), int(samples.shape[0])).repeat(amount, 1, 1, 1)
    indices = latent.get(BATCH_INDEX_KEY)
    if indices is not None:
        indices = list(indices)
        offset = max(indices) - min(indices) + 1
        out[BATCH_INDEX_KEY] = indices + [x + i * offset for i in range(1, amount) for x in indices]
    return out


def rebatch(latents: list[dict[str, Any]], batch_size: int) -> list[dict[str, Any]]:
    """Latents regrouped into batches of ``batch_size`` (same-size runs only; a size change starts
    a new batch), each with its noise masks (dropped where all ones) and batch indices."""
    out: list[dict[str, Any]] = []
    current: list[Any] | None = None  # [samples, masks, indices, first latent, spec if all still empty]
    processed = 0

    def flush(parts: list[Any]) -> None:
        samples, masks, indices, first, spec = parts
        base = {k: v for k, v in first.items() if k not in (NOISE_MASK_KEY, BATCH_INDEX_KEY)}
        for start in range(0, samples.shape[0], batch_size):
            latent = publish(base, samples[start : start + batch_size], spec)
            latent[BATCH_INDEX_KEY] = indices[start : start + batch_size]
            mask = masks[start : start + batch_size]
            if float(mask.mean()) != 1.0:
                latent[NOISE_MASK_KEY] = mask
            out.append(latent)

    for latent in latents:
        samples = latent["samples"]
        b, _, h, w = samples.shape
        f = downscale_of(latent)
        mask = latent.get(NOISE_MASK_KEY)
        if isinstance(mask, Tensor):
            mask = _mask_batch(mask).float()
            if mask.shape[-2:] != (h * f, w * f):
                mask = F.interpolate(mask, size=(h * f, w * f), mode="bilinear")
            mask = repeat_to_batch(mask, b)
        else:
            mask = torch.ones(b, 1, h * f, w * f)
        indices = list(latent[BATCH_INDEX_KEY]) if BATCH_INDEX_KEY in latent else [processed + i for i in range(b)]
        processed += len(indices)
        if current is not None and current[0].shape[-2:] != samples.shape[-2:]:
            flush(current)
            current = None
        if current is None:
            current = [samples, mask, indices, latent, pending(latent)]
        else:
            spec = current[4] if pending(latent) is not None else None
            current = [torch.cat((current[0], samples)), torch.cat((current[1], mask)), current[2] + indices, current[3], spec]
        if current[0].shape[0] > batch_size:
            whole = current[0].shape[0] // batch_size * batch_size
            flush([current[0][:whole], current[1][:whole], current[2][:whole], current[3], current[4]])
            rest = current[0][whole:]
            current = None if rest.shape[0] == 0 else [rest, current[1][whole:], current[2][whole:], current[3], current[4]]
    if current is not None:
        flush(current)
    return out


class LatentFromBatch(Node):
    spec = NodeSpec(
        name="LatentFromBatch",
        display_name="Latent From Batch",
        category=CATEGORY,
        description="Picks latents out of a batch; they keep their batch position, so they re-sample with the same noise.",
        inputs=(
            In("samples", "LATENT"),
            In("batch_index", "INT", default=0, min=0, max=63),
            In("length", "INT", default=1, min=1, max=64),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples, batch_index=0, length=1):
        return (from_batch(check_latent(samples, "samples"), batch_index, length),)


class RepeatLatentBatch(Node):
    spec = NodeSpec(
        name="RepeatLatentBatch",
        display_name="Repeat Latent Batch",
        category=CATEGORY,
        inputs=(In("samples", "LATENT"), In("amount", "INT", default=1, min=1, max=64)),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples, amount=1):
        return (repeat_batch(check_latent(samples, "samples"), amount),)


class LatentBatch(Node):
    """``samples2`` appended to ``samples1`` (resized to it if needed); batch indices joined."""

    spec = NodeSpec(
        name="LatentBatch",
        category=CATEGORY,
        inputs=(In("samples1", "LATENT"), In("samples2", "LATENT")),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples1, samples2):
        (s1, s2), spec, f = operands(samples1=samples1, samples2=samples2)
        out = publish(samples1, torch.cat((s1, reshape_like(s1, s2, repeat_batch=False))), spec, f)
        out[BATCH_INDEX_KEY] = list(samples1.get(BATCH_INDEX_KEY, range(s1.shape[0]))) + list(
            samples2.get(BATCH_INDEX_KEY, range(s2.shape[0]))
        )
        return (out,)


class RebatchLatents(Node):
    """Regroups a list of latent batches into batches of ``batch_size`` (ComfyUI's INPUT_IS_LIST /
    OUTPUT_IS_LIST node): each batch it makes is one item downstream."""

    spec = NodeSpec(
        name="RebatchLatents",
        display_name="Rebatch Latents",
        category=CATEGORY,
        inputs=(In("latents", "LATENT"), In("batch_size", "INT", default=1, min=1, max=4096)),
        outputs=(Out("LATENT", is_list=True),),
        input_is_list=True,
    )

    def execute(self, ctx, latents, batch_size=1):
        items = latents if isinstance(latents, list) else [latents]
        size = batch_size[0] if isinstance(batch_size, list) else batch_size
        if int(size) < 1:
            raise NodeInputError("batch_size", f"must be at least 1, got {size}")
        return (rebatch([check_latent(x, "latents") for x in items], int(size)),)


class LatentBatchSeedBehavior(Node):
    spec = NodeSpec(
        name="LatentBatchSeedBehavior",
        category="latent/advanced",
        description="fixed: every latent of the batch gets the first one's noise; random: each its own.",
        inputs=(In("samples", "LATENT"), In("seed_behavior", "COMBO", choices=("random", "fixed"), default="fixed")),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, samples, seed_behavior="fixed"):
        latent = dict(check_latent(samples, "samples"))
        if seed_behavior == "random":
            latent.pop(BATCH_INDEX_KEY, None)
        elif seed_behavior == "fixed":
            first = list(latent.get(BATCH_INDEX_KEY, [0]))[0]
            latent[BATCH_INDEX_KEY] = [first] * int(latent["samples"].shape[0])
        else:
            raise NodeInputError("seed_behavior", f"must be 'random' or 'fixed', got {seed_behavior!r}")
        return (latent,)


NODES = [LatentFromBatch, RepeatLatentBatch, LatentBatch, RebatchLatents, LatentBatchSeedBehavior]
