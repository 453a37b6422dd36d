"""CLIP vision and friends (nodes/text/): loaders on tiny files in the original layouts, encoding,
unCLIP / instruct-pix2pix / style / GLIGEN conditioning data, and the ComfyUI contracts."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tiny_sd import make_ctx, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph import hookimpl
from latentgraph.errors import NodeInputError
from latentgraph.settings import Settings
from latentgraph.nodes.text import NODES, TYPES
from latentgraph.nodes.text.clip_vision import (
    CLIPVisionEncode,
    CLIPVisionLoader,
    ClipVisionOutput,
    clip_preprocess,
)
from latentgraph.nodes.text.gligen import GLIGENLoader, GLIGENTextBoxApply
from latentgraph.nodes.text.image_conditioning import InstructPixToPixConditioning, unCLIPConditioning
from latentgraph.nodes.text.style_model import StyleAdapter, StyleModelApply, StyleModelLoader


def tiny_vision(seed=0, width=64, act="gelu"):
    import transformers

    torch.manual_seed(seed)
    config = transformers.CLIPVisionConfig(
        hidden_size=width, intermediate_size=37, num_hidden_layers=3, num_attention_heads=max(1, width // 64),
        image_size=32, patch_size=8, projection_dim=16, hidden_act=act, layer_norm_eps=1e-5,
    )
    return transformers.CLIPVisionModelWithProjection(config).eval()


def to_openai(model) -> dict[str, torch.Tensor]:
    """The tower in OpenAI's layout (what open_clip / the original checkpoints store)."""
    sd = {k: v for k, v in model.state_dict().items() if "position_ids" not in k}
    out = {
        "visual.class_embedding": sd.pop("vision_model.embeddings.class_embedding"),
        "visual.conv1.weight": sd.pop("vision_model.embeddings.patch_embedding.weight"),
        "visual.positional_embedding": sd.pop("vision_model.embeddings.position_embedding.weight"),
        "visual.proj": sd.pop("visual_projection.weight").t().contiguous(),
    }
    for a, b in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for kind in ("weight", "bias"):
            out[f"visual.{b}.{kind}"] = sd.pop(f"vision_model.{a}.{kind}")
    for i in range(model.config.num_hidden_layers):
        src, dst = f"vision_model.encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat([sd.pop(f"{src}self_attn.{p}_proj.{kind}") for p in "qkv"])
            for a, b in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[f"{dst}{b}.{kind}"] = sd.pop(f"{src}{a}.{kind}")
    assert not sd, sd.keys()
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("vision")
    for kind in ("clip_vision", "style_models", "gligen"):
        (base / "models" / kind).mkdir(parents=True)
    model = tiny_vision()
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if "position_ids" not in k},
              str(base / "models" / "clip_vision" / "tiny-hf.safetensors"))
    torch.save(to_openai(model), base / "models" / "clip_vision" / "tiny-openai.pt")
    ctx, _ = make_ctx()
    ctx.settings = Settings.from_env(base, environ={}, device="cpu")
    return ctx, model, base


def image(seed=3, h=40, w=56):
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))


# -- contracts ---------------------------------------------------------------------------------


class _Plugin:
    @hookimpl
    def register_nodes(self):
        return NODES

    @hookimpl
    def register_types(self):
        return TYPES


@pytest.fixture(scope="module")
def object_infos(tmp_path_factory):
    from latentgraph.object_info import object_info
    from latentgraph.testing import make_engine

    settings = Settings.from_env(tmp_path_factory.mktemp("contract"), environ={}, device="cpu")
    engine = make_engine(settings)
    if engine.registry.get("CLIPVisionLoader") is None:  # until nodes/builtin.py registers the package
        engine = make_engine(settings, ("text-nodes", _Plugin()))
    return object_info(engine.registry, settings)


@pytest.mark.parametrize("name", [n.spec.name for n in NODES])
def test_contract_matches_comfyui(name, object_infos):
    from test_node_contracts import _compare

    _compare(name, object_infos)


# -- CLIP vision -------------------------------------------------------------------------------


def test_preprocess_follows_comfyui_steps():
    img = image()
    pixels = clip_preprocess(img, 32)
    assert pixels.shape == (1, 3, 32, 32)
    # centre: scale the short side (40 → 32), cut the middle 32 of 45 columns
    resized = torch.nn.functional.interpolate(img.movedim(-1, 1), size=(32, 45), mode="bicubic", antialias=True)
    cut = (torch.clip(resized[..., :, 6:38] * 255, 0, 255).round() / 255)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    assert torch.allclose(pixels, (cut - mean) / std, atol=1e-6)
    squashed = clip_preprocess(img, 32, crop=False)
    assert not torch.allclose(squashed, pixels)
    same = image(h=32, w=32)
    assert torch.allclose(clip_preprocess(same, 32), ((same.movedim(-1, 1) * 255).round() / 255 - mean) / std)


@pytest.mark.parametrize("name", ["tiny-hf.safetensors", "tiny-openai.pt"])
def test_loader_reads_both_layouts_and_encodes_like_transformers(env, name):
    ctx, model, _ = env
    (vision,) = CLIPVisionLoader().execute(ctx, name)
    assert vision.image_size == 32 and vision.model.config.hidden_size == 64
    img = image()
    (out,) = CLIPVisionEncode().execute(ctx, vision, img, "center")
    with torch.no_grad():
        ref = model(pixel_values=clip_preprocess(img, 32), output_hidden_states=True)
    assert torch.allclose(out.image_embeds, ref.image_embeds, atol=1e-5)
    assert torch.allclose(out["last_hidden_state"], ref.last_hidden_state, atol=1e-5)
    assert torch.allclose(out.penultimate_hidden_states, ref.hidden_states[-2], atol=1e-5)
    assert out.image_embeds.shape == (1, 16) and out.last_hidden_state.shape == (1, 17, 64)


def test_known_widths_get_published_settings():
    from latentgraph.nodes.text.clip_vision import vision_config

    model = tiny_vision()
    sd = dict(model.state_dict())
    config = vision_config(sd)
    assert (config.num_attention_heads, config.hidden_act, config.image_size, config.patch_size) == (1, "gelu", 32, 8)


def test_loader_refuses_other_files(env):
    ctx, _, base = env
    save_file({"foo": torch.zeros(2)}, str(base / "models" / "clip_vision" / "junk.safetensors"))
    with pytest.raises(NodeInputError, match="no CLIP image encoder"):
        CLIPVisionLoader().execute(ctx, "junk.safetensors")


# -- unCLIP / instruct-pix2pix -----------------------------------------------------------------


def fake_output(width=64, proj=16):
    g = torch.Generator().manual_seed(1)
    return ClipVisionOutput(torch.randn(1, 17, width, generator=g), torch.randn(1, proj, generator=g),
                            torch.randn(1, 17, width, generator=g))


def test_unclip_appends_entries_and_strength_zero_is_a_no_op():
    ctx, _ = make_ctx()
    cond = [(torch.zeros(1, 77, 32), {"pooled_output": None})]
    out = fake_output()
    (one,) = unCLIPConditioning().execute(ctx, cond, out, 0.8, 0.1)
    (two,) = unCLIPConditioning().execute(ctx, one, out, 1.0, 0.0)
    assert "unclip_conditioning" not in cond[0][1]  # input untouched
    assert one[0][1]["unclip_conditioning"] == [{"clip_vision_output": out, "strength": 0.8, "noise_augmentation": 0.1}]
    assert [e["strength"] for e in two[0][1]["unclip_conditioning"]] == [0.8, 1.0]
    assert unCLIPConditioning().execute(ctx, cond, out, 0.0, 0.0)[0] is cond


def test_instruct_pix2pix_puts_the_latent_in_both_conditionings():
    sd = tiny_sd("sd1")
    ctx, _ = make_ctx()
    pos, neg = [(torch.zeros(1, 77, 32), {})], [(torch.ones(1, 77, 32), {})]
    pixels = torch.rand(1, 17, 18, 3, generator=torch.Generator().manual_seed(0))
    p, n, latent = InstructPixToPixConditioning().execute(ctx, pos, neg, sd.vae, pixels)
    concat = p[0][1]["concat_latent_image"]
    assert concat.shape == (1, 4, 8, 9) and n[0][1]["concat_latent_image"] is concat
    assert torch.equal(latent["samples"], torch.zeros_like(concat))
    assert "concat_latent_image" not in pos[0][1]


# -- style model -------------------------------------------------------------------------------


def test_style_model_loads_and_appends_tokens(env):
    ctx, _, base = env
    torch.manual_seed(4)
    adapter = StyleAdapter(width=64, context_dim=32, heads=8, layers=2, tokens=4)
    for p in adapter.parameters():
        torch.nn.init.normal_(p, std=0.1)
    save_file({k: v.contiguous() for k, v in adapter.state_dict().items()},
              str(base / "models" / "style_models" / "tiny-style.safetensors"))
    (style,) = StyleModelLoader().execute(ctx, "tiny-style.safetensors")
    out = fake_output()
    cond = [(torch.zeros(1, 77, 32), {"pooled_output": None})]
    (mult,) = StyleModelApply().execute(ctx, cond, style, out, 0.5, "multiply")
    with torch.no_grad():
        tokens = adapter(out.last_hidden_state)
    assert mult[0][0].shape == (1, 81, 32)
    assert torch.allclose(mult[0][0][:, 77:], tokens * 0.5, atol=1e-5)
    (bias,) = StyleModelApply().execute(ctx, cond, style, out, 0.5, "attn_bias")
    assert torch.allclose(bias[0][0][:, 77:], tokens, atol=1e-5)
    mask = bias[0][1]["attention_mask"]
    assert mask.shape == (1, 82, 82) and torch.allclose(mask[0, 0, 77:81].float(), torch.log(torch.tensor(0.5)), atol=1e-3)
    (plain,) = StyleModelApply().execute(ctx, cond, style, out, 1.0, "attn_bias")
    assert "attention_mask" not in plain[0][1]
    with pytest.raises(NodeInputError, match="wide"):
        StyleModelApply().execute(ctx, cond, style, fake_output(width=32), 1.0, "multiply")


# -- GLIGEN ------------------------------------------------------------------------------------


def test_gligen_loads_original_layout_and_records_boxes(env):
    from diffusers.models.attention import GatedSelfAttentionDense
    from diffusers.models.embeddings import GLIGENTextBoundingboxProjection

    from latentgraph.nodes.components import TextEncoder
    from tiny_sd import CPU, TOKENIZER_DIR
    from transformers import CLIPTokenizer

    ctx, _, base = env
    sd = {f"position_net.{k}": v for k, v in GLIGENTextBoundingboxProjection(32, 32).state_dict().items()}
    for block in ("input_blocks.1.1", "middle_block.1", "output_blocks.3.1"):
        for k, v in GatedSelfAttentionDense(64, 32, 2, 32).state_dict().items():
            sd[f"{block}.transformer_blocks.0.fuser.{k}"] = v
    save_file({k: v.contiguous() for k, v in sd.items()}, str(base / "models" / "gligen" / "tiny-gligen.safetensors"))
    (gligen,) = GLIGENLoader().execute(ctx, "tiny-gligen.safetensors")
    assert [b for b, _ in gligen.fusers] == ["input_blocks.1.1.transformer_blocks.0", "middle_block.1.transformer_blocks.0",
                                             "output_blocks.3.1.transformer_blocks.0"]
    tiny = tiny_sd("sd1")
    tok = CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)
    clip = TextEncoder([tok], tiny.text_encoders, "sd1", CPU, torch.float32)
    cond = [(torch.zeros(1, 77, 32), {})]
    (one,) = GLIGENTextBoxApply().execute(ctx, cond, clip, gligen, "a cat", 64, 32, 8, 16)
    (two,) = GLIGENTextBoxApply().execute(ctx, one, clip, gligen, "a dog", 16, 16, 0, 0)
    kind, model, boxes = two[0][1]["gligen"]
    assert kind == "position" and model is gligen
    assert [b[1:] for b in boxes] == [(4, 8, 2, 1), (2, 2, 0, 0)]
    assert boxes[0][0].shape == (1, 32)
