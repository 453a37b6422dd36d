"""ForwardProcessStrip: a picture noised to chosen training steps, by the closed form and by the loop.

The forward process adds noise one step at a time, x_t = √(1 − β_t)·x_t−1 + √β_t·ε_t (the
"naive loop" of the articles), and folds into one jump from the clean latent,
q(x_t | x₀): x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε. Both rows are drawn from the same clean latent:

* closed form: one ε, the seed's initial noise (``prepare_noise``, exactly what KSampler draws), at
  growing weight; the LATENT output holds these frames in the LATENT convention (unscaled latents,
  σ form x₀ + σ_t·ε: what a sampler starting at σ_t would be given);
* naive loop: T steps, a fresh ε_t each (one CPU generator seeded with the seed, so its first draw
  is the closed form's ε); in distribution the same as the closed form, in pixels a different draw.

Pictures are decoded from √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε (= the σ form divided by √(1 + σ²), the UNet's
own input scaling): the variance-preserving form the articles draw. Cost: one VAE decode per frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.inspect.drawing import draw_grid, to_array, to_image_tensor, zoom
from latentgraph.nodes.sampling.model_sampling import ModelSampling

MAX_FRAMES = 32


@dataclass(frozen=True)
class ForwardFrame:
    t: int
    alpha_bar: float
    sigma: float
    #: x₀ + σ_t·ε in the model's latent space (the σ form samplers use).
    noisy: torch.Tensor
    #: √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, model space (what is decoded).
    vp: torch.Tensor


def alphas_cumprod(ms: ModelSampling) -> torch.Tensor:
    """ᾱ_t of every training step (float64), from the σ the samplers use: ᾱ = 1/(1 + σ²)."""
    return 1.0 / (1.0 + ms.sigmas.double() ** 2)


def even_timesteps(count: int, total: int) -> list[int]:
    """``count`` steps ending at the last: t_k = round((k + 1)·T/count) − 1."""
    return [int(round((k + 1) * total / count)) - 1 for k in range(count)]


def parse_timesteps(text: str, total: int, frames: int) -> list[int]:
    """Comma-separated training steps (0-based), or evenly spaced ones when empty."""
    if not str(text).strip():
        return even_timesteps(int(frames), total)
    out = []
    for part in str(text).replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            t = int(part)
        except ValueError:
            raise NodeInputError("timesteps", f"{part!r} is not a whole number; write e.g. '0, 250, 500, 999'") from None
        if not 0 <= t < total:
            raise NodeInputError("timesteps", f"{t} is outside the model's training steps 0…{total - 1}")
        out.append(t)
    if len(out) > MAX_FRAMES:
        raise NodeInputError("timesteps", f"{len(out)} steps; at most {MAX_FRAMES}")
    return out


def closed_form(ms: ModelSampling, x0: torch.Tensor, noise: torch.Tensor, timesteps: Sequence[int]) -> list[ForwardFrame]:
    """q(x_t | x₀) at each step, one ε for all (``x0`` and ``noise`` in the model's latent space)."""
    abar = alphas_cumprod(ms)
    frames = []
    for t in timesteps:
        sigma = ms.sigmas[int(t)]
        noisy = ms.noise_scaling(sigma, noise, x0)  # x0 + σ·ε, exactly as a sampler's start
        frames.append(ForwardFrame(int(t), float(abar[t]), float(sigma), noisy, noisy / torch.sqrt(1.0 + sigma**2)))
    return frames


def loop_frames(ms: ModelSampling, x0: torch.Tensor, seed: int, timesteps: Sequence[int]) -> dict[int, torch.Tensor]:
    """x_t = √(1 − β_t)·x_t−1 + √β_t·ε_t from x₀, step by step (variance-preserving form, model
    space); returns the x_t at the requested steps."""
    abar = alphas_cumprod(ms)
    betas = 1.0 - abar / torch.cat([abar.new_ones(1), abar[:-1]])
    wanted = set(int(t) for t in timesteps)
    generator = torch.Generator("cpu").manual_seed(int(seed))
    x = x0.double()
    out: dict[int, torch.Tensor] = {}
    for t in range(max(wanted) + 1 if wanted else 0):
        eps = torch.randn(x0.shape, dtype=torch.float32, generator=generator).double()
        x = torch.sqrt(1.0 - betas[t]) * x + torch.sqrt(betas[t]) * eps
        if t in wanted:
            out[t] = x.float()
    return out


class ForwardProcessStrip(Node):
    spec = NodeSpec(
        name="ForwardProcessStrip",
        display_name="Forward Process Strip q(x_t | x0)",
        category="inspect",
        description=(
            "Noises a picture (IMAGE, or LATENT) to chosen training steps by the closed form "
            "√ᾱ_t·x0 + √(1−ᾱ_t)·ε (the seed's noise), and optionally step by step (the naive loop), "
            "decoded side by side with t and ᾱ_t under each. Cost: one VAE decode per frame."
        ),
        inputs=(
            In("model", "MODEL", tooltip="its training schedule gives ᾱ_t; its latent scale the units"),
            In("vae", "VAE"),
            In("seed", "INT", default=0, min=0, max=0xFFFF_FFFF_FFFF_FFFF, control_after_generate=True),
            In("frames", "INT", default=8, min=1, max=MAX_FRAMES, tooltip="evenly spaced steps, when timesteps is empty"),
            In("timesteps", "STRING", default="", tooltip="training steps to show, e.g. '0, 100, 250, 500, 999' (0-based)"),
            In("naive_loop", "BOOLEAN", default=True, tooltip="add a row noised step by step, as the articles' loop"),
            In("zoom", "INT", default=1, min=1, max=8, tooltip="enlarge frames (nearest neighbour)"),
            In("image", "IMAGE", required=False),
            In("latent", "LATENT", required=False),
        ),
        outputs=(Out("IMAGE", "strip"), Out("LATENT", "noisy")),
    )

    def execute(self, ctx, model, vae, seed, frames, timesteps, naive_loop, zoom=1, image=None, latent=None):
        from latentgraph.nodes.latents import DOWNSCALE_KEY, decode_latents, encode_images
        from latentgraph.nodes.sampling.ksampler_nodes import input_latent
        from latentgraph.nodes.sampling.run import check_model, prepare_noise, process_latent_in, process_latent_out

        model = check_model(model)
        if image is None and latent is None:
            raise NodeInputError("image", "connect a picture (image) or a latent")
        if image is not None and latent is not None:
            raise NodeInputError("latent", "connect either image or latent, not both")
        if latent is not None:
            z, downscale = input_latent(model, latent, "latent")
        else:
            if not isinstance(image, torch.Tensor) or image.ndim != 4:
                raise NodeInputError("image", "expected an IMAGE tensor [batch, height, width, channels]")
            z, downscale = encode_images(vae, image, ctx.memory), vae.downscale_factor
        z = z[:1].float()
        ms = model.model_sampling
        steps = parse_timesteps(timesteps, ms.num_timesteps, frames)
        if not steps:
            raise NodeInputError("timesteps", "names no step")
        x0 = process_latent_in(model, z)
        noise = prepare_noise(z, int(seed))
        forward = closed_form(ms, x0, noise, steps)
        rows = [[z] + [process_latent_out(model, f.vp) for f in forward]]
        labels = ["closed form"]
        if naive_loop:
            looped = loop_frames(ms, x0, int(seed), steps)
            rows.append([None] + [process_latent_out(model, looped[t]) for t in steps])
            labels.append("naive loop")
        pictures = []
        for row in rows:
            decoded = decode_latents(vae, torch.cat([x for x in row if x is not None]), ctx.memory)
            it = iter(decoded)
            pictures.append([None if x is None else zoom_array(next(it), int(zoom)) for x in row])
        captions = [[("x₀", "ᾱ=1")] + [(f"t={f.t}", f"ᾱ={f.alpha_bar:.4f}") for f in forward]]
        captions.append([()] + [(f"t={f.t}", "") for f in forward])
        canvas, _ = draw_grid(pictures, row_labels=labels if naive_loop else (), captions=captions)
        noisy = torch.cat([process_latent_out(model, f.noisy) for f in forward]).float().cpu()
        return (to_image_tensor(canvas), {"samples": noisy, DOWNSCALE_KEY: downscale})


def zoom_array(picture: torch.Tensor, factor: int):
    return zoom(to_array(picture), factor)


NODES = [ForwardProcessStrip]
