"""Guidance: the model plus its conditionings as one denoiser D(x, σ).

CONDITIONING is ``[(embeddings[1, T, D], extras)]``; ``extras`` keys follow ComfyUI so its nodes
and custom nodes mean the same thing: ``pooled_output`` (SDXL), ``area`` ((h, w, y, x) in latent
cells, or ``("percentage", h, w, y, x)``), ``strength``, ``mask`` (+ ``mask_strength``,
``set_area_to_bounds``), ``start_percent`` / ``end_percent`` (the part of the run it applies
to), SDXL sizes (``width``, ``height``, ``crop_w``, ``crop_h``, ``target_width``,
``target_height``, ``aesthetic_score``), ``control`` (a ControlNet / T2I-Adapter chain,
:class:`latentgraph.nodes.control.residuals.Control`) with ``control_apply_to_uncond``;
``concat_latent_image`` / ``concat_mask``, ``unclip_conditioning`` and ``gligen`` (what
instruct-pix2pix, inpainting, unCLIP and GLIGEN models read besides text: :mod:`.unet_inputs`).

At every σ each side's entries are evaluated on their area (the UNet sees only that crop) and
averaged, weighted by ``strength`` × mask (area edges feathered over up to 8 cells when there is
no mask): Σ pred·w / Σ w. An entry with a ``control`` hands the UNet its control residuals for the
crop and σ (entries share a UNet call only when they share the control, as in ComfyUI). A
:class:`GuidanceRule` then combines the sides (CFG: ``uncond + cfg·(cond − uncond)``, applied to
x0 estimates). A :class:`Guider` is the GUIDER value that flows between
nodes; :meth:`Guider.bind` prepares it for one run's latent shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.sampling import hooks, unet_inputs, weight_hooks
from latentgraph.nodes.sampling.cond_items import (
    CondItem,
    add_same_area_counterparts,
    lend_controls,
    lend_gligen,
    prepare_items,
)
from latentgraph.nodes.sampling.kit import Prediction
from latentgraph.nodes.sampling.model_sampling import ModelSampling

# -- evaluating conditionings ---------------------------------------------------------------------------
def _rows(t: Tensor, batch: int) -> Tensor:
    """A conditioning tensor fitted to the latent's batch: cut, or cycled (ComfyUI's rule)."""
    if t.shape[0] == batch:
        return t
    if t.shape[0] == 1:
        return t.expand(batch, *t.shape[1:])
    if t.shape[0] > batch:
        return t[:batch]
    return t.repeat(-(-batch // t.shape[0]), *([1] * (t.ndim - 1)))[:batch]


def apply_model(model: DiffusionModel, crops: Sequence[Tensor], sigma: Tensor, items: Sequence[CondItem],
                cond_or_uncond: Sequence[int] = ()) -> Tensor:
    """One UNet call for several (crop, conditioning) pairs of the same shape (σ form); returns
    their x0 estimates concatenated along the batch, in float32."""
    ms = model.model_sampling
    batch = crops[0].shape[0]
    x_all = torch.cat(list(crops)) if len(crops) > 1 else crops[0]
    sigma_all = sigma.repeat(len(crops)) if len(crops) > 1 else sigma
    common = math.lcm(*{it.hidden.shape[1] for it in items})
    hidden = torch.cat([_rows(it.hidden, batch).repeat(1, common // it.hidden.shape[1], 1) for it in items])
    added = None
    if items[0].added is not None:
        added = {k: torch.cat([_rows(it.added[k], batch) for it in items]) for k in items[0].added}  # type: ignore[index]
    timestep_cond = None
    if items[0].timestep_cond is not None:
        timestep_cond = torch.cat([_rows(it.timestep_cond, batch) for it in items])  # type: ignore[arg-type]
    x_in = ms.calculate_input(sigma_all, x_all)
    t = ms.timestep(sigma_all).float()
    kwargs = {"encoder_hidden_states": hidden, "added_cond_kwargs": added, "timestep_cond": timestep_cond,
              **unet_inputs.call_kwargs(items, crops)}
    if items[0].control is not None:
        from latentgraph.nodes.control.residuals import control_residuals

        residuals = control_residuals(items[0].control, x_in, t, float(sigma[0]), hidden, added, ms, len(crops))
        if residuals is not None:
            kwargs.update(residuals.unet_kwargs(model.dtype))

    def call(x: Tensor, timestep: Tensor, **kw: Any) -> Tensor:
        return unet_inputs.unet_call(model, x, timestep, **kw)

    for wrap in reversed(hooks.hooks(model, hooks.UNET_WRAPPER)):
        call = _wrapped(wrap, call, sigma_all, cond_or_uncond)
    out = call(x_in.to(model.device, model.dtype), t.to(model.device), **kwargs).float()
    return ms.calculate_denoised(sigma_all, out.to(x_all.device), x_all)


def _wrapped(wrap: Any, inner: Any, sigma: Tensor, cond_or_uncond: Sequence[int]) -> Any:
    def call(x: Tensor, timestep: Tensor, **kw: Any) -> Tensor:
        args = {"input": x, "timestep": timestep, "kwargs": kw, "sigma": sigma, "cond_or_uncond": list(cond_or_uncond)}
        return wrap(inner, args)

    return call


def calc_cond_batch(model: DiffusionModel, sides: Sequence[Sequence[CondItem] | None], x: Tensor, sigma: Tensor,
                    weights: weight_hooks.WeightRun | None = None) -> list[Tensor]:
    """Each side's weighted-average x0 estimate; a side that is None (or inactive at this σ) is 0.

    Entries whose crops have the same shape share one UNet call, unless they carry different weight
    hooks: those are evaluated by the UNet with their hooks' weights at this σ (``weights`` holds the
    run's keyframe positions and patched UNets). Default entries fill what the others leave uncovered.
    """
    out = [torch.zeros_like(x) for _ in sides]
    counts = [torch.ones_like(x) * 1e-37 for _ in sides]
    level = float(sigma[0])
    groups: dict[tuple, list[tuple[int, CondItem, Tensor, Tensor, tuple[int, int, int, int] | None]]] = {}
    defaults: list[tuple[int, CondItem]] = []
    for side, items in enumerate(sides):
        for item in items or ():
            if not item.active(level):
                continue
            if item.default:
                defaults.append((side, item))
                continue
            crop, mult = item.region(x)
            _group(groups, side, item, crop, mult, item.clipped_area(x))
    if defaults:
        _fill_defaults(groups, defaults, x)
    if weights is None and any(key[-1] is not None for key in groups):
        weights = weight_hooks.WeightRun(model)
    for key, members in groups.items():
        hooked = members[0][1].hooks
        run_model = model if hooked is None else weights.model_for(hooked, weights.strengths(hooked, level))  # type: ignore[union-attr]
        preds = apply_model(run_model, [m[2] for m in members], sigma, [m[1] for m in members],
                            [m[0] for m in members]).chunk(len(members))
        for (side, _item, _crop, mult, area), pred in zip(members, preds):
            target, count = out[side], counts[side]
            if area is not None:
                h, w, y, xo = area
                target = target[:, :, y : y + h, xo : xo + w]
                count = count[:, :, y : y + h, xo : xo + w]
            target += pred * mult
            count += mult
    return [o / c for o, c in zip(out, counts)]


def _group(groups: dict[tuple, list], side: int, item: CondItem, crop: Tensor, mult: Tensor,
           area: tuple[int, int, int, int] | None) -> None:
    key = (tuple(crop.shape), item.added is None, item.timestep_cond is None, id(item.control),
           *unet_inputs.group_key(item.unet_inputs), item.hooks.key if item.hooks is not None else None)
    groups.setdefault(key, []).append((side, item, crop, mult, area))


def _fill_defaults(groups: dict[tuple, list], defaults: list[tuple[int, CondItem]], x: Tensor) -> None:
    """Default entries weigh what the side's other entries leave uncovered: relu(1 − Σ their weights),
    over the whole latent; a side they fully cover gets none."""
    remaining: dict[int, Tensor] = {side: torch.ones_like(x) for side, _ in defaults}
    for members in groups.values():
        for side, _item, _crop, mult, area in members:
            if side not in remaining:
                continue
            target = remaining[side]
            if area is not None:
                h, w, y, xo = area
                target = target[:, :, y : y + h, xo : xo + w]
            target -= mult
    for side, item in defaults:
        mult = torch.relu(remaining[side])
        if float(mult.max()) == 0.0:
            continue
        _group(groups, side, item, x, mult.to(x.dtype), None)


# -- combining the sides --------------------------------------------------------------------------------
class GuidanceRule(Protocol):
    """How a guider's named conditionings become one x0 estimate."""

    #: The conditioning inputs, in the order :meth:`combine` gets their predictions.
    names: tuple[str, ...]

    def needed(self) -> tuple[bool, ...]:
        """Which of ``names`` must be evaluated (CFG 1 skips the negative)."""
        ...

    def combine(self, preds: Sequence[Tensor], x: Tensor, sigma: Tensor) -> Prediction:
        ...


@dataclass(frozen=True)
class CFG:
    """Classifier-free guidance (Ho & Salimans 2022): ``uncond + cfg·(cond − uncond)``."""

    cfg: float
    names: tuple[str, ...] = ("positive", "negative")
    #: Evaluate the negative even at cfg 1 (CFG++ samplers step along it).
    always_uncond: bool = False

    def needed(self) -> tuple[bool, ...]:
        return (True, self.always_uncond or not math.isclose(self.cfg, 1.0))

    def combine(self, preds: Sequence[Tensor], x: Tensor, sigma: Tensor) -> Prediction:
        cond, uncond = preds
        if not self.needed()[1]:
            return Prediction(cond, cond)
        return Prediction(uncond + (cond - uncond) * self.cfg, uncond)


@dataclass(frozen=True)
class NoGuidance:
    """One conditioning, no negative (BasicGuider; guidance-distilled models)."""

    names: tuple[str, ...] = ("positive",)

    def needed(self) -> tuple[bool, ...]:
        return (True,)

    def combine(self, preds: Sequence[Tensor], x: Tensor, sigma: Tensor) -> Prediction:
        return Prediction(preds[0], preds[0])


@dataclass(frozen=True)
class Guider:
    """GUIDER: a model, its named conditionings and the rule that combines them."""

    model: DiffusionModel
    conds: Mapping[str, Any]
    rule: Any  # GuidanceRule
    #: Names of conditionings to prepare as negatives (SDXL refiner aesthetic score default).
    negatives: frozenset[str] = frozenset({"negative"})

    def bind(self, latent_shape: Sequence[int], downscale: int, *, seed: int | None = None,
             latent: Tensor | None = None, noise_mask: Tensor | None = None) -> BoundGuider:
        """``seed`` (unCLIP noise), ``latent`` (in the model's space) and ``noise_mask`` (the
        LATENT's) are what inpainting and unCLIP models read besides the conditionings."""
        run = unet_inputs.RunInputs(seed=seed, latent=latent, noise_mask=noise_mask)
        config = self.model.unet.config
        rule = self.rule
        if isinstance(rule, CFG) and self.model.options.get("disable_cfg1_optimization"):
            rule = replace(rule, always_uncond=True)  # a patch (SAG) needs the negative even at cfg 1
        guidance_w = None
        if getattr(config, "time_cond_proj_dim", None) is not None and isinstance(rule, CFG):
            # Guidance-distilled (LCM) UNet: cfg goes in as an embedding, no unconditional pass.
            guidance_w = rule.cfg - 1.0
            rule = NoGuidance(names=rule.names[:1])
        prepared: dict[str, list[CondItem]] = {}
        for name, wanted in zip(rule.names, rule.needed()):
            if name not in self.conds or self.conds[name] is None:
                if wanted:
                    raise NodeInputError(name, "is missing: this guider needs it")
                continue
            prepared[name] = prepare_items(self.model, name, self.conds[name], latent_shape, downscale,
                                           negative=name in self.negatives, guidance_w=guidance_w, run=run)
        add_same_area_counterparts(prepared)
        lend_controls(prepared)
        lend_gligen(prepared)
        sides = [prepared.get(name) if wanted else None for name, wanted in zip(rule.names, rule.needed())]
        weights = weight_hooks.WeightRun(self.model) if any(it.hooks is not None for side in sides for it in side or ()) else None
        return BoundGuider(self.model, rule, sides, weights=weights)


@dataclass
class BoundGuider:
    """A guider prepared for one run: the :class:`~latentgraph.nodes.sampling.kit.Denoiser`."""

    model: DiffusionModel
    rule: Any
    sides: list[list[CondItem] | None]
    calls: int = field(default=0)
    #: The run's weight hooks (keyframe positions, patched UNets), when an entry carries hooks.
    weights: weight_hooks.WeightRun | None = None

    @property
    def model_sampling(self) -> ModelSampling:
        return self.model.model_sampling

    def predict(self, x: Tensor, sigma: Tensor) -> Prediction:
        self.calls += 1
        x = x.float() if x.dtype != torch.float32 else x
        preds = calc_cond_batch(self.model, self.sides, x, sigma.float(), self.weights)
        for fn in hooks.hooks(self.model, hooks.PRE_CFG):
            preds = list(fn(preds, x, sigma))
        cfg_function = hooks.hook(self.model, hooks.CFG_FUNCTION)
        if isinstance(self.rule, CFG) and cfg_function is not None and self.rule.needed()[1]:
            args = self._cfg_args(preds, x, sigma)
            result = Prediction(x - cfg_function(args), preds[1])
        else:
            result = self.rule.combine(preds, x, sigma)
        post = hooks.hooks(self.model, hooks.POST_CFG)
        if post:
            args = self._cfg_args(preds, x, sigma)
            denoised = result.denoised
            for fn in post:
                denoised = fn({**args, "denoised": denoised})
            result = Prediction(denoised, result.uncond)
        return result

    def _cfg_args(self, preds: Sequence[Tensor], x: Tensor, sigma: Tensor) -> dict[str, Any]:
        """ComfyUI's argument dict for CFG hooks (the first two guider inputs as cond / uncond)."""
        cond = preds[0]
        uncond = preds[1] if len(preds) > 1 else preds[0]
        return {
            "cond": x - cond, "uncond": x - uncond, "cond_denoised": cond, "uncond_denoised": uncond,
            "cond_scale": getattr(self.rule, "cfg", 1.0), "input": x, "sigma": sigma, "timestep": sigma,
            "model": self.model,
        }

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self.predict(x, sigma).denoised
