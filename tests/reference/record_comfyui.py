"""Record ComfyUI's own schedules and sampler trajectories as reference data for latentgraph tests.

This script is latentgraph's own code (MIT). It contains no ComfyUI code: it *imports* ComfyUI
(GPL) at run time from a source checkout given with ``--comfyui`` and calls its scheduler, model
sampling and sampler functions, writing plain numbers to ``--out``:

* ``schedules.json``  – ``comfy.samplers.calculate_sigmas`` for every scheduler and 1..50 steps,
  the sigmas ``comfy.samplers.KSampler`` would use (denoise, discard-penultimate samplers), the SD1
  ``ModelSamplingDiscrete`` arrays (plain, zero-terminal-SNR, v-prediction) and the custom scheduler
  / sigma nodes (``comfy_extras/nodes_custom_sampler.py``, ``nodes_align_your_steps.py``,
  ``nodes_gits.py``) called through their V3 ``execute`` classmethods.
* ``samplers.safetensors`` + ``samplers.json`` – a trajectory for every name in
  ``comfy.samplers.SAMPLER_NAMES`` (plus schedule / img2img / inpaint / cfg-1 / float32 /
  Sampler-node variants), each run through ``comfy.samplers.sampler_object(name).sample(...)``
  (``KSAMPLER.sample``) with ComfyUI's real ``CFGGuider.predict_noise`` → ``sampling_function`` →
  ``calc_cond_batch`` → ``cfg_function`` path. Only the UNet is replaced: the fake model's
  ``apply_model`` is the exact Gaussian-data denoiser of ``tests/analytic.py``
  (std 0.5, cond mean 0.5·sin(k), uncond mean −0.2·cos(k), cfg 2.0).

ComfyUI version used: 0.8.0, upstream commit 3cd7b32f1b7e7e90395cefe7d9f9b1f89276d8ce
(2026-01-07). Get that source from a snapshot of the ComfyUI repository (github.com/comfyanonymous
/ComfyUI, now Comfy-Org/ComfyUI, or a fork snapshot that contains this commit):
``git clone https://github.com/Comfy-Org/ComfyUI && git -C ComfyUI checkout 3cd7b32f1b7e``.

Environment (never the system python, nothing of this is a latentgraph dependency)::

    python -m venv --system-site-packages /tmp/comfy-venv   # torch 2.13.0, scipy, torchsde, numpy, ...
    /tmp/comfy-venv/bin/pip install einops psutil pyyaml av
    /tmp/comfy-venv/bin/python tests/reference/record_comfyui.py --comfyui /tmp/comfyui-ref --out tests/data/comfyui

torchvision is not installed (no build matches the CPU torch 2.13.0 here); ComfyUI imports it
only for model classes unrelated to sampling, so a stub module is registered before import.
ComfyUI runs with ``--cpu`` (``comfy.cli_args.args.cpu = True`` before ``comfy.model_management``
is imported). The output is deterministic: running the script twice gives identical files.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import math
import os
import sys
import types

import torch

SHAPE = (2, 4, 6, 6)
SEED = 42
CFG = 2.0
DATA_STD = 0.5
STEPS = 10


# --------------------------------------------------------------------------- ComfyUI import


def import_comfy(path: str):
    path = os.path.abspath(path)
    sys.path.insert(0, path)
    if "torchvision" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except Exception:
            tv = types.ModuleType("torchvision")
            tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
            tv.transforms = types.ModuleType("torchvision.transforms")
            sys.modules["torchvision"] = tv
            sys.modules["torchvision.transforms"] = tv.transforms
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401
    import comfy.model_sampling
    import comfy.samplers
    import comfy.sample
    import comfy.sampler_helpers
    import comfy.conds
    import comfy.model_base
    import comfy.k_diffusion.sampling
    import comfy_extras.nodes_custom_sampler as ncs
    import comfy_extras.nodes_align_your_steps as nays
    import comfy_extras.nodes_gits as ngits

    assert str(comfy.model_management.get_torch_device()) == "cpu"
    return types.SimpleNamespace(comfy=comfy, ncs=ncs, nays=nays, ngits=ngits, path=path)


def comfy_version(path: str) -> str:
    ns: dict = {}
    with open(os.path.join(path, "comfyui_version.py")) as f:
        exec(f.read(), ns)
    return ns["__version__"]


# --------------------------------------------------------------------------- fakes


class FakeModelConfig:
    """What ModelSamplingDiscrete reads from SD1's model config (SD15 keeps the defaults)."""

    def __init__(self, **settings):
        self.sampling_settings = dict(settings)


def make_model_sampling(C, prediction="eps", zsnr=False):
    ms_mod = C.comfy.model_sampling
    base = ms_mod.EPS if prediction == "eps" else ms_mod.V_PREDICTION

    # the same composition comfy.model_base.model_sampling() builds for SD1
    class ModelSampling(ms_mod.ModelSamplingDiscrete, base):
        pass

    return ModelSampling(FakeModelConfig(), zsnr=zsnr)


class FakePatcher:
    """Stands in for ModelPatcher: the MODEL input of nodes and model_wrap.model_patcher."""

    def __init__(self, model_sampling):
        self.model_sampling = model_sampling
        self.model_options = {"transformer_options": {}}
        self.load_device = torch.device("cpu")

    def get_model_object(self, name):
        if name == "model_sampling":
            return self.model_sampling
        raise KeyError(name)

    # the current_patcher hooks calc_cond_batch touches
    def prepare_state(self, timestep):
        pass

    def apply_hooks(self, hooks):
        return {}

    def prepare_hook_patches_current_keyframe(self, *a, **k):
        pass


class AnalyticModel:
    """Stands in for comfy.model_base.BaseModel; apply_model returns the exact denoised x0."""

    def __init__(self, C, model_sampling, patcher):
        self._C = C
        self.model_sampling = model_sampling
        self.current_patcher = patcher
        self.calls = 0  # apply_model calls
        self.rows = 0  # batch rows evaluated (cond + uncond halves)
        self.record_inputs = 0
        self.inputs = []

    def apply_model(self, x, t, analytic_mean=None, transformer_options=None, **kwargs):
        self.calls += 1
        self.rows += x.shape[0]
        if self.record_inputs:  # the model input of the cond half (rows 0..B-1) and its sigma
            b = self.record_inputs
            self.inputs.append((x[:b].detach().clone(), t[:b].detach().clone()))
        sig = t.reshape(t.shape[:1] + (1,) * (x.ndim - 1)).to(x.dtype)
        mean = analytic_mean.to(x.dtype)
        s2 = DATA_STD ** 2
        return mean + s2 / (s2 + sig ** 2) * (x - mean)

    def memory_required(self, input_shape, cond_shapes=None):
        return 0

    def process_latent_in(self, latent):  # identity (a real SD1 model multiplies by 0.18215)
        return latent

    def process_latent_out(self, latent):
        return latent

    def scale_latent_inpaint(self, sigma, noise, latent_image, **kwargs):
        # ComfyUI's BaseModel.scale_latent_inpaint, called unbound on this stand-in
        return self._C.comfy.model_base.BaseModel.scale_latent_inpaint(self, sigma=sigma, noise=noise, latent_image=latent_image, **kwargs)


def element_index(shape, dtype):
    n = 1
    for d in shape:
        n *= d
    return torch.arange(n, dtype=dtype).reshape(shape)


def make_guider(C, model_sampling, cfg, dtype, shape=SHAPE, model_options=None):
    """A real comfy.samplers.CFGGuider whose inner model is the analytic model."""
    patcher = FakePatcher(model_sampling)
    if model_options:
        patcher.model_options.update(model_options)
    guider = C.comfy.samplers.CFGGuider(patcher)
    guider.set_cfg(cfg)
    k = element_index(shape, dtype)
    cond_mean = 0.5 * torch.sin(k)
    uncond_mean = -0.2 * torch.cos(k)
    CONDRegular = C.comfy.conds.CONDRegular
    guider.conds = {
        "positive": [{"model_conds": {"analytic_mean": CONDRegular(cond_mean)}, "uuid": "positive"}],
        "negative": [{"model_conds": {"analytic_mean": CONDRegular(uncond_mean)}, "uuid": "negative"}],
    }
    guider.inner_model = AnalyticModel(C, model_sampling, patcher)
    return guider


# --------------------------------------------------------------------------- helpers


def flist(t):
    if isinstance(t, torch.Tensor):
        return [float(v) for v in t.detach().reshape(-1).tolist()]
    return [float(v) for v in t]


def node_values(out):
    """Values of a V3 io.NodeOutput (or a V1 tuple)."""
    vals = getattr(out, "args", out)
    return list(vals)


def jsonable(v):
    if isinstance(v, torch.Tensor):
        return flist(v)
    if isinstance(v, (bool, int, str)) or v is None:
        return v
    if isinstance(v, float):
        return v
    if callable(v):
        return f"<callable {getattr(v, '__qualname__', type(v).__name__)}>"
    return repr(v)


# --------------------------------------------------------------------------- schedules


def record_schedules(C, version):
    samplers = C.comfy.samplers
    ms = make_model_sampling(C)
    ms_z = make_model_sampling(C, zsnr=True)
    ms_v = make_model_sampling(C, prediction="v")
    patcher = FakePatcher(ms)

    out: dict = {
        "comfyui_version": version,
        "comfyui_commit": "3cd7b32f1b7e7e90395cefe7d9f9b1f89276d8ce",
        "model_sampling_config": {"class": "ModelSamplingDiscrete+EPS", "beta_schedule": "linear",
                                  "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000},
        "scheduler_names": list(samplers.SCHEDULER_NAMES),
    }

    # (a) calculate_sigmas
    cs: dict = {}
    for name in samplers.SCHEDULER_NAMES:
        cs[name] = {}
        for steps in range(1, 51):
            try:
                cs[name][str(steps)] = flist(samplers.calculate_sigmas(ms, name, steps))
            except Exception as e:  # recorded, not hidden
                cs[name][str(steps)] = {"error": f"{type(e).__name__}: {e}"}
    out["calculate_sigmas"] = cs

    # (b) KSampler(...).sigmas
    ks = []
    for sampler in ("euler", "dpm_2"):
        for scheduler in samplers.SCHEDULER_NAMES:
            for steps in (1, 5, 10, 20):
                for denoise in (0.25, 0.5, 0.75, 0.9, 1.0):
                    entry = {"sampler": sampler, "scheduler": scheduler, "steps": steps, "denoise": denoise}
                    try:
                        k = samplers.KSampler(patcher, steps=steps, device="cpu", sampler=sampler, scheduler=scheduler, denoise=denoise)
                        entry["sigmas"] = flist(k.sigmas)
                    except Exception as e:
                        entry["error"] = f"{type(e).__name__}: {e}"
                    ks.append(entry)
    out["ksampler_sigmas"] = ks

    # (c) model sampling arrays
    probe_sigmas = torch.cat([
        torch.logspace(math.log10(0.005), math.log10(30.0), 40, dtype=torch.float64),
        torch.tensor([0.0291675, 0.02916753, 14.614642, 14.6146412, 1.0, 0.5, 2.0, 5.0, 0.1, 0.03], dtype=torch.float64),
    ]).to(torch.float32)
    probe_t = torch.cat([
        torch.linspace(-3.0, 1003.0, 43, dtype=torch.float64),
        torch.tensor([0.0, 0.5, 1.25, 998.5, 999.0, 500.75, 123.456], dtype=torch.float64),
    ]).to(torch.float32)
    percents = [round(0.1 * i, 10) for i in range(11)]

    def ms_record(m):
        return {
            "sigmas": flist(m.sigmas),
            "log_sigmas": flist(m.log_sigmas),
            "sigma_min": float(m.sigma_min),
            "sigma_max": float(m.sigma_max),
            "timestep_probe_sigmas": flist(probe_sigmas),
            "timestep": [int(v) for v in m.timestep(probe_sigmas).tolist()],
            "sigma_probe_t": flist(probe_t),
            "sigma": flist(m.sigma(probe_t)),
            "percent": percents,
            "percent_to_sigma": [float(m.percent_to_sigma(p)) for p in percents],
        }

    out["model_sampling"] = {"eps": ms_record(ms), "zsnr": ms_record(ms_z)}
    v_same = torch.equal(ms_v.sigmas, ms.sigmas)
    out["model_sampling"]["v_prediction_sigmas_identical_to_eps"] = bool(v_same)
    if not v_same:
        out["model_sampling"]["v_prediction"] = ms_record(ms_v)
    out["model_sampling"]["zsnr_calculate_sigmas"] = {
        name: {str(s): flist(samplers.calculate_sigmas(ms_z, name, s)) for s in (1, 5, 10, 20)}
        for name in samplers.SCHEDULER_NAMES
    }

    # (d) scheduler / sigma nodes
    ncs, nays, ngits = C.ncs, C.nays, C.ngits
    nodes: dict = {}

    def run(node_cls, args: dict, model=False):
        call = dict(args)
        if model:
            call["model"] = patcher
        try:
            vals = node_values(node_cls.execute(**call))
            res = {"args": args, "outputs": [jsonable(v) for v in vals]}
        except Exception as e:
            res = {"args": args, "error": f"{type(e).__name__}: {e}"}
        nodes.setdefault(node_cls.__name__, []).append(res)

    for sched in samplers.SCHEDULER_NAMES:
        for steps, denoise in ((10, 1.0), (10, 0.6), (7, 0.33), (20, 0.75)):
            run(ncs.BasicScheduler, {"scheduler": sched, "steps": steps, "denoise": denoise}, model=True)
    run(ncs.BasicScheduler, {"scheduler": "normal", "steps": 10, "denoise": 0.0}, model=True)
    for a in ({"steps": 20, "sigma_max": 14.614642, "sigma_min": 0.0291675, "rho": 7.0},
              {"steps": 10, "sigma_max": 10.0, "sigma_min": 0.1, "rho": 3.0},
              {"steps": 1, "sigma_max": 14.614642, "sigma_min": 0.0291675, "rho": 7.0}):
        run(ncs.KarrasScheduler, a)
    for a in ({"steps": 20, "sigma_max": 14.614642, "sigma_min": 0.0291675},
              {"steps": 7, "sigma_max": 5.0, "sigma_min": 0.05}):
        run(ncs.ExponentialScheduler, a)
    for a in ({"steps": 20, "sigma_max": 14.614642, "sigma_min": 0.0291675, "rho": 1.0},
              {"steps": 8, "sigma_max": 10.0, "sigma_min": 0.1, "rho": 2.5}):
        run(ncs.PolyexponentialScheduler, a)
    for a in ({"steps": 20, "sigma_max": 14.614642, "sigma_min": 0.0291675, "mu": 0.0, "beta": 0.5},
              {"steps": 9, "sigma_max": 10.0, "sigma_min": 0.1, "mu": 0.3, "beta": 1.2}):
        run(ncs.LaplaceScheduler, a)
    for a in ({"steps": 20, "beta_d": 19.9, "beta_min": 0.1, "eps_s": 0.001},
              {"steps": 8, "beta_d": 10.0, "beta_min": 0.5, "eps_s": 0.01}):
        run(ncs.VPScheduler, a)
    for a in ({"steps": 20, "alpha": 0.6, "beta": 0.6}, {"steps": 10, "alpha": 0.5, "beta": 0.7},
              {"steps": 15, "alpha": 2.0, "beta": 1.0}):
        run(ncs.BetaSamplingScheduler, a, model=True)
    for a in ({"steps": 1, "denoise": 1.0}, {"steps": 4, "denoise": 1.0}, {"steps": 2, "denoise": 0.5},
              {"steps": 3, "denoise": 0.75}):
        run(ncs.SDTurboScheduler, a, model=True)
    base = samplers.calculate_sigmas(ms, "normal", 10)
    karras = samplers.calculate_sigmas(ms, "karras", 10)
    nodes["_input_sigmas"] = {"normal_10": flist(base), "karras_10": flist(karras)}

    def run_sig(node_cls, name, sig, args):
        try:
            vals = node_values(node_cls.execute(sigmas=sig.clone(), **args))
            res = {"input": name, "args": args, "outputs": [jsonable(v) for v in vals]}
        except Exception as e:
            res = {"input": name, "args": args, "error": f"{type(e).__name__}: {e}"}
        nodes.setdefault(node_cls.__name__, []).append(res)

    for step in (0, 3, 10, 20):
        run_sig(ncs.SplitSigmas, "normal_10", base, {"step": step})
    for d in (1.0, 0.6, 0.25, 0.0):
        run_sig(ncs.SplitSigmasDenoise, "normal_10", base, {"denoise": d})
    run_sig(ncs.FlipSigmas, "normal_10", base, {})
    run_sig(ncs.FlipSigmas, "karras_10", karras, {})
    run_sig(ncs.SetFirstSigma, "normal_10", base, {"sigma": 136.0})
    run_sig(ncs.SetFirstSigma, "karras_10", karras, {"sigma": 20.5})
    for a in ({"steps": 2, "start_at_sigma": -1.0, "end_at_sigma": 12.0, "spacing": "linear"},
              {"steps": 3, "start_at_sigma": 10.0, "end_at_sigma": 1.0, "spacing": "cosine"},
              {"steps": 2, "start_at_sigma": -1.0, "end_at_sigma": 0.5, "spacing": "sine"}):
        run_sig(ncs.ExtendIntermediateSigmas, "karras_10", karras, a)
    for p in (0.0, 0.25, 0.5, 1.0):
        for actual in (False, True):
            run(ncs.SamplingPercentToSigma, {"sampling_percent": p, "return_actual_sigma": actual}, model=True)
    for a in ({"model_type": "SD1", "steps": 10, "denoise": 1.0}, {"model_type": "SD1", "steps": 25, "denoise": 0.6},
              {"model_type": "SDXL", "steps": 10, "denoise": 1.0}, {"model_type": "SDXL", "steps": 7, "denoise": 0.5}):
        run(nays.AlignYourStepsScheduler, a)
    for a in ({"coeff": 1.2, "steps": 10, "denoise": 1.0}, {"coeff": 0.8, "steps": 5, "denoise": 1.0},
              {"coeff": 1.5, "steps": 25, "denoise": 1.0}, {"coeff": 1.2, "steps": 12, "denoise": 0.5}):
        run(ngits.GITSScheduler, a)
    out["nodes"] = nodes
    return out


# --------------------------------------------------------------------------- samplers


def ksampler_sigmas(C, model_sampling, sampler, scheduler, steps, denoise):
    k = C.comfy.samplers.KSampler(FakePatcher(model_sampling), steps=steps, device="cpu", sampler=sampler,
                                  scheduler=scheduler, denoise=denoise)
    return k.sigmas


def run_case(C, ms, *, sampler_name=None, sampler_obj=None, scheduler="normal", denoise=1.0, cfg=CFG,
             dtype=torch.float64, img2img=False, inpaint=False, noise_inds=None, sigma_sampler=None,
             disable_cfg1_optimization=None):
    comfy = C.comfy
    # KSampler's sigmas are float32; a float64 run gets the same values cast exactly to float64 so
    # that all of the sampler's arithmetic runs in float64 (uni_pc / sa_solver need equal dtypes).
    sigmas = ksampler_sigmas(C, ms, sigma_sampler or sampler_name, scheduler, STEPS, denoise).to(dtype)
    k = element_index(SHAPE, torch.float32)
    if img2img or inpaint:
        latent32 = 0.3 * torch.cos(k)
    else:
        latent32 = torch.zeros(SHAPE, dtype=torch.float32)
    # initial noise exactly as comfy.sample.prepare_noise draws it for a float32 latent
    noise32 = comfy.sample.prepare_noise(latent32, SEED, noise_inds)
    latent = latent32.to(dtype) if not (img2img or inpaint) else 0.3 * torch.cos(element_index(SHAPE, dtype))
    noise = noise32.to(dtype)
    mask = None
    if inpaint:
        m = torch.zeros((SHAPE[0], 1, SHAPE[2], SHAPE[3]), dtype=torch.float32)
        m[..., : SHAPE[3] // 2] = 1.0
        mask = comfy.sampler_helpers.prepare_mask(m, SHAPE, torch.device("cpu"))
    model_options = {}
    if disable_cfg1_optimization is not None:
        model_options["disable_cfg1_optimization"] = disable_cfg1_optimization
    guider = make_guider(C, ms, cfg, dtype, model_options=model_options)
    if inpaint:
        guider.inner_model.record_inputs = SHAPE[0]
    sampler = sampler_obj if sampler_obj is not None else comfy.samplers.sampler_object(sampler_name)

    calls = []

    def callback(i, denoised, x, total_steps):
        calls.append((int(i), x.detach().clone(), denoised.detach().clone()))

    extra_args = {"model_options": comfy.model_patcher.create_model_options_clone(guider.model_options), "seed": SEED}
    extra_args["model_options"].setdefault("transformer_options", {})["sample_sigmas"] = sigmas
    recorded_model_options = {k2: v for k2, v in extra_args["model_options"].items() if k2 != "transformer_options"}
    torch.manual_seed(0)  # samplers that draw from the global generator (none expected) stay reproducible
    sigmas_in = sigmas.clone()
    samples = sampler.sample(guider, sigmas, extra_args, callback, noise.clone(),
                             latent.clone(), mask, disable_pbar=True)
    tensors = {
        "sigmas": sigmas_in,
        "noise": noise.clone(),
        "latent_image": latent.clone(),
        "samples": samples.detach().clone(),
        "callback_i": torch.tensor([c[0] for c in calls], dtype=torch.int64),
    }
    if mask is not None:
        tensors["denoise_mask"] = mask.clone()
        tensors["model_input"] = torch.stack([a for a, _ in guider.inner_model.inputs])
        tensors["model_input_sigma"] = torch.stack([b for _, b in guider.inner_model.inputs])
    if calls:
        tensors["x"] = torch.stack([c[1] for c in calls])
        tensors["denoised"] = torch.stack([c[2] for c in calls])
    info = {
        "scheduler": scheduler, "steps": STEPS, "denoise": denoise, "cfg": cfg, "dtype": str(dtype).replace("torch.", ""),
        "seed": SEED, "noise_inds": noise_inds, "img2img": img2img, "inpaint": inpaint,
        "model_options": {k2: jsonable(v) for k2, v in recorded_model_options.items()},
        "sampler_function": getattr(sampler.sampler_function, "__name__", repr(sampler.sampler_function)),
        "extra_options": {k2: jsonable(v) for k2, v in sampler.extra_options.items()},
        "inpaint_options": dict(sampler.inpaint_options),
        "model_calls": guider.inner_model.calls,
        "model_rows": guider.inner_model.rows,
        "sigmas_after_sampling": None if torch.equal(sigmas, sigmas_in) else flist(sigmas),
        "callback_calls": len(calls),
        "callback_i": [c[0] for c in calls],
    }
    return tensors, info


def record_samplers(C, version):
    comfy = C.comfy
    ncs = C.ncs
    ms = make_model_sampling(C)
    patcher = FakePatcher(ms)
    cases = []  # (case name, kwargs, extra info)
    # ComfyUI's uni_pc builds float32 constants (torch.tensor([0.5]), torch.linalg.solve on
    # float32 R) and fails on float64 latents: the uni_pc family is recorded in float32.
    f32_only = {"uni_pc", "uni_pc_bh2"}

    def dt(name):
        return torch.float32 if name in f32_only else torch.float64

    for name in comfy.samplers.SAMPLER_NAMES:
        cases.append((f"txt2img/{name}", dict(sampler_name=name, dtype=dt(name)), {"sampler": name}))
    core8 = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_sde", "dpmpp_2m_sde", "ddim", "lcm", "uni_pc"]
    for name in core8:
        cases.append((f"karras/{name}", dict(sampler_name=name, scheduler="karras", dtype=dt(name)), {"sampler": name}))
    for name in core8:
        cases.append((f"img2img/{name}", dict(sampler_name=name, denoise=0.6, img2img=True, dtype=dt(name)), {"sampler": name}))
    for name in ("euler", "euler_cfg_pp", "res_multistep_cfg_pp"):
        cases.append((f"cfg1/{name}", dict(sampler_name=name, cfg=1.0), {"sampler": name}))
        cases.append((f"cfg1_noopt/{name}", dict(sampler_name=name, cfg=1.0, disable_cfg1_optimization=True), {"sampler": name}))
    for name in ("euler", "dpmpp_2m_sde"):
        cases.append((f"inpaint/{name}", dict(sampler_name=name, inpaint=True), {"sampler": name}))
    cases.append(("inpaint/ddim", dict(sampler_name="ddim", inpaint=True), {"sampler": "ddim"}))
    for name in ("euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde", "dpmpp_2m"):
        cases.append((f"float32/{name}", dict(sampler_name=name, dtype=torch.float32), {"sampler": name}))
    cases.append(("noise_inds/euler_ancestral", dict(sampler_name="euler_ancestral", noise_inds=[3, 1]), {"sampler": "euler_ancestral"}))

    node_sets = [
        (ncs.SamplerDPMPP_3M_SDE, [{"eta": 0.5, "s_noise": 0.8, "noise_device": "cpu"}, {"eta": 1.0, "s_noise": 1.0, "noise_device": "gpu"}]),
        (ncs.SamplerDPMPP_2M_SDE, [{"solver_type": "heun", "eta": 0.7, "s_noise": 1.1, "noise_device": "cpu"},
                                   {"solver_type": "midpoint", "eta": 0.0, "s_noise": 1.0, "noise_device": "gpu"}]),
        (ncs.SamplerDPMPP_SDE, [{"eta": 0.6, "s_noise": 0.9, "r": 0.3, "noise_device": "cpu"}, {"eta": 1.0, "s_noise": 1.0, "r": 0.5, "noise_device": "gpu"}]),
        (ncs.SamplerDPMPP_2S_Ancestral, [{"eta": 0.5, "s_noise": 1.2}]),
        (ncs.SamplerEulerAncestral, [{"eta": 0.5, "s_noise": 1.2}, {"eta": 0.0, "s_noise": 1.0}]),
        (ncs.SamplerEulerAncestralCFGPP, [{"eta": 0.5, "s_noise": 0.9}]),
        (ncs.SamplerLMS, [{"order": 2}, {"order": 6}]),
        (ncs.SamplerDPMAdaptative, [{"order": 2, "rtol": 0.1, "atol": 0.01, "h_init": 0.1, "pcoeff": 0.0, "icoeff": 1.0,
                                     "dcoeff": 0.0, "accept_safety": 0.81, "eta": 0.5, "s_noise": 1.0}]),
        (ncs.SamplerER_SDE, [{"solver_type": "ER-SDE", "max_stage": 2, "eta": 1.0, "s_noise": 0.8},
                             {"solver_type": "Reverse-time SDE", "max_stage": 3, "eta": 0.5, "s_noise": 1.0},
                             {"solver_type": "ODE", "max_stage": 1, "eta": 1.0, "s_noise": 1.0}]),
        (ncs.SamplerSASolver, [{"eta": 0.7, "sde_start_percent": 0.1, "sde_end_percent": 0.9, "s_noise": 1.0,
                                "predictor_order": 2, "corrector_order": 1, "use_pece": False, "simple_order_2": False},
                               {"eta": 1.0, "sde_start_percent": 0.2, "sde_end_percent": 0.8, "s_noise": 1.0,
                                "predictor_order": 3, "corrector_order": 4, "use_pece": True, "simple_order_2": True}]),
        (ncs.SamplerSEEDS2, [{"solver_type": "phi_2", "eta": 0.0, "s_noise": 1.0, "r": 1.0},
                             {"solver_type": "phi_1", "eta": 0.6, "s_noise": 1.0, "r": 0.3}]),
    ]
    for node_cls, arg_sets in node_sets:
        for j, args in enumerate(arg_sets):
            call = dict(args)
            if node_cls is ncs.SamplerSASolver:
                call["model"] = patcher
            sampler_obj = node_values(node_cls.execute(**call))[0]
            cases.append((f"node/{node_cls.__name__}/{j}", dict(sampler_obj=sampler_obj, sigma_sampler="euler"),
                          {"node": node_cls.__name__, "node_args": args}))

    tensors: dict = {}
    index: dict = {}
    failures: dict = {}
    stored: dict = {}  # (dtype, shape, bytes) -> key: identical tensors are stored once
    for case, kwargs, extra in cases:
        try:
            t, info = run_case(C, ms, **kwargs)
        except Exception as e:
            failures[case] = f"{type(e).__name__}: {e}"
            continue
        info.update(extra)
        info["final_rms"] = float(t["samples"].double().pow(2).mean().sqrt())
        keys = {}
        for field, v in t.items():
            v = v.contiguous()
            sig = (str(v.dtype), tuple(v.shape), v.numpy().tobytes())
            if sig not in stored:
                stored[sig] = f"{case}/{field}"
                tensors[stored[sig]] = v
            keys[field] = stored[sig]
        info["tensors"] = keys
        index[case] = info
    meta = {
        "comfyui_version": version,
        "comfyui_commit": "3cd7b32f1b7e7e90395cefe7d9f9b1f89276d8ce",
        "shape": list(SHAPE),
        "seed": SEED,
        "steps": STEPS,
        "denoiser": "D_m(x,s)=m+0.25/(0.25+s^2)*(x-m); cond m=0.5*sin(k), uncond m=-0.2*cos(k), k=arange(prod(shape)).reshape(shape) in the run dtype",
        "sampler_names": list(comfy.samplers.SAMPLER_NAMES),
        "cases": index,
        "failures": failures,
    }
    return tensors, meta


# --------------------------------------------------------------------------- main


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=False, allow_nan=True)
        f.write("\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--comfyui", required=True, help="ComfyUI source checkout (imported, never copied)")
    ap.add_argument("--out", required=True, help="output directory, e.g. tests/data/comfyui")
    ap.add_argument("--only", choices=["schedules", "samplers"], default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    C = import_comfy(a.comfyui)
    version = comfy_version(C.path)
    os.makedirs(a.out, exist_ok=True)
    if a.only in (None, "schedules"):
        write_json(os.path.join(a.out, "schedules.json"), record_schedules(C, version))
        print("wrote schedules.json")
    if a.only in (None, "samplers"):
        from safetensors.torch import save_file

        tensors, meta = record_samplers(C, version)
        save_file(tensors, os.path.join(a.out, "samplers.safetensors"),
                  # one metadata key: safetensors writes several in hash order (not reproducible)
                  metadata={"comfyui": f"{version} {meta['comfyui_commit']}"})
        os.chmod(os.path.join(a.out, "samplers.safetensors"), 0o644)
        write_json(os.path.join(a.out, "samplers.json"), meta)
        print(f"wrote samplers.safetensors ({len(meta['cases'])} cases, failures: {sorted(meta['failures'])})")


if __name__ == "__main__":
    main()
