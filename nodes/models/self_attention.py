"""Patches of the UNet's self-attention: HyperTile, token merging (ToMe), self-attention guidance (SAG).

Each swaps the ``processor`` of diffusers ``Attention`` modules (``attn1``) for one UNet call at a
time (:func:`~latentgraph.nodes.models.unet_patching.temporary_processors` inside the
``unet_wrapper`` hook), so the shared UNet is never left patched. :class:`SelfAttentionPatch` is
the processor: it computes ordinary scaled-dot-product self-attention, with the query tokens and
the key/value tokens prepared by a ``prepare`` function (tiling, merging) and the output turned
back by the function ``prepare`` returns; other calls (cross-attention, masks, spatial norms) go to
the processor it replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.models.unet_patching import attention_modules, during_unet_call, temporary_processors
from latentgraph.nodes.sampling import hooks

log = logging.getLogger("latentgraph.models.self_attention")

#: ``prepare(hidden [B, N, C]) -> (query tokens, key/value tokens, finish(out) -> out)``
Prepare = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]]


def attend(attn: Any, q_in: torch.Tensor, kv_in: torch.Tensor, probs: bool = False):
    """diffusers ``Attention`` on explicit query / key-value tokens, before ``to_out``.

    Returns ``out [B, Nq, heads·d]`` and, with ``probs``, the softmax ``[B, heads, Nq, Nkv]``."""
    q, k, v = attn.to_q(q_in), attn.to_k(kv_in), attn.to_v(kv_in)
    b, heads = q.shape[0], attn.heads
    d = k.shape[-1] // heads
    q, k, v = (t.view(t.shape[0], -1, heads, d).transpose(1, 2) for t in (q, k, v))
    if getattr(attn, "norm_q", None) is not None:
        q = attn.norm_q(q)
    if getattr(attn, "norm_k", None) is not None:
        k = attn.norm_k(k)
    weights = None
    if probs:
        weights = ((q.float() @ k.float().transpose(-1, -2)) * attn.scale).softmax(-1)
        out = (weights.to(v.dtype) @ v)
    else:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False, scale=attn.scale)
    out = out.transpose(1, 2).reshape(b, -1, heads * d).to(q.dtype)
    return out, weights


class SelfAttentionPatch:
    """An ``attn1`` processor: self-attention with prepared tokens (see the module docstring)."""

    def __init__(self, old: Any, prepare: Prepare | None = None,
                 record: Callable[[torch.Tensor], None] | None = None) -> None:
        self.old, self.prepare, self.record = old, prepare, record

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        plain = (encoder_hidden_states is None and attention_mask is None and hidden_states.ndim == 3
                 and getattr(attn, "spatial_norm", None) is None and getattr(attn, "group_norm", None) is None)
        if not plain:
            return self.old(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        residual = hidden_states
        q_in, kv_in, finish = self.prepare(hidden_states) if self.prepare else (hidden_states, hidden_states, None)
        out, weights = attend(attn, q_in, kv_in, probs=self.record is not None)
        if weights is not None:
            self.record(weights)
        out = attn.to_out[1](attn.to_out[0](out))
        if finish is not None:
            out = finish(out)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def level_sizes(height: int, width: int, depth: int) -> list[tuple[int, int]]:
    """Token grid of each UNet level: diffusers' stride-2 convs give ⌈n/2⌉ per level."""
    sizes = [(height, width)]
    for _ in range(depth):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def _call_generator(args: dict[str, Any]) -> torch.Generator:
    """Random choices made per UNet call, reproducible from the timestep (ComfyUI draws from torch's
    global generator; this leaves it alone)."""
    return torch.Generator().manual_seed(int(float(args["timestep"].flatten()[0]) * 1000) & 0x7FFFFFFF)


def _with_self_attention(model: DiffusionModel, make_prepare: Callable[[dict[str, Any]], Prepare]) -> DiffusionModel:
    names = attention_modules(model.unet, "self")

    def factory(args):
        prepare = make_prepare(args)
        return temporary_processors(args["unet"], {n: (lambda old: SelfAttentionPatch(old, prepare)) for n in names})

    return during_unet_call(model, factory)


# -- HyperTile ------------------------------------------------------------------------------------
def random_divisor(value: int, min_value: int, max_options: int, generator: torch.Generator) -> int:
    """How many tiles to cut ``value`` cells into so each is at least ``min_value`` cells: one of the
    ``max_options`` largest counts. As in HyperTile (and ComfyUI) the draw is over all but the last
    of those options."""
    min_value = min(min_value, value)
    counts = [value // i for i in range(min_value, value + 1) if value % i == 0][:max_options]
    if len(counts) > 1:
        return counts[int(torch.randint(0, len(counts) - 1, (1,), generator=generator))]
    return counts[0]


def hypertile_prepare(args: dict[str, Any], tile_size: int, swap_size: int, max_depth: int, scale_depth: bool) -> Prepare:
    """Self-attention within tiles of at least ``tile_size`` pixels (HyperTile, tfernd 2023) at the
    top ``max_depth + 1`` levels of the UNet."""
    latent_tile = max(32, tile_size) // 8
    height, width = (int(s) for s in args["input"].shape[-2:])
    levels = level_sizes(height, width, max_depth)
    generator = _call_generator(args)

    def prepare(x: torch.Tensor):
        n = x.shape[1]
        depth = next((i for i, (h, w) in enumerate(levels) if h * w == n), None)
        if depth is None:
            return x, x, None
        h, w = levels[depth]
        factor = 2**depth if scale_depth else 1
        nh = random_divisor(h, latent_tile * factor, swap_size, generator)
        nw = random_divisor(w, latent_tile * factor, swap_size, generator)
        if nh * nw <= 1:
            return x, x, None
        b, _, c = x.shape
        th, tw = h // nh, w // nw
        tiles = x.view(b, nh, th, nw, tw, c).permute(0, 1, 3, 2, 4, 5).reshape(b * nh * nw, th * tw, c)

        def finish(out: torch.Tensor) -> torch.Tensor:
            c2 = out.shape[-1]
            return out.view(b, nh, nw, th, tw, c2).permute(0, 1, 3, 2, 4, 5).reshape(b, n, c2)

        return tiles, tiles, finish

    return prepare


class HyperTile(Node):
    spec = NodeSpec(
        name="HyperTile",
        category="model_patches/unet",
        description="HyperTile: the top levels of the UNet attend within tiles instead of the whole image "
        "(faster at large sizes).",
        inputs=(
            In("model", "MODEL"),
            In("tile_size", "INT", default=256, min=1, max=2048),
            In("swap_size", "INT", default=2, min=1, max=128),
            In("max_depth", "INT", default=0, min=0, max=10),
            In("scale_depth", "BOOLEAN", default=False),
        ),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, model, tile_size=256, swap_size=2, max_depth=0, scale_depth=False):
        return (_with_self_attention(
            model, lambda args: hypertile_prepare(args, tile_size, swap_size, max_depth, scale_depth)),)


# -- token merging ---------------------------------------------------------------------------------
def bipartite_merge(metric: torch.Tensor, h: int, w: int, r: int, generator: torch.Generator):
    """ToMe for SD (Bolya & Hoffman 2023): in each 2×2 cell of the ``h×w`` token grid one random
    token is a destination, the others sources; the ``r`` sources most similar (cosine) to a
    destination are averaged into it. Returns ``merge(x) -> [B, N−r, C]`` and its inverse
    ``unmerge(y) -> [B, N, C]`` (a merged source gets its destination's value back)."""
    b, n, _ = metric.shape
    if r <= 0 or h == 1 or w == 1:
        return None
    hs, ws = h // 2, w // 2
    pick = torch.randint(4, (hs, ws), generator=generator)
    is_dst = torch.zeros(h, w, dtype=torch.bool)
    rows = torch.arange(hs)[:, None] * 2 + pick // 2
    cols = torch.arange(ws)[None, :] * 2 + pick % 2
    is_dst[rows, cols] = True
    flat = is_dst.flatten().to(metric.device)
    dst_pos, src_pos = flat.nonzero().squeeze(1), (~flat).nonzero().squeeze(1)
    r = min(r, src_pos.numel())
    with torch.no_grad():
        m = metric / metric.norm(dim=-1, keepdim=True)
        scores = m[:, src_pos] @ m[:, dst_pos].transpose(-1, -2)
        best, best_dst = scores.max(dim=-1)
        order = best.argsort(dim=-1, descending=True)
        moved, kept = order[:, :r], order[:, r:]
        target = best_dst.gather(1, moved)
    kept_pos, moved_pos = src_pos[kept], src_pos[moved]  # [B, ·] token positions

    def take(x, idx):
        return x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))

    def merge(x: torch.Tensor) -> torch.Tensor:
        src, dst = x[:, src_pos], x[:, dst_pos]
        dst = dst.scatter_reduce(1, target[..., None].expand(-1, -1, x.shape[-1]), take(src, moved), reduce="mean")
        return torch.cat([take(src, kept), dst], dim=1)

    def unmerge(y: torch.Tensor) -> torch.Tensor:
        c = y.shape[-1]
        unm, dst = y[:, : kept.shape[1]], y[:, kept.shape[1]:]
        out = torch.zeros(y.shape[0], n, c, device=y.device, dtype=y.dtype)
        out[:, dst_pos] = dst
        out.scatter_(1, kept_pos[..., None].expand(-1, -1, c), unm)
        out.scatter_(1, moved_pos[..., None].expand(-1, -1, c), take(dst, target))
        return out

    return merge, unmerge


def tome_prepare(args: dict[str, Any], ratio: float) -> Prepare:
    """ComfyUI's use of ToMe: at the full-resolution level only, the queries are merged (keys and
    values stay whole) and the attention output unmerged."""
    height, width = (int(s) for s in args["input"].shape[-2:])
    generator = _call_generator(args)

    def prepare(x: torch.Tensor):
        if x.shape[1] != height * width:
            return x, x, None
        fns = bipartite_merge(x, height, width, int(x.shape[1] * ratio), generator)
        if fns is None:
            return x, x, None
        merge, unmerge = fns
        return merge(x), x, unmerge

    return prepare


class TomePatchModel(Node):
    spec = NodeSpec(
        name="TomePatchModel",
        category="model_patches/unet",
        description="Token merging (ToMe): the full-resolution self-attention queries a ratio fewer, merged "
        "tokens (faster; 0 changes nothing).",
        inputs=(In("model", "MODEL"), In("ratio", "FLOAT", default=0.3, min=0.0, max=1.0, step=0.01)),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, model, ratio=0.3):
        return (_with_self_attention(model, lambda args: tome_prepare(args, ratio)),)


# -- self-attention guidance -------------------------------------------------------------------------
def gaussian_blur(img: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    half = (kernel_size - 1) * 0.5
    x = torch.linspace(-half, half, steps=kernel_size)
    pdf = torch.exp(-0.5 * (x / sigma).pow(2))
    k1 = (pdf / pdf.sum()).to(device=img.device, dtype=img.dtype)
    k2 = (k1[:, None] @ k1[None, :]).expand(img.shape[-3], 1, kernel_size, kernel_size)
    pad = kernel_size // 2
    return F.conv2d(F.pad(img, [pad] * 4, mode="reflect"), k2, groups=img.shape[-3])


def blur_where_attended(x0: torch.Tensor, attn: torch.Tensor, grid: tuple[int, int], sigma: float,
                        threshold: float = 1.0) -> torch.Tensor:
    """SAG's degraded image: ``x0`` blurred where the (head-averaged) self-attention map gives a
    token more than ``threshold`` total attention, left sharp elsewhere."""
    b, _, lh, lw = x0.shape
    n = attn.shape[-1]
    mask = attn.reshape(b, -1, n, n).mean(1).sum(1) > threshold  # [B, N]
    mask = F.interpolate(mask.reshape(b, 1, *grid).to(x0.dtype), (lh, lw))
    if sigma <= 0:
        return x0
    blurred = gaussian_blur(x0, 9, sigma)
    return blurred * mask + x0 * (1 - mask)


def self_attention_guidance(model: DiffusionModel, scale: float, blur_sigma: float) -> DiffusionModel:
    """SAG (Hong et al. 2023) as ComfyUI does it: the negative's pass records the softmax of the
    first self-attention of the middle block; after CFG the negative's x0 is blurred where that map
    is high, re-noised to the current x and denoised once more with the negative's conditioning;
    ``denoised += scale·(degraded − that prediction)``.

    The extra pass reuses the conditioning tensors of the recorded UNet call. Negatives split into
    areas are left unguided (a warning), as ComfyUI's own recording is of one UNet call. At cfg 1
    the sampler skips the negative (ComfyUI evaluates it for SAG); then nothing is recorded and
    the step is unguided.
    """
    names = [n for n in attention_modules(model.unet, "self") if n.startswith("mid_block.")]
    if not names:
        raise NodeInputError("model", "this UNet has no self-attention in its middle block")
    target = names[0]
    depth = len(model.unet.config["block_out_channels"]) - 1
    state: dict[str, Any] = {"own": False}

    def wrapper(apply, args):
        chunks = [] if state["own"] else list(args["cond_or_uncond"])
        x = args["input"]
        if chunks.count(1) != 1:
            if 1 in chunks:
                state["split"] = True
            return apply(x, args["timestep"], **args["kwargs"])
        rows = x.shape[0] // len(chunks)
        i = chunks.index(1)
        sl = slice(i * rows, (i + 1) * rows)

        def record(weights):  # [B, heads, N, N]
            state["attn"] = weights[sl].reshape(-1, *weights.shape[-2:]).detach()

        with temporary_processors(model.unet, {target: lambda old: SelfAttentionPatch(old, record=record)}):
            out = apply(x, args["timestep"], **args["kwargs"])
        kw = args["kwargs"]
        added = kw.get("added_cond_kwargs")
        state["uncond"] = {
            "hidden": kw["encoder_hidden_states"][sl],
            "added": {k: v[sl] for k, v in added.items()} if added else None,
            "timestep_cond": kw["timestep_cond"][sl] if kw.get("timestep_cond") is not None else None,
            # inpainting / instruct-pix2pix channels and the unCLIP embedding go into the extra
            # pass too (GLIGEN grounding does not: its layers are attached per entry)
            "concat": kw["c_concat"][sl] if kw.get("c_concat") is not None else None,
            "class_labels": kw["class_labels"][sl] if kw.get("class_labels") is not None else None,
            "hw": tuple(x.shape[-2:]),
        }
        return out

    def post_cfg(args):
        from latentgraph.nodes.sampling.cond_items import CondItem
        from latentgraph.nodes.sampling.guidance import apply_model
        from latentgraph.nodes.sampling.unet_inputs import EntryInputs

        attn, uncond = state.pop("attn", None), state.pop("uncond", None)
        denoised, x = args["denoised"], args["input"]
        split = state.pop("split", False)
        if attn is None or uncond is None or uncond["hw"] != tuple(x.shape[-2:]) or min(denoised.shape[2:]) <= 4:
            if split:
                log.warning("SelfAttentionGuidance: the negative is split into areas; this step is not guided")
            return denoised
        uncond_pred = args["uncond_denoised"]
        grid = level_sizes(int(x.shape[-2]), int(x.shape[-1]), depth)[-1]
        degraded = blur_where_attended(uncond_pred, attn, grid, blur_sigma)
        extra = None
        if uncond["concat"] is not None or uncond["class_labels"] is not None:
            extra = EntryInputs(concat=uncond["concat"], class_labels=uncond["class_labels"])
        item = CondItem(hidden=uncond["hidden"], added=uncond["added"], timestep_cond=uncond["timestep_cond"],
                        unet_inputs=extra)
        state["own"] = True
        try:
            sag = apply_model(args["model"], [degraded + x - uncond_pred], args["sigma"], [item], [1])
        finally:
            state["own"] = False
        return denoised + (degraded - sag) * scale

    patched = hooks.with_hook(hooks.with_hook(model, hooks.UNET_WRAPPER, wrapper), hooks.POST_CFG, post_cfg)
    # ComfyUI's disable_cfg1_optimization: SAG needs the negative's pass even at cfg 1 (honoured once
    # the guider reads this option).
    return replace(patched, options={**patched.options, "disable_cfg1_optimization": True})


class SelfAttentionGuidance(Node):
    spec = NodeSpec(
        name="SelfAttentionGuidance",
        display_name="Self-Attention Guidance",
        category="_for_testing",
        description="Self-Attention Guidance: steers away from the negative's prediction on an image blurred "
        "where the middle block's self-attention is concentrated.",
        inputs=(
            In("model", "MODEL"),
            In("scale", "FLOAT", default=0.5, min=-2.0, max=5.0, step=0.01),
            In("blur_sigma", "FLOAT", default=2.0, min=0.0, max=10.0, step=0.1),
        ),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, model, scale=0.5, blur_sigma=2.0):
        return (self_attention_guidance(model, scale, blur_sigma),)


NODES = [HyperTile, TomePatchModel, SelfAttentionGuidance]
