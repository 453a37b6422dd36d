"""Text conditioning: CLIPEncode (CLIPTextEncode), CLIPSetLastLayer, ConditioningCombine.

Encoding follows ComfyUI so workflows give the same kind of conditioning:

* a prompt is tokenized without truncation and cut into windows of 75 tokens; each window gets
  BOS/EOS and padding to 77 and is encoded on its own; the windows' hidden states are
  concatenated along the sequence axis (a 100-token prompt → 154 positions), never cut silently;
* the layer used is ``clip.stop_at_layer`` (-1 last, -2 penultimate…); SD1/SD2 pass it through
  the final layer norm, SDXL uses the raw penultimate states of both encoders, concatenated
  (768 + 1280 = 2048 wide), and the pooled, projected output of its second encoder goes into the
  extras as ``pooled_output`` (from the first window);
* ``(words:1.3)`` sets a weight, ``(words)`` multiplies it by 1.1 (nestable, ``\\(`` for a literal
  parenthesis); a weighted token's embedding is moved away from the empty prompt's embedding at
  that position by its weight, ``e + w·(z − e)``, as ComfyUI does;
* CONDITIONING is ``[(embeddings[1, T, D], {"pooled_output": …, "arch": …})]``, float32 on the
  CPU; samplers move it to the model's device and dtype.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.components import Conditioning, TextEncoder

log = logging.getLogger("latentgraph.conditioning")


_OPEN, _CLOSE = "\0\1", "\0\2"  # stand-ins for escaped parentheses while parsing


def prompt_weights(text: str) -> list[tuple[str, float]]:
    """Split a prompt into ``(text, weight)`` pieces: ``(a:1.5)`` → 1.5, ``(a)`` → ×1.1, nested."""
    escaped = text.replace("\\(", _OPEN).replace("\\)", _CLOSE)
    pieces: list[tuple[str, float]] = []
    _parse_weights(escaped, 1.0, pieces)
    return [(t.replace(_OPEN, "(").replace(_CLOSE, ")"), w) for t, w in pieces if t]


def _closing(text: str, start: int) -> int | None:
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return None


def _parse_weights(text: str, weight: float, out: list[tuple[str, float]]) -> None:
    plain, i = "", 0
    while i < len(text):
        end = _closing(text, i) if text[i] == "(" else None
        if end is None:  # ordinary character, or an unbalanced parenthesis kept as text
            plain += text[i]
            i += 1
            continue
        if plain:
            out.append((plain, weight))
            plain = ""
        inner, inner_weight = text[i + 1 : end], weight * 1.1
        colon = inner.rfind(":")
        if colon > 0:
            try:
                inner, inner_weight = inner[:colon], float(inner[colon + 1 :])
            except ValueError:
                pass
        _parse_weights(inner, inner_weight, out)
        i = end + 1
    if plain:
        out.append((plain, weight))


def weighted_windows(tokenizer: Any, text: str) -> tuple[list[list[int]], list[list[float]]]:
    """Token ids of ``text`` in windows of ``model_max_length`` (77): BOS + ≤75 tokens + EOS + pad,
    with each position's prompt weight (1.0 for BOS, EOS and padding)."""
    length = int(getattr(tokenizer, "model_max_length", 77) or 77)
    if length > 1024:  # "unlimited" sentinel of tokenizers without a configured length
        length = 77
    body = length - 2
    ids: list[int] = []
    weights: list[float] = []
    for piece, weight in prompt_weights(text):
        piece_ids = tokenizer(piece, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        ids += piece_ids
        weights += [weight] * len(piece_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    id_windows, weight_windows = [], []
    for start in range(0, max(len(ids), 1), body):
        chunk, chunk_weights = ids[start : start + body], weights[start : start + body]
        fill = body - len(chunk)
        id_windows.append([tokenizer.bos_token_id, *chunk, tokenizer.eos_token_id] + [pad] * fill)
        weight_windows.append([1.0, *chunk_weights, 1.0] + [1.0] * fill)
    return id_windows, weight_windows


def token_windows(tokenizer: Any, text: str) -> list[list[int]]:
    """Token ids of ``text`` in 77-token windows (see :func:`weighted_windows`)."""
    return weighted_windows(tokenizer, text)[0]


def _text_body(encoder: Any) -> Any:
    """The module with ``final_layer_norm`` (transformers wraps it in ``text_model`` for some classes)."""
    return getattr(encoder, "text_model", encoder)


def _layer_index(layer: int, num_layers: int) -> int:
    """Index into ``hidden_states`` (embeddings + one entry per layer); out of range means last (ComfyUI)."""
    if layer >= 0 or -layer > num_layers:
        return -1
    return layer


def _padded(tokenizer: Any, windows: list[list[int]], weights: list[list[float]], count: int) -> tuple[list, list]:
    """Windows filled up to ``count`` with the empty prompt's window (ComfyUI's CLIPTextEncodeSDXL rule)."""
    empty = token_windows(tokenizer, "")[0]
    fill = count - len(windows)
    return windows + [empty] * fill, weights + [[1.0] * len(empty)] * fill


@torch.inference_mode()
def encode_text(
    clip: TextEncoder, text: str, per_encoder: Sequence[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states ``[1, 77·windows, D]`` and pooled output ``[1, P]`` of a prompt.

    ``per_encoder`` gives each text encoder its own prompt (SDXL's ``text_l`` / ``text_g``); the
    encoder with fewer windows gets empty-prompt windows so the hidden states line up.
    """
    final_norm = bool(clip.info.get("final_norm_on_hidden", clip.arch != "sdxl"))
    texts = list(per_encoder) if per_encoder is not None else [text] * len(clip.encoders)
    if len(texts) != len(clip.encoders):
        raise ValueError(f"{len(texts)} prompts for {len(clip.encoders)} text encoders")
    tokenized = [weighted_windows(tokenizer, t) for tokenizer, t in zip(clip.tokenizers, texts)]
    count = max(len(windows) for windows, _ in tokenized)
    hidden_parts, pooled = [], None
    for tokenizer, encoder, (windows, weights) in zip(clip.tokenizers, clip.encoders, tokenized):
        windows, weights = _padded(tokenizer, windows, weights, count)
        weighted = any(w != 1.0 for row in weights for w in row)
        if weighted:  # the empty prompt is the reference weights scale from
            windows = [*windows, token_windows(tokenizer, "")[0]]
        device = next(encoder.parameters()).device
        ids = torch.tensor(windows, dtype=torch.long, device=device)
        out = encoder(input_ids=ids, output_hidden_states=True)
        num_layers = int(encoder.config.num_hidden_layers)
        index = _layer_index(clip.stop_at_layer, num_layers)
        hidden = out.hidden_states[index]
        if final_norm:
            hidden = _text_body(encoder).final_layer_norm(hidden)
        hidden = hidden.float()
        if weighted:
            empty, hidden = hidden[-1:], hidden[:-1]
            w = torch.tensor(weights, dtype=hidden.dtype, device=hidden.device)[..., None]
            hidden = empty + (hidden - empty) * w
        hidden_parts.append(hidden.cpu().reshape(1, -1, hidden.shape[-1]))
        pooled_all = getattr(out, "text_embeds", None)
        if pooled_all is None:
            pooled_all = out.pooler_output
        pooled = pooled_all[:1].float().cpu()
    embeddings = torch.cat(hidden_parts, dim=-1)
    return embeddings, pooled


def check_clip(clip: Any) -> TextEncoder:
    if clip is None:
        raise NodeInputError(
            "clip", "is missing: the checkpoint loader found no text encoder in this checkpoint; load one that has it"
        )
    if not isinstance(clip, TextEncoder):
        raise NodeInputError("clip", f"expected a CLIP, got {type(clip).__name__}")
    return clip


class CLIPEncode(Node):
    spec = NodeSpec(
        name="CLIPEncode",
        display_name="CLIP Text Encode (Prompt)",
        category="conditioning",
        description="Encodes a prompt; prompts longer than 75 tokens are encoded in 77-token windows.",
        inputs=(In("text", "STRING", multiline=True, default=""), In("clip", "CLIP")),
        outputs=(Out("CONDITIONING"),),
        aliases=("CLIPTextEncode",),
    )

    def execute(self, ctx, clip, text=""):
        clip = check_clip(clip)
        if not isinstance(text, str):
            raise NodeInputError("text", f"expected text, got {type(text).__name__}")
        embeddings, pooled = encode_text(clip, text)
        return ([(embeddings, {"pooled_output": pooled, "arch": clip.arch})],)


class CLIPSetLastLayer(Node):
    spec = NodeSpec(
        name="CLIPSetLastLayer",
        display_name="CLIP Set Last Layer",
        category="conditioning",
        description="Which CLIP layer conditions the model: -1 the last, -2 the penultimate (\"clip skip 2\")…",
        inputs=(In("clip", "CLIP"), In("stop_at_clip_layer", "INT", default=-1, min=-24, max=-1, step=1)),
        outputs=(Out("CLIP"),),
    )

    def execute(self, ctx, clip, stop_at_clip_layer=-1):
        clip = check_clip(clip)
        layer = int(stop_at_clip_layer)
        if layer >= 0 or layer < -24:
            raise NodeInputError("stop_at_clip_layer", f"must be between -24 and -1, got {layer}")
        deepest = min(clip.info.get("num_layers") or [24])
        if -layer > deepest:
            log.warning("CLIPSetLastLayer %d: the text encoder has only %d layers, using the last", layer, deepest)
        return (replace(clip, stop_at_layer=layer),)


class ConditioningCombine(Node):
    spec = NodeSpec(
        name="ConditioningCombine",
        display_name="Conditioning (Combine)",
        category="conditioning",
        description="Both conditionings apply together: the sampler averages their predictions.",
        inputs=(In("conditioning_1", "CONDITIONING"), In("conditioning_2", "CONDITIONING")),
        outputs=(Out("CONDITIONING"),),
    )

    def execute(self, ctx, conditioning_1, conditioning_2):
        for name, value in (("conditioning_1", conditioning_1), ("conditioning_2", conditioning_2)):
            if not isinstance(value, list):
                raise NodeInputError(name, f"expected CONDITIONING, got {type(value).__name__}")
        combined: Conditioning = [*conditioning_1, *conditioning_2]
        return (combined,)


NODES = [CLIPEncode, CLIPSetLastLayer, ConditioningCombine]
