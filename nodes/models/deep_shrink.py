"""Kohya's "deep shrink" (PatchModelAddDownscale): the UNet works at a smaller size below one of its
input blocks early in the run, and is brought back to size where the decoder meets the skips.

ComfyUI numbers the input blocks of the original layout: 0 is the first convolution, then one per
down-block layer (resnet + attention) and one per downsampler. Here the same numbering is mapped
onto diffusers' modules; torch forward hooks (for one UNet call, through
:mod:`.unet_patching`) shrink that block's output, keep the full-size skip where
``downscale_after_skip`` asks for it, and resize the decoder's running features to each skip's
size before they are concatenated (ComfyUI's output-block patch).
"""

from __future__ import annotations

from typing import Any

import torch

from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.latents import resize_latents
from latentgraph.nodes.models.unet_patching import during_unet_call, temporary_hooks

METHODS = ("bicubic", "nearest-exact", "bilinear", "area", "bislerp")


def input_block_modules(unet: torch.nn.Module) -> dict[int, tuple[str, str]]:
    """ComfyUI input-block number → (module whose output ends that block, the down block holding it)."""
    out: dict[int, tuple[str, str]] = {0: ("conv_in", "")}
    n = 0
    for b, block in enumerate(unet.down_blocks):
        attentions = getattr(block, "attentions", None)
        for j in range(len(block.resnets)):
            n += 1
            out[n] = (f"down_blocks.{b}.{'attentions' if attentions else 'resnets'}.{j}", f"down_blocks.{b}")
        if getattr(block, "downsamplers", None):
            n += 1
            out[n] = (f"down_blocks.{b}.downsamplers.0", f"down_blocks.{b}")
    return out


def _resize(x: torch.Tensor, size: tuple[int, int], method: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x  # (ComfyUI resamples to the same size too: bicubic is then not exactly the identity)
    return resize_latents(x, int(size[1]), int(size[0]), method, "disabled")


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output: Any, value: torch.Tensor) -> Any:
    return (value, *output[1:]) if isinstance(output, tuple) else value


def deep_shrink(model: DiffusionModel, block_number: int, downscale_factor: float, start_percent: float,
                end_percent: float, downscale_after_skip: bool, downscale_method: str, upscale_method: str) -> DiffusionModel:
    ms = model.model_sampling
    sigma_start, sigma_end = float(ms.percent_to_sigma(start_percent)), float(ms.percent_to_sigma(end_percent))
    blocks = input_block_modules(model.unet)
    if block_number not in blocks:
        return model  # ComfyUI: a block number past the last input block matches nothing
    shrink_at, down_block = blocks[block_number]

    def factory(args):
        sigma = float(args["sigma"].flatten()[0])
        forward: dict[str, Any] = {}
        pre: dict[str, Any] = {}
        full: dict[int, torch.Tensor] = {}  # id(shrunk tensor) → its full-size original
        if sigma_end <= sigma <= sigma_start:
            def shrink(module, inputs, output):
                h = _first(output)
                size = (round(h.shape[-2] / downscale_factor), round(h.shape[-1] / downscale_factor))
                small = _resize(h, size, downscale_method)
                if downscale_after_skip:
                    full[id(small)] = h
                return _replace_first(output, small)

            forward[shrink_at] = shrink
            if downscale_after_skip and down_block:
                def keep_skip(module, inputs, output):
                    hidden, states = output
                    return hidden, tuple(full.get(id(s), s) for s in states)

                forward[down_block] = keep_skip
        _decoder_hooks(args["unet"], upscale_method, forward, pre)
        return temporary_hooks(args["unet"], forward=forward, pre_kwargs=pre)

    return during_unet_call(model, factory)


def _decoder_hooks(unet: torch.nn.Module, method: str, forward: dict[str, Any], pre: dict[str, Any]) -> None:
    """Resize the decoder's features to the size of the skip they are about to be joined with."""
    for i, block in enumerate(unet.up_blocks):
        name = f"up_blocks.{i}"
        skips: dict[str, Any] = {}

        def enter(module, args, kwargs, skips=skips):
            tup = kwargs.get("res_hidden_states_tuple")
            if tup is None:
                return None
            skips["sizes"] = [tuple(t.shape[-2:]) for t in reversed(tup)]  # in the order they are used
            h = kwargs.get("hidden_states")
            if h is not None and tuple(h.shape[-2:]) != skips["sizes"][0]:
                return args, {**kwargs, "hidden_states": _resize(h, skips["sizes"][0], method)}
            return None

        pre[name] = enter
        attentions = getattr(block, "attentions", None)
        for j in range(1, len(block.resnets)):
            before = f"{name}.{'attentions' if attentions else 'resnets'}.{j - 1}"

            def fit(module, inputs, output, j=j, skips=skips):
                h = _first(output)
                size = skips.get("sizes", [None] * (j + 1))[j]
                if size is None or tuple(h.shape[-2:]) == size:
                    return None
                return _replace_first(output, _resize(h, size, method))

            forward[before] = fit


class PatchModelAddDownscale(Node):
    spec = NodeSpec(
        name="PatchModelAddDownscale",
        display_name="PatchModelAddDownscale (Kohya Deep Shrink)",
        category="model_patches/unet",
        description="Kohya's deep shrink: between start and end percent the UNet runs below the given input block "
        "at a size divided by the factor, and is scaled back where the decoder meets the skips.",
        inputs=(
            In("model", "MODEL"),
            In("block_number", "INT", default=3, min=1, max=32, step=1),
            In("downscale_factor", "FLOAT", default=2.0, min=0.1, max=9.0, step=0.001),
            In("start_percent", "FLOAT", default=0.0, min=0.0, max=1.0, step=0.001),
            In("end_percent", "FLOAT", default=0.35, min=0.0, max=1.0, step=0.001),
            In("downscale_after_skip", "BOOLEAN", default=True),
            In("downscale_method", "COMBO", choices=METHODS),
            In("upscale_method", "COMBO", choices=METHODS),
        ),
        outputs=(Out("MODEL"),),
    )

    def execute(self, ctx, model, block_number=3, downscale_factor=2.0, start_percent=0.0, end_percent=0.35,
                downscale_after_skip=True, downscale_method="bicubic", upscale_method="bicubic"):
        return (deep_shrink(model, block_number, downscale_factor, start_percent, end_percent, downscale_after_skip,
                            downscale_method, upscale_method),)


NODES = [PatchModelAddDownscale]
