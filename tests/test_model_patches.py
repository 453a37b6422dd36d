"""Model patches (nodes/models/patches_*.py): each has an effect, and a known answer where one exists."""

from __future__ import annotations

import math

import pytest
import torch

from tiny_sd import make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.nodes.models import patches_guidance as pg
from latentgraph.nodes.models import patches_sampling as ps
from latentgraph.nodes.models import patches_unet as pu
from latentgraph.nodes.sampling.ksampler_nodes import KSampler
from latentgraph.nodes.models.continuous_sampling import ContinuousModelSampling
from latentgraph.nodes.sampling.model_sampling import ZSNR_LAST_ALPHA_BAR


@pytest.fixture(scope="module")
def sd():
    return tiny_sd("sd1", seed=0)


def run(model, cfg=4.0, pos_seed=1, steps=3, sampler="euler", scheduler="normal"):
    ctx, _ = make_ctx()
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    pos, neg = random_conditioning("sd1", seed=pos_seed), random_conditioning("sd1", seed=2)
    return KSampler().execute(ctx, model, 7, steps, cfg, sampler, scheduler, pos, neg, latent, 1.0)[0]["samples"]


@pytest.fixture(scope="module")
def plain(sd):
    return run(sd.model)


def differs(a, b, by=1e-2):
    return (a - b).abs().max() > by


def untouched(sd):
    """The shared UNet carries no hooks or foreign processors after a patched run."""
    for m in sd.model.unet.modules():
        assert not m._forward_pre_hooks and not m._forward_hooks
    assert not sd.model.options and sd.model.sampling_override is None


# -- guidance -------------------------------------------------------------------------------------------
def test_rescale_cfg_multiplier_0_is_plain_cfg_and_0_7_is_not(sd, plain):
    (zero,) = pg.RescaleCFG().execute(None, sd.model, multiplier=0.0)
    torch.testing.assert_close(run(zero), plain, atol=1e-4, rtol=1e-4)
    (rescaled,) = pg.RescaleCFG().execute(None, sd.model, multiplier=0.7)
    assert differs(run(rescaled), plain)
    untouched(sd)


def test_cfg_zero_star_is_the_identity_when_the_negative_is_the_positive():
    x = torch.randn(2, 4, 8, 8)
    cond = torch.randn(2, 4, 8, 8)
    args = {"input": x, "cond_denoised": cond, "uncond_denoised": cond.clone(), "cond_scale": 5.0, "denoised": cond * 1.0}
    torch.testing.assert_close(pg.cfg_zero_star(args), cond, atol=1e-5, rtol=1e-5)
    # the optimal scale of a vector against itself times 2 is 2 (s* = <2u, u>/|u|^2)
    assert torch.allclose(pg.optimized_scale(2 * x, x), torch.full((2, 1, 1, 1), 2.0), atol=1e-5)


def test_cfg_zero_star_cfg_norm_mahiro_tcfg_change_the_picture(sd, plain):
    for node, kw in ((pg.CFGZeroStar, {}), (pg.CFGNorm, {"strength": 0.5}), (pg.Mahiro, {}), (pg.TCFG, {}),
                     (pg.FreSca, {"scale_low": 1.0, "scale_high": 1.25, "freq_cutoff": 2})):
        (patched,) = node().execute(None, sd.model, **kw)
        assert differs(run(patched), plain), node.spec.name
    untouched(sd)


def test_epsilon_scaling_1_and_fresca_1_1_change_nothing(sd, plain):
    (eps,) = pg.EpsilonScaling().execute(None, sd.model, scaling_factor=1.0)
    torch.testing.assert_close(run(eps), plain, atol=1e-5, rtol=1e-5)
    (fresca,) = pg.FreSca().execute(None, sd.model, scale_low=1.0, scale_high=1.0, freq_cutoff=20)
    torch.testing.assert_close(run(fresca), plain, atol=1e-3, rtol=1e-5)  # FFT round trip on |x| ~ 100
    (scaled,) = pg.EpsilonScaling().execute(None, sd.model, scaling_factor=1.1)
    assert differs(run(scaled), plain)


def test_epsilon_scaling_divides_the_guided_noise():
    x, den = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    out = pg.epsilon_scaling(2.0)({"input": x, "denoised": den})
    torch.testing.assert_close(x - out, (x - den) / 2)


def test_apg_without_projection_or_norm_is_comfyui_cfg_at_scale_plus_one():
    x, cond, uncond = torch.randn(3, 1, 4, 4, 4).unbind(0)
    args = {"cond_denoised": cond, "uncond_denoised": uncond, "cond_scale": 3.0, "input": x, "sigma": torch.tensor([2.0])}
    x0 = x - pg.apg(eta=1.0, norm_threshold=0.0, momentum=0.0)(args)
    torch.testing.assert_close(x0, uncond + 4.0 * (cond - uncond), atol=1e-5, rtol=1e-5)
    # eta 0 drops the guidance's component along the positive
    x0 = x - pg.apg(eta=0.0, norm_threshold=0.0, momentum=0.0)(args)
    par, orth = pg._project(cond - uncond, cond)
    torch.testing.assert_close(x0, uncond + 3.0 * orth + (cond - uncond), atol=1e-5, rtol=1e-5)


def test_tcfg_leaves_a_negative_parallel_to_the_positive_alone():
    x = torch.zeros(1, 4, 4, 4)
    cond = torch.randn(1, 4, 4, 4)
    out = pg.tangential_damping([cond, 2 * cond], x, torch.tensor([1.0]))
    torch.testing.assert_close(out[1], 2 * cond, atol=1e-5, rtol=1e-5)


# -- UNet patches ---------------------------------------------------------------------------------------
def test_freeu_with_b_1_and_s_1_changes_nothing_and_defaults_change_the_picture(sd, plain):
    for node in (pu.FreeU, pu.FreeU_V2):
        (same,) = node().execute(None, sd.model, b1=1.0, b2=1.0, s1=1.0, s2=1.0)
        torch.testing.assert_close(run(same), plain, atol=1e-3, rtol=1e-5)  # FFT round trip on |x| ~ 100
        (boosted,) = node().execute(None, sd.model)
        assert differs(run(boosted), plain)
    untouched(sd)
    torch.testing.assert_close(run(sd.model), plain, atol=0, rtol=0)  # nothing stuck to the shared UNet


def test_freeu_scales_the_backbone_half_and_filters_the_skip_as_comfyui():
    rule = pu.freeu_rule(32, b1=2.0, b2=3.0, s1=0.5, s2=0.25, v2=False)
    h, skip = torch.randn(1, 128, 4, 4), torch.randn(1, 64, 4, 4)
    h2, skip2 = rule(h, skip)
    torch.testing.assert_close(h2[:, :64], h[:, :64] * 2.0)
    torch.testing.assert_close(h2[:, 64:], h[:, 64:])
    # the DC term (mean) of the skip is in the scaled low-frequency square
    torch.testing.assert_close(skip2.mean(dim=(-2, -1)), skip.mean(dim=(-2, -1)) * 0.5, atol=1e-5, rtol=1e-4)
    h3, _ = rule(torch.randn(1, 64, 4, 4), skip)  # 2× base channels: b2
    same, _ = rule(torch.ones(1, 96, 4, 4), skip)  # neither: unchanged
    assert torch.equal(same, torch.ones(1, 96, 4, 4))


def test_cross_attention_out_0_removes_the_prompt_and_multipliers_of_1_return_the_model(sd, plain):
    (same,) = pu.UNetCrossAttentionMultiply().execute(None, sd.model)
    assert same is sd.model
    (mute,) = pu.UNetCrossAttentionMultiply().execute(None, sd.model, out=0.0)
    torch.testing.assert_close(run(mute, pos_seed=1), run(mute, pos_seed=5), atol=1e-6, rtol=1e-6)
    assert differs(run(sd.model, pos_seed=1), run(sd.model, pos_seed=5))
    (selfq,) = pu.UNetSelfAttentionMultiply().execute(None, sd.model, q=0.0)
    assert differs(run(selfq), plain)
    untouched(sd)


def test_clip_attention_multiply_changes_a_copy(sd):
    from latentgraph.nodes.components import TextEncoder
    from latentgraph.nodes.model_configs import load_clip_tokenizer

    clip = TextEncoder([load_clip_tokenizer()], sd.text_encoders, "sd1", torch.device("cpu"), torch.float32)
    before = {k: v.clone() for k, v in clip.encoders[0].state_dict().items()}
    (patched,) = pu.CLIPAttentionMultiply().execute(None, clip, q=1.0, k=1.0, v=0.5, out=2.0)
    enc = patched.encoders[0]
    sd_new = enc.state_dict()
    name = next(k for k in sd_new if k.endswith("layers.0.self_attn.v_proj.weight")).removesuffix("v_proj.weight")
    torch.testing.assert_close(sd_new[name + "v_proj.weight"], before[name + "v_proj.weight"] * 0.5)
    torch.testing.assert_close(sd_new[name + "out_proj.bias"], before[name + "out_proj.bias"] * 2.0)
    assert sd_new[name + "q_proj.weight"].data_ptr() == clip.encoders[0].state_dict()[name + "q_proj.weight"].data_ptr()
    for k, v in clip.encoders[0].state_dict().items():
        assert torch.equal(v, before[k])


def test_perturbed_attention_guidance_scale_0_is_the_model_and_3_changes_the_picture(sd, plain):
    (same,) = pu.PerturbedAttentionGuidance().execute(None, sd.model, scale=0.0)
    assert same is sd.model
    (pag,) = pu.PerturbedAttentionGuidance().execute(None, sd.model, scale=3.0)
    assert differs(run(pag), plain)
    untouched(sd)


def test_model_compute_dtype_default_is_the_model_bf16_is_close(sd, plain):
    (same,) = pu.ModelComputeDtype().execute(None, sd.model, dtype="default")
    assert same is sd.model
    (bf16,) = pu.ModelComputeDtype().execute(None, sd.model, dtype="bf16")
    assert bf16.unet.dtype == torch.bfloat16 and sd.model.unet.dtype == torch.float32
    out = run(bf16)
    assert (out - plain).abs().max() < 0.1 * plain.abs().max()


# -- sampling overrides ---------------------------------------------------------------------------------
def test_model_sampling_discrete_v_changes_the_denoised_formula_as_comfyui(sd):
    (eps,) = ps.ModelSamplingDiscrete().execute(None, sd.model, sampling="eps", zsnr=False)
    (v,) = ps.ModelSamplingDiscrete().execute(None, sd.model, sampling="v_prediction", zsnr=False)
    x, out, sigma = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4), torch.tensor([3.0, 0.5])
    s = sigma.view(-1, 1, 1, 1)
    torch.testing.assert_close(v.model_sampling.calculate_denoised(sigma, out, x), x / (s**2 + 1) - out * s / (s**2 + 1) ** 0.5)
    torch.testing.assert_close(eps.model_sampling.calculate_denoised(sigma, out, x), x - out * s)
    torch.testing.assert_close(eps.model_sampling.sigmas, sd.model.model_sampling.sigmas)
    assert sd.model.sampling_override is None


def test_zsnr_makes_the_last_sigma_comfyuis_4518(sd):
    (z,) = ps.ModelSamplingDiscrete().execute(None, sd.model, sampling="v_prediction", zsnr=True)
    assert math.isclose(float(z.model_sampling.sigma_max), math.sqrt((1 - ZSNR_LAST_ALPHA_BAR) / ZSNR_LAST_ALPHA_BAR), rel_tol=1e-4)


def test_x0_and_lcm_parameterisations():
    (x0,) = ps.ModelSamplingDiscrete().execute(None, tiny_sd("sd1").model, sampling="x0", zsnr=False)
    out, x = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    assert torch.equal(x0.model_sampling.calculate_denoised(torch.tensor([2.0]), out, x), out)
    base = tiny_sd("sd1").model
    (lcm,) = ps.ModelSamplingDiscrete().execute(None, base, sampling="lcm", zsnr=False)
    ms = lcm.model_sampling
    assert ms.num_timesteps == 50
    assert float(ms.sigma_max) == float(base.model_sampling.sigmas[999])
    assert int(ms.timestep(ms.sigmas[:1])) == 19 and int(ms.timestep(ms.sigmas[-1:])) == 999
    # at a large timestep c_skip ≈ 0 and c_out ≈ 1: x0 is the ε-formula's
    s = ms.sigmas[-1:]
    torch.testing.assert_close(ms.calculate_denoised(s, out, x), x - out * s.view(-1, 1, 1, 1), atol=1e-5, rtol=1e-4)


def test_continuous_edm_and_v_time_maps_and_sampling(sd):
    (edm,) = ps.ModelSamplingContinuousEDM().execute(None, sd.model, sampling="edm", sigma_max=80.0, sigma_min=0.002)
    ms = edm.model_sampling
    assert isinstance(ms, ContinuousModelSampling) and ms.sigma_data == 0.5
    sig = torch.tensor([0.5, 10.0])
    torch.testing.assert_close(ms.timestep(sig), 0.25 * sig.log())
    torch.testing.assert_close(ms.sigma(ms.timestep(sig)), sig)
    assert math.isclose(ms.percent_to_sigma(0.5), math.sqrt(80.0 * 0.002), rel_tol=1e-6)
    (v,) = ps.ModelSamplingContinuousV().execute(None, sd.model, sampling="v_prediction", sigma_max=500.0, sigma_min=0.03)
    torch.testing.assert_close(v.model_sampling.timestep(torch.tensor([1.0])), torch.tensor([0.5]))
    out = run(v, scheduler="karras")
    assert torch.isfinite(out).all()
    with pytest.raises(Exception, match="sigma_min"):
        ps.ModelSamplingContinuousEDM().execute(None, sd.model, sampling="eps", sigma_max=1.0, sigma_min=2.0)
