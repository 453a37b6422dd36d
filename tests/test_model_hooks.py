"""Model hooks (nodes/sampling/hooks.py): patches change sampling through a copy of the MODEL."""

from __future__ import annotations

import pytest
import torch

from tiny_sd import make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph.nodes.sampling import hooks
from latentgraph.nodes.sampling.ksampler_nodes import KSampler


@pytest.fixture(scope="module")
def sd():
    return tiny_sd("sd1", seed=0)


def run(model, cfg=4.0):
    ctx, _ = make_ctx()
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    pos, neg = random_conditioning("sd1", seed=1), random_conditioning("sd1", seed=2)
    return KSampler().execute(ctx, model, 7, 3, cfg, "euler", "normal", pos, neg, latent, 1.0)[0]["samples"]


def test_a_cfg_function_that_is_cfg_changes_nothing_and_another_changes_the_picture(sd):
    plain = run(sd.model)
    same = hooks.with_hook(sd.model, hooks.CFG_FUNCTION, lambda a: a["uncond"] + (a["cond"] - a["uncond"]) * a["cond_scale"])
    torch.testing.assert_close(run(same), plain, atol=1e-5, rtol=1e-5)  # x − (x − x0) rounds
    cond_only = hooks.with_hook(sd.model, hooks.CFG_FUNCTION, lambda a: a["cond"])
    assert (run(cond_only) - plain).abs().max() > 1e-3
    assert not sd.model.options  # the base model is untouched


def test_post_cfg_hooks_stack_in_order_and_see_the_guided_estimate(sd):
    seen = []

    def first(args):
        seen.append("first")
        torch.testing.assert_close(args["denoised"], args["uncond_denoised"] + 4.0 * (args["cond_denoised"] - args["uncond_denoised"]))
        return args["denoised"] * 0.5

    def second(args):
        seen.append("second")
        return args["denoised"]

    model = hooks.with_hook(hooks.with_hook(sd.model, hooks.POST_CFG, first), hooks.POST_CFG, second)
    halved = run(model)
    assert seen[:2] == ["first", "second"] and len(seen) == 6  # 3 steps × 2 hooks
    assert (halved - run(sd.model)).abs().max() > 1e-3


def test_unet_wrapper_sees_every_call_and_can_change_it(sd):
    calls = []

    def wrapper(apply, args):
        calls.append((args["input"].shape[0], tuple(args["cond_or_uncond"])))
        return apply(args["input"], args["timestep"], **args["kwargs"])

    torch.testing.assert_close(run(hooks.with_hook(sd.model, hooks.UNET_WRAPPER, wrapper)), run(sd.model), atol=0, rtol=0)
    assert calls == [(2, (0, 1))] * 3  # positive and negative batched, one call per step

    zeroed = hooks.with_hook(sd.model, hooks.UNET_WRAPPER, lambda apply, args: apply(**{"x": args["input"] * 0, "timestep": args["timestep"]}, **args["kwargs"]))
    assert (run(zeroed) - run(sd.model)).abs().max() > 1e-3


def test_unknown_hooks_are_refused(sd):
    with pytest.raises(ValueError, match="unknown model hook"):
        hooks.with_hook(sd.model, "post_cfg_function", lambda a: a)
