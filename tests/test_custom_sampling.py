"""ComfyUI's custom sampling nodes: schedules equal ComfyUI's numbers, the parts assembled give
what KSampler gives, the guiders reduce to CFG where their maths says so, bad inputs are named."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from analytic import GaussianDenoiser
from tiny_sd import make_ctx, random_conditioning, single_thread, tiny_sd  # noqa: F401 (autouse fixture)

from latentgraph import hookimpl
from latentgraph.errors import NodeInputError
from latentgraph.nodes.sampling import custom_nodes as cn
from latentgraph.nodes.sampling import guider_nodes as gn
from latentgraph.nodes.sampling import sigma_nodes as sn
from latentgraph.nodes.sampling.guidance import CFG
from latentgraph.nodes.sampling.ksampler_nodes import KSampler
from latentgraph.nodes.sampling.run import process_latent_in, process_latent_out
from latentgraph.nodes.sampling.samplers import SamplerDef

DATA = Path(__file__).parent / "data" / "comfyui"
SCHEDULES = json.loads((DATA / "schedules.json").read_text()) if (DATA / "schedules.json").exists() else None
NODE_BY_NAME = {n.spec.name: n for n in cn.NODES}


@pytest.fixture(scope="module")
def sd():
    return tiny_sd("sd1", seed=0)


@pytest.fixture(scope="module")
def ctx():
    return make_ctx(class_type="SamplerCustom")[0]


@pytest.fixture
def unet_calls(sd):
    calls: list[int] = []
    handle = sd.model.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    yield calls
    handle.remove()


def run(ctx, class_type, **inputs):
    return NODE_BY_NAME[class_type]().execute(ctx, **inputs)


POS, NEG, EMPTY = (random_conditioning("sd1", seed=s) for s in (11, 12, 13))


def clean_latent(seed=3):
    return {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed))}


def sigmas_for(sd, ctx, scheduler="normal", steps=4, denoise=1.0):
    return run(ctx, "BasicScheduler", model=sd.model, scheduler=scheduler, steps=steps, denoise=denoise)[0]


def advanced(ctx, guider, sampler, sigmas, latent, seed=7, noise=True):
    noise_value = run(ctx, "RandomNoise", noise_seed=seed)[0] if noise else run(ctx, "DisableNoise")[0]
    return run(ctx, "SamplerCustomAdvanced", noise=noise_value, guider=guider, sampler=sampler, sigmas=sigmas,
               latent_image=latent)


def cfg_guider(sd, ctx, cfg=5.0, positive=POS, negative=NEG):
    return run(ctx, "CFGGuider", model=sd.model, positive=positive, negative=negative, cfg=cfg)[0]


def euler(ctx, name="euler"):
    return run(ctx, "KSamplerSelect", sampler_name=name)[0]


# -- registration ---------------------------------------------------------------------------------------
class _Shim:
    """Registers the module's types and nodes as nodes/builtin.py will (until it does)."""

    @hookimpl
    def register_types(self):
        return cn.TYPES

    @hookimpl
    def register_nodes(self):
        return cn.NODES


def test_types_and_nodes_register_and_addnoise_keeps_its_old_form():
    from latentgraph.plugins import load_plugins

    host = load_plugins(entry_points=False)
    if "SamplerCustom" not in host.registry.node_types:
        host = load_plugins(entry_points=False, extra=[("custom_sampling", _Shim())])
    registry = host.registry
    assert not [info.errors for info in host.plugins.values() if getattr(info, "errors", None)]
    assert {"SIGMAS", "SAMPLER", "GUIDER", "NOISE"} <= set(registry.types)
    assert set(NODE_BY_NAME) <= set(registry.node_types)
    assert registry.get("AddNoise", ["model", "noise", "sigmas", "latent_image"]) is cn.AddNoise
    assert registry.get("AddNoise", ["model", "samples", "noise_seed", "steps"]).spec.name == "ForwardNoise"


def test_comfyui_input_contracts():
    spec = cn.SamplerCustom.spec
    assert [i.name for i in spec.inputs] == ["model", "add_noise", "noise_seed", "cfg", "positive", "negative",
                                             "sampler", "sigmas", "latent_image"]
    assert [(o.type, o.name) for o in spec.outputs] == [("LATENT", "output"), ("LATENT", "denoised_output")]
    assert [i.name for i in cn.SamplerCustomAdvanced.spec.inputs] == ["noise", "guider", "sampler", "sigmas", "latent_image"]
    assert [i.name for i in cn.AddNoise.spec.inputs] == ["model", "noise", "sigmas", "latent_image"]
    dual = gn.DualCFGGuider.spec.input_by_name
    assert list(dual) == ["model", "cond1", "cond2", "negative", "cfg_conds", "cfg_cond2_negative", "style"]
    assert dual["style"].choices == ("regular", "nested")
    gits = sn.GITSScheduler.spec.input_by_name
    assert (gits["coeff"].default, gits["coeff"].min, gits["coeff"].max, gits["coeff"].step) == (1.2, 0.8, 1.5, 0.05)
    assert [o.name for o in sn.SplitSigmas.spec.outputs] == ["high_sigmas", "low_sigmas"]


# -- schedules against ComfyUI's recorded numbers ------------------------------------------------------
def _cases():
    if SCHEDULES is None:
        return []
    return [(name, i) for name, cases in SCHEDULES["nodes"].items() if not name.startswith("_") for i in range(len(cases))]


def assert_same_sigmas(ours, reference):
    ours = torch.as_tensor(ours, dtype=torch.float64)
    reference = torch.tensor(reference, dtype=torch.float64)
    assert ours.shape == reference.shape
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=0.0)


@pytest.mark.skipif(SCHEDULES is None, reason="tests/data/comfyui/schedules.json not recorded yet")
@pytest.mark.parametrize("name,index", _cases(), ids=lambda v: str(v))
def test_scheduler_and_sigma_nodes_equal_comfyui(sd, ctx, name, index):
    case = SCHEDULES["nodes"][name][index]
    inputs = dict(case["args"])
    if "model" in NODE_BY_NAME[name].spec.input_by_name:
        inputs["model"] = sd.model
    if "input" in case:
        inputs["sigmas"] = torch.FloatTensor(SCHEDULES["nodes"]["_input_sigmas"][case["input"]])
    outputs = run(ctx, name, **inputs)
    assert len(outputs) == len(case["outputs"])
    for ours, reference in zip(outputs, case["outputs"]):
        if isinstance(reference, list):
            assert_same_sigmas(ours, reference)
        else:
            assert math.isclose(ours, reference, rel_tol=1e-6)


def test_align_your_steps_and_gits_other_step_counts_interpolate_in_log_sigma(ctx):
    (ten,) = run(ctx, "AlignYourStepsScheduler", model_type="SD1", steps=10, denoise=1.0)
    (twenty,) = run(ctx, "AlignYourStepsScheduler", model_type="SD1", steps=20, denoise=1.0)
    torch.testing.assert_close(twenty[:-1:2], ten[:-1])  # every other point of 20 is a point of 10
    (gits,) = run(ctx, "GITSScheduler", coeff=1.2, steps=30, denoise=1.0)
    assert len(gits) == 31 and gits[-1] == 0 and bool((gits[:-1].diff() < 0).all())


# -- SamplerCustom(Advanced) equal KSampler --------------------------------------------------------------
@pytest.mark.parametrize("sampler_name,denoise", [("euler", 1.0), ("euler_ancestral", 1.0), ("dpmpp_2m", 0.6)])
def test_sampler_custom_equals_ksampler(sd, ctx, sampler_name, denoise):
    latent = clean_latent() if denoise < 1 else {"samples": torch.zeros(1, 4, 8, 8)}
    (expected,) = KSampler().execute(ctx, sd.model, 9, 4, 5.0, sampler_name, "karras", POS, NEG, latent, denoise)
    sigmas = sigmas_for(sd, ctx, "karras", 4, denoise)
    out, denoised = run(ctx, "SamplerCustom", model=sd.model, add_noise=True, noise_seed=9, cfg=5.0, positive=POS,
                        negative=NEG, sampler=euler(ctx, sampler_name), sigmas=sigmas, latent_image=latent)
    assert torch.equal(out["samples"], expected["samples"])
    assert denoised["samples"].shape == out["samples"].shape


def test_sampler_custom_advanced_with_cfg_guider_equals_sampler_custom(sd, ctx):
    sigmas = sigmas_for(sd, ctx)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    plain = run(ctx, "SamplerCustom", model=sd.model, add_noise=True, noise_seed=7, cfg=5.0, positive=POS, negative=NEG,
                sampler=euler(ctx, "euler_ancestral"), sigmas=sigmas, latent_image=latent)
    parts = advanced(ctx, cfg_guider(sd, ctx), euler(ctx, "euler_ancestral"), sigmas, latent, seed=7)
    for a, b in zip(plain, parts):
        assert torch.equal(a["samples"], b["samples"])


def test_disable_noise_samples_a_latent_that_is_already_noisy(sd, ctx):
    """NOISE convention: a latent noised by hand to x0 + σ₀·ε, sampled without noise, is the run
    that draws ε itself."""
    sigmas = sigmas_for(sd, ctx, denoise=0.5)
    latent = clean_latent()
    eps = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    noisy = process_latent_out(sd.model, process_latent_in(sd.model, latent["samples"]) + sigmas[0] * eps)
    guider = cfg_guider(sd, ctx)
    without, _ = advanced(ctx, guider, euler(ctx), sigmas, {"samples": noisy}, noise=False)
    drawn, _ = advanced(ctx, guider, euler(ctx), sigmas, latent, seed=7)
    torch.testing.assert_close(without["samples"], drawn["samples"], rtol=1e-5, atol=1e-5)
    clean, _ = advanced(ctx, guider, euler(ctx), sigmas, latent, noise=False)
    assert (clean["samples"] - drawn["samples"]).abs().max() > 0.01


def test_split_sigmas_two_stages_equal_one_run(sd, ctx):
    sigmas = sigmas_for(sd, ctx, steps=6)
    high, low = run(ctx, "SplitSigmas", sigmas=sigmas, step=2)
    assert high[-1] == low[0] and len(high) + len(low) == len(sigmas) + 1
    guider, latent = cfg_guider(sd, ctx), {"samples": torch.zeros(1, 4, 8, 8)}
    first, first_x0 = advanced(ctx, guider, euler(ctx), high, latent, seed=5)
    assert (first["samples"] - first_x0["samples"]).abs().max() > 0.1  # still noisy vs its x0 estimate
    second, _ = advanced(ctx, guider, euler(ctx), low, first, noise=False)
    whole, _ = advanced(ctx, guider, euler(ctx), sigmas, latent, seed=5)
    torch.testing.assert_close(second["samples"], whole["samples"], rtol=1e-5, atol=1e-5)


def test_add_noise_then_no_noise_equals_noise_in_the_sampler(sd, ctx):
    sigmas = sigmas_for(sd, ctx, denoise=0.5)  # σ₀ below the model's top: noise is scaled by σ₀ both ways
    latent = clean_latent()
    (noisy,) = run(ctx, "AddNoise", model=sd.model, noise=run(ctx, "RandomNoise", noise_seed=4)[0], sigmas=sigmas,
                   latent_image=latent)
    common = dict(model=sd.model, noise_seed=4, cfg=5.0, positive=POS, negative=NEG, sampler=euler(ctx), sigmas=sigmas)
    after_add, _ = run(ctx, "SamplerCustom", add_noise=False, latent_image=noisy, **common)
    in_sampler, _ = run(ctx, "SamplerCustom", add_noise=True, latent_image=latent, **common)
    torch.testing.assert_close(after_add["samples"], in_sampler["samples"], rtol=1e-4, atol=1e-4)


def test_empty_sigmas_leave_the_latent_as_comfyui_does(sd, ctx):
    (empty,) = run(ctx, "BasicScheduler", model=sd.model, scheduler="normal", steps=4, denoise=0.0)
    assert empty.numel() == 0
    latent = clean_latent()
    out, denoised = advanced(ctx, cfg_guider(sd, ctx), euler(ctx), empty, latent)
    assert torch.equal(out["samples"], latent["samples"]) and torch.equal(denoised["samples"], latent["samples"])
    (same,) = run(ctx, "AddNoise", model=sd.model, noise=run(ctx, "RandomNoise", noise_seed=1)[0], sigmas=empty,
                  latent_image=latent)
    assert same is latent


# -- guiders --------------------------------------------------------------------------------------------
def dual(sd, ctx, cfg_conds, cfg_cond2_negative, style="regular", cond2=NEG, negative=EMPTY):
    return run(ctx, "DualCFGGuider", model=sd.model, cond1=POS, cond2=cond2, negative=negative, cfg_conds=cfg_conds,
               cfg_cond2_negative=cfg_cond2_negative, style=style)[0]


def sample_with(ctx, guider, sd):
    return advanced(ctx, guider, euler(ctx), sigmas_for(sd, ctx, steps=3), {"samples": torch.zeros(1, 4, 8, 8)})[0]["samples"]


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_dual_cfg_reduces_to_cfg(sd, ctx, unet_calls):
    cfg = sample_with(ctx, cfg_guider(sd, ctx, cfg=4.0, negative=EMPTY), sd)
    unet_calls.clear()
    # cond2 = cond1: the cond1 − cond2 term vanishes, cond1 is guided from the negative by cfg2.
    close(sample_with(ctx, dual(sd, ctx, 3.0, 4.0, cond2=POS), sd), cfg)
    assert unet_calls == [3, 3, 3]
    # equal scales: neg + c(cond2 − neg) + c(cond1 − cond2) = neg + c(cond1 − neg)
    close(sample_with(ctx, dual(sd, ctx, 4.0, 4.0), sd), cfg)
    # nested with cfg_conds 1: the inner CFG is cond1 itself
    close(sample_with(ctx, dual(sd, ctx, 1.0, 4.0, style="nested"), sd), cfg)
    unet_calls.clear()
    # both scales 1: only cond1 is evaluated, as BasicGuider
    basic = sample_with(ctx, run(ctx, "BasicGuider", model=sd.model, conditioning=POS)[0], sd)
    assert torch.equal(sample_with(ctx, dual(sd, ctx, 1.0, 1.0), sd), basic)
    assert unet_calls == [1, 1, 1, 1, 1, 1]


def test_dual_cfg_second_scale_matters(sd, ctx):
    assert (sample_with(ctx, dual(sd, ctx, 3.0, 4.0), sd) - sample_with(ctx, dual(sd, ctx, 3.0, 1.0), sd)).abs().max() > 1e-3


def test_perp_neg_reduces_to_cfg_against_the_empty_prompt(sd, ctx, unet_calls):
    cfg = sample_with(ctx, cfg_guider(sd, ctx, cfg=4.0, negative=EMPTY), sd)

    def perp(negative, neg_scale):
        return run(ctx, "PerpNegGuider", model=sd.model, positive=POS, negative=negative, empty_conditioning=EMPTY,
                   cfg=4.0, neg_scale=neg_scale)[0]

    unet_calls.clear()
    close(sample_with(ctx, perp(NEG, 0.0), sd), cfg)  # neg_scale 0: the negative is skipped
    assert unet_calls == [2, 2, 2]
    close(sample_with(ctx, perp(EMPTY, 1.0), sd), cfg)  # negative = empty: nothing to remove
    assert (sample_with(ctx, perp(NEG, 1.0), sd) - cfg).abs().max() > 1e-3


def test_perp_neg_removes_only_the_perpendicular_part():
    pos, empty = torch.randn(1, 4, 4, 4), torch.zeros(1, 4, 4, 4)
    x, sigma = torch.zeros(1, 4, 4, 4), torch.ones(1)
    rule = gn.PerpNeg(cfg=3.0, neg_scale=2.0)
    parallel = rule.combine([pos, 0.5 * pos, empty], x, sigma).denoised
    torch.testing.assert_close(parallel, CFG(3.0).combine([pos, empty], x, sigma).denoised)  # overlap kept
    ortho = torch.randn(1, 4, 4, 4)
    ortho -= (ortho * pos).sum() / pos.norm() ** 2 * pos
    pushed = rule.combine([pos, ortho, empty], x, sigma).denoised
    torch.testing.assert_close(pushed, 3.0 * (pos - 2.0 * ortho))


def test_cfg_pp_samplers_get_every_conditioning_from_custom_rules(sd, ctx, unet_calls):
    sampler = euler(ctx, "euler_cfg_pp")
    advanced(ctx, dual(sd, ctx, 1.0, 1.0), sampler, sigmas_for(sd, ctx, steps=2), {"samples": torch.zeros(1, 4, 8, 8)})
    assert unet_calls == [3, 3]


# -- SAMPLER nodes --------------------------------------------------------------------------------------
def test_sampler_nodes_set_comfyui_options_on_the_registered_sampler(sd, ctx):
    made = {}
    for node in cn.NODES:
        if node.spec.category.endswith("/samplers") and node is not cn.KSamplerSelect:
            inputs = {i.name: (sd.model if i.type == "MODEL" else i.default) for i in node.spec.inputs}
            (made[node.spec.name],) = node().execute(ctx, **inputs)
    assert all(isinstance(s, SamplerDef) for s in made.values())
    assert made["SamplerDPMPP_3M_SDE"].name == "dpmpp_3m_sde_gpu"
    assert {"solver_type": "midpoint", "eta": 1.0, "s_noise": 1.0}.items() <= dict(made["SamplerDPMPP_2M_SDE"].options).items()
    assert made["SamplerLMS"].options["order"] == 4
    assert made["SamplerER_SDE"].options["solver_type"] == "ER-SDE"
    assert made["SamplerSEEDS2"].name == "seeds_2" and made["SamplerSEEDS2"].options["r"] == 0.5
    assert made["SamplerDPMAdaptative"].options["accept_safety"] == 0.81
    assert callable(made["SamplerSASolver"].options.get("tau_func"))
    (lms,) = run(ctx, "SamplerLMS", order=2)
    assert lms.options["order"] == 2 and ctx.registry.samplers["lms"].options["order"] == 4  # a copy


def _sampler_node_cases():
    path = DATA / "samplers.json"
    if not path.exists():
        return []
    cases = json.loads(path.read_text())["cases"]
    return [name for name, case in cases.items() if case.get("node")]


@pytest.mark.parametrize("case_name", _sampler_node_cases())
def test_sampler_nodes_reproduce_comfyui_trajectories(sd, ctx, case_name):
    """ComfyUI's Sampler* node with these inputs, run on the exact Gaussian denoiser, ends where
    ours does: the node passes the options the way the solver reads them."""
    case = json.loads((DATA / "samplers.json").read_text())["cases"][case_name]
    tensors = load_file(DATA / "samplers.safetensors")
    node = NODE_BY_NAME[case["node"]]
    inputs = dict(case["node_args"])
    if "model" in node.spec.input_by_name:
        inputs["model"] = sd.model
    (sampler,) = node().execute(ctx, **inputs)
    sigmas = tensors[case["tensors"]["sigmas"]].double()
    noise = tensors[case["tensors"]["noise"]].double()
    latent = tensors[case["tensors"]["latent_image"]].double()
    denoiser = GaussianDenoiser(tuple(noise.shape), cfg=case["cfg"], dtype=torch.float64)
    ms = denoiser.model_sampling
    x = ms.noise_scaling(sigmas[0], noise, latent, ms.is_max_sigma(float(sigmas[0])))
    try:
        out = sampler.sample(denoiser, x, sigmas, seed=case["seed"])
    except NotImplementedError as exc:
        pytest.xfail(f"{sampler.name} is not written yet: {exc}")
    torch.testing.assert_close(out, tensors[case["tensors"]["samples"]].double(), rtol=1e-5, atol=1e-5)


# -- bad inputs -----------------------------------------------------------------------------------------
def input_error(fn, *args, **kwargs) -> str:
    with pytest.raises(NodeInputError) as info:
        fn(*args, **kwargs)
    return info.value.input_name


def test_bad_inputs_name_the_input(sd, ctx):
    guider, sampler, sigmas = cfg_guider(sd, ctx), euler(ctx), sigmas_for(sd, ctx)
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    noise = run(ctx, "RandomNoise", noise_seed=1)[0]
    go = dict(noise=noise, guider=guider, sampler=sampler, sigmas=sigmas, latent_image=latent)
    assert input_error(run, ctx, "SamplerCustomAdvanced", **{**go, "sigmas": [1.0, 0.0]}) == "sigmas"
    assert input_error(run, ctx, "SamplerCustomAdvanced", **{**go, "sigmas": sigmas[None]}) == "sigmas"
    assert input_error(run, ctx, "SamplerCustomAdvanced", **{**go, "sigmas": torch.tensor([1.0, math.nan])}) == "sigmas"
    assert input_error(run, ctx, "SamplerCustomAdvanced", **{**go, "sampler": "euler"}) == "sampler"
    assert input_error(run, ctx, "SamplerCustomAdvanced", **{**go, "guider": sd.model}) == "guider"
    assert input_error(run, ctx, "SamplerCustomAdvanced", **{**go, "noise": 42}) == "noise"
    assert input_error(run, ctx, "SamplerCustomAdvanced", **{**go, "latent_image": torch.zeros(1, 4, 8, 8)}) == "latent_image"
    assert input_error(run, ctx, "SetFirstSigma", sigmas=torch.FloatTensor([]), sigma=3.0) == "sigmas"
    assert input_error(run, ctx, "SplitSigmas", sigmas="14.6, 0", step=1) == "sigmas"
    assert input_error(run, ctx, "ManualSigmas", sigmas="none, please") == "sigmas"
    assert input_error(run, ctx, "GITSScheduler", coeff=0.83, steps=10, denoise=1.0) == "coeff"
    assert input_error(run, ctx, "BasicScheduler", model=sd.model, scheduler="nope", steps=3, denoise=1.0) == "scheduler"
    assert input_error(run, ctx, "KSamplerSelect", sampler_name="nope") == "sampler_name"
    sdxl_cond = random_conditioning("sdxl", seed=1)
    assert input_error(run, ctx, "DualCFGGuider", model=sd.model, cond1=POS, cond2=sdxl_cond, negative=NEG,
                       cfg_conds=2.0, cfg_cond2_negative=2.0, style="regular") == "cond2"
    assert input_error(run, ctx, "CFGGuider", model="model", positive=POS, negative=NEG, cfg=2.0) == "model"


def test_manual_sigmas_reads_numbers_as_written(ctx):
    (sigmas,) = run(ctx, "ManualSigmas", sigmas="14.6, 7 3.5,1e-1, .05 0")
    assert sigmas.tolist() == pytest.approx([14.6, 7.0, 3.5, 0.1, 0.05, 0.0])
