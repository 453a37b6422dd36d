"""The Hooks family on the tiny SD1 model: scheduled LoRA / checkpoint weights that ride on
conditionings, compared with runs whose answers are known without hooks (LoraLoader, a second
checkpoint, a two-stage KSamplerAdvanced, a hand-computed CFG)."""

from __future__ import annotations

import pytest
import torch

from latentgraph.errors import NodeInputError
from latentgraph.nodes.sampling.weight_hooks import HookGroup, HookKeyframe, HookKeyframes, KeyframeCursor, clip_schedule
from latentgraph.nodes.tiny_models import make_tiny_checkpoint, make_tiny_lora
from latentgraph.testing import WorkflowBuilder, assert_failed, assert_invalid
from sd_helpers import SHIPPED_TINY, Env

LORA = "hook.safetensors"
STEPS = 4
#: Two runs that differ only in float rounding (patch order, latent scaling) agree to this.
SAME = dict(rtol=1e-5, atol=1e-5)


def differs(a, b):
    """Far outside rounding: apart somewhere by 20× what SAME allows."""
    return float((a - b).abs().max()) > 20 * (SAME["atol"] + SAME["rtol"] * float(a.abs().max()))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = Env(tmp_path_factory.mktemp("hooks"))
    make_tiny_lora(env.folder("loras") / LORA, "sd1", seed=1)
    make_tiny_checkpoint(env.folder("checkpoints") / "other.safetensors", "sd1", seed=7)
    return env


@pytest.fixture(scope="module")
def base(env):
    model, clip, _vae = env.run("LoadCheckpoint", ckpt_name=SHIPPED_TINY)
    (pos,) = env.run("CLIPTextEncode", clip=clip, text="a red circle on a blue background")
    (neg,) = env.run("CLIPTextEncode", clip=clip, text="blurry")
    return model, clip, pos, neg


def latent():
    return {"samples": torch.zeros(1, 4, 8, 8)}


def ksampler(env, model, pos, neg, *, cfg=5.0, steps=STEPS):
    (out,) = env.run("KSampler", model=model, seed=3, steps=steps, cfg=cfg, sampler_name="euler", scheduler="normal",
                     positive=pos, negative=neg, latent_image=latent(), denoise=1.0)
    return out["samples"]


def advanced(env, model, pos, neg, start, end, samples, add_noise, leftover):
    (out,) = env.run("KSamplerAdvanced", model=model, add_noise=add_noise, noise_seed=3, steps=STEPS, cfg=5.0,
                     sampler_name="euler", scheduler="normal", positive=pos, negative=neg, latent_image={"samples": samples},
                     start_at_step=start, end_at_step=end, return_with_leftover_noise=leftover)
    return out["samples"]


def hooked_pair(env, pos, neg, hooks):
    return env.run("PairConditioningSetProperties", positive_NEW=pos, negative_NEW=neg, strength=1.0,
                   set_cond_area="default", hooks=hooks)


def test_hook_lora_on_both_sides_equals_lora_loader(env, base):
    model, _clip, pos, neg = base
    before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    (hooks,) = env.run("CreateHookLoraModelOnly", lora_name=LORA, strength_model=0.7)
    hpos, hneg = hooked_pair(env, pos, neg, hooks)
    hooked = ksampler(env, model, hpos, hneg)
    (lora_model,) = env.run("LoraLoaderModelOnly", model=model, lora_name=LORA, strength_model=0.7)
    torch.testing.assert_close(hooked, ksampler(env, lora_model, pos, neg), **SAME)
    assert differs(hooked, ksampler(env, model, pos, neg))  # the LoRA does change the picture
    # the base model's weights are exactly as before the hooked run
    assert all(torch.equal(v, model.unet.state_dict()[k]) for k, v in before.items())


def test_keyframe_switching_the_lora_off_halfway_equals_two_stage_sampling(env, base):
    model, _clip, pos, neg = base
    (kf,) = env.run("CreateHookKeyframe", strength_mult=1.0, start_percent=0.0)
    (kf,) = env.run("CreateHookKeyframe", strength_mult=0.0, start_percent=0.5, prev_hook_kf=kf)
    (hooks,) = env.run("CreateHookLoraModelOnly", lora_name=LORA, strength_model=1.0)
    (hooks,) = env.run("SetHookKeyframes", hooks=hooks, hook_kf=kf)
    hooked = ksampler(env, model, *hooked_pair(env, pos, neg, hooks))
    # σ(50%) lies between the normal schedule's 2nd and 3rd σ of 4 steps: steps 0–1 with the LoRA
    ms = model.model_sampling
    (sigmas,) = env.run("BasicScheduler", model=model, scheduler="normal", steps=STEPS, denoise=1.0)
    switch = next(i for i, s in enumerate(sigmas.tolist()) if s <= ms.percent_to_sigma(0.5))
    assert switch == 2
    (lora_model,) = env.run("LoraLoaderModelOnly", model=model, lora_name=LORA, strength_model=1.0)
    half = advanced(env, lora_model, pos, neg, 0, switch, torch.zeros(1, 4, 8, 8), "enable", "enable")
    two_stage = advanced(env, model, pos, neg, switch, 10000, half, "disable", "disable")
    torch.testing.assert_close(hooked, two_stage, **SAME)
    assert differs(hooked, ksampler(env, lora_model, pos, neg))


def test_hook_on_the_positive_only_is_cfg_of_the_two_models(env, base):
    model, _clip, pos, neg = base
    (hooks,) = env.run("CreateHookLoraModelOnly", lora_name=LORA, strength_model=1.0)
    (hpos,) = env.run("ConditioningSetProperties", cond_NEW=pos, strength=1.0, set_cond_area="default", hooks=hooks)
    one = ksampler(env, model, hpos, neg, cfg=4.0, steps=1)
    (lora_model,) = env.run("LoraLoaderModelOnly", model=model, lora_name=LORA, strength_model=1.0)
    # one Euler step to σ=0 lands on the denoised estimate; cfg 1 gives each side's own estimate
    cond = ksampler(env, lora_model, pos, neg, cfg=1.0, steps=1)
    uncond = ksampler(env, model, neg, neg, cfg=1.0, steps=1)
    torch.testing.assert_close(one, uncond + 4.0 * (cond - uncond), **SAME)
    both = ksampler(env, model, *hooked_pair(env, pos, neg, hooks), cfg=4.0, steps=1)
    assert differs(one, both) and differs(one, ksampler(env, model, pos, neg, cfg=4.0, steps=1))


def test_model_as_lora_at_strength_one_is_that_checkpoint(env, base):
    model, _clip, pos, neg = base
    other, _c, _v = env.run("LoadCheckpoint", ckpt_name="other.safetensors")
    (hooks,) = env.run("CreateHookModelAsLoraModelOnly", ckpt_name="other.safetensors", strength_model=1.0)
    hooked = ksampler(env, model, *hooked_pair(env, pos, neg, hooks))
    torch.testing.assert_close(hooked, ksampler(env, other, pos, neg), **SAME)
    assert differs(hooked, ksampler(env, model, pos, neg))


def test_clip_hooks_encode_as_lora_loader_does(env, base):
    model, clip, _pos, _neg = base
    text = "a yellow star"
    (hooks,) = env.run("CreateHookLora", lora_name=LORA, strength_model=1.0, strength_clip=0.6)
    _m, lora_clip = env.run("LoraLoader", model=model, clip=clip, lora_name=LORA, strength_model=0.0, strength_clip=0.6)
    (want,) = env.run("CLIPTextEncode", clip=lora_clip, text=text)
    (plain,) = env.run("CLIPTextEncode", clip=clip, text=text)
    assert differs(want[0][0], plain[0][0])

    (hclip,) = env.run("SetClipHooks", clip=clip, apply_to_conds=True, schedule_clip=False, hooks=hooks)
    (got,) = env.run("CLIPTextEncode", clip=hclip, text=text)
    assert len(got) == 1 and got[0][1]["hooks"] is hooks
    torch.testing.assert_close(got[0][0], want[0][0], rtol=0, atol=0)
    torch.testing.assert_close(got[0][1]["pooled_output"], want[0][1]["pooled_output"], rtol=0, atol=0)
    (hclip,) = env.run("SetClipHooks", clip=clip, apply_to_conds=False, schedule_clip=False, hooks=hooks)
    (got,) = env.run("CLIPTextEncode", clip=hclip, text=text)
    assert "hooks" not in got[0][1]

    # scheduled: one entry per keyframe range, each encoded at that keyframe's strength
    (kf,) = env.run("CreateHookKeyframe", strength_mult=1.0, start_percent=0.0)
    (kf,) = env.run("CreateHookKeyframe", strength_mult=0.0, start_percent=0.5, prev_hook_kf=kf)
    (keyed,) = env.run("SetHookKeyframes", hooks=hooks, hook_kf=kf)
    (hclip,) = env.run("SetClipHooks", clip=clip, apply_to_conds=True, schedule_clip=True, hooks=keyed)
    (got,) = env.run("CLIPTextEncode", clip=hclip, text=text)
    assert [(e[1]["clip_start_percent"], e[1]["clip_end_percent"]) for e in got] == [(0.0, 0.5), (0.5, 1.0)]
    torch.testing.assert_close(got[0][0], want[0][0], rtol=0, atol=0)
    torch.testing.assert_close(got[1][0], plain[0][0], rtol=0, atol=0)


def test_scheduled_clip_entries_apply_in_their_part_of_the_run(env, base):
    """Entries from schedule_clip (without hooks on the model) act like two timestep-ranged prompts."""
    model, clip, _pos, neg = base
    (hooks,) = env.run("CreateHookLora", lora_name=LORA, strength_model=1.0, strength_clip=1.0)
    (kf,) = env.run("CreateHookKeyframe", strength_mult=1.0, start_percent=0.0)
    (kf,) = env.run("CreateHookKeyframe", strength_mult=0.0, start_percent=0.5, prev_hook_kf=kf)
    (keyed,) = env.run("SetHookKeyframes", hooks=hooks, hook_kf=kf)
    (hclip,) = env.run("SetClipHooks", clip=clip, apply_to_conds=False, schedule_clip=True, hooks=keyed)
    (scheduled,) = env.run("CLIPTextEncode", clip=hclip, text="a green square")
    first = [(scheduled[0][0], {"pooled_output": scheduled[0][1]["pooled_output"], "start_percent": 0.0, "end_percent": 0.5})]
    second = [(scheduled[1][0], {"pooled_output": scheduled[1][1]["pooled_output"], "start_percent": 0.5, "end_percent": 1.0})]
    torch.testing.assert_close(ksampler(env, model, scheduled, neg), ksampler(env, model, first + second, neg), **SAME)


def test_default_conditioning_fills_only_what_the_others_leave(env, base):
    model, clip, pos, neg = base
    (other,) = env.run("CLIPTextEncode", clip=clip, text="a white star")
    # the positive covers the whole latent at strength 1: the default never applies
    dpos, dneg = env.run("PairConditioningSetDefaultCombine", positive=pos, negative=neg, positive_DEFAULT=other,
                         negative_DEFAULT=neg)
    torch.testing.assert_close(ksampler(env, model, dpos, dneg), ksampler(env, model, pos, neg), **SAME)
    # a positive only for the first half: the default takes the second half
    (early,) = env.run("ConditioningSetTimestepRange", conditioning=pos, start=0.0, end=0.5)
    (late,) = env.run("ConditioningSetTimestepRange", conditioning=other, start=0.5, end=1.0)
    (dpos,) = env.run("ConditioningSetDefaultCombine", cond=early, cond_DEFAULT=other)
    torch.testing.assert_close(ksampler(env, model, dpos, neg), ksampler(env, model, early + late, neg), **SAME)


def test_bad_inputs_name_the_input(env, base):
    model, _clip, pos, _neg = base
    with pytest.raises(NodeInputError) as err:
        env.run("ConditioningSetProperties", cond_NEW=pos, strength=1.0, set_cond_area="default", hooks=model)
    assert err.value.input_name == "hooks"
    with pytest.raises(NodeInputError) as err:
        env.run("CreateHookKeyframe", strength_mult=1.0, start_percent=1.5)
    assert err.value.input_name == "start_percent"
    with pytest.raises(NodeInputError) as err:
        env.run("SetHookKeyframes", hooks=HookGroup(), hook_kf=[0.5])
    assert err.value.input_name == "hook_kf"
    with pytest.raises(NodeInputError) as err:
        env.run("CreateHookKeyframesFromFloats", floats_strength="x", start_percent=0.0, end_percent=1.0)
    assert err.value.input_name == "floats_strength"


def test_bad_hooks_in_a_workflow_are_reported_at_the_node(lg_engine, lg_settings, tiny_checkpoint):
    engine = lg_engine()
    wf = WorkflowBuilder()
    ckpt = wf.add("CheckpointLoaderSimple", ckpt_name=tiny_checkpoint.name)
    kf = wf.add("CreateHookKeyframe", strength_mult=1.0, start_percent=1.5)
    hooks = wf.add("CreateHookLoraModelOnly", lora_name="tiny-sd1-lora.safetensors", strength_model=1.0)
    wrong = wf.add("SetHookKeyframes", hooks=ckpt[0], hook_kf=kf[0])
    good = wf.add("SetHookKeyframes", hooks=hooks[0], hook_kf=kf[0])
    wf.add("PreviewAny", source=wrong[0])
    wf.add("PreviewAny", source=good[0])
    assert_invalid(engine, wf, node_id=kf.id, error_type="value_bigger_than_max")
    assert_invalid(engine, wf, node_id=wrong.id, error_type="return_type_mismatch")

    # a hook LoRA for another architecture stops the sampler, naming it and its model input
    make_tiny_lora(lg_settings.model_dirs("loras")[0] / "xl.safetensors", "sdxl", seed=1, lora_format="kohya_ldm")
    wf = WorkflowBuilder()
    ckpt = wf.add("CheckpointLoaderSimple", ckpt_name=tiny_checkpoint.name)
    hooks = wf.add("CreateHookLoraModelOnly", lora_name="xl.safetensors", strength_model=1.0)
    pos = wf.add("CLIPTextEncode", clip=ckpt[1], text="a")
    hpos = wf.add("ConditioningSetProperties", cond_NEW=pos[0], strength=1.0, set_cond_area="default", hooks=hooks[0])
    empty = wf.add("EmptyLatentImage", width=16, height=16, batch_size=1)
    sampler = wf.add("KSampler", model=ckpt[0], seed=1, steps=1, cfg=1.0, sampler_name="euler", scheduler="normal",
                     positive=hpos[0], negative=pos[0], latent_image=empty[0], denoise=1.0)
    wf.add("PreviewAny", source=sampler[0])
    result = engine.run(wf.to_api())
    assert_failed(result, node_id=sampler.id, class_type="KSampler", input_name="model", match="xl.safetensors")


# -- the pure parts -------------------------------------------------------------------------------------
def test_keyframe_cursor_honours_guarantee_steps():
    def percent_to_sigma(p):
        return 999999999.9 if p <= 0 else 10.0 * (1 - p)

    frames = HookKeyframes().add(HookKeyframe(1.0, 0.0)).add(HookKeyframe(0.5, 0.2, guarantee_steps=2)).add(HookKeyframe(0.0, 0.3))
    cursor = KeyframeCursor(frames, percent_to_sigma)
    # σ 10, 9, 8 (20 %) and 7 (30 %), 6: the 0.5 keyframe holds two evaluations although 30 % is reached
    assert [cursor.strength(s) for s in (10.0, 9.0, 8.0, 8.0, 7.0, 6.0)] == [1.0, 1.0, 0.5, 0.5, 0.5, 0.0]


def test_clip_schedule_merges_equal_strengths_and_starts_at_zero():
    frames = HookKeyframes().add(HookKeyframe(1.0, 0.25)).add(HookKeyframe(1.0, 0.5)).add(HookKeyframe(0.2, 0.75))
    from latentgraph.nodes.sampling.weight_hooks import WeightHook

    hook = WeightHook(source=None, strength_model=1.0, strength_clip=1.0, uid="a", keyframes=frames)  # type: ignore[arg-type]
    group = HookGroup((hook,))
    # before the first keyframe the strength is 1; equal consecutive strengths make one range
    assert clip_schedule(group) == [((0.0, 0.25), [1.0]), ((0.25, 0.75), [1.0]), ((0.75, 1.0), [0.2])]


def test_set_props_write_comfyuis_keys(env, base):
    _model, _clip, pos, neg = base
    (hooks,) = env.run("CreateHookLoraModelOnly", lora_name=LORA, strength_model=1.0)
    (other,) = env.run("CreateHookLoraModelOnly", lora_name=LORA, strength_model=0.5)
    (rng, before, after) = env.run("ConditioningTimestepsRange", start_percent=0.2, end_percent=0.7)
    assert (tuple(before), tuple(after)) == ((0.0, 0.2), (0.7, 1.0))
    mask = torch.ones(8, 8)
    (first,) = env.run("ConditioningSetProperties", cond_NEW=pos, strength=0.4, set_cond_area="mask bounds",
                       mask=mask, hooks=hooks, timesteps=rng)
    extras = first[0][1]
    assert extras["mask"].shape == (1, 8, 8) and extras["set_area_to_bounds"] is True
    assert (extras["mask_strength"], extras["start_percent"], extras["end_percent"]) == (0.4, 0.2, 0.7)
    assert "strength" not in extras  # ComfyUI's strength here is the mask's
    # hooks add to those already there; a plain (start, end) tuple is a TIMESTEPS_RANGE too
    (both,) = env.run("ConditioningSetPropertiesAndCombine", cond=neg, cond_NEW=first, strength=1.0,
                      set_cond_area="default", hooks=other, timesteps=(0.1, 0.9))
    assert len(both) == 2 and "hooks" not in both[0][1] and both[0][1] == neg[0][1]
    assert both[1][1]["hooks"].hooks == hooks.hooks + other.hooks and both[1][1]["start_percent"] == 0.1
    (combined,) = env.run("CombineHooks4", hooks_A=hooks, hooks_C=hooks, hooks_D=other)
    assert combined.hooks == hooks.hooks + other.hooks and env.run("CombineHooks2") == (None,)
    with pytest.raises(NodeInputError) as err:
        env.run("ConditioningSetProperties", cond_NEW=pos, strength=1.0, set_cond_area="default", timesteps=(0.1, 2.0))
    assert err.value.input_name == "timesteps"


def test_hooked_workflow_under_a_device_budget_gives_the_same_picture(tmp_path):
    """The example workflow (LoRA hook on CLIP and prompts, off at 50 %) with model weights
    streamed within a budget smaller than the UNet: the picture is bit-identical."""
    import json
    from pathlib import Path

    import numpy as np

    from latentgraph.settings import Settings
    from latentgraph.testing import make_engine, output_images

    wf = json.loads((Path(__file__).parent.parent / "workflows" / "hooks_scheduled_lora.json").read_text())
    wf["3"]["inputs"]["steps"] = 3
    pictures = []
    for budget in (None, 3_000_000):
        settings = Settings.from_env(tmp_path / str(budget), environ={}, device="cpu", device_budget=budget)
        result = make_engine(settings).run(wf)
        assert result.status == "success", result.failure
        pictures.append([np.asarray(im) for im in output_images(result, settings)])
    assert all(np.array_equal(a, b) for a, b in zip(*pictures))
