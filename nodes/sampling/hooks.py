"""Model hooks: the one way a patch node (or a plugin) changes how a MODEL samples.

A hook lives in ``DiffusionModel.options`` (ComfyUI's ``model_options``); a patch returns a copy of
the MODEL with the hook added, so the base model is never changed in place and the cached
upstream MODEL stays valid. Hooks compose in the order they were added.

=====================  =====================================================================
key                    hook, and where the sampler calls it
=====================  =====================================================================
``pre_cfg``            ``fn(preds, x, sigma) → preds``: each guider input's x0 estimate before
                       the guidance rule combines them (LatentApplyOperationCFG, APG, TCFG …)
``cfg_function``       ``fn(args) → x0``: replaces ``uncond + cfg·(cond − uncond)`` in CFG
                       (one; the last set wins). ``args``: ``cond``, ``uncond`` (as ``x − x0``,
                       ComfyUI's ε·σ form), ``cond_denoised``, ``uncond_denoised``,
                       ``cond_scale``, ``input`` (x), ``sigma``, ``model``
``post_cfg``           ``fn(args) → x0``: after guidance; ``args`` as above plus ``denoised``
``unet_wrapper``       ``fn(apply, args) → output``: around every UNet call; ``apply(x_in, t,
                       **kwargs)`` is the call, ``args``: ``input``, ``timestep``, ``kwargs``,
                       ``sigma``, ``cond_or_uncond`` (indices of the guider inputs per chunk)
``denoise_mask``       ``fn(sigma, mask, sigmas, model_sampling) → mask``: the inpainting mask
                       at each step (one; DifferentialDiffusion)
=====================  =====================================================================
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from latentgraph.nodes.components import DiffusionModel

PRE_CFG = "pre_cfg"
CFG_FUNCTION = "cfg_function"
POST_CFG = "post_cfg"
UNET_WRAPPER = "unet_wrapper"
DENOISE_MASK = "denoise_mask"

#: Hooks of which a model has one (set replaces); the others stack.
SINGLE = frozenset({CFG_FUNCTION, DENOISE_MASK})
KNOWN = frozenset({PRE_CFG, CFG_FUNCTION, POST_CFG, UNET_WRAPPER, DENOISE_MASK})


def with_hook(model: DiffusionModel, key: str, fn: Any) -> DiffusionModel:
    """A copy of ``model`` with ``fn`` added under ``key`` (see the table above)."""
    if key not in KNOWN:
        raise ValueError(f"unknown model hook {key!r}; known: {', '.join(sorted(KNOWN))}")
    value = fn if key in SINGLE else (*hooks(model, key), fn)
    return replace(model, options={**model.options, key: value})


def hooks(model: DiffusionModel, key: str) -> tuple[Any, ...]:
    """The stacking hooks under ``key``, in the order they were added."""
    return tuple(model.options.get(key, ()))


def hook(model: DiffusionModel, key: str) -> Any | None:
    """The single hook under ``key``, if any."""
    return model.options.get(key)
