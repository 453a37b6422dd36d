"""ControlNet / T2I-Adapter files → :class:`~latentgraph.nodes.control.residuals.ControlNet`, offline.

Which kind a file is follows ComfyUI's order: ``zero_convs.0.0.weight`` (bare or under
``control_model.``) is a ControlNet; otherwise adapter keys make a T2I-Adapter; anything else is
refused with the reason. Models are built on the ``meta`` device from the config
(:mod:`latentgraph.nodes.control.layout`) and receive the file's tensors directly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from latentgraph.device import weights_device
from latentgraph.nodes.checkpoint_files import CheckpointError, open_weights
from latentgraph.nodes.checkpoints import _materialise, _on_meta, device_and_dtype
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.control import layout
from latentgraph.nodes.control.residuals import ControlNet
from latentgraph.nodes.original_layout import UNET_PREFIX, unet_to_original
from latentgraph.settings import Settings

log = logging.getLogger("latentgraph.control")


def load_control_file(path: str | Path, settings: Settings, model: DiffusionModel | None = None) -> ControlNet:
    """A ControlNet or T2I-Adapter file as a CONTROL_NET; ``model`` completes "diff" ControlNets."""
    path = Path(path)
    weights = open_weights(path)
    device, dtype = device_and_dtype(settings)
    load_to = weights_device(settings)  # RAM when a device budget is set: the model memory copies it over
    prefix = layout.controlnet_prefix(weights)
    if prefix is not None:
        return _load_controlnet(weights, prefix, device, dtype, model, load_to)
    if layout.is_t2i_adapter(weights):
        return _load_adapter(weights, device, dtype, load_to)
    if "controlnet_cond_embedding.conv_in.weight" in weights:
        raise CheckpointError(f"{path.name}: a ControlNet in diffusers' naming; convert it to the original layout "
                              "(or load the diffusers folder's weights with their config) — this loader reads the "
                              "original single-file layout")
    raise CheckpointError(f"{path.name} is neither a ControlNet nor a T2I-Adapter (no zero_convs, input_hint_block "
                          "or adapter weights)")


def _load_controlnet(weights, prefix: str, device: torch.device, dtype: torch.dtype, model: DiffusionModel | None,
                     load_to: torch.device | None = None) -> ControlNet:
    from diffusers import ControlNetModel

    name = weights.path.name
    config = layout.metadata_config(weights) or layout.fit_controlnet_config(weights, prefix)
    tensors = {k[len(prefix):]: v for k, v in weights.tensors(weights.with_prefix(prefix)).items()}
    diff = "difference" in weights
    if diff:
        tensors = _add_base_weights(tensors, model, name)
    net = _on_meta(lambda: ControlNetModel.from_config(config))
    state = layout.original_to_diffusers(tensors, config, list(net.state_dict()), name)
    _materialise(net, state, dtype, "ControlNet", name, load_to or device)
    stem = weights.path.stem
    info = {"source": name, "diff": diff}
    return ControlNet(
        model=net, kind="controlnet", arch=layout.arch_of(config), device=device, dtype=dtype,
        global_average_pooling=stem.endswith(("_shuffle", "_shuffle_fp16")), info=info,
    )


def _add_base_weights(tensors: dict[str, torch.Tensor], model: DiffusionModel | None, name: str) -> dict[str, torch.Tensor]:
    """A "diff" ControlNet stores differences to its base UNet: add the MODEL's weights."""
    if model is None:
        log.warning("%s is a diff ControlNet but no model was given; it will very likely not work", name)
        return tensors
    base = unet_to_original(model.unet.state_dict(), dict(model.unet.config))
    out = {}
    for key, value in tensors.items():
        ref = base.get(UNET_PREFIX + key)
        if ref is not None and ref.shape == value.shape:
            value = value.float() + ref.float().to(value.device)
        out[key] = value
    return out


def _load_adapter(weights, device: torch.device, dtype: torch.dtype, load_to: torch.device | None = None) -> ControlNet:
    from diffusers import T2IAdapter

    name = weights.path.name
    config = layout.metadata_config(weights) or layout.fit_adapter_config(weights)
    net = _on_meta(lambda: T2IAdapter.from_config(config))
    expected = list(net.state_dict())
    state = layout.adapter_from_file(weights.tensors(weights.keys), config, expected, name)
    _materialise(net, state, dtype, "T2I-Adapter", name, load_to or device)
    xl = config.get("adapter_type") == "full_adapter_xl"
    return ControlNet(model=net, kind="t2i_adapter", arch="sdxl" if xl else None, device=device, dtype=dtype,
                      info={"source": name})


def wrap(model: Any, kind: str | None = None, device: torch.device | None = None) -> ControlNet:
    """A diffusers ControlNetModel / T2IAdapter already in memory as a CONTROL_NET (tests, plugins)."""
    kind = kind or ("t2i_adapter" if type(model).__name__ == "T2IAdapter" else "controlnet")
    param = next(model.parameters())
    arch = layout.arch_of(dict(model.config)) if kind == "controlnet" else None
    return ControlNet(model=model.eval(), kind=kind, arch=arch, device=device or param.device, dtype=param.dtype)


__all__ = ["CheckpointError", "load_control_file", "wrap"]
