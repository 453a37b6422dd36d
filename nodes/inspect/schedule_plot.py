"""SchedulePlot: a model's noise schedule as a picture, with the σ a sampler will actually visit.

A model trained on T steps with variances β_t has ᾱ_t = ∏ₛ≤ₜ(1 − βₛ): the forward process is
q(x_t | x₀) = N(√ᾱ_t·x₀, (1 − ᾱ_t)·I), so √ᾱ_t is how much picture is left and √(1 − ᾱ_t) how
much noise; σ_t = √((1 − ᾱ_t)/ᾱ_t) is the same point in the σ form samplers use (x₀ + σ·ε).
Every curve is computed from the :class:`ModelSampling` the samplers use (ᾱ = 1/(1 + σ²),
β_t = 1 − ᾱ_t/ᾱ_t−1), so a MODEL patched by a ModelSampling* node plots what it samples with.
The markers are ``schedule_sigmas`` for the chosen sampler, scheduler, steps and denoise (KSampler's
rule), placed at their fractional timestep (log σ interpolated between trained steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.inspect.drawing import BACKGROUND, PALETTE, Panel, Series, draw_panel, draw_text, to_image_tensor
from latentgraph.nodes.sampling.model_sampling import ModelSampling

#: Named training schedules: diffusers' beta_schedule, beta_start, beta_end.
NAMED_SCHEDULES = {
    "linear": ("linear", 0.0001, 0.02),  # DDPM (Ho et al. 2020)
    "scaled_linear": ("scaled_linear", 0.00085, 0.012),  # Stable Diffusion 1/2/XL
    "cosine": ("squaredcos_cap_v2", 0.0001, 0.02),  # Nichol & Dhariwal 2021 (start/end unused)
}
FROM_MODEL = "model"


def named_model_sampling(name: str, timesteps: int = 1000) -> ModelSampling:
    schedule, start, end = NAMED_SCHEDULES[name]
    return ModelSampling.from_config(
        {"beta_schedule": schedule, "beta_start": start, "beta_end": end, "num_train_timesteps": timesteps}
    )


@dataclass(frozen=True)
class ScheduleCurves:
    """The numbers a schedule plot draws (float64; index = training timestep t)."""

    t: np.ndarray
    beta: np.ndarray
    alpha_bar: np.ndarray
    sqrt_alpha_bar: np.ndarray
    sqrt_one_minus_alpha_bar: np.ndarray
    sigma: np.ndarray
    #: The σ the sampler visits, in order (the last is usually 0).
    visited_sigma: np.ndarray
    #: Fractional timestep of each visited σ > 0 and the ᾱ there (1/(1 + σ²)).
    visited_t: np.ndarray
    visited_alpha_bar: np.ndarray


def schedule_curves(ms: ModelSampling, sigmas: torch.Tensor | None = None) -> ScheduleCurves:
    """The curves of a model sampling, and where ``sigmas`` land on them."""
    sigma = ms.sigmas.double().cpu().numpy()
    alpha_bar = 1.0 / (1.0 + sigma**2)
    beta = 1.0 - alpha_bar / np.concatenate([[1.0], alpha_bar[:-1]])
    visited = np.zeros(0) if sigmas is None else sigmas.double().cpu().numpy()
    positive = visited[visited > 0]
    log_sigma = np.log(sigma)
    visited_t = np.interp(np.log(positive), log_sigma, np.arange(len(sigma), dtype=np.float64))
    return ScheduleCurves(
        t=np.arange(len(sigma), dtype=np.float64), beta=beta, alpha_bar=alpha_bar, sqrt_alpha_bar=np.sqrt(alpha_bar),
        sqrt_one_minus_alpha_bar=np.sqrt(1.0 - alpha_bar), sigma=sigma, visited_sigma=visited,
        visited_t=visited_t, visited_alpha_bar=1.0 / (1.0 + positive**2),
    )


def plot_schedule(curves: ScheduleCurves, width: int, height: int, title: str, markers_label: str) -> Image.Image:
    """Three panels: β_t; ᾱ_t, √ᾱ_t, √(1 − ᾱ_t); σ_t on a log axis. Visited σ are dots."""
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    size = 12 if width >= 600 else 10
    x_range = (0.0, float(curves.t[-1]))
    dots = markers_label if curves.visited_t.size else ""
    blue, orange, green, pink, yellow = PALETTE[:5]
    panels = (
        Panel("β_t (variance added at step t)", (Series("β_t", curves.t, curves.beta, blue),),
              x_range, (0.0, float(curves.beta.max()) * 1.05 or 1.0), x_label="training timestep t"),
        Panel("how much picture, how much noise", (
            Series("ᾱ_t", curves.t, curves.alpha_bar, orange),
            Series("√ᾱ_t", curves.t, curves.sqrt_alpha_bar, green),
            Series("√(1−ᾱ_t)", curves.t, curves.sqrt_one_minus_alpha_bar, pink),
            Series(dots, curves.visited_t, curves.visited_alpha_bar, PALETTE[6], markers=True),
        ), x_range, (0.0, 1.0), x_label="training timestep t"),
        Panel("σ_t = √((1−ᾱ_t)/ᾱ_t), log scale", (
            Series("σ_t", curves.t, curves.sigma, yellow),
            Series(dots, curves.visited_t, curves.visited_sigma[curves.visited_sigma > 0], PALETTE[6], markers=True),
        ), x_range, (float(curves.sigma.min()) / 1.5, float(curves.sigma.max()) * 1.5), log_y=True,
            x_label="training timestep t"),
    )
    from PIL import ImageDraw

    draw = ImageDraw.Draw(canvas)
    draw_text(draw, (width / 2, 6), title, size + 2, anchor="ma")
    top = 6 + int((size + 2) * 1.6)
    wide = width >= 1.6 * height
    n = len(panels)
    for k, panel in enumerate(panels):
        if wide:  # side by side
            box = (int(k * width / n) + 6, top, int((k + 1) * width / n) - 10, height - 6)
        else:  # stacked
            h = (height - top) / n
            box = (6, int(top + k * h), width - 10, int(top + (k + 1) * h) - 6)
        draw_panel(canvas, box, panel, size)
    return canvas


class SchedulePlot(Node):
    spec = NodeSpec(
        name="SchedulePlot",
        display_name="Schedule Plot (β, ᾱ, σ)",
        category="inspect",
        description=(
            "Draws a training noise schedule (the MODEL's, or linear / scaled_linear / cosine): β_t, ᾱ_t, "
            "√ᾱ_t, √(1−ᾱ_t) and σ_t, with the σ the chosen sampler and scheduler will visit as dots."
        ),
        inputs=(
            In("schedule", "COMBO", choices=(FROM_MODEL, *NAMED_SCHEDULES), default=FROM_MODEL,
               tooltip="'model' plots the connected MODEL's training schedule"),
            In("sampler_name", "COMBO", choices=lambda s, r: list(r.samplers), default="euler"),
            In("scheduler", "COMBO", choices=lambda s, r: list(r.schedulers), default="normal"),
            In("steps", "INT", default=20, min=0, max=1000, tooltip="0 draws no markers"),
            In("denoise", "FLOAT", default=1.0, min=0.0, max=1.0, step=0.01),
            In("width", "INT", default=1200, min=320, max=4096, step=8),
            In("height", "INT", default=400, min=240, max=4096, step=8),
            In("model", "MODEL", required=False),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, schedule, sampler_name, scheduler, steps, denoise, width, height, model=None):
        from latentgraph.nodes.sampling.ksampler_nodes import lookup_sampler, lookup_schedule
        from latentgraph.nodes.sampling.run import check_model
        from latentgraph.nodes.sampling.schedules import schedule_sigmas

        if schedule == FROM_MODEL:
            if model is None:
                raise NodeInputError("model", "is needed when schedule is 'model' (or pick a named schedule)")
            ms = check_model(model).model_sampling
            name = f"the model's training schedule ({check_model(model).arch})"
        elif schedule in NAMED_SCHEDULES:
            ms = named_model_sampling(schedule)
            name = f"{schedule} schedule"
        else:
            raise NodeInputError("schedule", f"unknown schedule {schedule!r}; known: {FROM_MODEL}, {', '.join(NAMED_SCHEDULES)}")
        sigmas = None
        label = ""
        if int(steps) > 0:
            sampler = lookup_sampler(ctx, sampler_name)
            sigmas = schedule_sigmas(lookup_schedule(ctx, scheduler), ms, int(steps),
                                     discard_penultimate=sampler.discard_penultimate_sigma, denoise=float(denoise))
            label = f"{sampler_name}/{scheduler}, {int(steps)} steps"
        curves = schedule_curves(ms, sigmas)
        title = f"{name}: T={len(curves.t)}, ᾱ_T={curves.alpha_bar[-1]:.4g}, σ from {curves.sigma[0]:.4g} to {curves.sigma[-1]:.4g}"
        return (to_image_tensor(plot_schedule(curves, int(width), int(height), title, label)),)
NODES = [SchedulePlot]
