"""ComfyUI's custom sampling: the run taken apart into NOISE, GUIDER, SAMPLER and SIGMAS values.

``SamplerCustomAdvanced(noise, guider, sampler, sigmas, latent)`` is KSampler with every part
chosen by a node: RandomNoise / DisableNoise, CFGGuider & co. (``guider_nodes``), KSamplerSelect
or a parameterised Sampler* node (here), a scheduler node or sigma surgery (``sigma_nodes``).
Both sampler nodes return the sampled LATENT and the last x0 estimate ("denoised_output").

``TYPES`` holds the four connection types these nodes add; ``NODES`` every node of the three
modules.
"""

from __future__ import annotations

from typing import Any

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.latents import DOWNSCALE_KEY, plain_latent
from latentgraph.nodes.sampling import guider_nodes, sigma_nodes
from latentgraph.nodes.sampling.guidance import CFG, Guider
from latentgraph.nodes.sampling.ksampler_nodes import MAX_SEED, input_latent, lookup_sampler, run_guided, sampler_names
from latentgraph.nodes.sampling.run import NoNoise, RandomNoise, check_model, process_latent_in, process_latent_out
from latentgraph.nodes.sampling.samplers import SamplerDef
from latentgraph.nodes.sampling.sigma_nodes import EXACT, check_sigmas
from latentgraph.registry import TypeSpec

TYPES = [
    TypeSpec("SIGMAS", description="noise levels to visit, a 1-D tensor (usually descending to 0)"),
    TypeSpec("SAMPLER", description="a sampling algorithm with its options"),
    TypeSpec("GUIDER", description="a model with its conditionings and how they are combined"),
    TypeSpec("NOISE", description="the starting noise of a run (seeded, or none)"),
]

SAMPLERS = "sampling/custom_sampling/samplers"


# -- SAMPLER nodes -------------------------------------------------------------------------------------
def _sampler(ctx, name: str, input_name: str, **options: Any) -> tuple[SamplerDef]:
    return (lookup_sampler(ctx, name, input_name).with_options(**options),)


def _f(name: str, default: float, max: float = 100.0, min: float = 0.0, **kw: Any) -> Any:
    """A ComfyUI sampler option: FLOAT, step 0.01, kept as typed."""
    return In(name, "FLOAT", default=default, min=min, max=max, step=0.01, editor_options=EXACT, **kw)


ETA, S_NOISE = _f("eta", 1.0), _f("s_noise", 1.0)
NOISE_DEVICE = In("noise_device", "COMBO", choices=("gpu", "cpu"), default="gpu",
                  tooltip="ComfyUI's choice of noise generator; here noise is drawn on the CPU either way")


def _on_device(name: str, noise_device: str) -> str:
    return name if noise_device == "cpu" else f"{name}_gpu"


class KSamplerSelect(Node):
    """A sampler by name, with its default options."""

    spec = NodeSpec(name="KSamplerSelect", category=SAMPLERS,
                    inputs=(In("sampler_name", "COMBO", choices=sampler_names, default="euler"),),
                    outputs=(Out("SAMPLER"),))

    def execute(self, ctx, sampler_name):
        return _sampler(ctx, sampler_name, "sampler_name")


class SamplerEulerAncestral(Node):
    spec = NodeSpec(name="SamplerEulerAncestral", category=SAMPLERS, inputs=(ETA, S_NOISE), outputs=(Out("SAMPLER"),))

    def execute(self, ctx, eta, s_noise):
        return _sampler(ctx, "euler_ancestral", "eta", eta=float(eta), s_noise=float(s_noise))


class SamplerEulerAncestralCFGPP(Node):
    spec = NodeSpec(name="SamplerEulerAncestralCFGPP", display_name="SamplerEulerAncestralCFG++", category=SAMPLERS,
                    inputs=(_f("eta", 1.0, max=1.0), _f("s_noise", 1.0, max=10.0)), outputs=(Out("SAMPLER"),))

    def execute(self, ctx, eta, s_noise):
        return _sampler(ctx, "euler_ancestral_cfg_pp", "eta", eta=float(eta), s_noise=float(s_noise))


class SamplerLMS(Node):
    spec = NodeSpec(name="SamplerLMS", category=SAMPLERS, inputs=(In("order", "INT", default=4, min=1, max=100),),
                    outputs=(Out("SAMPLER"),))

    def execute(self, ctx, order):
        return _sampler(ctx, "lms", "order", order=int(order))


class SamplerDPMPP_3M_SDE(Node):  # noqa: N801 - ComfyUI's class name
    spec = NodeSpec(name="SamplerDPMPP_3M_SDE", category=SAMPLERS, inputs=(ETA, S_NOISE, NOISE_DEVICE),
                    outputs=(Out("SAMPLER"),))

    def execute(self, ctx, eta, s_noise, noise_device):
        return _sampler(ctx, _on_device("dpmpp_3m_sde", noise_device), "noise_device", eta=float(eta), s_noise=float(s_noise))


class SamplerDPMPP_2M_SDE(Node):  # noqa: N801
    spec = NodeSpec(name="SamplerDPMPP_2M_SDE", category=SAMPLERS,
                    inputs=(In("solver_type", "COMBO", choices=("midpoint", "heun"), default="midpoint"), ETA, S_NOISE,
                            NOISE_DEVICE),
                    outputs=(Out("SAMPLER"),))

    def execute(self, ctx, solver_type, eta, s_noise, noise_device):
        return _sampler(ctx, _on_device("dpmpp_2m_sde", noise_device), "noise_device",
                        eta=float(eta), s_noise=float(s_noise), solver_type=solver_type)


class SamplerDPMPP_SDE(Node):  # noqa: N801
    spec = NodeSpec(name="SamplerDPMPP_SDE", category=SAMPLERS, inputs=(ETA, S_NOISE, _f("r", 0.5), NOISE_DEVICE),
                    outputs=(Out("SAMPLER"),))

    def execute(self, ctx, eta, s_noise, r, noise_device):
        return _sampler(ctx, _on_device("dpmpp_sde", noise_device), "noise_device",
                        eta=float(eta), s_noise=float(s_noise), r=float(r))


class SamplerDPMPP_2S_Ancestral(Node):  # noqa: N801
    spec = NodeSpec(name="SamplerDPMPP_2S_Ancestral", category=SAMPLERS, inputs=(ETA, S_NOISE), outputs=(Out("SAMPLER"),))

    def execute(self, ctx, eta, s_noise):
        return _sampler(ctx, "dpmpp_2s_ancestral", "eta", eta=float(eta), s_noise=float(s_noise))


class SamplerDPMAdaptative(Node):
    """DPM-Solver with adaptive step size: the error tolerances and PID controller gains."""

    spec = NodeSpec(
        name="SamplerDPMAdaptative",
        category=SAMPLERS,
        inputs=(
            In("order", "INT", default=3, min=2, max=3),
            _f("rtol", 0.05), _f("atol", 0.0078), _f("h_init", 0.05), _f("pcoeff", 0.0), _f("icoeff", 1.0),
            _f("dcoeff", 0.0), _f("accept_safety", 0.81), _f("eta", 0.0), S_NOISE,
        ),
        outputs=(Out("SAMPLER"),),
    )

    def execute(self, ctx, order, rtol, atol, h_init, pcoeff, icoeff, dcoeff, accept_safety, eta, s_noise):
        return _sampler(ctx, "dpm_adaptive", "order", order=int(order), rtol=float(rtol), atol=float(atol),
                        h_init=float(h_init), pcoeff=float(pcoeff), icoeff=float(icoeff), dcoeff=float(dcoeff),
                        accept_safety=float(accept_safety), eta=float(eta), s_noise=float(s_noise))


class SamplerER_SDE(Node):  # noqa: N801
    spec = NodeSpec(
        name="SamplerER_SDE",
        category=SAMPLERS,
        inputs=(
            In("solver_type", "COMBO", choices=("ER-SDE", "Reverse-time SDE", "ODE"), default="ER-SDE"),
            In("max_stage", "INT", default=3, min=1, max=3),
            _f("eta", 1.0, tooltip="Stochastic strength of reverse-time SDE.\nWhen eta=0, it reduces to deterministic "
                                   "ODE. This setting doesn't apply to ER-SDE solver type."),
            S_NOISE,
        ),
        outputs=(Out("SAMPLER"),),
    )

    def execute(self, ctx, solver_type, max_stage, eta, s_noise):
        return _sampler(ctx, "er_sde", "solver_type", solver_type=solver_type, max_stage=int(max_stage),
                        eta=float(eta), s_noise=float(s_noise))


class SamplerSASolver(Node):
    """SA-Solver; the SDE part runs between two points of the run, given as percents of the model's."""

    spec = NodeSpec(
        name="SamplerSASolver",
        category=SAMPLERS,
        inputs=(
            In("model", "MODEL"),
            _f("eta", 1.0, max=10.0),
            In("sde_start_percent", "FLOAT", default=0.2, min=0.0, max=1.0, step=0.001),
            In("sde_end_percent", "FLOAT", default=0.8, min=0.0, max=1.0, step=0.001),
            S_NOISE,
            In("predictor_order", "INT", default=3, min=1, max=6),
            In("corrector_order", "INT", default=4, min=0, max=6),
            In("use_pece", "BOOLEAN", default=False),
            In("simple_order_2", "BOOLEAN", default=False),
        ),
        outputs=(Out("SAMPLER"),),
    )

    def execute(self, ctx, model, eta, sde_start_percent, sde_end_percent, s_noise, predictor_order, corrector_order,
                use_pece, simple_order_2):
        options: dict[str, Any] = dict(
            eta=float(eta), sde_start_percent=float(sde_start_percent), sde_end_percent=float(sde_end_percent),
            s_noise=float(s_noise), predictor_order=int(predictor_order), corrector_order=int(corrector_order),
            use_pece=bool(use_pece), simple_order_2=bool(simple_order_2),
        )
        try:  # the SDE interval in σ of *this* model, as ComfyUI takes it
            from latentgraph.nodes.sampling.solvers_recent import sa_tau_interval
        except ImportError:
            pass
        else:
            ms = check_model(model).model_sampling
            options["tau_func"] = sa_tau_interval(ms.percent_to_sigma(options["sde_start_percent"]),
                                                  ms.percent_to_sigma(options["sde_end_percent"]), options["eta"])
        return _sampler(ctx, "sa_solver", "model", **options)


class SamplerSEEDS2(Node):
    spec = NodeSpec(
        name="SamplerSEEDS2",
        category=SAMPLERS,
        description=("This sampler node can represent multiple samplers:\n\nseeds_2\n- default setting\n\n"
                     "exp_heun_2_x0\n- solver_type=phi_2, r=1.0, eta=0.0\n\n"
                     "exp_heun_2_x0_sde\n- solver_type=phi_2, r=1.0, eta=1.0, s_noise=1.0"),
        inputs=(
            In("solver_type", "COMBO", choices=("phi_1", "phi_2"), default="phi_1"),
            _f("eta", 1.0, tooltip="Stochastic strength"),
            _f("s_noise", 1.0, tooltip="SDE noise multiplier"),
            _f("r", 0.5, max=1.0, min=0.01, tooltip="Relative step size for the intermediate stage (c2 node)"),
        ),
        outputs=(Out("SAMPLER"),),
    )

    def execute(self, ctx, solver_type, eta, s_noise, r):
        return _sampler(ctx, "seeds_2", "solver_type", solver_type=solver_type, eta=float(eta), s_noise=float(s_noise),
                        r=float(r))


# -- sampling ------------------------------------------------------------------------------------------
def _check_sampler(value: Any) -> SamplerDef:
    if not isinstance(value, SamplerDef):
        raise NodeInputError("sampler", f"expected a SAMPLER (KSamplerSelect or a Sampler… node), got {type(value).__name__}")
    return value


def _check_noise(value: Any) -> Any:
    if not (callable(getattr(value, "generate", None)) and hasattr(value, "seed")):
        raise NodeInputError("noise", f"expected NOISE (RandomNoise or DisableNoise), got {type(value).__name__}")
    return value


def _check_latent(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NodeInputError("latent_image", f"expected a LATENT (a dict with a 'samples' tensor), got {type(value).__name__}")
    return value


class SamplerCustom(Node):
    """KSampler with the sampler and the schedule as inputs (KSamplerSelect, a scheduler node)."""

    spec = NodeSpec(
        name="SamplerCustom",
        category="sampling/custom_sampling",
        inputs=(
            In("model", "MODEL"),
            In("add_noise", "BOOLEAN", default=True),
            In("noise_seed", "INT", default=0, min=0, max=MAX_SEED, control_after_generate=True),
            guider_nodes._cfg_in("cfg"),
            In("positive", "CONDITIONING"),
            In("negative", "CONDITIONING"),
            In("sampler", "SAMPLER"),
            In("sigmas", "SIGMAS"),
            In("latent_image", "LATENT"),
        ),
        outputs=(Out("LATENT", "output"), Out("LATENT", "denoised_output")),
    )

    def execute(self, ctx, model, add_noise, noise_seed, cfg, positive, negative, sampler, sigmas, latent_image):
        model = check_model(model)
        guider = Guider(model, {"positive": positive, "negative": negative}, CFG(float(cfg)))
        noise = RandomNoise(int(noise_seed)) if add_noise else NoNoise()
        return run_guided(ctx, guider, _check_sampler(sampler), check_sigmas(sigmas), noise, _check_latent(latent_image))


class SamplerCustomAdvanced(Node):
    """One sampling run from its parts: noise, guider, sampler, sigmas."""

    spec = NodeSpec(
        name="SamplerCustomAdvanced",
        category="sampling/custom_sampling",
        inputs=(In("noise", "NOISE"), In("guider", "GUIDER"), In("sampler", "SAMPLER"), In("sigmas", "SIGMAS"),
                In("latent_image", "LATENT")),
        outputs=(Out("LATENT", "output"), Out("LATENT", "denoised_output")),
    )

    def execute(self, ctx, noise, guider, sampler, sigmas, latent_image):
        if not isinstance(guider, Guider):
            raise NodeInputError("guider", f"expected a GUIDER (CFGGuider, BasicGuider, …), got {type(guider).__name__}")
        sampler = _check_sampler(sampler)
        return run_guided(ctx, guider, sampler, check_sigmas(sigmas), _check_noise(noise), _check_latent(latent_image))


class AddNoise(Node):
    """Noise a latent by the span of a schedule, |σ_first − σ_last| (ComfyUI's AddNoise): the
    start of a sampler run with noise disabled, or more noise on an already noisy latent."""

    spec = NodeSpec(
        name="AddNoise",
        category="_for_testing/custom_sampling/noise",
        inputs=(In("model", "MODEL"), In("noise", "NOISE"), In("sigmas", "SIGMAS"), In("latent_image", "LATENT")),
        outputs=(Out("LATENT"),),
    )

    def execute(self, ctx, model, noise, sigmas, latent_image):
        model = check_model(model)
        sigmas = check_sigmas(sigmas)
        noise = _check_noise(noise)
        latent = _check_latent(latent_image)
        if sigmas.numel() == 0:
            return (latent,)
        samples, downscale = input_latent(model, latent, "latent_image")
        scale = (sigmas[0] - sigmas[-1]).abs() if sigmas.numel() > 1 else sigmas[0]
        clean = process_latent_in(model, samples.float()) if torch.count_nonzero(samples) > 0 else samples.float()
        noisy = model.model_sampling.noise_scaling(scale, noise.generate(latent, samples), clean)
        noisy = torch.nan_to_num(process_latent_out(model, noisy), nan=0.0, posinf=0.0, neginf=0.0)
        return (plain_latent(latent, noisy, **{DOWNSCALE_KEY: downscale}),)


NODES = [
    SamplerCustom, *sigma_nodes.NODES[:8], KSamplerSelect, SamplerEulerAncestral, SamplerEulerAncestralCFGPP, SamplerLMS,
    SamplerDPMPP_3M_SDE, SamplerDPMPP_2M_SDE, SamplerDPMPP_SDE, SamplerDPMPP_2S_Ancestral, SamplerDPMAdaptative,
    SamplerER_SDE, SamplerSASolver, SamplerSEEDS2, *sigma_nodes.NODES[8:], *guider_nodes.NODES, AddNoise,
    SamplerCustomAdvanced,
]
