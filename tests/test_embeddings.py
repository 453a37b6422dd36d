"""Textual-inversion embeddings: ``embedding:NAME`` in prompts, file layouts, warnings, parity.

Parity: diffusers' ``load_textual_inversion`` on a tiny SD1 pipeline against our ``embedding:``
prompt — prompt embeddings within 1e-5, latents (euler/simple, the route tests/test_parity.py
uses) within test_parity's tolerance (1e-5 of the largest latent + 1e-5, below 1e-4).
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from safetensors.torch import save_file

from tiny_sd import CPU, TOKENIZER_DIR, make_ctx, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.node import NodeResult
from latentgraph.nodes.components import TextEncoder
from latentgraph.nodes.conditioning import CLIPEncode, encode_text
from latentgraph.nodes.text.embeddings import EmbeddingRef, find_embedding, list_embeddings, split_embeddings

SEED, CFG = 1234, 7.0


def tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)


def clip_of(sd, arch="sd1", dirs=None) -> TextEncoder:
    tok = tokenizer()
    return TextEncoder(
        tokenizers=[tok] * len(sd.text_encoders), encoders=list(sd.text_encoders), arch=arch, device=CPU,
        dtype=torch.float32, info={"final_norm_on_hidden": arch != "sdxl", **({"embedding_dirs": dirs} if dirs else {})},
    )


@pytest.fixture(scope="module")
def sd1():
    return tiny_sd("sd1", seed=0)


@pytest.fixture(scope="module")
def vectors():
    return torch.randn(3, 32, generator=torch.Generator().manual_seed(5))


@pytest.fixture()
def folder(tmp_path, vectors):
    d = tmp_path / "models" / "embeddings"
    (d / "styles").mkdir(parents=True)
    save_file({"emb_params": vectors}, str(d / "tok.safetensors"))
    torch.save({"string_to_param": {"*": vectors[:2]}, "name": "a1111", "step": 100}, d / "styles" / "a1111.pt")
    return d


# --- syntax -----------------------------------------------------------------------------------


def test_prompt_syntax_follows_comfyui():
    assert split_embeddings("a embedding:foo cat") == ["a ", EmbeddingRef("foo"), " cat"]
    assert split_embeddings("embedding:foo, cat") == [EmbeddingRef("foo,"), " cat"]
    assert split_embeddings("x\nembedding:sub/bar.pt") == ["x\n", EmbeddingRef("sub/bar.pt")]
    assert split_embeddings("xembedding:foo") == ["xembedding:foo"]  # inside a word: text
    assert split_embeddings("embedding: cat") == ["embedding:", " cat"]


def test_weighted_embedding_takes_the_weight(sd1, folder, vectors):
    clip = clip_of(sd1)
    plain, _ = encode_text(clip, "a embedding:tok", embedding_dirs=[folder])
    heavy, _ = encode_text(clip, "a (embedding:tok:1.2)", embedding_dirs=[folder])
    empty, _ = encode_text(clip, "", embedding_dirs=[folder])
    # positions 2..4 are the three vectors: moved away from the empty prompt by 1.2
    expected = empty[:, 2:5] + (plain[:, 2:5] - empty[:, 2:5]) * 1.2
    assert torch.allclose(heavy[:, 2:5], expected, atol=1e-5)
    assert torch.allclose(heavy[:, :2], plain[:, :2], atol=1e-6)


# --- files ------------------------------------------------------------------------------------


def test_files_are_found_with_or_without_extension_and_in_subfolders(folder):
    assert find_embedding("tok", [folder]).name == "tok.safetensors"
    assert find_embedding("tok.safetensors", [folder]).name == "tok.safetensors"
    assert find_embedding("a1111", [folder]).name == "a1111.pt"
    assert find_embedding("styles/a1111", [folder]).name == "a1111.pt"
    assert find_embedding("../embeddings/tok", [folder / "styles"]) is None  # never outside the folders
    assert list_embeddings([folder]) == ["styles/a1111", "tok"]


def _positions(clip, text, folder):
    warnings: list[str] = []
    emb, _ = encode_text(clip, text, embedding_dirs=[folder], warnings=warnings)
    return emb, warnings


def test_a1111_pt_is_the_same_as_its_vectors_in_safetensors(sd1, folder, vectors):
    clip = clip_of(sd1)
    save_file({"x": vectors[:2]}, str(folder / "two.safetensors"))
    a, wa = _positions(clip, "red embedding:a1111 cat", folder)
    b, wb = _positions(clip, "red embedding:two cat", folder)
    assert wa == wb == []
    assert torch.equal(a, b)


def test_embedding_vectors_are_what_the_encoder_sees(sd1, folder):
    """An embedding made of token embeddings of "red circle" encodes as the words do."""
    clip = clip_of(sd1)
    table = sd1.text_encoders[0].get_input_embeddings().weight.detach()
    ids = tokenizer()("red circle", add_special_tokens=False)["input_ids"]
    save_file({"emb_params": table[ids].clone()}, str(folder / "redcircle.safetensors"))
    words, _ = _positions(clip, "a red circle on a blue background", folder)
    emb, warnings = _positions(clip, "a embedding:redcircle on a blue background", folder)
    assert warnings == []
    assert torch.allclose(words, emb, atol=1e-6)


def test_unknown_embedding_is_a_warning_and_never_words(sd1, folder):
    clip = clip_of(sd1)
    emb, warnings = _positions(clip, "a embedding:nosuch cat", folder)
    assert len(warnings) == 1 and "embedding:nosuch not found" in warnings[0]
    without, _ = _positions(clip, "a  cat", folder)
    assert torch.equal(emb, without)  # left out: not tokenized as "embedding", ":", "nosuch"


def test_trailing_comma_stays_text(sd1, folder):
    clip = clip_of(sd1)
    a, w = _positions(clip, "embedding:tok, cat", folder)
    b, _ = _positions(clip, "embedding:tok , cat", folder)
    assert w == [] and torch.allclose(a, b, atol=1e-6)


def test_unsafe_pickle_is_refused_with_a_warning(sd1, folder, vectors):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(folder / "evil.pt", "wb") as f:
        pickle.dump({"string_to_param": {"*": vectors}, "x": Evil()}, f)
    _, warnings = _positions(clip_of(sd1), "embedding:evil", folder)
    assert len(warnings) == 1 and "refusing to load evil.pt" in warnings[0]


def test_wrong_width_is_a_warning(sd1, folder):
    save_file({"emb_params": torch.zeros(2, 768)}, str(folder / "big.safetensors"))
    _, warnings = _positions(clip_of(sd1), "embedding:big", folder)
    assert len(warnings) == 1 and "768" in warnings[0]


def test_sdxl_embedding_gives_each_encoder_its_vectors():
    sd = tiny_sd("sdxl", seed=0)
    clip = clip_of(sd, "sdxl")
    g = torch.Generator().manual_seed(9)
    l_vec, g_vec = torch.randn(2, 32, generator=g), torch.randn(2, 32, generator=g)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        save_file({"clip_g": g_vec, "clip_l": l_vec}, str(Path(tmp) / "xl.safetensors"))
        save_file({"clip_g": l_vec, "clip_l": g_vec}, str(Path(tmp) / "swapped.safetensors"))
        ours, w = _positions(clip, "a embedding:xl", Path(tmp))
        swapped, _ = _positions(clip, "a embedding:swapped", Path(tmp))
    assert w == [] and ours.shape == (1, 77, 64)
    assert not torch.allclose(ours, swapped)
    # by hand: each encoder's token embeddings at positions 2, 3 replaced by its vectors
    tok = tokenizer()
    ids = torch.tensor([[49406, *tok("a", add_special_tokens=False)["input_ids"], 0, 0, 49407] + [49407] * 72])
    parts = []
    for encoder, vec in zip(sd.text_encoders, (l_vec, g_vec)):
        hook = encoder.get_input_embeddings().register_forward_hook(
            lambda m, i, o, vec=vec: torch.cat([o[:, :2], vec[None], o[:, 4:]], dim=1)
        )
        with torch.no_grad():
            parts.append(encoder(input_ids=ids, output_hidden_states=True).hidden_states[-1])
        hook.remove()
    assert torch.allclose(ours, torch.cat(parts, -1), atol=1e-6)


def test_node_shows_the_warning_and_finds_embeddings_in_the_model_folders(sd1, folder, tmp_path):
    from latentgraph.settings import Settings

    ctx, _ = make_ctx()
    ctx.settings = Settings.from_env(tmp_path, environ={})  # models/embeddings is `folder`
    ok = CLIPEncode().execute(ctx, clip_of(sd1), "a embedding:tok")
    assert isinstance(ok, tuple) and ok[0][0][0].shape == (1, 77, 32)
    warned = CLIPEncode().execute(ctx, clip_of(sd1), "a embedding:missing")
    assert isinstance(warned, NodeResult) and "embedding:missing not found" in warned.ui["warnings"][0]


def test_sdxl_encode_nodes_find_embeddings_and_warn_like_clip_encode(sd1, folder, tmp_path):
    """CLIPTextEncodeSDXL / Refiner read ``embedding:NAME`` from the same folders as CLIPEncode
    and show the same warnings (they once looked only in the CLIP's own notes and said nothing)."""
    from latentgraph.nodes.conditioning_nodes import CLIPTextEncodeSDXL, CLIPTextEncodeSDXLRefiner
    from latentgraph.settings import Settings

    ctx, _ = make_ctx()
    ctx.settings = Settings.from_env(tmp_path, environ={})
    plain = CLIPEncode().execute(ctx, clip_of(sd1), "a embedding:tok")[0][0][0]
    sdxl = CLIPTextEncodeSDXL().execute(ctx, clip_of(sd1), text_g="", text_l="a embedding:tok")
    assert isinstance(sdxl, tuple) and torch.equal(sdxl[0][0][0], plain)
    refiner = CLIPTextEncodeSDXLRefiner().execute(ctx, clip_of(sd1), text="a embedding:missing")
    assert isinstance(refiner, NodeResult) and "embedding:missing not found" in refiner.ui["warnings"][0]


# --- parity with diffusers --------------------------------------------------------------------


def test_parity_with_diffusers_load_textual_inversion(sd1, folder, vectors):
    import diffusers

    from test_parity import custom_timesteps, diffusers_scheduler, ksampler, same_latents

    from latentgraph.nodes.latents import EmptyLatent

    prompt_ours, negative = "a photo of embedding:tok on a red cat", "blurry"
    prompt_theirs = "a photo of <tok> on a red cat"
    pipe_te = copy.deepcopy(sd1.text_encoders[0])
    pipe = diffusers.StableDiffusionPipeline(
        vae=sd1.vae.vae, text_encoder=pipe_te, tokenizer=tokenizer(), unet=sd1.model.unet,
        scheduler=diffusers_scheduler(sd1.model, "euler", "simple"), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    ).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    pipe.load_textual_inversion(str(folder / "tok.safetensors"), token="<tok>")
    with torch.no_grad():
        theirs_pos, theirs_neg = pipe.encode_prompt(prompt_theirs, CPU, 1, True, negative)
    clip = clip_of(sd1)
    pos, _ = encode_text(clip, prompt_ours, embedding_dirs=[folder])
    neg, _ = encode_text(clip, negative, embedding_dirs=[folder])
    diff = (pos - theirs_pos).abs().max().item()
    print(f"prompt embeddings max |diff| {diff:.3g}")
    assert diff <= 1e-5 and torch.allclose(neg, theirs_neg, atol=1e-5)

    steps = 8
    expected = pipe(
        prompt=prompt_theirs, negative_prompt=negative, height=16, width=16, guidance_scale=CFG,
        generator=torch.Generator().manual_seed(SEED), output_type="latent",
        timesteps=custom_timesteps(sd1.model, "euler", "simple", steps),
    ).images
    ctx, _ = make_ctx()
    ours = ksampler(sd1, [(pos, {})], [(neg, {})], EmptyLatent().execute(ctx, 16, 16, 1)[0], "euler", "simple", steps)
    assert same_latents(ours, expected) <= 1e-4


# --- the shipped example ----------------------------------------------------------------------


def test_shipped_redcircle_is_the_demo_models_red_circle_and_listed(tmp_path):
    from safetensors.torch import load_file
    from sd_helpers import Env

    from demo_model.embedding import DEMO_CHECKPOINT, SHIPPED, make_demo_embedding

    shipped = load_file(str(SHIPPED))
    assert torch.equal(shipped["emb_params"], make_demo_embedding()["emb_params"])
    env = Env(tmp_path)
    assert "redcircle" in [n.rsplit(".", 1)[0] for n in env.settings.list_models("embeddings")]  # GET /embeddings
    _model, clip, _vae = env.run("CheckpointLoaderSimple", ckpt_name=DEMO_CHECKPOINT)
    (words,) = env.run("CLIPTextEncode", clip=clip, text="a red circle on a blue background")
    (emb,) = env.run("CLIPTextEncode", clip=clip, text="a embedding:redcircle on a blue background")
    assert torch.allclose(words[0][0], emb[0][0], atol=1e-6)
