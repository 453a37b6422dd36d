"""Upscale models (ESRGAN, Real-ESRGAN Compact, SwinIR, … — whatever ``spandrel`` recognises):
UpscaleModelLoader and ImageUpscaleWithModel (tiled, with progress, smaller tiles on out-of-memory).

Weights are read safetensors-first; ``.pth``/``.pt``/``.ckpt``/``.bin`` only as plain tensors
(``torch.load(weights_only=True)`` through :func:`open_weights`), never unpickling code.

``spandrel`` imports ``torchvision`` at import time for two architectures (LaMa, RestoreFormer),
yet torchvision has no build that imports beside every torch (e.g. CPU torch 2.13.0). When the
import fails for that reason alone, spandrel is imported with a stand-in for those two names, which
raises if one of those two architectures is ever run; the stand-in is removed right after, so
nothing else sees a fake torchvision.
"""

from __future__ import annotations

import enum
import importlib
import sys
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.checkpoint_files import CheckpointError, open_weights
from latentgraph.nodes.loaders import file_fingerprint_of, resolve_model
from latentgraph import model_folders

KIND = "upscale_models"
TILE = 512
OVERLAP = 32
MIN_TILE = 128
_SWINIR_KEY = "module.layers.0.residual_group.blocks.0.norm1.weight"


# -- spandrel ---------------------------------------------------------------------------------


def _torchvision_standin() -> dict[str, types.ModuleType]:
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("this model architecture needs torchvision, which cannot be imported here")

    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    tv.__path__ = transforms.__path__ = []  # packages, so the submodule import resolves
    functional.InterpolationMode = enum.Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC")
    functional.rotate = functional.normalize = unavailable
    tv.transforms, transforms.functional = transforms, functional
    return {"torchvision": tv, "torchvision.transforms": transforms, "torchvision.transforms.functional": functional}


def _forget(prefix: str) -> None:
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


def import_spandrel():
    """The ``spandrel`` module (see the module docstring about torchvision)."""
    if "spandrel" in sys.modules and hasattr(sys.modules["spandrel"], "ModelLoader"):
        return sys.modules["spandrel"]
    try:
        return importlib.import_module("spandrel")
    except ModuleNotFoundError as exc:
        if exc.name == "spandrel":
            raise
        if not (exc.name or "").startswith("torchvision") and "torchvision" not in str(exc):
            raise
    except (ImportError, RuntimeError) as exc:  # a torchvision that exists but cannot load
        if "torchvision" not in str(exc):
            raise
    _forget("spandrel")
    _forget("torchvision")
    standin = _torchvision_standin()
    sys.modules.update(standin)
    try:
        return importlib.import_module("spandrel")
    finally:
        for name, module in standin.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def load_upscale_model(path) -> Any:
    """A spandrel ``ImageModelDescriptor`` (in eval mode, on the CPU) from a weight file."""
    try:
        spandrel = import_spandrel()
    except ImportError as exc:
        raise CheckpointError(
            f"upscale models need the 'spandrel' package ({exc}); install it with "
            "'pip install --no-deps spandrel einops' (plain 'pip install spandrel' may replace torch)"
        ) from None
    weights = open_weights(path)
    state = weights.tensors(weights.keys)
    if _SWINIR_KEY in state:
        state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except Exception as exc:  # unknown architecture, or weights that do not fit it
        raise CheckpointError(f"{path.name} is not an upscale model spandrel recognises: {exc}") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise CheckpointError(f"{path.name} is a {descriptor.architecture.name} model, not a single-image upscaler")
    return descriptor.eval()


# -- tiling ------------------------------------------------------------------------------------


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Offsets of tiles of ``tile`` covering ``[0, size)``, each overlapping the previous by at
    least ``overlap``; the last one ends at the border."""
    if size <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, size - tile, stride))
    return [*starts, size - tile]


def tile_count(height: int, width: int, tile: int, overlap: int) -> int:
    return len(tile_starts(height, tile, overlap)) * len(tile_starts(width, tile, overlap))


def _blend_weights(h: int, w: int, feather: int, device) -> Tensor:
    """1 inside, falling linearly to 1/feather over ``feather`` pixels at every side."""
    def axis(n: int) -> Tensor:
        ramp = torch.ones(n, device=device)
        f = min(feather, n // 2)
        if f > 0:
            steps = torch.arange(1, f + 1, device=device, dtype=torch.float32) / f
            ramp[:f] = steps
            ramp[n - f :] = torch.minimum(ramp[n - f :], steps.flip(0))
        return ramp

    return axis(h)[:, None] * axis(w)[None, :]


def upscale_tiled(
    images: Tensor,
    fn: Callable[[Tensor], Tensor],
    scale: float,
    tile: int = TILE,
    overlap: int = OVERLAP,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """``fn`` (``[1, C, h, w]`` → ``[1, C', h·scale, w·scale]``) over overlapping tiles of each
    image of ``images`` ``[B, C, H, W]``, blended with linear feathering; the result is on the CPU."""
    b, _, height, width = images.shape
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    total, done = b * len(ys) * len(xs), 0
    out_h, out_w = round(height * scale), round(width * scale)
    feather = round(overlap * scale)
    result: Tensor | None = None
    for i in range(b):
        acc = weight = None
        for y in ys:
            for x in xs:
                piece = fn(images[i : i + 1, :, y : y + tile, x : x + tile]).float().cpu()
                if result is None:
                    result = torch.empty(b, piece.shape[1], out_h, out_w)
                if len(ys) == len(xs) == 1:
                    acc, weight = piece, None
                else:
                    if acc is None:
                        acc = torch.zeros(1, piece.shape[1], out_h, out_w)
                        weight = torch.zeros(1, 1, out_h, out_w)
                    oy, ox = round(y * scale), round(x * scale)
                    ph, pw = min(piece.shape[2], out_h - oy), min(piece.shape[3], out_w - ox)
                    wgt = _blend_weights(ph, pw, feather, "cpu")[None, None]
                    acc[:, :, oy : oy + ph, ox : ox + pw] += piece[:, :, :ph, :pw] * wgt
                    weight[:, :, oy : oy + ph, ox : ox + pw] += wgt
                done += 1
                if progress is not None:
                    progress(done, total)
        result[i : i + 1] = acc if weight is None else acc / weight
    return result


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def upscale_with_model(model: Any, image: Tensor, device: torch.device | str = "cpu",
                       progress: Callable[[int, int], None] | None = None,
                       tile: int = TILE, overlap: int = OVERLAP) -> Tensor:
    """IMAGE ``[B, H, W, C]`` → upscaled IMAGE clamped to 0..1. On out-of-memory the tile is halved
    and the image started over, down to 128 px tiles (then the error is raised), as ComfyUI."""
    channels = getattr(model, "input_channels", 3)
    pixels = image[..., :channels].movedim(-1, 1).to(device, torch.float32)
    model.to(device)
    try:
        while True:
            try:
                with torch.inference_mode():
                    out = upscale_tiled(pixels, model, float(model.scale), tile, overlap, progress)
                break
            except Exception as exc:
                if not _is_oom(exc) or tile // 2 < MIN_TILE:
                    raise
                tile //= 2
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
    finally:
        model.to("cpu")
    return out.movedim(1, -1).clamp(0.0, 1.0)


# -- nodes -------------------------------------------------------------------------------------


_model_choices = model_folders.choices(KIND)


class UpscaleModelLoader(Node):
    spec = NodeSpec(
        name="UpscaleModelLoader",
        display_name="Load Upscale Model",
        category="loaders",
        description="Loads an upscale model (ESRGAN, Real-ESRGAN, SwinIR, … via spandrel) from models/upscale_models.",
        inputs=(In("model_name", "COMBO", choices=_model_choices),),
        outputs=(Out("UPSCALE_MODEL"),),
    )

    def execute(self, ctx, model_name):
        path = resolve_model(ctx.settings, KIND, model_name, "model_name")
        try:
            return (load_upscale_model(path),)
        except CheckpointError as exc:
            raise NodeInputError("model_name", str(exc)) from None

    fingerprint = file_fingerprint_of(KIND, "model_name")


class ImageUpscaleWithModel(Node):
    spec = NodeSpec(
        name="ImageUpscaleWithModel",
        display_name="Upscale Image (using Model)",
        category="image/upscaling",
        description="Upscales the image with the model, in 512 px tiles (smaller when memory runs out).",
        inputs=(In("upscale_model", "UPSCALE_MODEL"), In("image", "IMAGE")),
        outputs=(Out("IMAGE"),),
    )

    def execute(self, ctx, upscale_model, image):
        from latentgraph.device import pick_device

        if not isinstance(image, Tensor) or image.ndim != 4:
            raise NodeInputError("image", "expected an IMAGE tensor [batch, height, width, channels]")
        if not hasattr(upscale_model, "scale") or not callable(upscale_model):
            raise NodeInputError("upscale_model", "expected an UPSCALE_MODEL (from UpscaleModelLoader)")
        device = pick_device(ctx.settings.device)
        return (upscale_with_model(upscale_model, image, device, progress=ctx.progress),)


NODES = [UpscaleModelLoader, ImageUpscaleWithModel]
