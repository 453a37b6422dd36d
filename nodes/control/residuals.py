"""The CONTROL_NET value, a ControlNet applied to a conditioning, and the residuals it adds.

A :class:`ControlNet` (what ControlNetLoader outputs) is a diffusers ``ControlNetModel`` or
``T2IAdapter`` with what sampling needs to know about it. Applying it (ControlNetApply…) makes a
:class:`Control`: the net, the hint image, strength, the part of the run it acts on and the
control it was stacked on (``previous``), stored in the conditioning's extras under ``control``
(ComfyUI's key), so several ControlNets chain and each conditioning entry carries its own chain.

At each UNet call the guider asks the entry's chain for its residuals
(:func:`control_residuals`): every control active at this σ runs on the same noisy input, timestep
and text as the UNet and contributes, times its strength,

* ControlNet: ``down_block_additional_residuals`` (added to the UNet's skip connections) and
  ``mid_block_additional_residual``;
* T2I-Adapter: ``down_intrablock_additional_residuals`` (added inside the encoder; computed once
  per hint size, they do not depend on the noisy input);

summed over the chain (ComfyUI's order: the earlier control's residuals plus the later one's). The
hint is resized to the pixel size of the latent (or area crop) the UNet sees — nearest-exact,
after a centred crop to the crop's aspect ratio, as ComfyUI does — at the net's own downscale,
read from its hint encoder (8 for SD, 4 for the demo model's ControlNet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from latentgraph.nodes.images import center_crop_to_aspect

#: Hint resampling (ComfyUI's ``upscale_algorithm`` for these nets).
UPSCALE_MODE = "nearest-exact"


@dataclass(frozen=True, eq=False)
class ControlNet:
    """CONTROL_NET: a loaded ControlNet or T2I-Adapter, not yet given a hint."""

    model: Any  # diffusers ControlNetModel | T2IAdapter
    kind: str  # "controlnet" | "t2i_adapter"
    arch: str | None  # "sd1" | "sd2" | "sdxl" (None: not known)
    device: torch.device
    dtype: torch.dtype
    #: ComfyUI's shuffle ControlNets: residuals replaced by their spatial means.
    global_average_pooling: bool = False
    #: SetUnionControlNetType's ``control_type`` (read by union ControlNets only).
    extra_args: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def hint_downscale(self) -> int:
        """Hint pixels per latent cell: how far the hint encoder shrinks the hint before it meets
        the UNet's first features."""
        config = self.model.config
        if self.kind == "controlnet":
            return 2 ** (len(config.conditioning_embedding_out_channels) - 1)
        ds = int(config.downscale_factor)
        return ds // 2 if config.adapter_type == "full_adapter_xl" else ds

    @property
    def hint_channels(self) -> int:
        config = self.model.config
        return int(config.conditioning_channels if self.kind == "controlnet" else config.in_channels)


@dataclass(frozen=True, eq=False)
class Control:
    """A ControlNet with its hint (``[B, C, H, W]``, 0..1), as conditioning extras carry it.

    Compared by identity: entries sharing one Control share its UNet calls (ComfyUI's rule).
    """

    net: ControlNet
    hint: Tensor
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    previous: Control | None = None
    vae: Any = None
    _hints: dict = field(default_factory=dict, repr=False)
    _features: dict = field(default_factory=dict, repr=False)

    def chain(self) -> list[Control]:
        """This control and those it is stacked on, earliest first."""
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.previous
        return out[::-1]

    def active(self, sigma: float, model_sampling: Any) -> bool:
        high = model_sampling.percent_to_sigma(self.start_percent)
        low = model_sampling.percent_to_sigma(self.end_percent)
        return low <= sigma <= high

    def hint_for(self, height: int, width: int, batch: int, chunks: int) -> Tensor:
        """The hint at ``height × width`` pixels, rows matched to a batch of ``chunks`` equal parts."""
        return broadcast_rows(self.resized_hint(height, width), batch, chunks)

    def resized_hint(self, height: int, width: int) -> Tensor:
        key = (height, width)
        hint = self._hints.get(key)
        if hint is None:
            hint = resize_center(self.hint.float(), height, width)
            if self.net.kind == "t2i_adapter" and self.net.hint_channels == 1 and hint.shape[1] > 1:
                hint = hint.mean(1, keepdim=True)
            hint = hint.to(self.net.device, self.net.dtype)
            self._hints[key] = hint
        return hint


def resize_center(image: Tensor, height: int, width: int) -> Tensor:
    """``[B, C, H, W]`` cropped about its centre to the target's aspect ratio, then resampled."""
    old_h, old_w = image.shape[-2:]
    if (old_h, old_w) == (height, width):
        return image
    image = center_crop_to_aspect(image, width, height)
    return F.interpolate(image, size=(height, width), mode=UPSCALE_MODE)


def broadcast_rows(hint: Tensor, batch: int, chunks: int) -> Tensor:
    """A hint of 1 row serves every row; a batch of hints is cut or cycled to each chunk's rows."""
    if hint.shape[0] == 1 or hint.shape[0] == batch:
        return hint if hint.shape[0] == batch else hint.expand(batch, *hint.shape[1:])
    per_chunk = batch // chunks
    rows = hint[:per_chunk]
    if rows.shape[0] < per_chunk:
        rows = rows.repeat(math.ceil(per_chunk / rows.shape[0]), 1, 1, 1)[:per_chunk]
    return rows.repeat(chunks, 1, 1, 1)


@dataclass
class Residuals:
    down: list[Tensor] | None = None  # ControlNet: one per UNet skip connection
    mid: Tensor | None = None
    intrablock: list[Tensor] | None = None  # T2I-Adapter: one per encoder level

    def add(self, other: Residuals) -> Residuals:
        def plus(a, b):
            if a is None:
                return b
            if b is None:
                return a
            if isinstance(a, list):
                return [x + y for x, y in zip(a, b)] + (a[len(b):] if len(a) > len(b) else b[len(a):])
            return a + b

        return Residuals(plus(self.down, other.down), plus(self.mid, other.mid), plus(self.intrablock, other.intrablock))

    def unet_kwargs(self, dtype: torch.dtype) -> dict[str, Any]:
        """Keyword arguments of diffusers' ``UNet2DConditionModel`` (fresh lists: the UNet pops them)."""
        kw: dict[str, Any] = {}
        if self.down is not None:
            kw["down_block_additional_residuals"] = tuple(r.to(dtype) for r in self.down)
            kw["mid_block_additional_residual"] = self.mid.to(dtype) if self.mid is not None else None
        if self.intrablock is not None:
            kw["down_intrablock_additional_residuals"] = [r.to(dtype) for r in self.intrablock]
        return kw


def _own_residuals(control: Control, x_in: Tensor, t: Tensor, hidden: Tensor, added: dict[str, Tensor] | None,
                   chunks: int) -> Residuals:
    net = control.net
    h, w = x_in.shape[-2] * net.hint_downscale, x_in.shape[-1] * net.hint_downscale
    if net.kind == "t2i_adapter":
        features = control._features.get((h, w))
        if features is None:
            with torch.no_grad():
                features = [f.float() * control.strength for f in net.model(control.resized_hint(h, w))]
            control._features[(h, w)] = features
        return Residuals(intrablock=[broadcast_rows(f, x_in.shape[0], chunks) for f in features])
    hint = control.hint_for(h, w, x_in.shape[0], chunks)
    kwargs: dict[str, Any] = {}
    if added is not None and getattr(net.model.config, "addition_embed_type", None) == "text_time":
        kwargs["added_cond_kwargs"] = {k: v.to(net.device, net.dtype) for k, v in added.items()}
    with torch.no_grad():
        down, mid = net.model(
            x_in.to(net.device, net.dtype), t.to(net.device), encoder_hidden_states=hidden.to(net.device, net.dtype),
            controlnet_cond=hint, conditioning_scale=float(control.strength), return_dict=False, **kwargs,
        )
    down, mid = [d.float() for d in down], mid.float()
    if net.global_average_pooling:
        down = [d.mean(dim=(2, 3), keepdim=True).expand_as(d) for d in down]
        mid = mid.mean(dim=(2, 3), keepdim=True).expand_as(mid)
    return Residuals(down=down, mid=mid)


def control_residuals(control: Control, x_in: Tensor, t: Tensor, sigma: float, hidden: Tensor,
                      added: dict[str, Tensor] | None, model_sampling: Any, chunks: int = 1) -> Residuals | None:
    """Summed residuals of ``control``'s chain active at ``sigma`` for one UNet call.

    ``x_in`` is the UNet's (scaled) input, ``t`` its timesteps, ``hidden``/``added`` its text
    conditioning, ``chunks`` the number of conditionings batched into it.
    """
    total: Residuals | None = None
    for node in control.chain():
        if not node.active(sigma, model_sampling):
            continue
        own = _own_residuals(node, x_in, t, hidden, added, chunks)
        total = own if total is None else total.add(own)
    return total
