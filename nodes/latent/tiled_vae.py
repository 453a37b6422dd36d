"""VAEEncodeTiled / VAEDecodeTiled: the VAE run on overlapping tiles, for pictures too large to
encode or decode at once.

Each tile is encoded/decoded on its own (``latents.encode_images`` / ``decode_latents``) and the
results are blended with weights that ramp linearly across the overlaps; as in ComfyUI, three
tilings (square, tall, wide tiles) are averaged, so no seam sits at the same place in all of them.
A tile sees less of the picture than the whole (the VAE's convolutions, group norms and its
mid-block attention reach across it), so the result is close to, not equal to, the untiled one;
with one tile covering the picture it is the untiled result exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.components import Autoencoder
from latentgraph.nodes.latents import DOWNSCALE_KEY, decode_latents, encode_images, latent_samples


def tile_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of ``tile`` covering ``[0, size)``, overlapping by ``overlap``;
    the last tile is pulled back to end at the border. Offsets are multiples of ``align``."""
    if tile >= size:
        return [0]
    stride = max(align, (tile - overlap) // align * align)
    starts = list(range(0, size - tile, stride)) + [(size - tile) // align * align]
    return sorted(set(starts))


def ramp(length: int, fade: int, fade_start: bool, fade_end: bool) -> Tensor:
    """Blend weights along one tile axis: rising over ``fade`` at faded ends, 1 elsewhere."""
    w = torch.ones(length)
    if fade > 0:
        steps = torch.arange(1, fade + 1, dtype=torch.float32) / (fade + 1)
        n = min(fade, length)
        if fade_start:
            w[:n] = torch.minimum(w[:n], steps[:n])
        if fade_end:
            w[length - n :] = torch.minimum(w[length - n :], steps[:n].flip(0))
    return w


def tiled_map(x: Tensor, fn: Callable[[Tensor], Tensor], tile_h: int, tile_w: int, overlap: int,
              scale: float, align: int = 1) -> Tensor:
    """``fn`` applied to overlapping tiles of ``x`` ``[B, C, H, W]`` and blended; ``fn`` maps a
    tile of ``h × w`` to ``h·scale × w·scale``."""
    b, _, height, width = x.shape
    out: Tensor | None = None
    weights: Tensor | None = None
    ys = tile_starts(height, tile_h, overlap, align)
    xs = tile_starts(width, tile_w, overlap, align)
    fade = round(overlap * scale)
    for y in ys:
        for x0 in xs:
            piece = fn(x[:, :, y : y + tile_h, x0 : x0 + tile_w])
            if out is None:
                out = torch.zeros(b, piece.shape[1], round(height * scale), round(width * scale))
                weights = torch.zeros(1, 1, out.shape[2], out.shape[3])
            oy, ox = round(y * scale), round(x0 * scale)
            ph, pw = piece.shape[2], piece.shape[3]
            wy = ramp(ph, fade, y > 0, y + tile_h < height)
            wx = ramp(pw, fade, x0 > 0, x0 + tile_w < width)
            w = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, oy : oy + ph, ox : ox + pw] += piece.float() * w
            weights[:, :, oy : oy + ph, ox : ox + pw] += w
    return out / weights


def _overlap(tile: int, overlap: int) -> int:
    return tile // 4 if tile < overlap * 4 else overlap


def _tilings(tile: int, align: int) -> list[tuple[int, int]]:
    """(tile_h, tile_w) of the three averaged tilings: square, wide, tall."""
    half = max(align, tile // 2 // align * align)
    return [(tile, tile), (half, tile * 2), (tile * 2, half)]


def decode_tiled(vae: Autoencoder, latents: Tensor, tile: int, overlap: int) -> Tensor:
    """Latents → IMAGE ``[B, H, W, 3]``; ``tile`` and ``overlap`` in latent cells."""
    overlap = _overlap(tile, overlap)
    fn = lambda z: decode_latents(vae, z).permute(0, 3, 1, 2)  # noqa: E731
    f = vae.downscale_factor
    if tile >= latents.shape[2] and tile >= latents.shape[3]:
        return decode_latents(vae, latents)
    runs = [tiled_map(latents.float(), fn, th, tw, overlap, f) for th, tw in _tilings(tile, 1)]
    return (sum(runs) / len(runs)).permute(0, 2, 3, 1).clamp(0.0, 1.0)


def encode_tiled(vae: Autoencoder, images: Tensor, tile: int, overlap: int) -> Tensor:
    """IMAGE ``[B, H, W, C]`` → unscaled latents; ``tile`` and ``overlap`` in pixels (rounded
    down to the VAE's scale; the picture is centre-cropped to it first, as VAEEncode does)."""
    f = vae.downscale_factor
    h, w = images.shape[1] // f * f, images.shape[2] // f * f
    if h == 0 or w == 0:
        raise NodeInputError("pixels", f"image {images.shape[2]}×{images.shape[1]} is smaller than the VAE's scale {f}")
    top, left = (images.shape[1] - h) // 2, (images.shape[2] - w) // 2
    pixels = images[:, top : top + h, left : left + w, :3].permute(0, 3, 1, 2)
    tile = max(f, tile // f * f)
    overlap = _overlap(tile, overlap) // f * f
    if tile >= h and tile >= w:
        return encode_images(vae, images)
    fn = lambda p: encode_images(vae, p.permute(0, 2, 3, 1))  # noqa: E731
    runs = [tiled_map(pixels, fn, th, tw, overlap, 1.0 / f, align=f) for th, tw in _tilings(tile, f)]
    return sum(runs) / len(runs)


_TEMPORAL = "Only used for video VAEs: "


def _temporal_inputs(verb: str) -> tuple[In, In]:
    """The video-only ``temporal_size`` / ``temporal_overlap`` inputs both tiled nodes take."""
    return (
        In("temporal_size", "INT", default=64, min=8, max=4096, step=4, tooltip=_TEMPORAL + f"Amount of frames to {verb} at a time."),
        In("temporal_overlap", "INT", default=8, min=4, max=4096, step=4, tooltip=_TEMPORAL + "Amount of frames to overlap."),
    )


class VAEEncodeTiled(Node):
    spec = NodeSpec(
        name="VAEEncodeTiled",
        display_name="VAE Encode (Tiled)",
        category="_for_testing",
        description="Encodes in overlapping tiles (less memory; close to, not exactly, VAEEncode's result).",
        inputs=(
            In("pixels", "IMAGE"),
            In("vae", "VAE"),
            In("tile_size", "INT", default=512, min=64, max=4096, step=64),
            In("overlap", "INT", default=64, min=0, max=4096, step=32),
            *_temporal_inputs("encode"),
        ),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, pixels, vae, tile_size=512, overlap=64, temporal_size=64, temporal_overlap=8):
        if not isinstance(pixels, Tensor) or pixels.ndim != 4:
            raise NodeInputError("pixels", "expected an IMAGE tensor [batch, height, width, channels]")
        if int(tile_size) < 1:
            raise NodeInputError("tile_size", f"must be positive, got {tile_size}")
        with ctx.memory.use(vae.vae):
            samples = encode_tiled(vae, pixels, int(tile_size), max(0, int(overlap)))
        return ({"samples": samples, DOWNSCALE_KEY: vae.downscale_factor},)


class VAEDecodeTiled(Node):
    spec = NodeSpec(
        name="VAEDecodeTiled",
        display_name="VAE Decode (Tiled)",
        category="_for_testing",
        description="Decodes in overlapping tiles (less memory; close to, not exactly, VAEDecode's result).",
        inputs=(
            In("samples", "LATENT"),
            In("vae", "VAE"),
            In("tile_size", "INT", default=512, min=64, max=4096, step=32),
            In("overlap", "INT", default=64, min=0, max=4096, step=32),
            *_temporal_inputs("decode"),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, samples, vae, tile_size=512, overlap=64, temporal_size=64, temporal_overlap=8):
        latents = latent_samples(samples, vae.downscale_factor, vae.latent_channels, "samples")
        if latents.shape[1] != vae.latent_channels:
            raise NodeInputError("samples", f"latent has {latents.shape[1]} channels but the VAE expects {vae.latent_channels}: "
                                 "it was made for another model")
        f = vae.downscale_factor
        tile = max(1, int(tile_size) // f)
        with ctx.memory.use(vae.vae):
            return (decode_tiled(vae, latents, tile, max(0, int(overlap)) // f),)


NODES = [VAEEncodeTiled, VAEDecodeTiled]
