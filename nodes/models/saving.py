"""Saving checkpoints, UNets, text encoders, VAEs and extracted LoRAs in the original layouts.

Files are what ComfyUI and A1111 write and read: a checkpoint is one safetensors file with
``model.diffusion_model.…``, ``first_stage_model.…`` and ``cond_stage_model.…`` /
``conditioner.embedders.…`` keys (nodes/original_layout.py); a VAE file has the bare
``encoder.…``/``decoder.…`` keys; a CLIP file per text encoder has Hugging Face names
(``text_model.…``). Each also carries the ``latentgraph.config`` metadata entry with the exact
architecture, so a file saved from a non-standard (e.g. tiny) model loads back here as it was.
Only weights are saved: hooks added by patch nodes (FreeU, guidance …) are not part of a file.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeResult, NodeSpec
from latentgraph import pngmeta
from latentgraph.output_names import write_atomically
from latentgraph.nodes.components import Autoencoder, DiffusionModel, TextEncoder
from latentgraph.nodes.images import next_counter, resolve_save_prefix
from latentgraph.nodes.model_configs import METADATA_KEY, ArchConfig, TextEncoderConfig
from latentgraph.nodes.original_layout import (
    TEXT_ENCODER_PREFIXES,
    rename,
    text_encoder_to_original,
    unet_module_map,
    unet_to_original,
    vae_to_original,
)

log = logging.getLogger("latentgraph.models.saving")

#: Metadata entry of a CLIPSave file: ``{"arch", "index", "encoder": TextEncoderConfig}``.
TEXT_ENCODER_METADATA_KEY = "latentgraph.text_encoder"
#: Names ComfyUI gives each text encoder of a family in CLIPSave's file names.
CLIP_NAMES = {"sd1": ("clip_l",), "sd2": ("clip_h",), "sdxl": ("clip_l", "clip_g")}


def _public(config: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(config).items() if not k.startswith("_")}


def text_encoder_configs(clip: TextEncoder) -> tuple[TextEncoderConfig, ...]:
    layouts = [layout for _, layout in TEXT_ENCODER_PREFIXES.get(clip.arch, ())] or ["clip"] * len(clip.encoders)
    out = []
    for enc, tok, layout in zip(clip.encoders, clip.tokenizers, layouts):
        config = {k: v for k, v in enc.config.to_dict().items() if k not in ("architectures", "transformers_version", "_name_or_path")}
        out.append(TextEncoderConfig(type(enc).__name__, config, layout, str(getattr(tok, "pad_token", None) or "<|endoftext|>")))
    return tuple(out)


def scheduler_for_saving(model: DiffusionModel) -> dict[str, Any]:
    """The training schedule, with a ModelSamplingDiscrete eps/v override written into it."""
    config = dict(model.scheduler_config)
    override = model.sampling_override
    from latentgraph.nodes.sampling.model_sampling import ModelSampling

    if type(override) is ModelSampling:
        config["prediction_type"] = {"eps": "epsilon", "v": "v_prediction"}[override.prediction]
    return config


def arch_config(model: DiffusionModel | None, clip: TextEncoder | None, vae: Autoencoder | None, arch: str) -> ArchConfig:
    return ArchConfig(
        arch=arch,
        unet=_public(model.unet.config) if model is not None else {},
        vae=_public(vae.vae.config) if vae is not None else {},
        scheduler=scheduler_for_saving(model) if model is not None else {},
        text_encoders=text_encoder_configs(clip) if clip is not None else (),
        source="saved",
        extra={"saved_by": "latentgraph"},
    )


def _cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}


def checkpoint_state_dict(model: DiffusionModel | None, clip: TextEncoder | None, vae: Autoencoder | None) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if model is not None:
        out.update(unet_to_original(model.unet.state_dict(), dict(model.unet.config)))
    if vae is not None:
        out.update(vae_to_original(vae.vae.state_dict(), dict(vae.vae.config)))
    if clip is not None:
        for (prefix, layout), enc in zip(TEXT_ENCODER_PREFIXES[clip.arch], clip.encoders):
            out.update(text_encoder_to_original(enc.state_dict(), prefix, layout))
    return _cpu({k: v for k, v in out.items() if not k.endswith("position_ids")})


def _metadata(ctx, extra: dict[str, str]) -> dict[str, str]:
    info = ctx.extra or {}
    chunks = pngmeta.workflow_chunks(info.get("prompt"), info.get("workflow"), info.get("extra_pnginfo"))
    return {**chunks, **extra}


def write_safetensors(ctx, filename_prefix: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, str]:
    """Write ``<prefix>_<counter:05>_.safetensors`` under the output folder; return its ui entry."""
    from safetensors.torch import save_file

    target = resolve_save_prefix(ctx.settings.output_dir, str(filename_prefix), 0, 0)
    try:
        target.folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NodeInputError("filename_prefix", f"cannot create the folder '{target.subfolder}': {exc.strerror or exc}") from exc
    counter = next_counter(target.folder, target.name)
    # written under a temporary name and linked into place: a crash never leaves a truncated
    # model under a real name, and two saves never take the same counter
    def write(tmp) -> None:
        save_file(tensors, str(tmp), metadata=metadata)

    while (target.folder / f"{target.name}_{counter:05}_.safetensors").exists() or not write_atomically(
        target.folder / f"{target.name}_{counter:05}_.safetensors", write, replace=False
    ):
        counter += 1
    filename = f"{target.name}_{counter:05}_.safetensors"
    log.info("saved %s (%d tensors)", target.folder / filename, len(tensors))
    return {"filename": filename, "subfolder": target.subfolder, "type": "output"}


def _save_with_config(ctx, filename_prefix: str, tensors: dict[str, torch.Tensor], cfg: ArchConfig, ui_key: str) -> NodeResult:
    """Writes ``tensors`` with ``cfg`` in the metadata; the UI lists the file under ``ui_key``."""
    entry = write_safetensors(ctx, filename_prefix, tensors, _metadata(ctx, {METADATA_KEY: cfg.to_json()}))
    return NodeResult(outputs=(), ui={ui_key: [entry]})


def _check(value, cls, name):
    if not isinstance(value, cls):
        raise NodeInputError(name, f"expected a {cls.__name__}, got {type(value).__name__}")
    return value


def _warn_hooks(model: DiffusionModel | None) -> None:
    if model is not None and model.options:
        log.warning("the MODEL's patches (%s) are not saved: a file holds weights only", ", ".join(sorted(model.options)))


_CAT = "advanced/model_merging"


class CheckpointSave(Node):
    spec = NodeSpec(
        name="CheckpointSave", display_name="Save Checkpoint", category=_CAT, output_node=True,
        description="Saves MODEL, CLIP and VAE as one original-layout .safetensors checkpoint under output/.",
        inputs=(In("model", "MODEL"), In("clip", "CLIP"), In("vae", "VAE"),
                In("filename_prefix", "STRING", default="checkpoints/ComfyUI")),
        outputs=(),
    )

    def execute(self, ctx, model, clip, vae, filename_prefix="checkpoints/ComfyUI"):
        _check(model, DiffusionModel, "model"), _check(clip, TextEncoder, "clip"), _check(vae, Autoencoder, "vae")
        if clip.arch != model.arch:
            raise NodeInputError("clip", f"a {clip.arch} CLIP cannot be saved with a {model.arch} MODEL")
        _warn_hooks(model)
        cfg = arch_config(model, clip, vae, model.arch)
        tensors = checkpoint_state_dict(model, clip, vae)
        if cfg.prediction_type == "v_prediction":
            tensors["v_pred"] = torch.zeros(0)  # the marker SD2-v checkpoints carry
        return _save_with_config(ctx, filename_prefix, tensors, cfg, "checkpoints")


class ModelSave(Node):
    spec = NodeSpec(
        name="ModelSave", display_name="ModelSave", category=_CAT, output_node=True,
        description="Saves the UNet alone (model.diffusion_model.… keys); UNETLoader loads it.",
        inputs=(In("model", "MODEL"), In("filename_prefix", "STRING", default="diffusion_models/ComfyUI")),
        outputs=(),
    )

    def execute(self, ctx, model, filename_prefix="diffusion_models/ComfyUI"):
        _check(model, DiffusionModel, "model")
        _warn_hooks(model)
        cfg = arch_config(model, None, None, model.arch)
        tensors = checkpoint_state_dict(model, None, None)
        return _save_with_config(ctx, filename_prefix, tensors, cfg, "models")


class VAESave(Node):
    spec = NodeSpec(
        name="VAESave", display_name="VAESave", category=_CAT, output_node=True,
        description="Saves the VAE in the original layout (encoder.…/decoder.… keys); VAELoader loads it.",
        inputs=(In("vae", "VAE"), In("filename_prefix", "STRING", default="vae/ComfyUI_vae")),
        outputs=(),
    )

    def execute(self, ctx, vae, filename_prefix="vae/ComfyUI_vae"):
        _check(vae, Autoencoder, "vae")
        sd = vae_to_original(vae.vae.state_dict(), dict(vae.vae.config))
        tensors = _cpu({k.removeprefix("first_stage_model."): v for k, v in sd.items()})
        cfg = arch_config(None, None, vae, vae.arch)
        return _save_with_config(ctx, filename_prefix, tensors, cfg, "vaes")


class CLIPSave(Node):
    spec = NodeSpec(
        name="CLIPSave", display_name="CLIPSave", category=_CAT, output_node=True,
        description="Saves each text encoder to its own file (<prefix>_clip_l…, Hugging Face key names); "
        "CLIPLoader / DualCLIPLoader load them.",
        inputs=(In("clip", "CLIP"), In("filename_prefix", "STRING", default="clip/ComfyUI")),
        outputs=(),
    )

    def execute(self, ctx, clip, filename_prefix="clip/ComfyUI"):
        _check(clip, TextEncoder, "clip")
        names = CLIP_NAMES.get(clip.arch) or tuple(f"clip_{i}" for i in range(len(clip.encoders)))
        entries = []
        for i, (enc, cfg, name) in enumerate(zip(clip.encoders, text_encoder_configs(clip), names)):
            sd = {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
                  for k, v in enc.state_dict().items() if not k.endswith("position_ids")}
            meta = {TEXT_ENCODER_METADATA_KEY: json.dumps({"arch": clip.arch, "index": i, "count": len(clip.encoders),
                                                           "encoder": {**cfg.to_dict(), "layout": "clip"}}, sort_keys=True)}
            entries.append(write_safetensors(ctx, f"{filename_prefix}_{name}", _cpu(sd), _metadata(ctx, meta)))
        return NodeResult(outputs=(), ui={"clips": entries})


# -- LoRA extraction -------------------------------------------------------------------------------------
def extract_lora(diff: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``up @ down ≈ diff`` (best rank-``rank`` approximation by SVD); conv kernels flatten to
    (out, in·kh·kw), ``down`` gets the kernel shape back, ``up`` is 1×1.

    Unlike ComfyUI we do not clamp the factors at their 99th percentile: the clamp changes even
    an exactly low-rank difference, and without it a rank ≥ the difference's rank reproduces it.
    """
    shape = diff.shape
    matrix = diff.float().flatten(1)
    rank = min(rank, *matrix.shape)
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    up = u[:, :rank] * s[:rank]
    down = vh[:rank]
    if len(shape) == 4:
        return up.reshape(shape[0], rank, 1, 1), down.reshape(rank, *shape[1:])
    return up, down


def lora_state_dict(model_diff: DiffusionModel | None, clip_diff: TextEncoder | None, rank: int, lora_type: str,
                    bias_diff: bool) -> dict[str, torch.Tensor]:
    """ComfyUI's LoraSave keys for the UNet (``diffusion_model.<original module>.lora_up.weight``),
    kohya's for text encoders (``lora_te_…`` / ``lora_te1_``, ``lora_te2_``), in fp16."""
    out: dict[str, torch.Tensor] = {}
    parts: list[dict[str, torch.Tensor]] = []
    if model_diff is not None:
        mmap = unet_module_map(dict(model_diff.unet.config))
        sd = model_diff.unet.state_dict()
        parts.append({"diffusion_model." + rename(k, mmap): v for k, v in sd.items()})
    if clip_diff is not None:
        n = len(clip_diff.encoders)
        for i, enc in enumerate(clip_diff.encoders):
            prefix = "lora_te" if n == 1 else f"lora_te{i + 1}"
            sd = {}
            for k, v in enc.state_dict().items():
                full = k if k.startswith("text_model.") else "text_model." + k
                if full.startswith("text_model.encoder."):
                    module, _, leaf = full.rpartition(".")
                    sd[f"{prefix}_{module.replace('.', '_')}.{leaf}"] = v
            parts.append(sd)
    for sd in parts:
        for key, value in sd.items():
            module, _, leaf = key.rpartition(".")
            if not value.is_floating_point() or not value.abs().max() > 0:
                continue  # unchanged weights need no entry (ComfyUI writes zeros)
            if leaf == "weight" and value.ndim >= 2:
                if lora_type == "full_diff":
                    out[f"{module}.diff"] = value.detach().half().cpu().contiguous()
                else:
                    up, down = extract_lora(value.detach().cpu(), rank)
                    out[f"{module}.lora_up.weight"] = up.half().contiguous()
                    out[f"{module}.lora_down.weight"] = down.half().contiguous()
            elif leaf == "weight" and (bias_diff or lora_type == "full_diff"):  # norms: 1-D weights
                out[f"{module}.diff"] = value.detach().half().cpu().contiguous()
            elif leaf == "bias" and bias_diff:
                out[f"{module}.diff_b"] = value.detach().half().cpu().contiguous()
    return out


class LoraSave(Node):
    spec = NodeSpec(
        name="LoraSave", display_name="Extract and Save Lora", category="_for_testing", output_node=True,
        description="Extracts a LoRA by SVD from a difference (ModelMergeSubtract / CLIPMergeSubtract output) and "
        "saves it to output/loras.",
        inputs=(
            In("filename_prefix", "STRING", default="loras/ComfyUI_extracted_lora"),
            In("rank", "INT", default=8, min=1, max=4096, step=1),
            In("lora_type", "COMBO", choices=("standard", "full_diff")),
            In("bias_diff", "BOOLEAN", default=True),
            In("model_diff", "MODEL", required=False, tooltip="The ModelSubtract output to be converted to a lora."),
            In("text_encoder_diff", "CLIP", required=False, tooltip="The CLIPSubtract output to be converted to a lora."),
        ),
        outputs=(),
    )

    def execute(self, ctx, filename_prefix="loras/ComfyUI_extracted_lora", rank=8, lora_type="standard", bias_diff=True,
                model_diff=None, text_encoder_diff=None):
        if model_diff is None and text_encoder_diff is None:
            return NodeResult(outputs=(), ui={})
        tensors = lora_state_dict(model_diff, text_encoder_diff, int(rank), lora_type, bool(bias_diff))
        if not tensors:
            raise NodeInputError("model_diff", "the difference is zero everywhere: nothing to extract")
        entry = write_safetensors(ctx, filename_prefix, tensors, _metadata(ctx, {"latentgraph.lora_rank": str(rank)}))
        return NodeResult(outputs=(), ui={"loras": [entry]})


NODES = [CheckpointSave, ModelSave, VAESave, CLIPSave, LoraSave]
