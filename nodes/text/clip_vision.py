"""CLIP vision: CLIPVisionLoader and CLIPVisionEncode on transformers' CLIPVisionModelWithProjection.

* **Files** (``models/clip_vision/``): ComfyUI's / transformers' layout (``vision_model.…`` +
  ``visual_projection.weight``) or OpenAI's (``visual.transformer.resblocks.…``, ``visual.proj``;
  attention as one ``in_proj`` split into q/k/v here). The configuration is read from the shapes
  (width, layers, patch, image size, MLP and projection widths); what shapes cannot tell is taken
  from the known models: ViT-L/14 and ViT-B (width 1024/768) are OpenAI's with ``quick_gelu``,
  ViT-H (1280) and ViT-bigG (1664) are LAION's with ``gelu``, all with 64-wide heads except H and
  bigG (16 heads); other (tiny) widths get ``gelu`` and ``max(1, width // 64)`` heads.
* **Encoding** follows ComfyUI: RGB only; ``crop="center"`` scales the short side to the model's
  image size (bicubic, antialiased) and cuts the centre, ``"none"`` squashes to a square; values
  are rounded to 8 bits and normalised with CLIP's mean and std. CLIP_VISION_OUTPUT carries
  ``last_hidden_state`` (before the post layer norm), ``image_embeds`` (projected pooled
  class token), ``penultimate_hidden_states`` and ``mm_projected`` (None), by key or attribute.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.checkpoint_files import CheckpointError, WeightFile, open_weights
from latentgraph import model_folders
from latentgraph.nodes.loaders import file_fingerprint_of

CLIP_VISION = "CLIP_VISION"
CLIP_VISION_OUTPUT = "CLIP_VISION_OUTPUT"
FOLDER = "clip_vision"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: width → (heads, activation) of the published CLIP image towers.
KNOWN_WIDTHS = {768: (12, "quick_gelu"), 1024: (16, "quick_gelu"), 1280: (16, "gelu"), 1664: (16, "gelu")}


@dataclass
class ClipVision:
    """CLIP_VISION: the image tower and how to prepare pictures for it."""

    model: Any  # transformers.CLIPVisionModelWithProjection
    image_size: int
    device: torch.device
    dtype: torch.dtype
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClipVisionOutput:
    """CLIP_VISION_OUTPUT (ComfyUI's fields; ``out["image_embeds"]`` and ``out.image_embeds`` both work)."""

    last_hidden_state: torch.Tensor
    image_embeds: torch.Tensor
    penultimate_hidden_states: torch.Tensor
    mm_projected: torch.Tensor | None = None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)


# -- files -----------------------------------------------------------------------------------


def _openai_to_transformers(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    fixed = {
        "class_embedding": "vision_model.embeddings.class_embedding",
        "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
        "positional_embedding": "vision_model.embeddings.position_embedding.weight",
        "ln_pre.weight": "vision_model.pre_layrnorm.weight",
        "ln_pre.bias": "vision_model.pre_layrnorm.bias",
        "ln_post.weight": "vision_model.post_layernorm.weight",
        "ln_post.bias": "vision_model.post_layernorm.bias",
    }
    parts = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
             "attn.out_proj": "self_attn.out_proj"}
    for key, value in sd.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        if rest in fixed:
            out[fixed[rest]] = value
        elif rest == "proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)", rest):
            layer, name, kind = m.groups()
            base = f"vision_model.encoder.layers.{layer}."
            if name in parts:
                out[f"{base}{parts[name]}.{kind}"] = value
        elif m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)", rest):
            layer, kind = m.groups()
            base = f"vision_model.encoder.layers.{layer}.self_attn."
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{base}{name}.{kind}"] = chunk.contiguous()
    return out


def clip_vision_state_dict(weights: WeightFile) -> dict[str, torch.Tensor]:
    """The file's image tower in transformers' layout (raises CheckpointError if it has none)."""
    for prefix in ("visual.", "", "embedder.model.visual."):  # the last: inside SD2.1 unCLIP checkpoints
        if f"{prefix}transformer.resblocks.0.attn.in_proj_weight" in weights:
            return _openai_to_transformers(weights.prefixed(prefix), prefix)
    for prefix in ("", "clip_vision_model.", "model."):
        if f"{prefix}vision_model.embeddings.class_embedding" in weights:
            sd = weights.prefixed(f"{prefix}vision_model.", f"{prefix}visual_projection.")
            return {k[len(prefix):]: v for k, v in sd.items()}
    raise CheckpointError(
        f"{weights.path.name} holds no CLIP image encoder (looked for vision_model.… and OpenAI's visual.… keys)"
    )


def vision_config(sd: dict[str, torch.Tensor]) -> Any:
    """transformers.CLIPVisionConfig read from the tensors' shapes (see the module docstring)."""
    import transformers

    width = sd["vision_model.embeddings.class_embedding"].shape[0]
    patch = sd["vision_model.embeddings.patch_embedding.weight"].shape[-1]
    positions = sd["vision_model.embeddings.position_embedding.weight"].shape[0]
    side = math.isqrt(positions - 1)
    layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k)))
    heads, act = KNOWN_WIDTHS.get(width, (max(1, width // 64), "gelu"))
    projection = sd.get("visual_projection.weight")
    return transformers.CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=side * patch,
        patch_size=patch,
        projection_dim=projection.shape[0] if projection is not None else width,
        hidden_act=act,
        layer_norm_eps=1e-5,
    )


def load_clip_vision(path, device: torch.device, dtype: torch.dtype) -> ClipVision:
    import transformers

    weights = open_weights(path)
    sd = clip_vision_state_dict(weights)
    config = vision_config(sd)
    model = transformers.CLIPVisionModelWithProjection(config).eval()
    if "visual_projection.weight" not in sd:  # a tower without projection: identity, as ComfyUI
        sd["visual_projection.weight"] = torch.eye(config.hidden_size)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        raise CheckpointError(f"{weights.path.name}: CLIP vision weights missing: {missing[:5]}")
    model.to(device=device, dtype=dtype)
    return ClipVision(model, int(config.image_size), device, dtype,
                      info={"source": str(weights.path), "unexpected": len(unexpected), "width": config.hidden_size})


# -- encoding --------------------------------------------------------------------------------


def clip_preprocess(image: torch.Tensor, size: int, mean=CLIP_MEAN, std=CLIP_STD, crop: bool = True) -> torch.Tensor:
    """IMAGE ``[B, H, W, C]`` 0..1 → normalised pixels ``[B, 3, size, size]`` (ComfyUI's steps)."""
    image = image[..., :3].movedim(-1, 1).float()
    if image.shape[2] != size or image.shape[3] != size:
        if crop:
            scale = size / min(image.shape[2], image.shape[3])
            target = (round(scale * image.shape[2]), round(scale * image.shape[3]))
        else:
            target = (size, size)
        image = torch.nn.functional.interpolate(image, size=target, mode="bicubic", antialias=True)
        top, left = (image.shape[2] - size) // 2, (image.shape[3] - size) // 2
        image = image[:, :, top : top + size, left : left + size]
    image = torch.clip(255.0 * image, 0, 255).round() / 255.0
    mean_t = torch.tensor(mean, dtype=image.dtype).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=image.dtype).view(3, 1, 1)
    return (image - mean_t) / std_t


@torch.inference_mode()
def encode_image(clip_vision: ClipVision, image: torch.Tensor, crop: bool = True) -> ClipVisionOutput:
    pixels = clip_preprocess(image, clip_vision.image_size, clip_vision.mean, clip_vision.std, crop)
    out = clip_vision.model(pixel_values=pixels.to(clip_vision.device, clip_vision.dtype), output_hidden_states=True)
    return ClipVisionOutput(
        last_hidden_state=out.last_hidden_state.float().cpu(),
        image_embeds=out.image_embeds.float().cpu(),
        penultimate_hidden_states=out.hidden_states[-2].float().cpu(),
    )


# -- nodes -----------------------------------------------------------------------------------


_choices = model_folders.choices(FOLDER)


def check_clip_vision_output(value: Any, name: str = "clip_vision_output") -> ClipVisionOutput:
    if not hasattr(value, "image_embeds") or not hasattr(value, "last_hidden_state"):
        raise NodeInputError(name, f"expected a CLIP_VISION_OUTPUT (from CLIP Vision Encode), got {type(value).__name__}")
    return value


class CLIPVisionLoader(Node):
    spec = NodeSpec(
        name="CLIPVisionLoader",
        display_name="Load CLIP Vision",
        category="loaders",
        description="Loads a CLIP image encoder from models/clip_vision (ComfyUI/transformers or OpenAI layout).",
        inputs=(In("clip_name", "COMBO", choices=_choices),),
        outputs=(Out(CLIP_VISION),),
    )

    def execute(self, ctx, clip_name):
        from latentgraph.nodes.checkpoints import device_and_dtype
        from latentgraph.nodes.loaders import resolve_model

        path = resolve_model(ctx.settings, FOLDER, clip_name, "clip_name")
        device, dtype = device_and_dtype(ctx.settings)
        try:
            return (load_clip_vision(path, device, dtype),)
        except CheckpointError as exc:
            raise NodeInputError("clip_name", str(exc)) from None

    fingerprint = file_fingerprint_of(FOLDER, "clip_name")


class CLIPVisionEncode(Node):
    spec = NodeSpec(
        name="CLIPVisionEncode",
        display_name="CLIP Vision Encode",
        category="conditioning",
        description="Encodes images with a CLIP image encoder (for unCLIP and style models).",
        inputs=(In("clip_vision", CLIP_VISION), In("image", "IMAGE"), In("crop", "COMBO", choices=("center", "none"))),
        outputs=(Out(CLIP_VISION_OUTPUT),),
    )

    def execute(self, ctx, clip_vision, image, crop="center"):
        if not isinstance(clip_vision, ClipVision):
            raise NodeInputError("clip_vision", f"expected a CLIP_VISION, got {type(clip_vision).__name__}")
        if not isinstance(image, torch.Tensor) or image.ndim != 4:
            raise NodeInputError("image", "expected an IMAGE tensor [batch, height, width, channels]")
        if crop not in ("center", "none"):
            raise NodeInputError("crop", f"must be 'center' or 'none', got {crop!r}")
        return (encode_image(clip_vision, image, crop == "center"),)


NODES = [CLIPVisionLoader, CLIPVisionEncode]
