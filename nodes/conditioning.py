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
* ``embedding:NAME`` puts a textual-inversion embedding's vectors where the name stands (weights
  apply to them as to words; see :mod:`latentgraph.nodes.text.embeddings`): the vectors replace
  the token embeddings at those positions, so the encoder sees what diffusers'
  ``load_textual_inversion`` gives it; a name that cannot be used is left out with a warning
  (logged, and returned as the node's ``{"warnings": […]}`` result);
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
from latentgraph.node import In, Node, NodeResult, NodeSpec, Out
from latentgraph.nodes.components import Conditioning, TextEncoder
from latentgraph.nodes.text.embeddings import EmbeddingLookup, EmbeddingRef, encoder_key, split_embeddings

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


#: Token id standing in for an embedding vector until the vector replaces its token embedding; any
#: ordinary id below EOS works (pooling looks for EOS, or for the highest id in old configs).
_PLACEHOLDER_ID = 0


def _window_length(tokenizer: Any) -> int:
    length = int(getattr(tokenizer, "model_max_length", 77) or 77)
    return 77 if length > 1024 else length  # "unlimited" sentinel of tokenizers without a configured length


def weighted_tokens(
    tokenizer: Any, text: str, lookup: EmbeddingLookup | None = None, key: str = "clip_l", width: int = 0
) -> tuple[list[int | torch.Tensor], list[float]]:
    """A prompt's tokens (ids, or ``[D]`` vectors for ``embedding:NAME``) and their weights.

    Without ``lookup``, ``embedding:NAME`` is tokenized as text (the plain tokenizer view)."""
    tokens: list[int | torch.Tensor] = []
    weights: list[float] = []
    for piece, weight in prompt_weights(text):
        parts = split_embeddings(piece) if lookup is not None else [piece]
        for part in parts:
            if isinstance(part, EmbeddingRef):
                vectors, part = lookup.vectors(part.name, key, width)
                if vectors is not None:
                    tokens += list(vectors)
                    weights += [weight] * len(vectors)
                if not part:
                    continue
            ids = tokenizer(part, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
            tokens += ids
            weights += [weight] * len(ids)
    return tokens, weights


def _windows(tokenizer: Any, tokens: list, weights: list[float]) -> tuple[list[list], list[list[float]]]:
    body = _window_length(tokenizer) - 2
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    token_rows, weight_rows = [], []
    for start in range(0, max(len(tokens), 1), body):
        chunk, chunk_weights = tokens[start : start + body], weights[start : start + body]
        fill = body - len(chunk)
        token_rows.append([tokenizer.bos_token_id, *chunk, tokenizer.eos_token_id] + [pad] * fill)
        weight_rows.append([1.0, *chunk_weights, 1.0] + [1.0] * fill)
    return token_rows, weight_rows


def weighted_windows(tokenizer: Any, text: str) -> tuple[list[list[int]], list[list[float]]]:
    """Token ids of ``text`` in windows of ``model_max_length`` (77): BOS + ≤75 tokens + EOS + pad,
    with each position's prompt weight (1.0 for BOS, EOS and padding)."""
    return _windows(tokenizer, *weighted_tokens(tokenizer, text))


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


def _padded(empty: list[int], windows: list[list[int]], weights: list[list[float]], count: int) -> tuple[list, list]:
    """Windows filled up to ``count`` with the empty prompt's window ``empty`` (ComfyUI's CLIPTextEncodeSDXL rule)."""
    fill = count - len(windows)
    return windows + [empty] * fill, weights + [[1.0] * len(empty)] * fill


def _substituted(encoder: Any, rows: list[list]) -> tuple[torch.Tensor, Any]:
    """Ids for ``rows`` (vectors → placeholder id) and a hook putting the vectors back in."""
    device = next(encoder.parameters()).device
    ids = torch.tensor(
        [[t if isinstance(t, int) else _PLACEHOLDER_ID for t in row] for row in rows], dtype=torch.long, device=device
    )
    places = [(r, c, t) for r, row in enumerate(rows) for c, t in enumerate(row) if not isinstance(t, int)]
    if not places:
        return ids, None
    index = torch.tensor([[r, c] for r, c, _ in places], device=device)
    values = torch.stack([t for _, _, t in places])

    def put_back(_module, _inputs, output):
        output = output.clone()
        output[index[:, 0], index[:, 1]] = values.to(device=output.device, dtype=output.dtype)
        return output

    return ids, encoder.get_input_embeddings().register_forward_hook(put_back)


@torch.inference_mode()
def encode_text(
    clip: TextEncoder,
    text: str,
    per_encoder: Sequence[str] | None = None,
    *,
    embedding_dirs: Sequence[Any] | None = None,
    warnings: list[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states ``[1, 77·windows, D]`` and pooled output ``[1, P]`` of a prompt.

    ``per_encoder`` gives each text encoder its own prompt (SDXL's ``text_l`` / ``text_g``); the
    encoder with fewer windows gets empty-prompt windows so the hidden states line up.
    ``embedding:NAME`` is looked up in ``embedding_dirs`` (else ``clip.info["embedding_dirs"]``);
    what cannot be used is left out and described in ``warnings`` (and the log).
    """
    final_norm = bool(clip.info.get("final_norm_on_hidden", clip.arch != "sdxl"))
    texts = list(per_encoder) if per_encoder is not None else [text] * len(clip.encoders)
    if len(texts) != len(clip.encoders):
        raise ValueError(f"{len(texts)} prompts for {len(clip.encoders)} text encoders")
    if embedding_dirs is None:
        embedding_dirs = clip.info.get("embedding_dirs")
    lookup = EmbeddingLookup(list(embedding_dirs) if embedding_dirs is not None else None)
    tokenized = []
    for index, (tokenizer, encoder, t) in enumerate(zip(clip.tokenizers, clip.encoders, texts)):
        width = int(encoder.get_input_embeddings().weight.shape[-1])
        tokens, weights = weighted_tokens(tokenizer, t, lookup, encoder_key(clip.arch, index, width), width)
        tokenized.append(_windows(tokenizer, tokens, weights))
    if warnings is not None:
        warnings.extend(w for w in lookup.warnings if w not in warnings)
    count = max(len(windows) for windows, _ in tokenized)
    hidden_parts, pooled = [], None
    for tokenizer, encoder, (windows, weights) in zip(clip.tokenizers, clip.encoders, tokenized):
        empty = token_windows(tokenizer, "")[0]
        windows, weights = _padded(empty, windows, weights, count)
        weighted = any(w != 1.0 for row in weights for w in row)
        if weighted:  # the empty prompt is the reference weights scale from
            windows = [*windows, empty]
        ids, hook = _substituted(encoder, windows)
        try:
            out = encoder(input_ids=ids, output_hidden_states=True)
        finally:
            if hook is not None:
                hook.remove()
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


def encode_prompt(ctx, clip: TextEncoder, text: str, per_encoder: Sequence[str] | None = None, *,
                  warnings: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`encode_text` as the encoding nodes call it: ``embedding:NAME`` looked up in the data
    dir's embeddings folders, problems collected in ``warnings``."""
    with ctx.memory.use(*clip.encoders):
        return encode_text(clip, text, per_encoder, embedding_dirs=ctx.settings.model_dirs("embeddings"),
                           warnings=warnings)


def with_warnings(outputs: tuple, warnings: list[str]) -> tuple | NodeResult:
    """A node's outputs, with its warnings shown to the user (websocket "executed", CLI)."""
    return NodeResult(outputs, {"warnings": warnings}) if warnings else outputs


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
        from latentgraph.nodes.sampling.weight_hooks import clip_entries

        warnings: list[str] = []
        entries = clip_entries(clip, lambda c: encode_prompt(ctx, c, text, warnings=warnings), {"arch": clip.arch})
        return with_warnings((entries,), warnings)


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
