"""Looking inside a LATENT: its channels as pictures, its statistics as text.

A latent is C small images (SD: 4 channels at 1/8 size). LATENTs hold *unscaled* VAE latents;
the model works on ``(z − shift)·scale`` (SD1: ×0.18215), where a clean latent has roughly unit
variance and pure noise at σ has standard deviation σ. With a MODEL connected, the statistics are
given in that space too, which is where "is this noise?" has a clear answer (std ≈ σ, mean ≈ 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeResult, NodeSpec, Out
from latentgraph.nodes.inspect.drawing import draw_grid, to_image_tensor, zoom


@dataclass(frozen=True)
class ChannelStats:
    channel: int
    mean: float
    std: float
    min: float
    max: float


def channel_stats(samples: torch.Tensor) -> list[ChannelStats]:
    """Per channel over batch and pixels (std: unbiased, as torch.std)."""
    x = samples.detach().double().cpu().transpose(0, 1).reshape(samples.shape[1], -1)
    std = x.std(dim=1) if x.shape[1] > 1 else torch.zeros(x.shape[0], dtype=torch.float64)
    return [ChannelStats(c, float(x[c].mean()), float(std[c]), float(x[c].min()), float(x[c].max()))
            for c in range(x.shape[0])]


def stats_table(samples: torch.Tensor, title: str) -> str:
    rows = channel_stats(samples)
    flat = samples.detach().double().flatten()
    lines = [title, f"{'channel':>7}  {'mean':>9}  {'std':>9}  {'min':>9}  {'max':>9}"]
    lines += [f"{r.channel:>7}  {r.mean:>9.4f}  {r.std:>9.4f}  {r.min:>9.4f}  {r.max:>9.4f}" for r in rows]
    all_std = float(flat.std()) if flat.numel() > 1 else 0.0
    lines.append(f"{'all':>7}  {float(flat.mean()):>9.4f}  {all_std:>9.4f}  {float(flat.min()):>9.4f}  {float(flat.max()):>9.4f}")
    return "\n".join(lines)


def latent_report(samples: torch.Tensor, model: Any = None) -> str:
    """The text LatentStats shows: the LATENT as stored and, with a model, in the model's space."""
    b, c, h, w = samples.shape
    parts = [stats_table(samples, f"LATENT samples {b}×{c}×{h}×{w} (unscaled VAE latents)")]
    if model is not None:
        from latentgraph.nodes.sampling.run import latent_scale, process_latent_in

        scale, shift = latent_scale(model)
        parts.append(stats_table(process_latent_in(model, samples.float()),
                                 f"in the model's space: (z − {shift:g})·{scale:g}"))
    return "\n\n".join(parts)


def _samples(latent: Any, model: Any) -> torch.Tensor:
    from latentgraph.nodes.latents import latent_samples, model_latent_format

    if model is not None:
        from latentgraph.nodes.sampling.run import check_model

        downscale, channels = model_latent_format(check_model(model))
        return latent_samples(latent, downscale, channels, "samples")
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), torch.Tensor):
        raise NodeInputError("samples", "expected a LATENT (a dict with a 'samples' tensor)")
    samples = latent["samples"]
    if samples.ndim != 4:
        raise NodeInputError("samples", f"samples must be [batch, channels, height, width], got {tuple(samples.shape)}")
    return samples


def channel_pictures(samples: torch.Tensor, tile: int) -> tuple[list[np.ndarray], list[tuple[str, ...]]]:
    """Each channel of the first latent as a grey picture (its own min → black, max → white),
    enlarged until its long side reaches ``tile``; captions with mean and std."""
    x = samples[0].detach().float().cpu()
    pictures, captions = [], []
    for c, stats in enumerate(channel_stats(samples[:1])):
        v = x[c]
        lo, hi = float(v.min()), float(v.max())
        grey = ((v - lo) / max(hi - lo, 1e-12)).numpy() if hi > lo else np.full(tuple(v.shape), 0.5, dtype=np.float32)
        a = (np.clip(grey, 0, 1) * 255.0).round().astype(np.uint8)
        a = np.repeat(a[..., None], 3, axis=-1)
        pictures.append(zoom(a, max(1, tile // max(a.shape[:2]))))
        captions.append((f"channel {c}", f"mean {stats.mean:.3f}", f"std {stats.std:.3f}"))
    return pictures, captions


STATS_INPUTS = (
    In("samples", "LATENT"),
    In("model", "MODEL", required=False, tooltip="also report the statistics in the model's latent space"),
)


class LatentChannels(Node):
    spec = NodeSpec(
        name="LatentChannels",
        display_name="Latent Channels",
        category="inspect",
        description=(
            "The channels of the first latent as grey pictures (each from its own min to max) with mean and std "
            "under each; the statistics table as text too (shown on the node)."
        ),
        inputs=(*STATS_INPUTS, In("tile_size", "INT", default=128, min=8, max=1024, tooltip="long side of each channel picture")),
        outputs=(Out("IMAGE"), Out("STRING", "stats")),
    )

    def execute(self, ctx, samples, model=None, tile_size=128):
        x = _samples(samples, model)
        if model is not None:
            from latentgraph.nodes.sampling.run import process_latent_in

            shown = process_latent_in(model, x.float())
            title = "channels in the model's space"
        else:
            shown, title = x, "channels (unscaled LATENT)"
        pictures, captions = channel_pictures(shown, int(tile_size))
        canvas, _ = draw_grid([pictures], captions=[captions], title=title)
        text = latent_report(x, model)
        return NodeResult(outputs=(to_image_tensor(canvas), text), ui={"text": [text]})


class LatentStats(Node):
    spec = NodeSpec(
        name="LatentStats",
        display_name="Latent Statistics",
        category="inspect",
        description="Mean, std, min and max of each latent channel, shown on the node and given as text.",
        inputs=STATS_INPUTS,
        outputs=(Out("STRING", "stats"),),
        output_node=True,
    )

    def execute(self, ctx, samples, model=None):
        text = latent_report(_samples(samples, model), model)
        return NodeResult(outputs=(text,), ui={"text": [text]})


NODES = [LatentChannels, LatentStats]
