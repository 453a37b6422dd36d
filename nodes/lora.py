"""LoRA: low-rank weight deltas applied to a copy of the UNet and text encoders.

The MODEL and CLIP flowing into LoraLoader are cached and shared with other branches of the graph,
so they are never modified. The patched model is a shallow clone: every unpatched weight is the
very same tensor as in the base model, and only patched weights are new (``W + s·α/r·up@down``).
Nothing needs undoing — when the cache drops the patched model, its new tensors are freed.

Key formats understood (matched against the model's own module names, so a LoRA for another
architecture is reported instead of half-applied):

* kohya / sd-scripts: ``lora_unet_<module>`` (diffusers or original UNet names, ``_``-joined),
  ``lora_te_…`` (SD1/SD2), ``lora_te1_…``/``lora_te2_…`` (SDXL), with ``.lora_down.weight``,
  ``.lora_up.weight`` and ``.alpha``;
* diffusers / PEFT: ``unet.<module>.lora_A.weight`` / ``lora_B.weight``, ``text_encoder.…``,
  ``text_encoder_2.…`` (``lora_alpha`` from the ``lora_adapter_metadata`` entry), and the older ``…processor.to_q_lora.down.weight`` and
  ``…lora_linear_layer.up.weight`` spellings;
* ComfyUI-style ``diffusion_model.<original module>.lora_…``;
* full differences (ComfyUI's LoraSave with ``full_diff`` / ``bias_diff``): ``<layer>.diff`` is added
  to the layer's weight as it is (any layer with weights, norms included), ``<layer>.diff_b`` to its
  bias — alone or alongside a low-rank pair for the same layer.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.checkpoint_files import CheckpointError, open_weights
from latentgraph.nodes.components import DiffusionModel, TextEncoder
from latentgraph.nodes.original_layout import rename, unet_module_map
from latentgraph import model_folders
from latentgraph.nodes.loaders import file_fingerprint_of

log = logging.getLogger("latentgraph.lora")

_KINDS = (
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora_linear_layer.down.weight", "down"),
    (".lora_linear_layer.up.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    ("_lora.down.weight", "down"),
    ("_lora.up.weight", "up"),
    (".alpha", "alpha"),
    (".diff_b", "diff_b"),
    (".diff", "diff"),
)
_UNSUPPORTED = (".lora_mid.weight", ".dora_scale", ".hada_w1_a", ".lokr_w1")


@dataclass
class LoraPair:
    """One adapted layer: ``up @ down`` scaled by ``alpha / rank``, plus any full weight (``diff``)
    and bias (``diff_b``) differences."""

    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    alpha: float | None = None
    diff: torch.Tensor | None = None
    diff_b: torch.Tensor | None = None

    @property
    def complete(self) -> bool:
        return (self.down is not None and self.up is not None) or self.diff is not None or self.diff_b is not None

    def deltas(self, layer: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Parameter name (``weight`` / ``bias``) → the change to add to it."""
        out: dict[str, torch.Tensor] = {}
        weight, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
        if self.down is not None and self.up is not None:
            if weight is None:
                raise ValueError("the layer has no weight")
            out["weight"] = self.delta(weight.shape)
        if self.diff is not None:
            if weight is None or self.diff.numel() != weight.numel():
                raise ValueError(f"its diff is {tuple(self.diff.shape)}, layer weight is "
                                 f"{None if weight is None else tuple(weight.shape)}")
            full = self.diff.float().reshape(weight.shape)
            out["weight"] = out["weight"] + full if "weight" in out else full
        if self.diff_b is not None:
            if bias is None or self.diff_b.numel() != bias.numel():
                raise ValueError(f"its diff_b is {tuple(self.diff_b.shape)}, layer bias is "
                                 f"{None if bias is None else tuple(bias.shape)}")
            out["bias"] = self.diff_b.float().reshape(bias.shape)
        return out

    def delta(self, shape: torch.Size) -> torch.Tensor:
        assert self.down is not None and self.up is not None
        rank = self.down.shape[0]
        scale = (self.alpha / rank) if self.alpha is not None else 1.0
        product = self.up.flatten(1).float() @ self.down.flatten(1).float()
        if product.numel() != torch.Size(shape).numel():
            raise ValueError(f"LoRA makes {tuple(product.shape)}, layer is {tuple(shape)}")
        return product.reshape(shape) * scale


@dataclass
class LoraFile:
    name: str
    pairs: dict[str, LoraPair]
    unsupported: list[str] = field(default_factory=list)


def read_lora(path: str | Path) -> LoraFile:
    """Group a LoRA file's tensors by the layer they adapt (names still as in the file)."""
    weights = open_weights(path)
    pairs: dict[str, LoraPair] = {}
    unsupported = []
    tensors = weights.tensors(weights.keys)
    for key, value in tensors.items():
        for suffix, kind in _KINDS:
            if key.endswith(suffix):
                layer = key[: -len(suffix)]
                if suffix.startswith("_lora."):  # …processor.to_q_lora.down.weight → …to_q
                    layer = layer.replace(".processor.", ".")
                    layer = layer + ".0" if layer.endswith("to_out") else layer
                pair = pairs.setdefault(layer, LoraPair())
                if kind == "alpha":
                    pair.alpha = float(value.float().reshape(-1)[0])
                else:
                    setattr(pair, kind, value)
                break
        else:
            if key.endswith(_UNSUPPORTED):
                unsupported.append(key)
    _peft_alphas(pairs, weights.metadata.get("lora_adapter_metadata"))
    complete = {k: p for k, p in pairs.items() if p.complete}
    if not complete:
        kind = " (its LoHa/LoKr/DoRA-style weights are not supported)" if unsupported else ""
        raise CheckpointError(f"{Path(path).name} holds no LoRA weights (lora_down/lora_up or lora_A/lora_B pairs, "
                              f"diff/diff_b){kind}")
    return LoraFile(Path(path).name, complete, unsupported)


def _peft_alphas(pairs: dict[str, LoraPair], raw: str | None) -> None:
    """diffusers saves PEFT's ``lora_alpha`` (and per-layer ``alpha_pattern``) in the file metadata."""
    if not raw:
        return
    try:
        meta = json.loads(raw)
    except ValueError:
        log.warning("unreadable lora_adapter_metadata ignored")
        return
    for layer, pair in pairs.items():
        if pair.alpha is not None:
            continue
        component, _, module = layer.partition(".")
        alpha = meta.get(f"{component}.lora_alpha")
        for pattern, value in (meta.get(f"{component}.alpha_pattern") or {}).items():
            if module == pattern or module.endswith("." + pattern):
                alpha = value
        if alpha is not None:
            pair.alpha = float(alpha)


# -- names -----------------------------------------------------------------------------------


_LAYERS = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm)


def _adaptable(module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Layers a LoRA may change: low-rank pairs adapt linear/conv layers, ``diff``/``diff_b`` any of these."""
    return {n: m for n, m in module.named_modules() if isinstance(m, _LAYERS) and n}


def _flat(name: str) -> str:
    return name.replace(".", "_")


def unet_lora_names(unet: Any) -> dict[str, str]:
    """Every spelling a LoRA may use for a UNet layer → the layer's diffusers module path."""
    config = dict(unet.config)
    try:
        ldm_map = unet_module_map(config)
    except (KeyError, ValueError):
        ldm_map = {}
    names: dict[str, str] = {}
    for path in _adaptable(unet):
        ldm = rename(path, ldm_map) if ldm_map else path
        for spelling in (
            f"unet.{path}",
            path,
            f"lora_unet_{_flat(path)}",
            f"lora_unet_{_flat(ldm)}",
            f"diffusion_model.{ldm}",
            f"model.diffusion_model.{ldm}",
        ):
            names.setdefault(spelling, path)
    return names


def text_encoder_lora_names(encoder: Any, index: int, count: int) -> dict[str, str]:
    """Spellings for one text encoder's layers (``lora_te_`` for one encoder, ``te1``/``te2`` for two)."""
    kohya = ["lora_te"] if count == 1 else []
    kohya.append(f"lora_te{index + 1}")
    diffusers = "text_encoder" if index == 0 else f"text_encoder_{index + 1}"
    names: dict[str, str] = {}
    for path in _adaptable(encoder):
        full = path if path.startswith("text_model.") else f"text_model.{path}"
        for prefix in kohya:
            names.setdefault(f"{prefix}_{_flat(full)}", path)
        for spelling in (f"{diffusers}.{full}", f"{diffusers}.{full.removeprefix('text_model.')}"):
            names.setdefault(spelling, path)
    return names


# -- patching --------------------------------------------------------------------------------


def clone_sharing(module: torch.nn.Module, new_params: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """A copy of ``module`` sharing every tensor except the named parameters, which get new values."""
    shared = {id(t): t for t in module.parameters()}
    shared.update({id(t): t for t in module.buffers()})
    clone = copy.deepcopy(module, memo=dict(shared))
    for name, value in new_params.items():
        owner, _, leaf = name.rpartition(".")
        setattr(clone.get_submodule(owner) if owner else clone, leaf, torch.nn.Parameter(value, requires_grad=False))
    return clone


def patched_copy(module: torch.nn.Module, deltas: Mapping[str, torch.Tensor], strength: float) -> torch.nn.Module:
    """A clone sharing every tensor with ``module`` except the parameters in ``deltas``, which are new.

    ``deltas`` maps a parameter's path (``<layer>.weight`` / ``<layer>.bias``) to its change."""
    new = {}
    with torch.no_grad():
        for path, delta in deltas.items():
            base = module.get_parameter(path)
            new[path] = (base.float() + delta.to(base.device) * strength).to(base.dtype)
    return clone_sharing(module, new)


def _match(lora: LoraFile, names: Mapping[str, str], layers: Mapping[str, torch.nn.Module], used: set[str]):
    deltas: dict[str, torch.Tensor] = {}
    wrong: list[str] = []
    for key, pair in lora.pairs.items():
        path = names.get(key)
        if path is None:
            continue
        used.add(key)
        try:
            changes = pair.deltas(layers[path])
        except ValueError as exc:
            wrong.append(f"{key}: {exc}")
            continue
        for leaf, delta in changes.items():
            param = f"{path}.{leaf}"
            deltas[param] = deltas[param] + delta if param in deltas else delta
    return deltas, wrong


@dataclass
class LoraDeltas:
    """A LoRA's weight changes for one UNet and/or text encoders (parameter path → change at strength 1)."""

    unet: dict[str, torch.Tensor]
    encoders: list[dict[str, torch.Tensor]]
    used: set[str]  # the LoRA's layer keys that matched
    wrong: list[str]  # matched layers whose shapes do not fit


def lora_deltas(lora: LoraFile, unet: Any = None, encoders: Any = ()) -> LoraDeltas:
    """Match ``lora`` against a UNet and text encoders (either may be absent); nothing is changed."""
    used: set[str] = set()
    wrong: list[str] = []
    unet_deltas: dict[str, torch.Tensor] = {}
    if unet is not None:
        unet_deltas, bad = _match(lora, unet_lora_names(unet), _adaptable(unet), used)
        wrong += bad
    te_deltas: list[dict[str, torch.Tensor]] = []
    for i, enc in enumerate(encoders):
        deltas, bad = _match(lora, text_encoder_lora_names(enc, i, len(encoders)), _adaptable(enc), used)
        te_deltas.append(deltas)
        wrong += bad
    return LoraDeltas(unet_deltas, te_deltas, used, wrong)


@dataclass
class LoraResult:
    model: DiffusionModel | None
    clip: TextEncoder | None
    matched_model: int
    matched_clip: int
    unmatched: list[str]


def apply_lora(
    lora: LoraFile,
    model: DiffusionModel | None,
    clip: TextEncoder | None,
    strength_model: float = 1.0,
    strength_clip: float = 1.0,
) -> LoraResult:
    """New MODEL/CLIP with the LoRA applied; the inputs are left exactly as they were."""
    new_model, new_clip = model, clip
    found = lora_deltas(lora, model.unet if model is not None else None, clip.encoders if clip is not None else ())
    unet_deltas, te_deltas, used, wrong = found.unet, found.encoders, found.used, found.wrong
    if wrong:
        raise ValueError(
            f"{lora.name} does not fit this model: {len(wrong)} layers have other shapes (e.g. {wrong[0]}); "
            "is it a LoRA for another architecture?"
        )
    if not used:
        raise ValueError(
            f"no weights of {lora.name} match this model's layers"
            + (f" ({model.arch} model)" if model is not None else "")
            + "; is it a LoRA for another architecture?"
        )
    unmatched = sorted(set(lora.pairs) - used)
    record = {"name": lora.name, "strength_model": strength_model, "strength_clip": strength_clip}
    if model is not None and unet_deltas and strength_model != 0:
        new_model = replace(
            model,
            unet=patched_copy(model.unet, unet_deltas, strength_model),
            info={**model.info, "loras": [*model.info.get("loras", []), record]},
        )
    if clip is not None and any(te_deltas) and strength_clip != 0:
        encoders = [patched_copy(e, d, strength_clip) if d else e for e, d in zip(clip.encoders, te_deltas)]
        new_clip = replace(clip, encoders=encoders, info={**clip.info, "loras": [*clip.info.get("loras", []), record]})
    return LoraResult(new_model, new_clip, _layers(unet_deltas), sum(_layers(d) for d in te_deltas), unmatched)


def _layers(deltas: Mapping[str, torch.Tensor]) -> int:
    return len({param.rpartition(".")[0] for param in deltas})


# -- nodes -----------------------------------------------------------------------------------


_lora_choices = model_folders.choices("loras")


def lora_from_input(ctx, lora_name: str) -> LoraFile:
    """The LoRA file a node's `lora_name` input names, read; errors name that input."""
    from latentgraph.nodes.loaders import resolve_model

    path = resolve_model(ctx.settings, "loras", lora_name, "lora_name")
    try:
        return read_lora(path)
    except CheckpointError as exc:
        raise NodeInputError("lora_name", str(exc)) from None


def _apply_node(ctx, model, clip, lora_name, strength_model, strength_clip):
    lora = lora_from_input(ctx, lora_name)
    try:
        result = apply_lora(lora, model, clip, strength_model, strength_clip)
    except ValueError as exc:
        raise NodeInputError("lora_name", str(exc)) from None
    if lora.unsupported:
        log.warning("%s: %d weights of unsupported kinds ignored (e.g. %s)", lora.name, len(lora.unsupported), lora.unsupported[0])
    if result.unmatched:
        log.warning("%s: %d LoRA layers match nothing in the model (e.g. %s)", lora.name, len(result.unmatched), result.unmatched[0])
    return result


class LoraLoader(Node):
    spec = NodeSpec(
        name="LoraLoader",
        display_name="Load LoRA",
        category="loaders",
        description="Applies a LoRA to a copy of the model and text encoder; the inputs stay unchanged.",
        inputs=(
            In("model", "MODEL"),
            In("clip", "CLIP"),
            In("lora_name", "COMBO", choices=_lora_choices),
            In("strength_model", "FLOAT", default=1.0, min=-100.0, max=100.0, step=0.01),
            In("strength_clip", "FLOAT", default=1.0, min=-100.0, max=100.0, step=0.01),
        ),
        outputs=(Out("MODEL"), Out("CLIP")),
    )

    def execute(self, ctx, model, clip, lora_name, strength_model=1.0, strength_clip=1.0):
        if strength_model == 0 and strength_clip == 0:
            return (model, clip)
        result = _apply_node(ctx, model, clip, lora_name, strength_model, strength_clip)
        return (result.model, result.clip)

    fingerprint = file_fingerprint_of("loras", "lora_name")


class LoraLoaderModelOnly(Node):
    spec = NodeSpec(
        name="LoraLoaderModelOnly",
        display_name="Load LoRA (model only)",
        category="loaders",
        inputs=(
            In("model", "MODEL"),
            In("lora_name", "COMBO", choices=_lora_choices),
            In("strength_model", "FLOAT", default=1.0, min=-100.0, max=100.0, step=0.01),
        ),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, model, lora_name, strength_model=1.0):
        if strength_model == 0:
            return (model,)
        return (_apply_node(ctx, model, None, lora_name, strength_model, 0.0).model,)

    fingerprint = file_fingerprint_of("loras", "lora_name")


NODES = [LoraLoader, LoraLoaderModelOnly]
