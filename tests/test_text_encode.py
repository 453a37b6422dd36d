"""The shipped CLIP tokenizer and the text nodes: CLIPTextEncode, CLIPSetLastLayer, ConditioningCombine."""

from __future__ import annotations

import json

import pytest
import torch

from latentgraph.errors import NodeInputError
from latentgraph.nodes.conditioning import token_windows
from latentgraph.nodes.model_configs import (
    CLIP_NUM_MERGES,
    CLIP_VOCAB_SIZE,
    TOKENIZER_DIR,
    bytes_to_unicode,
    load_clip_tokenizer,
)
from latentgraph.nodes.tiny_models import make_tiny_checkpoint
from sd_helpers import SHIPPED_TINY, Env

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]


def test_shipped_tokenizer_loads_offline_and_gives_the_known_ids():
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)
    assert tok("a photo of a cat").input_ids == CAT_IDS
    assert len(tok) == CLIP_VOCAB_SIZE


def test_fast_tokenizer_gives_the_same_ids():
    transformers = pytest.importorskip("transformers")
    fast_cls = getattr(transformers, "CLIPTokenizerFast", None)
    if fast_cls is None:
        pytest.skip("no CLIPTokenizerFast in this transformers")
    tok = fast_cls.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)
    assert tok("a photo of a cat").input_ids == CAT_IDS


def test_open_clip_tokenizer_is_the_same_vocab_padded_with_exclamation_mark():
    tok = load_clip_tokenizer(pad_token="!")
    assert tok.pad_token_id == 0
    ids = tok("a photo of a cat", padding="max_length", max_length=10).input_ids
    assert ids == CAT_IDS + [0, 0, 0]
    # SD1's OpenAI CLIP pads with the end token instead
    assert load_clip_tokenizer().pad_token_id == 49407


def test_shipped_vocabulary_follows_the_documented_derivation():
    vocab = json.loads((TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    merges = (TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version")
    merges = merges[1:]
    tokens = sorted(vocab, key=vocab.get)
    symbols = list(bytes_to_unicode().values())
    assert len(tokens) == CLIP_VOCAB_SIZE and len(merges) == CLIP_NUM_MERGES
    assert tokens[:256] == symbols
    assert tokens[256:512] == [s + "</w>" for s in symbols]
    assert tokens[512:-2] == [m.replace(" ", "") for m in merges]
    assert tokens[-2:] == ["<|startoftext|>", "<|endoftext|>"]


def test_prompt_longer_than_77_tokens_is_split_into_windows_not_cut():
    tok = load_clip_tokenizer()
    windows = token_windows(tok, "cat " * 100)
    assert [len(w) for w in windows] == [77, 77]
    assert windows[0][0] == 49406 and windows[0][76] == 49407
    # 75 + 25 tokens: the second window holds the last 25, then EOS, then padding
    assert windows[1][1:26] == [2368] * 25 and windows[1][26] == 49407 and windows[1][27:] == [49407] * 50


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return Env(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module")
def sd1_clip(env):
    _model, clip, _vae = env.run("CheckpointLoaderSimple", ckpt_name=SHIPPED_TINY)
    return clip


@pytest.fixture(scope="module")
def sdxl_clip(env):
    make_tiny_checkpoint(env.folder("checkpoints") / "tiny-sdxl.safetensors", "sdxl", seed=3)
    _model, clip, _vae = env.run("LoadCheckpoint", ckpt_name="tiny-sdxl.safetensors")
    return clip


def encode(env, clip, text):
    (cond,) = env.run("CLIPTextEncode", clip=clip, text=text)
    return cond


def test_encode_gives_comfyui_shaped_conditioning(env, sd1_clip):
    cond = encode(env, sd1_clip, "a photo of a cat")
    assert len(cond) == 1
    emb, extras = cond[0]
    assert emb.shape == (1, 77, 32) and emb.dtype == torch.float32
    assert extras["pooled_output"].shape == (1, 32)
    assert extras["arch"] == "sd1"
    assert torch.isfinite(emb).all()
    # deterministic
    assert torch.equal(encode(env, sd1_clip, "a photo of a cat")[0][0], emb)


def test_long_prompt_is_encoded_window_by_window(env, sd1_clip):
    long = encode(env, sd1_clip, "cat " * 100)[0][0]
    first = encode(env, sd1_clip, "cat " * 75)[0][0]
    assert long.shape == (1, 154, 32)
    torch.testing.assert_close(long[:, :77], first)
    assert not torch.allclose(long[:, 77:], first)


def test_empty_prompt_encodes(env, sd1_clip):
    assert encode(env, sd1_clip, "")[0][0].shape == (1, 77, 32)


def test_set_last_layer_changes_the_embedding_without_touching_the_input(env, sd1_clip):
    last = encode(env, sd1_clip, "a photo of a cat")[0][0]
    (skip2,) = env.run("CLIPSetLastLayer", clip=sd1_clip, stop_at_clip_layer=-2)
    (same,) = env.run("CLIPSetLastLayer", clip=sd1_clip, stop_at_clip_layer=-1)
    penultimate = encode(env, skip2, "a photo of a cat")[0][0]
    assert sd1_clip.stop_at_layer == -1 and skip2.stop_at_layer == -2
    assert not torch.allclose(last, penultimate)
    torch.testing.assert_close(encode(env, same, "a photo of a cat")[0][0], last)
    # the encoder weights are shared, not copied
    assert skip2.encoders[0] is sd1_clip.encoders[0]


def test_set_last_layer_rejects_positive_layers(env, sd1_clip):
    with pytest.raises(NodeInputError) as err:
        env.run("CLIPSetLastLayer", clip=sd1_clip, stop_at_clip_layer=1)
    assert err.value.input_name == "stop_at_clip_layer"


def test_sdxl_concatenates_both_encoders_and_pools_the_second(env, sdxl_clip):
    assert sdxl_clip.stop_at_layer == -2  # SDXL conditions on the penultimate layer by default
    emb, extras = encode(env, sdxl_clip, "a photo of a cat")[0]
    assert emb.shape == (1, 77, 64)  # 32 (CLIP-L style) + 32 (OpenCLIP style)
    assert extras["pooled_output"].shape == (1, 32)
    long = encode(env, sdxl_clip, "cat " * 80)[0][0]
    assert long.shape == (1, 154, 64)


def test_missing_clip_names_the_input(env):
    with pytest.raises(NodeInputError) as err:
        env.run("CLIPTextEncode", clip=None, text="x")
    assert err.value.input_name == "clip" and "text encoder" in str(err.value)


def test_conditioning_combine_keeps_both_entries(env, sd1_clip):
    a = encode(env, sd1_clip, "a cat")
    b = encode(env, sd1_clip, "a dog")
    (both,) = env.run("ConditioningCombine", conditioning_1=a, conditioning_2=b)
    assert len(both) == 2 and both[0][0] is a[0][0] and both[1][0] is b[0][0]
    assert len(a) == 1 and len(b) == 1


def test_prompt_weight_syntax_is_parsed_like_comfyui():
    from latentgraph.nodes.conditioning import prompt_weights, weighted_windows

    assert prompt_weights("a (cat:1.5) on a ((mat))") == [("a ", 1.0), ("cat", 1.5), (" on a ", 1.0), ("mat", pytest.approx(1.21))]
    assert prompt_weights(r"\(literal\) (x:bad)") == [("(literal) ", 1.0), ("x:bad", pytest.approx(1.1))]
    assert prompt_weights("unbalanced (open") == [("unbalanced (open", 1.0)]
    tok = load_clip_tokenizer()
    ids, weights = weighted_windows(tok, "a photo of a (cat:1.5)")
    assert ids[0][:7] == CAT_IDS  # the parentheses and weight are not tokens
    assert weights[0][:7] == [1.0, 1.0, 1.0, 1.0, 1.0, 1.5, 1.0]


def test_weighted_tokens_move_away_from_the_empty_prompt(env, sd1_clip):
    plain = encode(env, sd1_clip, "a photo of a cat")[0][0]
    torch.testing.assert_close(encode(env, sd1_clip, "a photo of a (cat:1.0)")[0][0], plain)
    weighted = encode(env, sd1_clip, "a photo of a (cat:1.5)")[0][0]
    empty = encode(env, sd1_clip, "")[0][0]
    cat = 5  # BOS a photo of a [cat]
    torch.testing.assert_close(weighted[:, cat], empty[:, cat] + 1.5 * (plain[:, cat] - empty[:, cat]))
    others = [i for i in range(77) if i != cat]
    torch.testing.assert_close(weighted[:, others], plain[:, others])
