"""StyleModelLoader and StyleModelApply: the T2I-Adapter style model (image tokens for the prompt).

The style adapter (TencentARC's ``t2iadapter_style``: ``style_embedding`` [1, n, W], ``ln_pre``,
``transformer_layes.N`` OpenAI-CLIP residual attention blocks, ``ln_post``, ``proj`` [W, D])
reads a CLIP vision ``last_hidden_state`` followed by its own n learned tokens and returns those
n tokens projected to the text encoder's width D. Everything is read from the shapes except the
head count, 8 as in the published model. StyleApply appends the tokens to every conditioning
entry's embeddings (batch flattened into one sequence, as ComfyUI does); ``multiply`` scales them
by ``strength``; ``attn_bias`` leaves them and records ComfyUI's ``attention_mask`` bias
(log strength on the new tokens' columns), which SD1/SD2/SDXL UNets do not read (nor do
ComfyUI's), so on those models ``attn_bias`` is the plain append.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.checkpoint_files import CheckpointError, open_weights
from latentgraph.nodes.text._cond import check_conditioning
from latentgraph.nodes.text.clip_vision import CLIP_VISION_OUTPUT, check_clip_vision_output
from latentgraph import model_folders
from latentgraph.nodes.loaders import file_fingerprint_of

STYLE_MODEL = "STYLE_MODEL"
FOLDER = "style_models"
STYLE_HEADS = 8


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _Block(nn.Module):
    """Pre-norm transformer block in OpenAI CLIP's layout (sequence-first attention)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(
            [("c_fc", nn.Linear(width, width * 4)), ("gelu", _QuickGELU()), ("c_proj", nn.Linear(width * 4, width))]
        ))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class StyleAdapter(nn.Module):
    def __init__(self, width: int, context_dim: int, heads: int, layers: int, tokens: int):
        super().__init__()
        self.transformer_layes = nn.Sequential(*[_Block(width, heads) for _ in range(layers)])  # sic: the file's key
        self.style_embedding = nn.Parameter(torch.zeros(1, tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, context_dim))

    @property
    def num_tokens(self) -> int:
        return self.style_embedding.shape[1]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """CLIP vision ``last_hidden_state`` [B, L, W] → style tokens [B, n, D]."""
        style = self.style_embedding.expand(hidden.shape[0], -1, -1).to(hidden.dtype)
        x = self.ln_pre(torch.cat([hidden, style], dim=1))
        x = self.transformer_layes(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, -self.num_tokens :]) @ self.proj


@dataclass
class StyleModel:
    """STYLE_MODEL."""

    model: StyleAdapter
    info: dict[str, Any] = field(default_factory=dict)

    @torch.inference_mode()
    def get_cond(self, clip_vision_output: Any) -> torch.Tensor:
        hidden = clip_vision_output.last_hidden_state
        param = next(self.model.parameters())
        if hidden.shape[-1] != self.model.style_embedding.shape[-1]:
            raise ValueError(
                f"the style model reads {self.model.style_embedding.shape[-1]}-wide CLIP vision states, "
                f"this CLIP vision output is {hidden.shape[-1]} wide (use the CLIP vision model it was made for)"
            )
        return self.model(hidden.to(param.device, param.dtype)).float().cpu()


def load_style_model(path) -> StyleModel:
    weights = open_weights(path)
    if "style_embedding" not in weights:
        if "redux_down.weight" in weights:
            raise CheckpointError(f"{weights.path.name} is a Flux Redux style model; only SD T2I-Adapter style models load here")
        raise CheckpointError(f"{weights.path.name} is not a style model (no style_embedding)")
    sd = weights.tensors(weights.keys)
    _, tokens, width = sd["style_embedding"].shape
    layers = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"transformer_layes\.(\d+)\.", k))), default=-1)
    model = StyleAdapter(width, sd["proj"].shape[1], STYLE_HEADS, layers, tokens).eval()
    try:
        model.load_state_dict(sd)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights.path.name}: not a T2I-Adapter style model: {str(exc).splitlines()[0]}") from None
    return StyleModel(model, {"source": str(weights.path), "tokens": tokens, "width": width})


def apply_style(conditioning: list, tokens: torch.Tensor, strength: float, strength_type: str) -> list:
    cond = tokens.flatten(0, 1).unsqueeze(0)
    if strength_type == "multiply":
        cond = cond * strength
    n = cond.shape[1]
    out = []
    for emb, extras in conditioning:
        extras = dict(extras)
        if "attention_mask" in extras or (strength_type == "attn_bias" and strength != 1.0):
            bias = torch.log(torch.tensor([strength if strength_type == "attn_bias" else 1.0]))
            ref_h, ref_w = extras.get("attention_mask_img_shape", (1, 1))
            n_ref, n_txt = ref_h * ref_w, emb.shape[1]
            mask = extras.get("attention_mask")
            if mask is None:
                mask = torch.zeros((emb.shape[0], n_txt + n_ref, n_txt + n_ref), dtype=torch.float16)
            if mask.dtype == torch.bool:
                mask = torch.log(mask.to(dtype=torch.float16))
            new = torch.zeros((emb.shape[0], n_txt + n + n_ref, n_txt + n + n_ref), dtype=torch.float16)
            new[:, :n_txt, :n_txt] = mask[:, :n_txt, :n_txt]
            new[:, :n_txt, n_txt + n :] = mask[:, :n_txt, n_txt:]
            new[:, n_txt + n :, :n_txt] = mask[:, n_txt:, :n_txt]
            new[:, n_txt + n :, n_txt + n :] = mask[:, n_txt:, n_txt:]
            new[:, :n_txt, n_txt : n_txt + n] = bias
            new[:, n_txt + n :, n_txt : n_txt + n] = bias
            extras["attention_mask"] = new.to(emb.device)
            extras["attention_mask_img_shape"] = (ref_h, ref_w)
        added = cond.to(emb.dtype).repeat(emb.shape[0], 1, 1)
        out.append((torch.cat([emb, added], dim=1), extras))
    return out


_choices = model_folders.choices(FOLDER)


class StyleModelLoader(Node):
    spec = NodeSpec(
        name="StyleModelLoader",
        display_name="Load Style Model",
        category="loaders",
        description="Loads a T2I-Adapter style model from models/style_models.",
        inputs=(In("style_model_name", "COMBO", choices=_choices),),
        outputs=(Out(STYLE_MODEL),),
    )

    def execute(self, ctx, style_model_name):
        from latentgraph.nodes.loaders import resolve_model

        path = resolve_model(ctx.settings, FOLDER, style_model_name, "style_model_name")
        try:
            return (load_style_model(path),)
        except CheckpointError as exc:
            raise NodeInputError("style_model_name", str(exc)) from None

    fingerprint = file_fingerprint_of(FOLDER, "style_model_name")


class StyleModelApply(Node):
    spec = NodeSpec(
        name="StyleModelApply",
        display_name="Apply Style Model",
        category="conditioning/style_model",
        description="Appends a picture's style tokens to the prompt's conditioning.",
        inputs=(
            In("conditioning", "CONDITIONING"),
            In("style_model", STYLE_MODEL),
            In("clip_vision_output", CLIP_VISION_OUTPUT),
            In("strength", "FLOAT", default=1.0, min=0.0, max=10.0, step=0.001),
            In("strength_type", "COMBO", choices=("multiply", "attn_bias")),
        ),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, conditioning, style_model, clip_vision_output, strength=1.0, strength_type="multiply"):
        conditioning = check_conditioning(conditioning, "conditioning")
        if not isinstance(style_model, StyleModel):
            raise NodeInputError("style_model", f"expected a STYLE_MODEL, got {type(style_model).__name__}")
        check_clip_vision_output(clip_vision_output)
        if strength_type not in ("multiply", "attn_bias"):
            raise NodeInputError("strength_type", f"must be 'multiply' or 'attn_bias', got {strength_type!r}")
        try:
            tokens = style_model.get_cond(clip_vision_output)
        except ValueError as exc:
            raise NodeInputError("clip_vision_output", str(exc)) from None
        widths = {emb.shape[-1] for emb, _ in conditioning}
        if widths and widths != {tokens.shape[-1]}:
            raise NodeInputError(
                "style_model", f"its tokens are {tokens.shape[-1]} wide, the conditioning is {sorted(widths)} wide"
            )
        return (apply_style(conditioning, tokens, float(strength), strength_type),)


NODES = [StyleModelLoader, StyleModelApply]
