"""Patches inside the UNet (and CLIP): FreeU, attention multipliers, perturbed attention, dtype.

All act for one UNet call at a time through :mod:`.unet_patching` (the ``unet_wrapper`` hook);
the MODEL they return is a copy, the shared ``unet`` module is left as it was. Weight-level
patches (CLIPAttentionMultiply, ModelComputeDtype) make a clone that shares every tensor they do
not change.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from typing import Any

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.lora import clone_sharing
from latentgraph.nodes.models.unet_patching import (
    attention_modules,
    during_unet_call,
    split_skip_pre_hook,
    temporary_hooks,
    temporary_processors,
    up_resnet_channels,
)
from latentgraph.nodes.sampling import hooks

log = logging.getLogger("latentgraph.models.patches")


def _factor(name: str, default: float, lo: float = 0.0, hi: float = 10.0) -> Any:
    return In(name, "FLOAT", default=default, min=lo, max=hi, step=0.01)


# -- FreeU ----------------------------------------------------------------------------------------
def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """Scale the lowest spatial frequencies (a 2·threshold square around DC) of ``x`` by ``scale``."""
    freq = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    mask = torch.ones_like(freq.real)
    h, w = freq.shape[-2:]
    ch, cw = h // 2, w // 2
    mask[..., max(ch - threshold, 0) : ch + threshold, max(cw - threshold, 0) : cw + threshold] = scale
    out = torch.fft.ifftn(torch.fft.ifftshift(freq * mask, dim=(-2, -1)), dim=(-2, -1)).real
    return out.to(x.dtype)


def freeu_rule(model_channels: int, b1: float, b2: float, s1: float, s2: float, v2: bool):
    """ComfyUI's FreeU on one output block: the first half of the backbone features ``h`` scaled
    by b (V2: weighted by the normalised channel mean), the skip's low frequencies by s. Applies
    where ``h`` has 4× (b1, s1) or 2× (b2, s2) the model's base channels."""
    scales = {model_channels * 4: (b1, s1), model_channels * 2: (b2, s2)}

    def rule(h: torch.Tensor, skip: torch.Tensor):
        scale = scales.get(int(h.shape[1]))
        if scale is None:
            return h, skip
        half = h.shape[1] // 2
        factor: Any = scale[0]
        if v2:
            mean = h.mean(1, keepdim=True)
            flat = mean.flatten(1)
            lo = flat.min(-1).values.view(-1, 1, 1, 1)
            hi = flat.max(-1).values.view(-1, 1, 1, 1)
            factor = (scale[0] - 1) * (mean - lo) / (hi - lo) + 1
        h = torch.cat([h[:, :half] * factor, h[:, half:]], dim=1)
        return h, fourier_filter(skip, 1, scale[1])

    return rule


def freeu(model: DiffusionModel, b1: float, b2: float, s1: float, s2: float, v2: bool) -> DiffusionModel:
    config = dict(model.unet.config)
    rule = freeu_rule(int(config["block_out_channels"][0]), b1, b2, s1, s2, v2)
    pre = {name: split_skip_pre_hook(ch, rule) for name, ch in up_resnet_channels(config).items()}
    return during_unet_call(model, lambda args: temporary_hooks(args["unet"], pre=pre))


class FreeU(Node):
    spec = NodeSpec(
        name="FreeU",
        category="model_patches/unet",
        description="FreeU (Si et al. 2023): boosts backbone features and damps skip-connection low "
        "frequencies in the decoder, applied during each UNet call.",
        inputs=(In("model", "MODEL"), _factor("b1", 1.1), _factor("b2", 1.2), _factor("s1", 0.9), _factor("s2", 0.2)),
        outputs=(Out("MODEL"),),
    )
    v2 = False

    def execute(self, ctx, model, b1=1.1, b2=1.2, s1=0.9, s2=0.2):
        return (freeu(model, b1, b2, s1, s2, self.v2),)


class FreeU_V2(FreeU):  # noqa: N801 - ComfyUI's class name
    spec = replace(FreeU.spec, name="FreeU_V2", inputs=(
        In("model", "MODEL"), _factor("b1", 1.3), _factor("b2", 1.4), _factor("s1", 0.9), _factor("s2", 0.2)))
    v2 = True

    def execute(self, ctx, model, b1=1.3, b2=1.4, s1=0.9, s2=0.2):
        return (freeu(model, b1, b2, s1, s2, True),)


# -- attention multipliers ----------------------------------------------------------------------------
def _scale_output(factor: float):
    def hook(module, inputs, output):
        return output * factor

    return hook


def attention_multiply(model: DiffusionModel, kind: str, q: float, k: float, v: float, out: float) -> DiffusionModel:
    """ComfyUI scales the q/k/v/out projection weights and biases: the same as scaling their outputs."""
    forward = {}
    for name in attention_modules(model.unet, kind):
        for proj, f in (("to_q", q), ("to_k", k), ("to_v", v), ("to_out.0", out)):
            if f != 1.0:
                forward[f"{name}.{proj}"] = _scale_output(f)
    if not forward:
        return model
    return during_unet_call(model, lambda args: temporary_hooks(args["unet"], forward=forward))


_QKV = (_factor("q", 1.0), _factor("k", 1.0), _factor("v", 1.0), _factor("out", 1.0))


class UNetSelfAttentionMultiply(Node):
    spec = NodeSpec(
        name="UNetSelfAttentionMultiply",
        category="_for_testing/attention_experiments",
        description="Scales the UNet's self-attention query, key, value and output projections.",
        inputs=(In("model", "MODEL"), *_QKV),
        outputs=(Out("MODEL"),),
    )
    kind = "self"

    def execute(self, ctx, model, q=1.0, k=1.0, v=1.0, out=1.0):
        return (attention_multiply(model, self.kind, q, k, v, out),)


class UNetCrossAttentionMultiply(UNetSelfAttentionMultiply):
    spec = replace(UNetSelfAttentionMultiply.spec, name="UNetCrossAttentionMultiply",
                   description="Scales the UNet's cross-attention (text) query, key, value and output projections.")
    kind = "cross"


class CLIPAttentionMultiply(Node):
    spec = NodeSpec(
        name="CLIPAttentionMultiply",
        category="_for_testing/attention_experiments",
        description="Scales the text encoder's self-attention q/k/v/out projections (a copy; the input CLIP is unchanged).",
        inputs=(In("clip", "CLIP"), *_QKV),
        outputs=(Out("CLIP"),),
    )

    def execute(self, ctx, clip, q=1.0, k=1.0, v=1.0, out=1.0):
        factors = {"q_proj": q, "k_proj": k, "v_proj": v, "out_proj": out}
        if all(f == 1.0 for f in factors.values()):
            return (clip,)
        encoders = []
        for enc in clip.encoders:
            new = {}
            for name, p in enc.named_parameters():
                parts = name.split(".")
                if len(parts) >= 3 and parts[-3] == "self_attn" and factors.get(parts[-2], 1.0) != 1.0:
                    new[name] = p.detach() * factors[parts[-2]]
            encoders.append(clone_sharing(enc, new))
        return (replace(clip, encoders=encoders),)


# -- perturbed attention guidance ---------------------------------------------------------------------
class _IdentityAttention:
    """Self-attention replaced by its values (each token attends only to itself): PAG's perturbation."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *a, **kw):
        shape = hidden_states.shape
        if hidden_states.ndim == 4:
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        out = attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))
        if len(shape) == 4:
            out = out.transpose(1, 2).reshape(shape)
        if attn.residual_connection:
            out = out + (hidden_states if len(shape) == 3 else hidden_states.transpose(1, 2).reshape(shape))
        return out / attn.rescale_output_factor


def perturbed_attention_guidance(model: DiffusionModel, scale: float) -> DiffusionModel:
    """PAG (Ahn et al. 2024) as ComfyUI does it: one more UNet pass for the positive prompt with
    the middle block's self-attention made the identity; ``denoised += scale·(cond − perturbed)``.

    The extra pass runs inside the UNet call that evaluates the positive (its rows of the batch),
    the post-CFG hook then turns it into an x0 estimate. Positives split into areas are left
    unguided (a warning), as there is no single full-size positive pass to perturb.
    """
    if scale == 0:
        return model
    names = [n for n in attention_modules(model.unet, "self") if n.startswith("mid_block.")]
    if not names:
        raise NodeInputError("model", "this UNet has no self-attention in its middle block to perturb")
    stash: dict[str, Any] = {}

    def wrapper(apply, args):
        out = apply(args["input"], args["timestep"], **args["kwargs"])
        chunks = args["cond_or_uncond"]
        if chunks.count(0) == 1:
            rows = args["input"].shape[0] // len(chunks)
            i = chunks.index(0)
            sl = slice(i * rows, (i + 1) * rows)
            kwargs = {k: (v[sl] if torch.is_tensor(v) else ({kk: vv[sl] for kk, vv in v.items()} if isinstance(v, dict) else v))
                      for k, v in args["kwargs"].items()}
            with temporary_processors(model.unet, {n: (lambda old: _IdentityAttention()) for n in names}):
                stash["out"] = apply(args["input"][sl], args["timestep"][sl], **kwargs)
            stash["sigma"] = args["sigma"][sl]
        elif 0 in chunks:
            stash["skip"] = True
        return out

    def post_cfg(args):
        out, sigma = stash.pop("out", None), stash.pop("sigma", None)
        if out is None or out.shape[-2:] != args["input"].shape[-2:]:
            if stash.pop("skip", False):
                log.warning("PerturbedAttentionGuidance: the positive is split into areas; this step is not guided")
            return args["denoised"]
        pag = args["model"].model_sampling.calculate_denoised(sigma, out.float().to(args["input"].device), args["input"])
        return args["denoised"] + (args["cond_denoised"] - pag) * scale

    return hooks.with_hook(hooks.with_hook(model, hooks.UNET_WRAPPER, wrapper), hooks.POST_CFG, post_cfg)


class PerturbedAttentionGuidance(Node):
    spec = NodeSpec(
        name="PerturbedAttentionGuidance",
        category="model_patches/unet",
        description="Perturbed-Attention Guidance: steers away from a pass whose middle-block self-attention is the identity.",
        inputs=(In("model", "MODEL"), In("scale", "FLOAT", default=3.0, min=0.0, max=100.0, step=0.01)),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, model, scale=3.0):
        return (perturbed_attention_guidance(model, scale),)


# -- compute dtype ------------------------------------------------------------------------------------
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ModelComputeDtype(Node):
    spec = NodeSpec(
        name="ModelComputeDtype",
        display_name="ModelComputeDtype",
        category="advanced/debug/model",
        description="Runs the UNet in another dtype (a converted copy; 'default' keeps the model as loaded).",
        inputs=(In("model", "MODEL"), In("dtype", "COMBO", choices=("default", "fp32", "fp16", "bf16"))),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, model, dtype="default"):
        if dtype == "default" or _DTYPES[dtype] == model.dtype:
            return (model,)
        target = _DTYPES[dtype]
        with torch.no_grad():
            unet = copy.deepcopy(model.unet).to(dtype=target)
        return (replace(model, unet=unet, dtype=target, info={**model.info, "compute_dtype": dtype}),)


NODES = [FreeU, FreeU_V2, UNetSelfAttentionMultiply, UNetCrossAttentionMultiply, CLIPAttentionMultiply,
         PerturbedAttentionGuidance, ModelComputeDtype]
