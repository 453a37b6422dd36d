"""Sampling traces: KSampler and SamplerCustomAdvanced that also draw their run, step by step.

Each sampler reports a :class:`~latentgraph.nodes.sampling.kit.Step` per step (the latent x_t
before the step, its σ, and the model's guided x₀ estimate); the trace keeps every k-th and
the final output and draws two rows: x_t as the UNet sees it (x_t/√(1 + σ²), the
variance-preserving form: the forward strip's pictures run backwards) and the predicted x̂₀
(what the run would return if it stopped there). The last column is the sampler's output,
identical to the plain node's with the same settings (the run itself is untouched).

Cost: ``decode="vae"`` is one VAE decode per frame (two per traced step, plus the output) on top
of the sampling; ``decode="preview"`` is the latent→RGB linear map of the progress previews (no VAE
call, 1/8 resolution enlarged, colours approximate).

Steps are recorded through ``run.sample``'s ``trace`` callback, so the traced run is KSampler's
(or SamplerCustomAdvanced's) own code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.inspect.drawing import draw_grid, to_array, to_image_tensor, zoom
from latentgraph.nodes.sampling.kit import Step
from latentgraph.nodes.sampling.ksampler_nodes import KSampler
from latentgraph.nodes.sampling.samplers import SamplerDef

DECODE_CHOICES = ("vae", "preview")


@dataclass(frozen=True)
class Frame:
    i: int  # step index (0-based); -1 for the output
    sigma: float
    x: torch.Tensor  # model space, σ form
    denoised: torch.Tensor  # model space


@dataclass
class Trace:
    """The recorded frames of one run (every ``every``-th step)."""

    every: int = 1
    frames: list[Frame] = field(default_factory=list)

    def record(self, step: Step) -> None:
        if step.i % self.every == 0:
            sigma = step.sigma_hat if step.sigma_hat is not None else step.sigma
            self.frames.append(Frame(int(step.i), float(sigma), step.x.detach().float().cpu().clone(),
                                     step.denoised.detach().float().cpu().clone()))


def frame_pictures(model: Any, vae: Any, latents: list[torch.Tensor], decode: str, size: tuple[int, int]) -> list:
    """Unscaled latents (LATENT convention) → uint8 pictures of ``size`` (h, w): VAE decodes or
    the cheap preview (which reads latents in the model's space)."""
    from latentgraph.nodes.latents import decode_latents
    from latentgraph.nodes.preview import latent_to_rgb
    from latentgraph.nodes.sampling.run import process_latent_in

    if not latents:
        return []
    if decode == "vae":
        return [to_array(d) for d in decode_latents(vae, torch.cat([x[:1] for x in latents]))]
    out = []
    for x in latents:
        a = to_array(latent_to_rgb(process_latent_in(model, x[:1])[0], model.arch))
        out.append(zoom(a, max(1, size[0] // a.shape[0])))
    return out


def draw_trace(model: Any, vae: Any, trace: Trace, output: torch.Tensor, decode: str, zoom_factor: int) -> torch.Tensor:
    """Two rows (x_t, x̂₀) of the traced steps, then the output (unscaled ``output``)."""
    from latentgraph.nodes.sampling.run import process_latent_out

    if decode == "vae" and vae is None:
        raise NodeInputError("vae", "is needed to decode the frames (or set decode to 'preview')")
    down = int((model.info or {}).get("latent_downscale", 8))
    size = (output.shape[-2] * down, output.shape[-1] * down)
    scaled = [process_latent_out(model, f.x / (1.0 + f.sigma**2) ** 0.5) for f in trace.frames]
    xs = frame_pictures(model, vae, [*scaled, output], decode, size)
    x0s = frame_pictures(model, vae, [process_latent_out(model, f.denoised) for f in trace.frames], decode, size)
    rows = [[zoom(p, zoom_factor) for p in xs], [zoom(p, zoom_factor) for p in x0s] + [None]]
    captions = [[(f"step {f.i + 1}", f"σ={f.sigma:.3g}") for f in trace.frames] + [("output", "σ=0")]]
    canvas, _ = draw_grid(rows, row_labels=("x_t", "x̂₀ predicted"), captions=captions)
    return to_image_tensor(canvas)


TRACE_INPUTS = (
    In("every", "INT", default=1, min=1, max=10000, tooltip="keep every k-th step"),
    In("decode", "COMBO", choices=DECODE_CHOICES, default="vae",
       tooltip="vae: one VAE decode per frame; preview: the fast approximate latent→RGB map"),
    In("zoom", "INT", default=1, min=1, max=8, tooltip="enlarge frames (nearest neighbour)"),
    In("vae", "VAE", required=False, tooltip="decodes the frames (needed with decode='vae')"),
)
COST = (" Cost: sampling plus one VAE decode per frame (two per kept step) with decode='vae'; "
        "decode='preview' skips the VAE (approximate colours).")


def check_trace_inputs(every: int, decode: str) -> None:
    if int(every) < 1:
        raise NodeInputError("every", f"must be at least 1, got {every}")
    if decode not in DECODE_CHOICES:
        raise NodeInputError("decode", f"unknown {decode!r}; choose {' or '.join(DECODE_CHOICES)}")


class KSamplerTrace(Node):
    spec = NodeSpec(
        name="KSamplerTrace",
        display_name="KSampler (Trace)",
        category="inspect",
        description="KSampler that also draws x_t and the predicted x0 at every k-th step as a strip." + COST,
        inputs=(
            *KSampler.spec.inputs,
            *TRACE_INPUTS,
        ),
        outputs=(Out("LATENT"), Out("IMAGE", "trace")),
    )

    def execute(self, ctx, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                denoise=1.0, every=1, decode="vae", zoom=1, vae=None):
        from latentgraph.nodes.sampling.ksampler_nodes import ksampler
        from latentgraph.nodes.sampling.run import check_model

        check_trace_inputs(every, decode)
        model = check_model(model)
        trace = Trace(int(every))
        out = ksampler(ctx, model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                       latent_image, denoise=float(denoise), trace=trace.record)
        with ctx.memory.use(getattr(vae, "vae", None)):
            picture = draw_trace(model, vae, trace, out["samples"][:1], decode, int(zoom))
        return (out, picture)


class SamplerCustomAdvancedTrace(Node):
    spec = NodeSpec(
        name="SamplerCustomAdvancedTrace",
        display_name="SamplerCustomAdvanced (Trace)",
        category="inspect",
        description="SamplerCustomAdvanced that also draws x_t and the predicted x0 at every k-th step." + COST,
        inputs=(
            In("noise", "NOISE"),
            In("guider", "GUIDER"),
            In("sampler", "SAMPLER"),
            In("sigmas", "SIGMAS"),
            In("latent_image", "LATENT"),
            *TRACE_INPUTS,
        ),
        outputs=(Out("LATENT", "output"), Out("LATENT", "denoised_output"), Out("IMAGE", "trace")),
    )

    def execute(self, ctx, noise, guider, sampler, sigmas, latent_image, every=1, decode="vae", zoom=1, vae=None):
        from latentgraph.nodes.sampling.ksampler_nodes import run_guided

        check_trace_inputs(every, decode)
        if not isinstance(sampler, SamplerDef):
            raise NodeInputError("sampler", "expected a SAMPLER")
        trace = Trace(int(every))
        out, denoised = run_guided(ctx, guider, sampler, sigmas, noise, latent_image, trace=trace.record)
        with ctx.memory.use(getattr(vae, "vae", None)):
            picture = draw_trace(guider.model, vae, trace, out["samples"][:1], decode, int(zoom))
        return (out, denoised, picture)


NODES = [KSamplerTrace, SamplerCustomAdvancedTrace]
