"""Guidance patches: how the positive and negative predictions become one (ComfyUI's formulas).

Each returns a copy of the MODEL with a hook (:mod:`latentgraph.nodes.sampling.hooks`):
``cfg_function`` replaces CFG, ``pre_cfg`` changes the predictions before it, ``post_cfg`` the
guided result after it. Hook arguments follow ComfyUI: ``cond``/``uncond`` are ``x − x0`` (ε·σ),
``cond_denoised``/``uncond_denoised``/``denoised`` are x0 estimates.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.sampling import hooks


def _sigma(args: dict[str, Any], like: torch.Tensor) -> torch.Tensor:
    s = args["sigma"]
    return s.reshape(s.shape[:1] + (1,) * (like.ndim - 1))


# -- the maths, callable without a graph ---------------------------------------------------------------
def rescale_cfg(multiplier: float):
    """Lin et al. 2023 §3.4: CFG in v space, its std rescaled to the positive's, blended by ``multiplier``."""

    def fn(args):
        cond, uncond, scale, x_orig = args["cond"], args["uncond"], args["cond_scale"], args["input"]
        sigma = _sigma(args, cond)
        x = x_orig / (sigma * sigma + 1.0)
        v_cond = ((x - (x_orig - cond)) * (sigma**2 + 1.0) ** 0.5) / sigma
        v_uncond = ((x - (x_orig - uncond)) * (sigma**2 + 1.0) ** 0.5) / sigma
        v_cfg = v_uncond + scale * (v_cond - v_uncond)
        ro_pos = torch.std(v_cond, dim=tuple(range(1, cond.ndim)), keepdim=True)
        ro_cfg = torch.std(v_cfg, dim=tuple(range(1, cond.ndim)), keepdim=True)
        v_final = multiplier * v_cfg * (ro_pos / ro_cfg) + (1.0 - multiplier) * v_cfg
        return x_orig - (x - v_final * sigma / (sigma * sigma + 1.0) ** 0.5)

    return fn


def optimized_scale(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """CFG-Zero*'s s* = ⟨v_cond, v_uncond⟩ / ‖v_uncond‖² per batch item."""
    p, n = positive.flatten(1), negative.flatten(1)
    s = (p * n).sum(1, keepdim=True) / ((n**2).sum(1, keepdim=True) + 1e-8)
    return s.reshape([positive.shape[0]] + [1] * (positive.ndim - 1))


def cfg_zero_star(args):
    x, cond_p, uncond_p, scale = args["input"], args["cond_denoised"], args["uncond_denoised"], args["cond_scale"]
    alpha = optimized_scale(x - cond_p, x - uncond_p)
    return args["denoised"] + uncond_p * (alpha - 1.0) + scale * uncond_p * (1.0 - alpha)


def cfg_norm(strength: float):
    def fn(args):
        cond_p, out = args["cond_denoised"], args["denoised"]
        scale = (torch.norm(cond_p, dim=1, keepdim=True) / (torch.norm(out, dim=1, keepdim=True) + 1e-8)).clamp(0.0, 1.0)
        return out * scale * strength

    return fn


def mahiro(args):
    scale, cond_p, uncond_p, cfg = args["cond_scale"], args["cond_denoised"], args["uncond_denoised"], args["denoised"]
    leap, u_leap = cond_p * scale, uncond_p * scale
    merge = (leap + cfg) / 2
    normu = torch.sqrt(u_leap.abs()) * u_leap.sign()
    normm = torch.sqrt(merge.abs()) * merge.sign()
    sim = F.cosine_similarity(normu, normm).mean()
    simsc = 2 * (sim + 1)
    return (simsc * cfg + (4 - simsc) * leap) / 4


def epsilon_scaling(factor: float):
    """Ning et al. 2023 (exposure bias): the guided ε divided by a constant factor."""
    factor = factor or 1e-9

    def fn(args):
        x = args["input"]
        return x - (x - args["denoised"]) / factor

    return fn


def _project(v0: torch.Tensor, v1: torch.Tensor):
    v1 = F.normalize(v1, dim=[-1, -2, -3])
    parallel = (v0 * v1).sum(dim=[-1, -2, -3], keepdim=True) * v1
    return parallel, v0 - parallel


def apg(eta: float, norm_threshold: float, momentum: float):
    """Adaptive Projected Guidance (Sadat et al. 2024) as a CFG function: ComfyUI applies it as a
    pre-CFG change of the positive followed by plain CFG; this is the same arithmetic in one place
    (our pre-CFG hooks do not see the CFG scale). The momentum average restarts when σ rises."""
    state: dict[str, Any] = {"avg": None, "prev": None}

    def fn(args):
        cond, uncond, scale = args["cond_denoised"], args["uncond_denoised"], args["cond_scale"]
        x, sigma = args["input"], float(args["sigma"][0])
        if state["prev"] is not None and sigma > state["prev"]:
            state["avg"] = None
        state["prev"] = sigma
        guidance = cond - uncond
        if momentum != 0:
            state["avg"] = guidance if state["avg"] is None else momentum * state["avg"] + guidance
            guidance = state["avg"]
        if norm_threshold > 0:
            norm = guidance.norm(p=2, dim=[-1, -2, -3], keepdim=True)
            guidance = guidance * torch.minimum(torch.ones_like(norm), norm_threshold / norm)
        parallel, orthogonal = _project(guidance, cond)
        modified = (uncond + orthogonal + eta * parallel) + (cond - uncond) / scale
        x0 = uncond + (modified - uncond) * scale
        return x - x0

    return fn


def tangential_damping(preds, x, sigma):
    """TCFG (2503.18137): keep only the negative's component along the main direction of [neg, pos]."""
    if len(preds) < 2:
        return preds
    cond_score, uncond_score = x - preds[0], x - preds[1]
    b = cond_score.shape[0]
    matrix = torch.cat((uncond_score.reshape(b, 1, -1).float(), cond_score.reshape(b, 1, -1).float()), dim=1)
    _, _, vh = torch.linalg.svd(matrix, full_matrices=False)
    v1 = vh[:, 0:1, :]
    damped = (uncond_score.reshape(b, 1, -1).float() @ v1.transpose(-2, -1)) * v1
    return [preds[0], x - damped.reshape_as(uncond_score).to(uncond_score.dtype), *preds[2:]]


def frequency_scale(x: torch.Tensor, scale_low: float, scale_high: float, freq_cutoff: int) -> torch.Tensor:
    """FreSca: scale the spatial frequencies within ``freq_cutoff`` of DC by ``scale_low``, the rest by ``scale_high``."""
    freq = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    mask = torch.full(freq.shape, float(scale_high), device=x.device)
    m = mask
    for dim in range(2, freq.ndim):
        c = freq.shape[dim] // 2
        f = min(freq_cutoff, c)
        m = m.narrow(dim, c - f, f * 2)
    m[:] = scale_low
    out = torch.fft.ifftn(torch.fft.ifftshift(freq * mask, dim=(-2, -1)), dim=(-2, -1)).real
    return out.to(x.dtype)


def fresca(scale_low: float, scale_high: float, freq_cutoff: int):
    def fn(preds, x, sigma):
        if len(preds) < 2:
            return preds
        cond, uncond = preds[0], preds[1]
        return [frequency_scale(cond - uncond, scale_low, scale_high, freq_cutoff) + uncond, uncond, *preds[2:]]

    return fn


# -- nodes ----------------------------------------------------------------------------------------------
def _patch_node(name, category, key, make, inputs=(), display_name="", output_name="", description=""):
    def execute(self, ctx, model, **kw):
        return (hooks.with_hook(model, key, make(**kw)),)

    spec = NodeSpec(name=name, display_name=display_name, category=category, description=description,
                    inputs=(In("model", "MODEL"), *inputs), outputs=(Out("MODEL", output_name),))
    return type(name.replace(" ", "_"), (Node,), {"spec": spec, "execute": execute})


RescaleCFG = _patch_node(
    "RescaleCFG", "advanced/model", hooks.CFG_FUNCTION, rescale_cfg,
    (In("multiplier", "FLOAT", default=0.7, min=0.0, max=1.0, step=0.01),), display_name="RescaleCFG",
    description="CFG rescaled to the positive prediction's spread (for v-prediction / zero-SNR models).")
CFGNorm = _patch_node(
    "CFGNorm", "advanced/guidance", hooks.POST_CFG, cfg_norm,
    (In("strength", "FLOAT", default=1.0, min=0.0, max=100.0, step=0.01),), output_name="patched_model",
    description="Caps the guided prediction's channel norm at the positive's.")
CFGZeroStar = _patch_node(
    "CFGZeroStar", "advanced/guidance", hooks.POST_CFG, lambda: cfg_zero_star, output_name="patched_model",
    description="CFG-Zero*: rescales the negative by the optimal projection of the positive on it.")
Mahiro = _patch_node(
    "Mahiro", "_for_testing", hooks.POST_CFG, lambda: mahiro, display_name="Mahiro CFG", output_name="patched_model",
    description="Guides more along the positive's direction than along its difference from the negative.")
EpsilonScaling = _patch_node(
    "Epsilon Scaling", "model_patches/unet", hooks.POST_CFG, lambda scaling_factor: epsilon_scaling(scaling_factor),
    (In("scaling_factor", "FLOAT", default=1.005, min=0.5, max=1.5, step=0.001),),
    description="Divides the predicted noise by a factor against exposure bias (Ning et al. 2023).")
APG = _patch_node(
    "APG", "sampling/custom_sampling", hooks.CFG_FUNCTION, apg,
    (In("eta", "FLOAT", default=1.0, min=-10.0, max=10.0, step=0.01,
        tooltip="Controls the scale of the parallel guidance vector. Default CFG behavior at a setting of 1."),
     In("norm_threshold", "FLOAT", default=5.0, min=0.0, max=50.0, step=0.1,
        tooltip="Normalize guidance vector to this value, normalization disable at a setting of 0."),
     In("momentum", "FLOAT", default=0.0, min=-5.0, max=1.0, step=0.01,
        tooltip="Controls a running average of guidance during diffusion, disabled at a setting of 0.")),
    display_name="Adaptive Projected Guidance",
    description="Adaptive Projected Guidance: damps the guidance component parallel to the positive.")
TCFG = _patch_node(
    "TCFG", "advanced/guidance", hooks.PRE_CFG, lambda: tangential_damping, display_name="Tangential Damping CFG",
    output_name="patched_model", description="Tangential Damping CFG: aligns the negative with the positive.")
FreSca = _patch_node(
    "FreSca", "_for_testing", hooks.PRE_CFG, fresca,
    (In("scale_low", "FLOAT", default=1.0, min=0, max=10, step=0.01, tooltip="Scaling factor for low-frequency components"),
     In("scale_high", "FLOAT", default=1.25, min=0, max=10, step=0.01, tooltip="Scaling factor for high-frequency components"),
     In("freq_cutoff", "INT", default=20, min=1, max=10000, step=1,
        tooltip="Number of frequency indices around center to consider as low-frequency")),
    display_name="FreSca", description="Scales the guidance's low and high spatial frequencies separately.")

NODES = [RescaleCFG, CFGNorm, CFGZeroStar, Mahiro, EpsilonScaling, APG, TCFG, FreSca]
