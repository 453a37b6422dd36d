"""LoRA: strengths, formats, no mutation of the shared input model, memory released with the copy."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from latentgraph.errors import NodeInputError
from latentgraph.nodes.tiny_models import make_tiny_checkpoint, make_tiny_lora
from sd_helpers import SHIPPED_TINY, Env

PROMPT = "a photo of a cat"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Env(tmp_path_factory.mktemp("lora"))
    loras = env.folder("loras")
    make_tiny_lora(loras / "kohya.safetensors", "sd1", seed=1)
    make_tiny_lora(loras / "peft.safetensors", "sd1", seed=1, lora_format="peft")
    make_tiny_lora(loras / "other.safetensors", "sd1", seed=2)
    make_tiny_lora(loras / "xl-ldm.safetensors", "sdxl", seed=1, lora_format="kohya_ldm")
    make_tiny_lora(loras / "xl-peft.safetensors", "sdxl", seed=1, lora_format="peft")
    make_tiny_checkpoint(env.folder("checkpoints") / "xl.safetensors", "sdxl")
    return env


@pytest.fixture(scope="module")
def base(env):
    return env.run("LoadCheckpoint", ckpt_name=SHIPPED_TINY)


def unet_out(model, cond):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    with torch.no_grad():
        return model.unet(x, torch.tensor([500]), encoder_hidden_states=cond).sample


def encode(env, clip):
    (cond,) = env.run("CLIPTextEncode", clip=clip, text=PROMPT)
    return cond[0][0]


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_strength_zero_is_the_base_model(env, base):
    model, clip, _vae = base
    m0, c0 = env.run("LoraLoader", model=model, clip=clip, lora_name="kohya.safetensors", strength_model=0.0, strength_clip=0.0)
    cond = encode(env, clip)
    torch.testing.assert_close(encode(env, c0), cond, rtol=0, atol=0)
    torch.testing.assert_close(unet_out(m0, cond), unet_out(model, cond), rtol=0, atol=0)


def test_strength_one_changes_outputs_and_leaves_the_base_untouched(env, base):
    model, clip, _vae = base
    unet_before, te_before = snapshot(model.unet), snapshot(clip.encoders[0])
    cond = encode(env, clip)
    out_before = unet_out(model, cond)

    m1, c1 = env.run("LoraLoader", model=model, clip=clip, lora_name="kohya.safetensors", strength_model=1.0, strength_clip=1.0)
    cond1 = encode(env, c1)
    assert not torch.allclose(cond1, cond)
    assert not torch.allclose(unet_out(m1, cond), out_before)
    assert m1.info["loras"][0]["name"] == "kohya.safetensors" and "loras" not in model.info

    # the shared input model is exactly as before
    assert all(torch.equal(v, model.unet.state_dict()[k]) for k, v in unet_before.items())
    assert all(torch.equal(v, clip.encoders[0].state_dict()[k]) for k, v in te_before.items())
    torch.testing.assert_close(unet_out(model, cond), out_before, rtol=0, atol=0)
    torch.testing.assert_close(encode(env, clip), cond, rtol=0, atol=0)


def test_only_patched_weights_are_copied_and_they_are_freed_with_the_copy(env, base):
    model, clip, _vae = base
    m1, _c1 = env.run("LoraLoader", model=model, clip=clip, lora_name="kohya.safetensors", strength_model=1.0, strength_clip=1.0)
    base_params = dict(model.unet.named_parameters())
    patched = [n for n, p in m1.unet.named_parameters() if p is not base_params[n]]
    shared = [n for n, p in m1.unet.named_parameters() if p is base_params[n]]
    assert patched and all(".attn" in n and n.endswith("weight") for n in patched)
    assert len(shared) > len(patched)  # convolutions, norms, biases… are the very same tensors
    ref = weakref.ref(dict(m1.unet.named_parameters())[patched[0]])
    del m1, _c1
    gc.collect()
    assert ref() is None


def test_cache_counts_a_lora_clone_by_its_patched_weights_only(env, base):
    from latentgraph.cache import Cache
    from latentgraph.sizing import nbytes_by_device

    model, clip, _vae = base
    m1, c1 = env.run("LoraLoader", model=model, clip=clip, lora_name="kohya.safetensors", strength_model=1.0, strength_clip=1.0)
    cache = Cache()
    cache.put(b"base", (model, clip))
    cache.put(b"lora", (m1, c1))
    together = nbytes_by_device((model, clip, m1, c1))["cpu"]
    alone = nbytes_by_device((model, clip))["cpu"]
    assert cache.stats().bytes["cpu"] == together < 1.5 * alone


def test_kohya_and_peft_formats_apply_the_same_deltas(env, base):
    model, clip, _vae = base
    cond = encode(env, clip)
    mk, ck = env.run("LoraLoader", model=model, clip=clip, lora_name="kohya.safetensors", strength_model=0.7, strength_clip=0.7)
    mp, cp = env.run("LoraLoader", model=model, clip=clip, lora_name="peft.safetensors", strength_model=0.7, strength_clip=0.7)
    torch.testing.assert_close(unet_out(mk, cond), unet_out(mp, cond))
    torch.testing.assert_close(encode(env, ck), encode(env, cp))


def test_strength_scales_the_delta(env, base):
    model, clip, _vae = base
    cond = encode(env, clip)
    w = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    base_w = dict(model.unet.named_parameters())[w]
    deltas = []
    for s in (0.5, 1.0, -1.0):
        (m,) = env.run("LoraLoaderModelOnly", model=model, lora_name="kohya.safetensors", strength_model=s)
        deltas.append(dict(m.unet.named_parameters())[w] - base_w)
    torch.testing.assert_close(deltas[0] * 2, deltas[1])
    torch.testing.assert_close(-deltas[1], deltas[2])
    assert unet_out(model, cond).shape == (1, 4, 8, 8)


def test_loras_stack(env, base):
    model, clip, _vae = base
    m1, c1 = env.run("LoraLoader", model=model, clip=clip, lora_name="kohya.safetensors", strength_model=1.0, strength_clip=1.0)
    m2, c2 = env.run("LoraLoader", model=m1, clip=c1, lora_name="other.safetensors", strength_model=1.0, strength_clip=1.0)
    assert [entry["name"] for entry in m2.info["loras"]] == ["kohya.safetensors", "other.safetensors"]
    cond = encode(env, clip)
    assert not torch.allclose(unet_out(m2, cond), unet_out(m1, cond))
    assert len(m1.info["loras"]) == 1


def test_sdxl_loras_with_original_names_and_peft_names(env):
    model, clip, _vae = env.run("LoadCheckpoint", ckpt_name="xl.safetensors")
    ml, cl = env.run("LoraLoader", model=model, clip=clip, lora_name="xl-ldm.safetensors", strength_model=1.0, strength_clip=1.0)
    mp, cp = env.run("LoraLoader", model=model, clip=clip, lora_name="xl-peft.safetensors", strength_model=1.0, strength_clip=1.0)
    # both text encoders are patched (lora_te1_/lora_te2_ and text_encoder/text_encoder_2)
    assert all(a is not b for a, b in zip(cl.encoders, clip.encoders))
    base_w = dict(model.unet.named_parameters())
    for m in (ml, mp):
        patched = {n for n, p in m.unet.named_parameters() if p is not base_w[n]}
        assert any(n.startswith("down_blocks.1.attentions") for n in patched)
        assert any(n.startswith("mid_block.attentions") for n in patched)
    torch.testing.assert_close(
        dict(ml.unet.named_parameters())["up_blocks.0.attentions.2.transformer_blocks.1.attn2.to_k.weight"],
        dict(mp.unet.named_parameters())["up_blocks.0.attentions.2.transformer_blocks.1.attn2.to_k.weight"],
    )


def test_lora_for_another_architecture_is_refused(env, base):
    model, clip, _vae = base
    with pytest.raises(NodeInputError) as err:
        env.run("LoraLoader", model=model, clip=clip, lora_name="xl-ldm.safetensors", strength_model=1.0, strength_clip=1.0)
    assert err.value.input_name == "lora_name" and "another architecture" in str(err.value)


def test_missing_lora_lists_available(env, base):
    model, clip, _vae = base
    with pytest.raises(NodeInputError) as err:
        env.run("LoraLoader", model=model, clip=clip, lora_name="nope.safetensors", strength_model=1.0, strength_clip=1.0)
    assert "kohya.safetensors" in str(err.value)


def test_paths_outside_the_lora_folders_are_not_loaded(env, base):
    model, clip, _vae = base
    with pytest.raises(NodeInputError, match="not found"):
        env.run("LoraLoader", model=model, clip=clip, lora_name="../checkpoints/xl.safetensors", strength_model=1.0, strength_clip=1.0)


def test_not_a_lora_is_reported(env, base):
    model, clip, _vae = base
    make_tiny_checkpoint(env.folder("loras") / "checkpoint.safetensors", "sd1")
    with pytest.raises(NodeInputError, match="no LoRA weights"):
        env.run("LoraLoader", model=model, clip=clip, lora_name="checkpoint.safetensors", strength_model=1.0, strength_clip=1.0)
