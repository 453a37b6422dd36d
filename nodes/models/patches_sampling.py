"""ModelSampling* nodes: tell the sampler how a model was trained (parameterisation and σ range).

They set ``DiffusionModel.sampling_override`` on a copy of the MODEL; the UNet is unchanged. Use
them for checkpoints whose file does not say it (a v-prediction or zero-terminal-SNR fine-tune
saved without its ``v_pred``/``ztsnr`` keys, LCM-distilled weights, EDM/continuous models).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.models.continuous_sampling import ContinuousModelSampling
from latentgraph.nodes.sampling.model_sampling import ModelSampling


@dataclass(frozen=True, eq=False)
class X0ModelSampling(ModelSampling):
    """The UNet predicts x0 directly; ``img_to_img`` models also take the latent unscaled."""

    def calculate_input(self, sigma, x):
        return x if self.prediction == "img_to_img" else super().calculate_input(sigma, x)

    def calculate_denoised(self, sigma, model_output, x):
        return model_output


@dataclass(frozen=True, eq=False)
class DistilledModelSampling(ModelSampling):
    """LCM (Luo et al. 2023): 50 of the 1000 training steps, and the consistency-model boundary
    condition x0 = c_skip·x + c_out·x0_ε with σ_data 0.5 and timestep scaling 10."""

    skip_steps: int = 20

    @classmethod
    def from_discrete(cls, base: ModelSampling, original_steps: int = 50) -> DistilledModelSampling:
        skip = base.num_timesteps // original_steps
        idx = [base.num_timesteps - 1 - (original_steps - 1 - i) * skip for i in range(original_steps)]
        sigmas = base.sigmas[idx].clone()
        return cls(sigmas, sigmas.log(), "lcm", 1.0, skip)

    def timestep(self, sigma):
        dists = sigma.log().to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return (dists.abs().argmin(dim=0).view(sigma.shape) * self.skip_steps + (self.skip_steps - 1)).to(sigma.device)

    def sigma(self, timestep):
        t = ((timestep.float().to(self.log_sigmas.device) - (self.skip_steps - 1)) / self.skip_steps)
        return super().sigma(t.to(timestep.device))

    def percent_to_sigma(self, percent):
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * 999.0)))

    def calculate_denoised(self, sigma, model_output, x):
        t = self._shaped(self.timestep(sigma), model_output).float()
        s = self._shaped(sigma, model_output)
        x0 = x - model_output * s
        st = t * 10.0
        c_skip = 0.25 / (st**2 + 0.25)
        c_out = st / (st**2 + 0.25) ** 0.5
        return c_out * x0 + c_skip * x


def discrete_sampling(scheduler_config: dict, sampling: str, zsnr: bool) -> ModelSampling:
    config = {**scheduler_config, "prediction_type": "epsilon", "rescale_betas_zero_snr": bool(zsnr)}
    base = ModelSampling.from_config(config)
    if sampling == "eps":
        return base
    if sampling == "v_prediction":
        return replace(base, prediction="v")
    if sampling in ("x0", "img_to_img"):
        return X0ModelSampling(base.sigmas, base.log_sigmas, sampling, base.sigma_data)
    if sampling == "lcm":
        return DistilledModelSampling.from_discrete(base)
    raise NodeInputError("sampling", f"unknown sampling {sampling!r}")


class ModelSamplingDiscrete(Node):
    spec = NodeSpec(
        name="ModelSamplingDiscrete",
        display_name="ModelSamplingDiscrete",
        category="advanced/model",
        description="Overrides the model's parameterisation (eps, v, LCM, x0) on its 1000 training steps; "
        "zsnr rescales them to zero terminal SNR.",
        inputs=(
            In("model", "MODEL"),
            In("sampling", "COMBO", choices=("eps", "v_prediction", "lcm", "x0", "img_to_img")),
            In("zsnr", "BOOLEAN", default=False),
        ),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, model, sampling="eps", zsnr=False):
        ms = discrete_sampling(model.scheduler_config, sampling, zsnr)
        return (replace(model, sampling_override=ms),)


_SIGMA = dict(min=0.0, max=1000.0, step=0.001)


def _continuous(model, sampling, sigma_max, sigma_min, time_map):
    prediction, sigma_data = {
        "eps": ("eps", 1.0), "v_prediction": ("v", 1.0), "edm": ("edm", 0.5), "edm_playground_v2.5": ("edm", 0.5),
    }.get(sampling, (None, None))
    if prediction is None:
        raise NodeInputError("sampling", f"'{sampling}' is not supported for SD-family UNets "
                             "(cosmos_rflow belongs to Cosmos video models)")
    try:
        ms = ContinuousModelSampling.create(float(sigma_min), float(sigma_max), prediction, time_map, sigma_data)
    except ValueError as exc:
        raise NodeInputError("sigma_min", str(exc)) from None
    return (replace(model, sampling_override=ms),)


class ModelSamplingContinuousEDM(Node):
    spec = NodeSpec(
        name="ModelSamplingContinuousEDM",
        display_name="ModelSamplingContinuousEDM",
        category="advanced/model",
        description="A continuous-σ model (EDM: timestep = ¼·log σ) trained on [sigma_min, sigma_max]. "
        "edm_playground_v2.5 uses EDM's σ_data 0.5 but, unlike ComfyUI, keeps the VAE's latent scaling.",
        inputs=(
            In("model", "MODEL"),
            In("sampling", "COMBO", choices=("v_prediction", "edm", "edm_playground_v2.5", "eps", "cosmos_rflow")),
            In("sigma_max", "FLOAT", default=120.0, **_SIGMA),
            In("sigma_min", "FLOAT", default=0.002, **_SIGMA),
        ),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, model, sampling="v_prediction", sigma_max=120.0, sigma_min=0.002):
        return _continuous(model, sampling, sigma_max, sigma_min, "edm")


class ModelSamplingContinuousV(Node):
    spec = NodeSpec(
        name="ModelSamplingContinuousV",
        display_name="ModelSamplingContinuousV",
        category="advanced/model",
        description="A continuous-σ v-prediction model (timestep = atan(σ)·2/π) trained on [sigma_min, sigma_max].",
        inputs=(
            In("model", "MODEL"),
            In("sampling", "COMBO", choices=("v_prediction",)),
            In("sigma_max", "FLOAT", default=500.0, **_SIGMA),
            In("sigma_min", "FLOAT", default=0.03, **_SIGMA),
        ),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, model, sampling="v_prediction", sigma_max=500.0, sigma_min=0.03):
        return _continuous(model, sampling, sigma_max, sigma_min, "v")


NODES = [ModelSamplingDiscrete, ModelSamplingContinuousEDM, ModelSamplingContinuousV]
