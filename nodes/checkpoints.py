"""Loading Stable Diffusion checkpoints into diffusers/transformers components, offline.

Single files in the original layout (``.safetensors``, or plain-tensor ``.ckpt``) are converted
with diffusers' own LDM→diffusers key converters and built from configs we ship or that the file
carries in its metadata, so nothing ever asks a hub for a config. diffusers-format folders load
from their own configs and weight files. Models are built on the ``meta`` device (no random
initialisation, which costs seconds for a full-size UNet) and receive the tensors of the
memory-mapped file directly, cast only when the file's dtype is not the target's, so a load costs
at most one copy of the weights.

Formats are pluggable: a plugin returns :class:`ModelFormat` objects from
``register_model_formats`` and ``LoadCheckpoint`` asks each (highest ``priority`` first) whether
it can load a path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from latentgraph.device import pick_device, pick_dtype
from latentgraph.errors import NodeInputError
from latentgraph.nodes.arch_detection import detect, fit_vae_config, resolve_config
from latentgraph.nodes.checkpoint_files import (
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    CheckpointError,
    WeightFile,
    open_weights,
)
from latentgraph.nodes.components import Autoencoder, DiffusionModel, TextEncoder
from latentgraph.nodes.model_configs import (
    METADATA_KEY,
    ArchConfig,
    TextEncoderConfig,
    load_clip_tokenizer,
    load_shipped_config,
    read_config_folder,
)
from latentgraph.nodes.original_layout import (
    TEXT_ENCODER_PREFIXES,
    UNET_PREFIX,
    VAE_PREFIX,
    open_clip_from_original,
    vae_to_original,
)
from latentgraph.settings import Settings

__all__ = [
    "CheckpointError",
    "LoadedCheckpoint",
    "ModelFormat",
    "BUILTIN_FORMATS",
    "check_compatible",
    "find_format",
    "load_checkpoint",
    "load_vae",
]

log = logging.getLogger("latentgraph.checkpoints")

#: Default scaling of latents per family when a VAE does not say (SD1/SD2 vs SDXL).
SCALING_FACTORS = {"sd1": 0.18215, "sd2": 0.18215, "sdxl": 0.13025}
#: Layer whose hidden states condition the UNet by default (ComfyUI's choice per family).
DEFAULT_CLIP_LAYER = {"sd1": -1, "sd2": -1, "sdxl": -2}


@dataclass
class LoadedCheckpoint:
    """What a checkpoint holds; parts it lacks are None (e.g. a UNet-only file has no VAE)."""

    model: DiffusionModel | None
    clip: TextEncoder | None
    vae: Autoencoder | None
    arch: str
    config: ArchConfig | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelFormat:
    """A way of turning a path into components; registered through ``register_model_formats``."""

    name: str
    can_load: Callable[[Path], bool]
    load: Callable[[Path, Settings], LoadedCheckpoint]
    description: str = ""
    #: Higher is asked first, so a plugin can claim files a built-in format would also accept.
    priority: int = 0


def device_and_dtype(settings: Settings) -> tuple[torch.device, torch.dtype]:
    device = pick_device(settings.device)
    return device, pick_dtype(device, settings.dtype)


# -- building components ---------------------------------------------------------------------


def _converters():
    try:
        from diffusers.loaders import single_file_utils as sfu

        return sfu
    except ImportError as exc:  # pragma: no cover - depends on the installed diffusers
        raise CheckpointError(f"the installed diffusers cannot convert single-file checkpoints: {exc}") from exc


def _materialise(
    model: torch.nn.Module, weights: dict[str, torch.Tensor], dtype: torch.dtype, what: str, source: str,
    device: torch.device | None = None,
) -> None:
    """Give a meta-device model its weights (consuming ``weights``); refuse missing or mis-shaped ones.

    Each tensor goes straight to its device and dtype, so a GPU load never holds the model in RAM.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    if missing:
        raise CheckpointError(
            f"{source}: the {what} is incomplete or of a different architecture: {len(missing)} of "
            f"{len(expected)} weights missing (e.g. {', '.join(missing[:3])})"
        )
    wrong = [(k, tuple(weights[k].shape), tuple(v.shape)) for k, v in expected.items() if weights[k].shape != v.shape]
    if wrong:
        k, got, want = wrong[0]
        raise CheckpointError(
            f"{source}: the {what} does not match its config: {len(wrong)} weights have other shapes "
            f"(e.g. {k}: {got} in the file, {want} expected)"
        )
    ignored = [k for k in weights if k not in expected and not k.endswith("position_ids")]
    if ignored:
        log.info("%s: %d %s weights not used (e.g. %s)", source, len(ignored), what, ignored[0])
    state = {}
    for k in expected:  # pop as we cast, so file-dtype and model-dtype copies never coexist in full
        t = weights.pop(k)
        state[k] = t.to(device=device, dtype=dtype if t.is_floating_point() else None).contiguous()
    weights.clear()
    model.load_state_dict(state, strict=True, assign=True)
    for name, buf in list(model.named_buffers()):
        if buf.is_meta:
            if not name.endswith("position_ids"):
                raise CheckpointError(f"{source}: the {what} has no value for buffer {name}")
            owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            ids = torch.arange(buf.shape[-1], device=device).expand(buf.shape)
            owner.register_buffer("position_ids", ids, persistent=False)
    model.eval()
    model.requires_grad_(False)


def _on_meta(factory: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Build a model without memory; diffusers' ``no_init_weights`` (what its ``from_pretrained``
    uses) also skips the init calls, which cost dispatch time even on ``meta`` (~0.2 s for SDXL)."""
    from diffusers.models.modeling_utils import no_init_weights

    with torch.device("meta"), no_init_weights():
        return factory()


def build_unet(config: dict[str, Any], weights: dict[str, torch.Tensor], dtype: torch.dtype, source: str, device=None):
    """UNet from original-layout tensors; consumes ``weights`` to keep peak memory at one model."""
    from diffusers import UNet2DConditionModel

    converted = _converters().convert_ldm_unet_checkpoint(weights, dict(config))
    weights.clear()  # the converted dict now holds the only references
    model = _on_meta(lambda: UNet2DConditionModel.from_config(config))
    _materialise(model, converted, dtype, "UNet", source, device)
    return model


def build_vae(config: dict[str, Any], weights: dict[str, torch.Tensor], dtype: torch.dtype, source: str, device=None):
    from diffusers import AutoencoderKL

    converted = _converters().convert_ldm_vae_checkpoint(weights, dict(config))
    weights.clear()  # the converted dict now holds the only references
    model = _on_meta(lambda: AutoencoderKL.from_config(config))
    _materialise(model, converted, dtype, "VAE", source, device)
    return model


def _text_model_class(name: str):
    import transformers

    if name not in ("CLIPTextModel", "CLIPTextModelWithProjection"):
        raise CheckpointError(f"unsupported text encoder class {name!r}")
    return getattr(transformers, name)


def build_text_encoder(
    enc: TextEncoderConfig, weights: dict[str, torch.Tensor], prefix: str, dtype: torch.dtype, source: str, device=None
):
    from transformers import CLIPTextConfig

    cls = _text_model_class(enc.class_name)
    config = CLIPTextConfig(**enc.config)
    model = _on_meta(lambda: cls(config))
    if enc.layout == "open_clip":  # ours: diffusers' converter copies every q/k/v projection
        converted = open_clip_from_original(weights, prefix)
    else:
        converted = _converters().convert_ldm_clip_checkpoint(weights, remove_prefix=prefix)
    weights.clear()
    # Files (and transformers >= 5.6's CLIPTextModel) may or may not nest weights under "text_model."
    converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    if hasattr(model, "text_model"):
        converted = {(k if k.startswith("text_projection") else "text_model." + k): v for k, v in converted.items()}
    _materialise(model, converted, dtype, f"text encoder {prefix.rstrip('.')}", source, device)
    return model


def _text_encoder(
    arch: str, encoders: Sequence[Any], configs: Sequence[TextEncoderConfig], device, dtype, tokenizers=None, info=None
) -> TextEncoder:
    if tokenizers is None:
        tokenizers = [load_clip_tokenizer(c.pad_token) for c in configs]
    return TextEncoder(
        tokenizers=list(tokenizers),
        encoders=[e.to(device) for e in encoders],
        arch=arch,
        device=device,
        dtype=dtype,
        stop_at_layer=DEFAULT_CLIP_LAYER[arch],
        info={
            # SD1/SD2 normalise a chosen hidden layer with the final layer norm, SDXL does not.
            "final_norm_on_hidden": arch != "sdxl",
            "num_layers": [int(e.config.num_hidden_layers) for e in encoders],
            **(info or {}),
        },
    )


def _vae_dtype(config: Mapping[str, Any], dtype: torch.dtype) -> torch.dtype:
    """SDXL's VAE overflows in fp16 (``force_upcast``): keep it in fp32, it is small."""
    return torch.float32 if config.get("force_upcast") and dtype == torch.float16 else dtype


def _latent_info(vae_config: Mapping[str, Any], arch: str) -> dict[str, Any]:
    return {
        "latent_downscale": 2 ** (len(vae_config["block_out_channels"]) - 1),
        "latent_channels": int(vae_config.get("latent_channels", 4)),
        "scaling_factor": float(vae_config.get("scaling_factor") or SCALING_FACTORS[arch]),
    }


def _scheduler_config(cfg: ArchConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.scheduler.items() if not k.startswith("_")}


# -- single-file checkpoints -----------------------------------------------------------------


def load_single_file(path: Path, settings: Settings) -> LoadedCheckpoint:
    path = Path(path)
    weights = open_weights(path)
    det = detect(weights)
    cfg = resolve_config(weights, det)
    device, dtype = device_and_dtype(settings)
    source = path.name
    info = {
        "source": str(path),
        "format": "single_file",
        "config_source": cfg.source,
        "detection": det.reasons,
        "variant": det.variant,
    }

    unet = build_unet(cfg.unet, weights.prefixed(UNET_PREFIX), dtype, source, device)
    model = DiffusionModel(
        unet=unet,
        scheduler_config=_scheduler_config(cfg),
        arch=cfg.arch,
        device=device,
        dtype=dtype,
        info={**info, **_latent_info(cfg.vae, cfg.arch)},
    )

    vae = None
    if weights.has_prefix(VAE_PREFIX):
        vdtype = _vae_dtype(cfg.vae, dtype)
        module = build_vae(cfg.vae, weights.prefixed(VAE_PREFIX), vdtype, source, device)
        vae = Autoencoder(vae=module, arch=cfg.arch, device=device, dtype=vdtype, info=dict(info))

    clip = None
    slots = TEXT_ENCODER_PREFIXES[cfg.arch]
    if all(weights.has_prefix(prefix) for prefix, _ in slots):
        if len(cfg.text_encoders) != len(slots):
            raise CheckpointError(f"{source}: {cfg.arch} needs {len(slots)} text encoder configs, got {len(cfg.text_encoders)}")
        encoders = [
            build_text_encoder(enc, weights.prefixed(prefix), prefix, dtype, source, device)
            for (prefix, _), enc in zip(slots, cfg.text_encoders)
        ]
        clip = _text_encoder(cfg.arch, encoders, cfg.text_encoders, device, dtype, info=dict(info))
    if vae is None or clip is None:
        log.warning("%s has no %s", source, " or ".join(n for n, v in (("VAE", vae), ("text encoder", clip)) if v is None))
    return LoadedCheckpoint(model=model, clip=clip, vae=vae, arch=cfg.arch, config=cfg, info=info)


def is_single_file(path: Path) -> bool:
    return Path(path).is_file() and Path(path).suffix.lower() in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES


# -- diffusers folders -----------------------------------------------------------------------


def is_diffusers_folder(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "model_index.json").is_file()


def _weights_variant(folder: Path) -> str | None:
    """Use ``*.fp16.safetensors`` only when a folder has no full-precision weights."""
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    plain = any(n.endswith((".safetensors", ".bin")) and n.count(".") == 1 for n in names)
    return "fp16" if not plain and any(".fp16." in n for n in names) else None


def _folder_weight_files(folder: Path) -> list[Path]:
    """The weight files of one diffusers model folder: single, sharded (index) or ``.bin``; the
    ``fp16`` variant only when a folder has no full-precision weights (as :func:`_weights_variant`)."""
    infix = ".fp16" if _weights_variant(folder) == "fp16" else ""
    for ext in ("safetensors", "bin"):
        single = folder / f"diffusion_pytorch_model{infix}.{ext}"
        if single.is_file():
            return [single]
        index = folder / f"diffusion_pytorch_model{infix}.{ext}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [folder / name for name in shards]
    return []


def load_folder_model(cls: Any, folder: Path, dtype: torch.dtype, device: torch.device, what: str) -> torch.nn.Module:
    """A diffusers model folder built on the ``meta`` device and given the file's tensors.

    ``from_pretrained`` without ``accelerate`` first initialises every weight randomly (seconds for
    a full-size UNet); this costs one read of the file. Folders whose weights do not match the
    config by name (e.g. VAEs saved with pre-0.14 attention names) go through ``from_pretrained``,
    which renames them.
    """
    files = _folder_weight_files(folder)
    if files:
        weights: dict[str, torch.Tensor] = {}
        for file in files:
            weights.update(open_weights(file).prefixed(""))
        config = json.loads((folder / "config.json").read_text())
        model = _on_meta(lambda: cls.from_config(config))
        try:
            _materialise(model, weights, dtype, what, folder.name, device)
            return model
        except CheckpointError as exc:
            log.info("%s: %s; loading through from_pretrained", folder, exc)
    model = cls.from_pretrained(folder, torch_dtype=dtype, local_files_only=True, variant=_weights_variant(folder))
    return model.eval().requires_grad_(False).to(device)


def load_diffusers_folder(folder: Path, settings: Settings) -> LoadedCheckpoint:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    folder = Path(folder)
    try:
        cfg = read_config_folder(folder)
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{folder.name}: not a readable diffusers folder: {exc}") from exc
    arch = cfg.arch
    if "beta_schedule" not in cfg.scheduler:  # no scheduler folder: the family's training schedule
        shipped = "sd2_v" if cfg.scheduler.get("prediction_type") == "v_prediction" and arch == "sd2" else arch
        cfg = replace(cfg, scheduler={**load_shipped_config(shipped).scheduler, **cfg.scheduler})
    device, dtype = device_and_dtype(settings)
    info = {"source": str(folder), "format": "diffusers", "config_source": str(folder), "detection": ["model_index.json"]}
    try:
        unet = load_folder_model(UNet2DConditionModel, folder / "unet", dtype, device, "UNet")
        vae_dtype = _vae_dtype(cfg.vae, dtype)
        vae_module = load_folder_model(AutoencoderKL, folder / "vae", vae_dtype, device, "VAE")
        encoders, tokenizers = [], []
        for i, enc in enumerate(cfg.text_encoders):
            suffix = "" if i == 0 else f"_{i + 1}"
            sub = folder / f"text_encoder{suffix}"
            model = _text_model_class(enc.class_name).from_pretrained(
                sub, torch_dtype=dtype, local_files_only=True, variant=_weights_variant(sub)
            )
            encoders.append(model.eval().requires_grad_(False))
            tok_dir = folder / f"tokenizer{suffix}"
            own_vocab = (tok_dir / "vocab.json").is_file() and (tok_dir / "merges.txt").is_file()
            tokenizers.append(load_clip_tokenizer(enc.pad_token, tok_dir if own_vocab else None))
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{folder.name}: cannot load diffusers folder: {exc}") from exc
    model = DiffusionModel(
        unet=unet,
        scheduler_config=_scheduler_config(cfg),
        arch=arch,
        device=device,
        dtype=dtype,
        info={**info, **_latent_info(dict(vae_module.config), arch)},
    )
    vae = Autoencoder(vae=vae_module, arch=arch, device=device, dtype=vae_dtype, info=dict(info))
    clip = _text_encoder(arch, encoders, cfg.text_encoders, device, dtype, tokenizers=tokenizers, info=dict(info))
    return LoadedCheckpoint(model=model, clip=clip, vae=vae, arch=arch, config=cfg, info=info)


BUILTIN_FORMATS: tuple[ModelFormat, ...] = (
    ModelFormat(
        name="diffusers",
        can_load=is_diffusers_folder,
        load=load_diffusers_folder,
        description="diffusers folder with model_index.json",
    ),
    ModelFormat(
        name="single_file",
        can_load=is_single_file,
        load=load_single_file,
        description="original-layout SD1/SD2/SDXL .safetensors (or plain-tensor .ckpt)",
    ),
)


def find_format(path: Path, formats: Mapping[str, ModelFormat] | Sequence[ModelFormat] | None = None) -> ModelFormat:
    """The registered format that claims ``path`` (highest priority first)."""
    pool = list(formats.values()) if isinstance(formats, Mapping) else list(formats or BUILTIN_FORMATS)
    for fmt in sorted(pool, key=lambda f: -getattr(f, "priority", 0)):
        try:
            if fmt.can_load(Path(path)):
                return fmt
        except Exception as exc:  # a plugin's probe must not break loading
            log.warning("model format %s failed to probe %s: %s", fmt.name, path, exc)
    names = ", ".join(f.name for f in pool) or "none"
    raise CheckpointError(f"no model format can load {Path(path).name} (registered formats: {names})")


def load_checkpoint(
    path: str | Path, settings: Settings, formats: Mapping[str, ModelFormat] | Sequence[ModelFormat] | None = None
) -> LoadedCheckpoint:
    path = Path(path)
    fmt = find_format(path, formats)
    loaded = fmt.load(path, settings)
    loaded.info.setdefault("format", fmt.name)
    return loaded


# -- standalone VAEs -------------------------------------------------------------------------


def _vae_arch_hint(path: Path, metadata: Mapping[str, str]) -> str:
    text = (path.name + " " + metadata.get("modelspec.architecture", "")).lower()
    return "sdxl" if "xl" in text else "sd1"


def load_vae(path: str | Path, settings: Settings) -> Autoencoder:
    """A VAE file (original or diffusers key layout) or a diffusers VAE folder with config.json.

    The latent scaling factor comes from the file's config when it has one; otherwise from the
    name (``…xl…`` → SDXL's 0.13025, else SD1's 0.18215), since SD1 and SDXL VAEs share shapes.
    """
    from diffusers import AutoencoderKL

    path = Path(path)
    device, dtype = device_and_dtype(settings)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path.name}: a VAE folder needs a config.json")
        try:
            config = json.loads((path / "config.json").read_text())
            vdtype = _vae_dtype(config, dtype)
            module = load_folder_model(AutoencoderKL, path, vdtype, device, "VAE")
        except Exception as exc:
            raise CheckpointError(f"{path.name}: cannot load VAE folder: {exc}") from exc
        arch = "sdxl" if abs(float(module.config.scaling_factor) - SCALING_FACTORS["sdxl"]) < 1e-6 else "sd1"
        return Autoencoder(vae=module, arch=arch, device=device, dtype=vdtype,
                           info={"source": str(path), "scaling_factor_source": "config.json"})

    weights = open_weights(path)
    tensors, prefix = _original_vae_tensors(weights)
    meta_text = weights.metadata.get(METADATA_KEY)
    if meta_text:
        try:
            cfg = ArchConfig.from_json(meta_text)
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path.name}: unreadable {METADATA_KEY} metadata: {exc}") from exc
        arch, config, why = cfg.arch, dict(cfg.vae), "metadata"
        config = fit_vae_config(_view(weights, tensors), prefix, config)
    else:
        arch = _vae_arch_hint(path, weights.metadata)
        base = load_shipped_config(arch).vae
        config = fit_vae_config(_view(weights, tensors), prefix, base)
        why = "file name" if arch == "sdxl" else "default (SD1)"
    vdtype = _vae_dtype(config, dtype)
    module = build_vae(config, tensors, vdtype, path.name, device)
    return Autoencoder(vae=module, arch=arch, device=device, dtype=vdtype,
                       info={"source": str(path), "scaling_factor_source": why})


def _view(weights: WeightFile, tensors: Mapping[str, torch.Tensor]) -> WeightFile:
    return WeightFile(weights.path, list(tensors), weights.metadata, dict(tensors), {k: tuple(v.shape) for k, v in tensors.items()})


def _original_vae_tensors(weights: WeightFile) -> tuple[dict[str, torch.Tensor], str]:
    """VAE tensors in the original layout, whatever layout the file uses; and their key prefix."""
    for prefix in (VAE_PREFIX, "vae.", ""):
        if prefix + "encoder.down.0.block.0.conv1.weight" in weights:
            keys = [k for k in weights.keys if k.startswith(prefix + "encoder.") or k.startswith(prefix + "decoder.")
                    or k.startswith(prefix + "quant_conv.") or k.startswith(prefix + "post_quant_conv.")]
            return weights.tensors(keys), prefix
    if "encoder.down_blocks.0.resnets.0.conv1.weight" in weights:  # diffusers layout
        keys = weights.keys
        levels = len({k.split(".")[2] for k in keys if k.startswith("encoder.down_blocks.")})
        lpb = len({k.split(".")[4] for k in keys if k.startswith("encoder.down_blocks.0.resnets.")})
        layout = {"block_out_channels": [0] * levels, "layers_per_block": lpb}
        tensors = vae_to_original(weights.tensors(keys), layout)
        return tensors, VAE_PREFIX
    raise CheckpointError(f"{weights.path.name} is not a VAE (no encoder/decoder weights found)")


# -- compatibility ---------------------------------------------------------------------------


def check_compatible(model: DiffusionModel, other: Any, input_name: str | None = None) -> None:
    """Raise :class:`NodeInputError` when a CLIP, VAE or CONDITIONING cannot work with ``model``.

    Compares what matters for the tensors (conditioning width, pooled output for SDXL, latent
    channels) and names both families in the message, e.g. an SDXL CLIP with an SD1 model.
    """
    if isinstance(other, TextEncoder):
        name = input_name or "clip"
        if other.arch != model.arch:
            raise NodeInputError(
                name, f"this CLIP belongs to a {_family(other.arch)} model but the MODEL is {_family(model.arch)}; "
                "use the CLIP output of the same checkpoint"
            )
        return
    if isinstance(other, Autoencoder):
        name = input_name or "vae"
        want = int(model.in_channels)
        have = other.latent_channels
        if model.info.get("variant") == "inpaint":
            want = int(model.info.get("latent_channels", 4))
        if have != want:
            raise NodeInputError(
                name, f"the VAE makes {have}-channel latents but the MODEL ({_family(model.arch)}) works on {want} channels"
            )
        return
    if other is None:
        raise NodeInputError(input_name or "input", "is missing: the checkpoint did not contain this component")
    if isinstance(other, list):
        name = input_name or "conditioning"
        want = model.cross_attention_dim
        for emb, extras in other:
            width = int(emb.shape[-1])
            arch = extras.get("arch") if isinstance(extras, Mapping) else None
            if width != want:
                from_ = f" (encoded by a {_family(arch)} CLIP)" if arch else ""
                raise NodeInputError(
                    name, f"conditioning is {width} wide{from_} but the MODEL ({_family(model.arch)}) expects {want}; "
                    "encode the prompt with the CLIP of the same checkpoint"
                )
            if model.arch == "sdxl" and (not isinstance(extras, Mapping) or extras.get("pooled_output") is None):
                raise NodeInputError(name, "SDXL needs a pooled text embedding ('pooled_output'); encode with an SDXL CLIP")
        return
    raise TypeError(f"check_compatible cannot check a {type(other).__name__}")


def _family(arch: str | None) -> str:
    return {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}.get(arch or "", arch or "unknown")

