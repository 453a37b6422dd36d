"""ComfyUI's other loaders: config-form checkpoints, single-file text encoders and UNets,
diffusers folders, unCLIP checkpoints and hypernetworks — all offline, all in the original layouts.

Folders (under each model root): ``configs/``, ``text_encoders/`` (and the older ``clip/``),
``diffusion_models/`` (and ``unet/``), ``diffusers/``, ``hypernetworks/``, as in ComfyUI.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Mapping
from typing import Any

import torch

from latentgraph import model_folders
from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.arch_detection import detect, fit_text_encoder_config, resolve_config
from latentgraph.nodes.checkpoint_files import CheckpointError, WeightFile, open_weights
from latentgraph.nodes.checkpoints import (
    BUILTIN_FORMATS,
    _materialise,
    _on_meta,
    _scheduler_config,
    _text_encoder,
    _text_model_class,
    build_text_encoder,
    build_unet,
    device_and_dtype,
    load_checkpoint,
    load_diffusers_folder,
)
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.loaders import file_fingerprint_of, resolve_model
from latentgraph.nodes.model_configs import TextEncoderConfig, load_shipped_config
from latentgraph.nodes.models.saving import TEXT_ENCODER_METADATA_KEY
from latentgraph.nodes.models.unet_patching import during_unet_call, temporary_hooks
from latentgraph.nodes.original_layout import UNET_PREFIX

log = logging.getLogger("latentgraph.models.loaders")

def _load_full(ctx, path, input_name):
    formats = ctx.registry.model_formats or {f.name: f for f in BUILTIN_FORMATS}
    try:
        return load_checkpoint(path, ctx.settings, formats)
    except CheckpointError as exc:
        raise NodeInputError(input_name, str(exc)) from None


# -- checkpoints ---------------------------------------------------------------------------------------
class CheckpointLoader(Node):
    spec = NodeSpec(
        name="CheckpointLoader",
        display_name="Load Checkpoint With Config (DEPRECATED)",
        category="advanced/loaders",
        description="ComfyUI's config form of Load Checkpoint. The architecture is detected from the file "
        "(offline); the .yaml config is only checked to exist.",
        inputs=(In("config_name", "COMBO", choices=model_folders.choices("configs", (".yaml", ".yml", ".json"))),
                In("ckpt_name", "COMBO", choices=model_folders.choices("checkpoints"))),
        outputs=(Out("MODEL"), Out("CLIP"), Out("VAE")),
    )

    def execute(self, ctx, config_name, ckpt_name):
        resolve_model(ctx.settings, "configs", config_name, "config_name")
        path = resolve_model(ctx.settings, "checkpoints", ckpt_name, "ckpt_name")
        loaded = _load_full(ctx, path, "ckpt_name")
        return (loaded.model, loaded.clip, loaded.vae)

    fingerprint = file_fingerprint_of("checkpoints", "ckpt_name")


class unCLIPCheckpointLoader(Node):  # noqa: N801 - ComfyUI's class name
    spec = NodeSpec(
        name="unCLIPCheckpointLoader",
        display_name="unCLIPCheckpointLoader",
        category="loaders",
        description="Loads an unCLIP checkpoint's MODEL (an unCLIP UNet: it reads unCLIPConditioning), CLIP, VAE "
        "and its image tower as CLIP_VISION (None if the file has none; nodes that need it say so).",
        inputs=(In("ckpt_name", "COMBO", choices=model_folders.choices("checkpoints")),),
        outputs=(Out("MODEL"), Out("CLIP"), Out("VAE"), Out("CLIP_VISION")),
    )

    def execute(self, ctx, ckpt_name):
        path = resolve_model(ctx.settings, "checkpoints", ckpt_name, "ckpt_name")
        loaded = _load_full(ctx, path, "ckpt_name")
        vision = None
        try:  # the CLIP vision package reads the image tower, if the checkpoint has one it knows
            from latentgraph.nodes.text.clip_vision import load_clip_vision

            device, dtype = device_and_dtype(ctx.settings)
            vision = load_clip_vision(path, device, dtype)
        except (ImportError, CheckpointError, KeyError, ValueError) as exc:
            log.warning("%s: no CLIP vision model loaded (%s); connect a CLIPVisionLoader where one is needed",
                        path.name, exc)
        return (loaded.model, loaded.clip, loaded.vae, vision)

    fingerprint = file_fingerprint_of("checkpoints", "ckpt_name")


class DiffusersLoader(Node):
    spec = NodeSpec(
        name="DiffusersLoader",
        display_name="DiffusersLoader",
        category="advanced/loaders/deprecated",
        description="Loads a diffusers-format folder (model_index.json) from models/diffusers.",
        inputs=(In("model_path", "COMBO", choices=model_folders.choices("diffusers")),),
        outputs=(Out("MODEL"), Out("CLIP"), Out("VAE")),
    )

    def execute(self, ctx, model_path):
        path = resolve_model(ctx.settings, "diffusers", model_path, "model_path")
        if not (path / "model_index.json").is_file():
            raise NodeInputError("model_path", f"'{model_path}' is not a diffusers folder (no model_index.json)")
        try:
            loaded = load_diffusers_folder(path, ctx.settings)
        except CheckpointError as exc:
            raise NodeInputError("model_path", str(exc)) from None
        return (loaded.model, loaded.clip, loaded.vae)

    fingerprint = file_fingerprint_of("diffusers", "model_path")


# -- UNet files ----------------------------------------------------------------------------------------
def load_unet_file(path, settings) -> DiffusionModel:
    """A UNet alone: ``model.diffusion_model.…`` keys or bare original-layout keys."""
    weights = open_weights(path)
    if not weights.has_prefix(UNET_PREFIX):  # bare keys (ComfyUI's diffusion_models files): add the prefix
        if "input_blocks.0.0.weight" not in weights:
            raise CheckpointError(f"{path.name} is not an SD1/SD2/SDXL UNet in the original layout "
                                  "(no input_blocks.0.0.weight); diffusers-layout UNets load as folders")
        tensors = {UNET_PREFIX + k: v for k, v in weights.tensors(weights.keys).items()}
        weights = WeightFile(path, list(tensors), weights.metadata, tensors, {k: tuple(v.shape) for k, v in tensors.items()})
    det = detect(weights)
    cfg = resolve_config(weights, det)
    device, dtype = device_and_dtype(settings)
    unet = build_unet(cfg.unet, weights.prefixed(UNET_PREFIX), dtype, path.name, device)
    vae = cfg.vae or load_shipped_config(cfg.arch).vae
    info = {"source": str(path), "format": "unet_file", "config_source": cfg.source,
            "latent_downscale": 2 ** (len(vae["block_out_channels"]) - 1), "latent_channels": int(vae.get("latent_channels", 4)),
            "scaling_factor": float(vae.get("scaling_factor") or 0.18215)}
    return DiffusionModel(unet=unet, scheduler_config=_scheduler_config(cfg), arch=cfg.arch, device=device, dtype=dtype, info=info)


class UNETLoader(Node):
    spec = NodeSpec(
        name="UNETLoader",
        display_name="Load Diffusion Model",
        category="advanced/loaders",
        description="Loads a UNet-only file (e.g. ModelSave's) from models/diffusion_models. fp8 weight types "
        "are read but run in the device's compute dtype.",
        inputs=(In("unet_name", "COMBO", choices=model_folders.choices("diffusion_models")),
                In("weight_dtype", "COMBO", choices=("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"))),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, unet_name, weight_dtype="default"):
        path = resolve_model(ctx.settings, "diffusion_models", unet_name, "unet_name")
        if weight_dtype != "default":
            log.warning("weight_dtype %s: weights are kept in the compute dtype (no fp8 storage)", weight_dtype)
        try:
            return (load_unet_file(path, ctx.settings),)
        except CheckpointError as exc:
            raise NodeInputError("unet_name", str(exc)) from None

    fingerprint = file_fingerprint_of("diffusion_models", "unet_name")


# -- text encoder files --------------------------------------------------------------------------------
_SHIPPED_ENCODER = {768: ("sd1", 0), 1024: ("sd2", 0), 1280: ("sdxl", 1)}


def load_text_encoder_file(path, settings) -> tuple[str, TextEncoderConfig, Any]:
    """One text encoder from its own file → (arch, config, module). Hugging Face names
    (``text_model.…``, what CLIPSave and ComfyUI write) or OpenCLIP names (``transformer.resblocks…``)."""
    weights = open_weights(path)
    device, dtype = device_and_dtype(settings)
    meta = weights.metadata.get(TEXT_ENCODER_METADATA_KEY)
    if meta:
        data = json.loads(meta)
        arch, enc = data["arch"], TextEncoderConfig.from_dict(data["encoder"])
    else:
        hf = any(k.startswith(("text_model.", "embeddings.")) for k in weights.keys)
        width = weights.shape("text_model.embeddings.token_embedding.weight") or weights.shape("token_embedding.weight") \
            or weights.shape("embeddings.token_embedding.weight")
        if width is None or int(width[1]) not in _SHIPPED_ENCODER:
            raise CheckpointError(f"{path.name}: not a CLIP text encoder of SD1 (768), SD2 (1024) or SDXL (1280)")
        arch, index = _SHIPPED_ENCODER[int(width[1])]
        base = load_shipped_config(arch).text_encoders[index]
        layout = "clip" if hf else "open_clip"
        enc = fit_text_encoder_config(weights, "", layout, TextEncoderConfig(base.class_name, base.config, layout, base.pad_token), arch)
    tensors = weights.tensors(weights.keys)
    if enc.layout == "open_clip":
        module = build_text_encoder(enc, tensors, "", dtype, path.name, device)
    else:
        from transformers import CLIPTextConfig

        module = _on_meta(lambda: _text_model_class(enc.class_name)(CLIPTextConfig(**enc.config)))
        sd = {k.removeprefix("text_model."): v for k, v in tensors.items()}
        sd = {(k if k.startswith("text_projection") else "text_model." + k): v for k, v in sd.items()}
        if not hasattr(module, "text_model"):
            sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
        _materialise(module, sd, dtype, "text encoder", path.name, device)
    return arch, enc, module


class CLIPLoader(Node):
    spec = NodeSpec(
        name="CLIPLoader",
        display_name="Load CLIP",
        category="advanced/loaders",
        description="Loads one text encoder file (SD1 CLIP-L or SD2 OpenCLIP-H) from models/text_encoders; "
        "type stable_diffusion covers both. The other families' encoders are not supported.",
        inputs=(
            In("clip_name", "COMBO", choices=model_folders.choices("text_encoders")),
            In("type", "COMBO", choices=("stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv",
                                         "pixart", "cosmos", "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2",
                                         "qwen_image", "hunyuan_image", "flux2", "ovis")),
            In("device", "COMBO", choices=("default", "cpu"), required=False, editor_options={"advanced": True}),
        ),
        outputs=(Out("CLIP"),),
    )

    def execute(self, ctx, clip_name, type="stable_diffusion", device="default"):  # noqa: A002
        if type != "stable_diffusion":
            raise NodeInputError("type", f"'{type}' text encoders are not supported; latentgraph runs SD1/SD2/SDXL "
                                 "(use stable_diffusion, or DualCLIPLoader with sdxl)")
        path = resolve_model(ctx.settings, "text_encoders", clip_name, "clip_name")
        try:
            arch, enc, module = load_text_encoder_file(path, ctx.settings)
        except CheckpointError as exc:
            raise NodeInputError("clip_name", str(exc)) from None
        if arch == "sdxl":
            raise NodeInputError("clip_name", f"{path.name} is one of SDXL's two text encoders; load both with DualCLIPLoader")
        dev, dtype = device_and_dtype(ctx.settings)
        return (_text_encoder(arch, [module], [enc], dev, dtype, info={"source": str(path)}),)

    fingerprint = file_fingerprint_of("text_encoders", "clip_name")


class DualCLIPLoader(Node):
    spec = NodeSpec(
        name="DualCLIPLoader",
        display_name="DualCLIPLoader",
        category="advanced/loaders",
        description="Loads SDXL's two text encoders (CLIP-L and OpenCLIP-G, in either order) from models/text_encoders.",
        inputs=(
            In("clip_name1", "COMBO", choices=model_folders.choices("text_encoders")),
            In("clip_name2", "COMBO", choices=model_folders.choices("text_encoders")),
            In("type", "COMBO", choices=("sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image",
                                         "hunyuan_video_15", "kandinsky5", "kandinsky5_image", "ltxv", "newbie")),
            In("device", "COMBO", choices=("default", "cpu"), required=False, editor_options={"advanced": True}),
        ),
        outputs=(Out("CLIP"),),
    )

    def execute(self, ctx, clip_name1, clip_name2, type="sdxl", device="default"):  # noqa: A002
        if type != "sdxl":
            raise NodeInputError("type", f"'{type}' is not supported; latentgraph's two-encoder family is sdxl")
        loaded = []
        for name, input_name in ((clip_name1, "clip_name1"), (clip_name2, "clip_name2")):
            path = resolve_model(ctx.settings, "text_encoders", name, input_name)
            try:
                loaded.append((input_name, *load_text_encoder_file(path, ctx.settings)))
            except CheckpointError as exc:
                raise NodeInputError(input_name, str(exc)) from None
        # CLIP-L (no projection) first, OpenCLIP-G (with projection) second, whatever the input order
        loaded.sort(key=lambda t: t[2].class_name == "CLIPTextModelWithProjection")
        if [t[2].class_name for t in loaded] != ["CLIPTextModel", "CLIPTextModelWithProjection"]:
            raise NodeInputError("clip_name2", "SDXL needs one CLIP-L and one OpenCLIP-G (with projection) encoder")
        dev, dtype = device_and_dtype(ctx.settings)
        return (_text_encoder("sdxl", [t[3] for t in loaded], [t[2] for t in loaded], dev, dtype),)

    fingerprint = file_fingerprint_of("text_encoders", "clip_name1", "clip_name2")


# -- hypernetworks -------------------------------------------------------------------------------------
_ACTIVATIONS = {"linear": torch.nn.Identity, "relu": torch.nn.ReLU, "leakyrelu": torch.nn.LeakyReLU, "elu": torch.nn.ELU,
                "swish": torch.nn.Hardswish, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
                "softsign": torch.nn.Softsign, "mish": torch.nn.Mish}


def read_hypernetwork(path) -> dict[int, tuple[torch.nn.Module, torch.nn.Module]]:
    """A1111/ComfyUI hypernetwork (.pt): per attention width, a (key, value) pair of small MLPs.
    Read with ``weights_only`` (no code runs); dropout layers are left out (inference)."""
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"refusing to load {path.name}: it holds Python objects, not just tensors") from None
    except Exception as exc:
        raise CheckpointError(f"{path.name} is not a readable hypernetwork: {exc}") from None
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{path.name} is not a hypernetwork (not a dict)")
    act = sd.get("activation_func", "linear")
    if act not in _ACTIVATIONS:
        raise CheckpointError(f"{path.name}: unsupported activation {act!r}")
    layer_norm, activate_output = bool(sd.get("is_layer_norm", False)), bool(sd.get("activate_output", False))
    out = {}
    for key, pair in sd.items():
        try:
            dim = int(key)
        except (TypeError, ValueError):
            continue
        mlps = []
        for weights in pair[:2]:
            names = [k[: -len(".weight")] for k in weights if k.endswith(".weight")]
            layers: list[torch.nn.Module] = []
            i = 0
            while i < len(names):
                w, b = weights[f"{names[i]}.weight"], weights[f"{names[i]}.bias"]
                lin = torch.nn.Linear(w.shape[1], w.shape[0])
                lin.load_state_dict({"weight": w, "bias": b})
                layers.append(lin)
                if act != "linear" and (i != len(names) - 1 or activate_output):
                    layers.append(_ACTIVATIONS[act]())
                if layer_norm:
                    i += 1
                    ln = torch.nn.LayerNorm(weights[f"{names[i]}.weight"].shape[0])
                    ln.load_state_dict({"weight": weights[f"{names[i]}.weight"], "bias": weights[f"{names[i]}.bias"]})
                    layers.append(ln)
                i += 1
            mlps.append(torch.nn.Sequential(*layers).eval().requires_grad_(False))
        out[dim] = (mlps[0], mlps[1])
    if not out:
        raise CheckpointError(f"{path.name} holds no hypernetwork layers")
    return out


def apply_hypernetwork(model: DiffusionModel, layers, strength: float) -> DiffusionModel:
    """ComfyUI's attn1 and attn2 patch: the key and value *inputs* of each attention whose input
    width has a layer become ``x + mlp(x)·strength`` (pre-hooks on to_k / to_v, per UNet call)."""
    for k_mlp, v_mlp in layers.values():
        k_mlp.to(model.device, model.dtype), v_mlp.to(model.device, model.dtype)

    def pre(mlp):
        def hook(module, inputs):
            x = inputs[0]
            return (x + mlp(x) * strength, *inputs[1:])  # only on layers whose width has an mlp

        return hook

    hooks_: dict[str, Any] = {}
    for name, m in model.unet.named_modules():
        if name.endswith((".attn1", ".attn2")) and hasattr(m, "processor"):
            width = m.to_k.in_features
            if width in layers:
                hooks_[f"{name}.to_k"] = pre(layers[width][0])
                hooks_[f"{name}.to_v"] = pre(layers[width][1])
    if not hooks_:
        raise NodeInputError("hypernetwork_name", f"no layer of this hypernetwork ({sorted(layers)}) fits the model's attention widths")
    return during_unet_call(model, lambda args: temporary_hooks(args["unet"], pre=hooks_))


class HypernetworkLoader(Node):
    spec = NodeSpec(
        name="HypernetworkLoader",
        category="loaders",
        description="Applies a hypernetwork (A1111 format) to the UNet's attention key/value inputs.",
        inputs=(In("model", "MODEL"), In("hypernetwork_name", "COMBO", choices=model_folders.choices("hypernetworks", (".pt", ".pth", ".ckpt"))),
                In("strength", "FLOAT", default=1.0, min=-10.0, max=10.0, step=0.01)),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, model, hypernetwork_name, strength=1.0):
        path = resolve_model(ctx.settings, "hypernetworks", hypernetwork_name, "hypernetwork_name")
        try:
            layers = read_hypernetwork(path)
        except CheckpointError as exc:
            raise NodeInputError("hypernetwork_name", str(exc)) from None
        return (apply_hypernetwork(model, layers, strength),)

    fingerprint = file_fingerprint_of("hypernetworks", "hypernetwork_name")


NODES = [CheckpointLoader, unCLIPCheckpointLoader, DiffusersLoader, UNETLoader, CLIPLoader, DualCLIPLoader, HypernetworkLoader]
