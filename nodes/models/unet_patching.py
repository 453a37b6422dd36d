"""Changing what happens *inside* diffusers' UNet for one call, never for good.

A MODEL's ``unet`` module is shared by every MODEL derived from it (patches copy the
:class:`~latentgraph.nodes.components.DiffusionModel`, not the weights). Patches that act inside
the network — FreeU on the skip connections, attention multipliers, perturbed attention — are
therefore applied for the duration of one UNet call, through the ``unet_wrapper`` hook
(:mod:`latentgraph.nodes.sampling.hooks`), and undone when the call returns (or raises):

* :func:`temporary_hooks` registers torch forward / forward-pre hooks on named sub-modules and
  removes them in ``finally``;
* :func:`temporary_processors` swaps the ``processor`` of diffusers ``Attention`` modules and puts
  the old ones back.

:func:`during_unet_call` turns such a context-manager factory into a ``unet_wrapper`` hook. The
executor runs one prompt at a time, so a shared module is never seen half-patched by another run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from latentgraph.nodes.components import DiffusionModel
from latentgraph.nodes.sampling import hooks

#: ``fn(args) -> context manager``; ``args`` is the unet_wrapper's dict (input, timestep, kwargs,
#: sigma, cond_or_uncond) plus ``unet``.
PatchFactory = Callable[[dict[str, Any]], contextlib.AbstractContextManager]


def during_unet_call(model: DiffusionModel, factory: PatchFactory) -> DiffusionModel:
    """A copy of ``model`` whose every UNet call runs inside ``factory(args)``."""

    def wrapper(apply, args):
        with factory({**args, "unet": model.unet}):
            return apply(args["input"], args["timestep"], **args["kwargs"])

    return hooks.with_hook(model, hooks.UNET_WRAPPER, wrapper)


@contextlib.contextmanager
def temporary_hooks(
    root: torch.nn.Module,
    forward: Mapping[str, Callable] | None = None,
    pre: Mapping[str, Callable] | None = None,
    pre_kwargs: Mapping[str, Callable] | None = None,
) -> Iterator[None]:
    """torch hooks on ``root``'s sub-modules (by dotted name) for the ``with`` block only.

    ``forward[name](module, inputs, output) -> output | None``;
    ``pre[name](module, inputs) -> inputs | None``;
    ``pre_kwargs[name](module, args, kwargs) -> (args, kwargs) | None`` (torch's hook signatures).
    """
    handles = []
    try:
        for name, fn in (pre or {}).items():
            handles.append(root.get_submodule(name).register_forward_pre_hook(fn))
        for name, fn in (pre_kwargs or {}).items():
            handles.append(root.get_submodule(name).register_forward_pre_hook(fn, with_kwargs=True))
        for name, fn in (forward or {}).items():
            handles.append(root.get_submodule(name).register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def temporary_processors(root: torch.nn.Module, processors: Mapping[str, Callable[[Any], Any]]) -> Iterator[None]:
    """Replace ``Attention.processor`` of the named modules: ``processors[name](old) -> new``."""
    saved: list[tuple[Any, Any]] = []
    try:
        for name, make in processors.items():
            attn = root.get_submodule(name)
            saved.append((attn, attn.processor))
            attn.processor = make(attn.processor)
        yield
    finally:
        for attn, old in reversed(saved):
            attn.processor = old


def attention_modules(unet: torch.nn.Module, kind: str) -> list[str]:
    """Names of the UNet's self- (``attn1``) or cross-attention (``attn2``) modules."""
    suffix = {"self": ".attn1", "cross": ".attn2"}[kind]
    return [n for n, m in unet.named_modules() if n.endswith(suffix) and hasattr(m, "processor")]


def up_resnet_channels(config: Mapping[str, Any]) -> dict[str, int]:
    """Each up-block resnet → how many of its input channels are the upsampling path ``h``
    (the rest is the skip connection concatenated to it), from diffusers' UNet construction."""
    rev = list(reversed(config["block_out_channels"]))
    lpb = config["layers_per_block"]
    lpb = lpb[0] if isinstance(lpb, (list, tuple)) else lpb
    out: dict[str, int] = {}
    for i in range(len(rev)):
        prev = rev[max(i - 1, 0)]
        for j in range(lpb + 1):
            out[f"up_blocks.{i}.resnets.{j}"] = prev if j == 0 else rev[i]
    return out


def split_skip_pre_hook(h_channels: int, fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]):
    """A pre-hook for an up-block resnet that lets ``fn(h, skip)`` change both halves of its input
    (ComfyUI's ``output_block_patch``)."""

    def hook(module, inputs):
        x, *rest = inputs
        h, skip = x[:, :h_channels], x[:, h_channels:]
        h, skip = fn(h, skip)
        return (torch.cat([h, skip], dim=1), *rest)

    return hook
