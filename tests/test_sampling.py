"""KSampler behaviour a user notices: seeds, guidance, progress, interruption, every sampler, errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from tiny_sd import make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.context import InterruptFlag
from latentgraph.errors import Interrupted, NodeInputError
from latentgraph.nodes.sampling.kit import default_noise_sampler
from latentgraph.nodes.sampling.ksampler_nodes import KSampler
from latentgraph.nodes.sampling.run import prepare_noise


@pytest.fixture(scope="module")
def sd():
    return tiny_sd("sd1", seed=0)


@pytest.fixture(scope="module")
def sdxl():
    return tiny_sd("sdxl", seed=0)


@pytest.fixture
def unet_calls(sd):
    """Batch size of every UNet call made while the test runs."""
    calls: list[int] = []
    handle = sd.model.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    yield calls
    handle.remove()


def empty(batch=1, size=8):
    return {"samples": torch.zeros(batch, 4, size, size)}


def sample(sd, *, seed=1, steps=3, cfg=7.0, sampler_name="euler", scheduler="normal", latent=None, denoise=1.0,
           positive=None, negative=None, ctx=None):
    if ctx is None:
        ctx, _ = make_ctx()
    arch = sd.model.arch
    positive = positive if positive is not None else random_conditioning(arch, seed=11)
    negative = negative if negative is not None else random_conditioning(arch, seed=12)
    latent = latent if latent is not None else empty()
    out = KSampler().execute(ctx, sd.model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent, denoise)
    return out[0]["samples"]


def test_same_seed_same_latents_other_seed_other_latents(sd):
    first, again, other = sample(sd, seed=5), sample(sd, seed=5), sample(sd, seed=6)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_ancestral_samplers_are_seeded_too(sd):
    for name in ("euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde"):
        assert torch.equal(sample(sd, seed=5, sampler_name=name), sample(sd, seed=5, sampler_name=name)), name


def test_initial_noise_comes_from_a_cpu_generator():
    """The seed contract (ComfyUI's): initial noise is torch.randn from a CPU generator seeded with
    the seed, whatever the device; a latent cut from a batch (``batch_index``) gets the noise the
    whole batch would have given it; per-step noise (ancestral/SDE) comes from its own CPU
    generator on the seed: reproducible, and not a replay of the initial noise."""
    latent = torch.zeros(3, 4, 8, 8)
    noise = prepare_noise(latent, 42)
    assert torch.equal(noise, torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(42)))
    assert torch.equal(prepare_noise(latent[:1], 42, batch_index=[2]), noise[2:3])
    first = default_noise_sampler(latent, seed=42)(torch.tensor(1.0), torch.tensor(0.5))
    assert torch.equal(first, default_noise_sampler(latent, seed=42)(torch.tensor(1.0), torch.tensor(0.5)))
    assert not torch.allclose(first, noise)


def test_cfg_changes_the_result_and_cfg_1_skips_the_negative(sd, unet_calls):
    guided = sample(sd, cfg=7.0)
    assert unet_calls == [2, 2, 2]  # one batched call per step: negative and positive together
    unet_calls.clear()
    plain = sample(sd, cfg=1.0)
    assert unet_calls == [1, 1, 1]
    assert not torch.allclose(guided, plain)


def test_batch_runs_in_one_call_per_step(sd, unet_calls):
    out = sample(sd, latent=empty(batch=3))
    assert out.shape == (3, 4, 8, 8)
    assert unet_calls == [6, 6, 6]
    assert not torch.allclose(out[0], out[1])


def test_progress_every_step_with_a_lazy_preview(sd):
    ctx, events = make_ctx()
    sample(sd, steps=4, ctx=ctx)
    assert [(e.value, e.max) for e in events] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    image = events[-1].preview()
    assert isinstance(image, Image.Image) and image.mode == "RGB"


def test_second_order_samplers_count_steps_not_model_calls(sd, unet_calls):
    ctx, events = make_ctx()
    sample(sd, steps=3, sampler_name="heun", ctx=ctx)
    assert len(unet_calls) == 5  # Heun: 2 calls per step, the last step is a plain Euler step
    assert [(e.value, e.max) for e in events] == [(1, 3), (2, 3), (3, 3)]


def test_interrupt_stops_sampling_at_a_step(sd, unet_calls):
    flag = InterruptFlag()

    def sink(event):
        if getattr(event, "value", 0) == 2:
            flag.set()

    ctx, _ = make_ctx(sink=sink, interrupt=flag)
    with pytest.raises(Interrupted):
        sample(sd, steps=6, ctx=ctx)
    assert len(unet_calls) == 2


def test_img2img_with_partial_denoise_runs_only_its_steps(sd, unet_calls):
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))}
    out = sample(sd, steps=3, denoise=0.5, latent=latent)
    assert len(unet_calls) == 3
    assert not torch.allclose(out, latent["samples"])
    assert sample(sd, denoise=0.0, latent=latent) is latent["samples"]


def test_v_prediction_model_samples(sd):
    v_model = tiny_sd("sd1", seed=0, prediction_type="v_prediction")
    eps = sample(sd)
    v = sample(v_model)
    assert torch.isfinite(v).all() and not torch.allclose(eps, v)


def test_sdxl_uses_pooled_output_and_size_conditioning(sdxl):
    pos = random_conditioning("sdxl", seed=11)
    neg = random_conditioning("sdxl", seed=12)
    base = sample(sdxl, positive=pos, negative=neg)
    emb, extras = pos[0]
    cropped = [(emb, {**extras, "crop_w": 64, "crop_h": 64})]
    assert not torch.allclose(base, sample(sdxl, positive=cropped, negative=neg))


def test_long_prompts_and_combined_conditioning(sd, unet_calls):
    long_prompt = random_conditioning(seed=11, tokens=154)
    combined = random_conditioning(seed=13) + random_conditioning(seed=14)
    out = sample(sd, positive=long_prompt + combined, steps=2)
    assert torch.isfinite(out).all()
    assert unet_calls == [4, 4]  # negative + three positive entries, still one call per step


@pytest.mark.parametrize(
    ("positive", "negative", "name", "words"),
    [
        ([(torch.zeros(1, 77, 64), {})], None, "positive", "dimension 64"),
        (None, [(torch.zeros(1, 77, 768), {})], "negative", "768"),
        ([(torch.zeros(1, 77), {})], None, "positive", "[batch, tokens, dim]"),
        ("not conditioning", None, "positive", "CONDITIONING"),
    ],
)
def test_conditioning_mismatch_names_the_input(sd, positive, negative, name, words):
    with pytest.raises(NodeInputError) as err:
        sample(sd, positive=positive, negative=negative)
    assert err.value.input_name == name and words in str(err.value)


def test_conditioning_batch_is_fitted_to_the_latent_as_comfyui_does(sd):
    """A conditioning batch that differs from the latent's is cut or cycled (ComfyUI's rule)."""
    two = [(torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(4)), {})]
    first = [(two[0][0][:1], {})]
    one_latent = {"samples": torch.zeros(1, 4, 16, 16)}
    assert torch.equal(sample(sd, positive=two, latent=one_latent), sample(sd, positive=first, latent=one_latent))
    three_latents = {"samples": torch.zeros(3, 4, 16, 16)}
    assert torch.isfinite(sample(sd, positive=two, latent=three_latents)).all()


def test_sdxl_model_without_pooled_output_names_the_input(sdxl):
    no_pooled = [(torch.zeros(1, 77, 64), {})]
    with pytest.raises(NodeInputError) as err:
        sample(sdxl, positive=no_pooled, negative=random_conditioning("sdxl"))
    assert err.value.input_name == "positive" and "pooled" in str(err.value)


def test_bad_latent_and_names(sd):
    with pytest.raises(NodeInputError) as err:
        sample(sd, latent={"samples": torch.zeros(1, 16, 8, 8)})
    assert err.value.input_name == "latent_image" and "16 channels" in str(err.value)
    with pytest.raises(NodeInputError) as err:
        sample(sd, sampler_name="nope")
    assert err.value.input_name == "sampler_name"
    with pytest.raises(NodeInputError) as err:
        sample(sd, scheduler="nope")
    assert err.value.input_name == "scheduler"


def test_workflow_runs_through_the_engine(lg_engine, tiny_checkpoint):
    from latentgraph.testing import assert_success, txt2img

    engine = lg_engine()
    wf = txt2img(tiny_checkpoint.name, steps=3, width=64, height=64, sampler_name="dpmpp_2m", scheduler="karras")
    events: list = []
    result = assert_success(engine.run(wf.to_api(), sink=events.append))
    assert [e.value for e in events if type(e).__name__ == "NodeProgress"] == [1, 2, 3]
    again = engine.run(wf.to_api())
    assert wf.node("sampler").id in again.cached
    assert result.ok


def test_engine_interrupt_mid_sampling(lg_engine, tiny_checkpoint):
    from latentgraph.testing import txt2img

    engine = lg_engine()
    flag = InterruptFlag()

    def sink(event):
        if type(event).__name__ == "NodeProgress" and event.value == 2:
            flag.set()

    result = engine.run(txt2img(tiny_checkpoint.name, steps=5).to_api(), sink=sink, interrupt=flag)
    assert result.status == "interrupted"


def test_guidance_distilled_model_takes_cfg_as_an_embedding():
    """LCM-style UNets (time_cond_proj_dim) get cfg as an embedding: no negative pass at any cfg."""
    from diffusers import UNet2DConditionModel

    lcm = tiny_sd("sd1", seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lcm.model.unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=16, cross_attention_dim=32,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            time_cond_proj_dim=32,
        ).eval()
    calls: list[int] = []
    lcm.model.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    low, high = sample(lcm, sampler_name="lcm", cfg=2.0), sample(lcm, sampler_name="lcm", cfg=8.0)
    assert calls == [1] * 6
    assert not torch.allclose(low, high)
    combined = random_conditioning(seed=13) + random_conditioning(seed=14)
    assert torch.isfinite(sample(lcm, sampler_name="lcm", positive=combined)).all()
