"""Image I/O nodes: SaveImage, PreviewImage, LoadImage, ImageScale.

Names, inputs and file naming follow ComfyUI so its workflows run unchanged and its PNGs (with the
workflow inside) load both ways. IMAGE values are float tensors ``[B, H, W, C]`` in 0..1 on any
device; MASK values are ``[B, H, W]`` where 1 means "masked" (ComfyUI's 1 − alpha).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeResult, NodeSpec, Out
from latentgraph import pngmeta
from latentgraph.output_names import OutputNames, name_key, output_names, remove_partials, write_atomically

if TYPE_CHECKING:
    from latentgraph.context import ExecutionContext
    from latentgraph.registry import NodeRegistry
    from latentgraph.settings import Settings

#: Largest side ComfyUI accepts for image sizes.
MAX_RESOLUTION = 16384
#: Files LoadImage offers; Pillow reads all of these without plugins.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".tga", ".ppm", ".pgm", ".pnm", ".avif"}
)
#: ComfyUI's "annotated" names: ``"x.png [output]"`` reads from the output folder, etc.
_ANNOTATION = re.compile(r"^(?P<name>.*?)\s*\[(?P<kind>input|output|temp)\]$")
#: Multi-picture JPEGs hold stereo/preview pictures, not animation frames.
_SINGLE_FRAME_FORMATS = frozenset({"MPO"})


# -- paths ------------------------------------------------------------------------------------


def safe_join(base: Path, relative: str) -> Path | None:
    """``base / relative`` resolved, or None if it would leave ``base`` (``..``, absolute, symlink)."""
    rel = relative.replace("\\", "/")
    if not rel or "\x00" in rel or rel.startswith("/") or ".." in PurePosixPath(rel).parts:
        return None
    root = base.resolve()
    candidate = (root / rel).resolve()
    if not candidate.is_relative_to(root):
        return None
    return candidate


# -- saving -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaveTarget:
    """Where a batch of images goes: ``folder/<name>_<counter:05>_.png``."""

    folder: Path
    subfolder: str  # posix, relative to the output root; "" for the root itself
    name: str


def resolve_save_prefix(root: Path, prefix: str, width: int, height: int) -> SaveTarget:
    """Split a ``filename_prefix`` such as ``"portraits/img"`` into a folder inside ``root``.

    Expands ComfyUI's ``%width%``, ``%height%``, ``%year%`` … ``%second%`` variables. Refuses
    prefixes that would write outside ``root``.
    """
    expanded = _expand_prefix_vars(prefix, width, height)
    text = expanded.replace("\\", "/").strip()
    if not text or text.endswith("/"):
        raise NodeInputError("filename_prefix", f"'{prefix}' has no file name part; use e.g. 'folder/name'")
    sub, _, name = text.rpartition("/")
    if name in (".", ".."):
        raise NodeInputError("filename_prefix", f"'{prefix}' has no file name part; use e.g. 'folder/name'")
    folder = safe_join(root, sub) if sub else root.resolve()
    if folder is None:
        raise NodeInputError("filename_prefix", f"'{prefix}' points outside the output folder")
    subfolder = folder.relative_to(root.resolve()).as_posix()
    return SaveTarget(folder=folder, subfolder="" if subfolder == "." else subfolder, name=name)


def _expand_prefix_vars(prefix: str, width: int, height: int) -> str:
    if "%" not in prefix:
        return prefix
    now = time.localtime()
    values = {
        "width": width,
        "height": height,
        "year": now.tm_year,
        "month": f"{now.tm_mon:02}",
        "day": f"{now.tm_mday:02}",
        "hour": f"{now.tm_hour:02}",
        "minute": f"{now.tm_min:02}",
        "second": f"{now.tm_sec:02}",
    }
    for key, value in values.items():
        prefix = prefix.replace(f"%{key}%", str(value))
    return prefix


def next_counter(folder: Path, name: str) -> int:
    """1 + the highest ``<name>_<digits>…`` counter among the folder's files (ComfyUI's scheme)."""
    start = name + "_"
    highest = 0
    if not folder.is_dir():
        return 1
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(start):
                digits = entry.name[len(start) :].split("_", 1)[0].split(".", 1)[0]
                if digits.isdigit():
                    highest = max(highest, int(digits))
    return highest + 1


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """One ``[H, W, C]`` float image (C = 1, 3 or 4) → 8-bit PIL image: ``255·x`` clamped and
    truncated, as ComfyUI saves, so the same latents give the same PNG bytes."""
    if image.ndim == 2:
        image = image[..., None]
    channels = image.shape[-1]
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if image.ndim != 3 or channels not in modes:
        raise ValueError(f"expected an image [H, W, C] with C in 1, 3, 4; got shape {tuple(image.shape)}")
    pixels = image.detach().to("cpu", torch.float32).nan_to_num(0.0).clamp(0.0, 1.0)
    array = (pixels * 255.0).to(torch.uint8).numpy()
    if channels == 1:
        array = array[..., 0]
    return Image.fromarray(array, modes[channels])


def _as_batch(images: Any) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise NodeInputError("images", f"expected an IMAGE tensor, got {type(images).__name__}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[0] == 0 or images.shape[-1] not in (1, 3, 4):
        raise NodeInputError("images", f"expected an IMAGE batch [B, H, W, C] with C in 1, 3, 4; got shape {tuple(images.shape)}")
    return images


def encode_png(image: Image.Image, chunks: Mapping[str, str], compress_level: int) -> bytes:
    """PNG bytes; identical input gives identical bytes (no time chunk, fixed zlib level)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=pngmeta.png_info(chunks), compress_level=compress_level)
    return buffer.getvalue()


def write_new_file(
    folder: Path, name: str, counter: int, data: bytes, reserve: Callable[[str, bool], None] | None = None
) -> tuple[str, int]:
    """Write ``<name>_<counter:05>_.png`` without ever overwriting; returns (filename, counter).
    ``reserve(filename, written)`` records the name before the file exists and once it does."""
    while True:
        filename = f"{name}_{counter:05}_.png"
        if not (folder / filename).exists():
            if reserve is not None:
                reserve(filename, False)
            if write_atomically(folder / filename, data, replace=False):
                if reserve is not None:
                    reserve(filename, True)
                return filename, counter
        counter += 1  # another run took this number meanwhile


def rewrite_reserved(root: Path, folder_type: str, names: OutputNames, key: str, data: bytes) -> dict[str, str] | None:
    """A re-run after a crash: write the file an earlier attempt reserved under ``key`` again
    (replacing it if that attempt wrote it), so no file is left behind and the names a client
    was told stay true. None when there is no usable reservation."""
    earlier = names.reserved(key)
    if earlier is None:
        return None
    rel, written = earlier
    path = safe_join(root, rel)
    if path is None or not path.parent.is_dir():
        return None
    remove_partials(path)
    if not write_atomically(path, data, replace=written) and not _holds(path, data):
        return None  # reserved but never written, and someone else has that name now
    names.reserve(key, folder_type, rel, written=True)
    subfolder, _, filename = rel.rpartition("/")
    return {"filename": filename, "subfolder": subfolder, "type": folder_type}


def _reserver(names: OutputNames, key: str, folder_type: str, subfolder: str) -> Callable[[str, bool], None]:
    prefix = f"{subfolder}/" if subfolder else ""

    def reserve(filename: str, written: bool) -> None:
        names.reserve(key, folder_type, prefix + filename, written=written)

    return reserve


def _holds(path: Path, data: bytes) -> bool:
    """``path`` already has exactly ``data`` (the attempt died between writing and confirming)."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def save_images(
    ctx: ExecutionContext,
    images: Any,
    filename_prefix: str,
    root: Path,
    folder_type: str,
    compress_level: int,
) -> NodeResult:
    batch = _as_batch(images)
    height, width = int(batch.shape[1]), int(batch.shape[2])
    target = resolve_save_prefix(root, filename_prefix, width, height)
    extra = ctx.extra or {}
    chunks = pngmeta.workflow_chunks(extra.get("prompt"), extra.get("workflow"), extra.get("extra_pnginfo"))
    names = output_names(extra)
    try:
        target.folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NodeInputError("filename_prefix", f"cannot create the folder '{target.subfolder}': {exc.strerror or exc}") from exc
    results = []
    counters: dict[str, int] = {}
    for index in range(batch.shape[0]):
        ctx.check_interrupted()
        name = target.name.replace("%batch_num%", str(index))
        data = encode_png(tensor_to_pil(batch[index]), chunks, compress_level)
        key = name_key(ctx.node_id, folder_type, index)
        again = rewrite_reserved(root, folder_type, names, key, data) if names is not None else None
        if again is not None:
            results.append(again)
            continue
        reserve = _reserver(names, key, folder_type, target.subfolder) if names is not None else None
        if name not in counters:
            counters[name] = next_counter(target.folder, name)
        filename, used = write_new_file(target.folder, name, counters[name], data, reserve)
        counters[name] = used + 1
        results.append({"filename": filename, "subfolder": target.subfolder, "type": folder_type})
    return NodeResult(outputs=(), ui={"images": results})


class SaveImage(Node):
    """Writes PNGs with the workflow embedded; an identical re-run is served from cache."""

    spec = NodeSpec(
        name="SaveImage",
        display_name="Save Image",
        category="image",
        description="Saves the images as PNG files (workflow embedded) in the output folder.",
        inputs=(
            In("images", "IMAGE", tooltip="The images to save."),
            In(
                "filename_prefix",
                "STRING",
                default="latentgraph",
                tooltip="File name prefix; may contain subfolders ('portraits/img') and %width%, %height%, %year%… variables.",
            ),
        ),
        outputs=(),
        output_node=True,
    )

    def execute(self, ctx: ExecutionContext, images: Any, filename_prefix: str = "latentgraph") -> NodeResult:
        return save_images(ctx, images, filename_prefix, ctx.settings.output_dir, "output", compress_level=4)


class PreviewImage(Node):
    """Like SaveImage but into the temp folder, fast compression, for showing in the UI."""

    PREFIX = "latentgraph_temp"

    spec = NodeSpec(
        name="PreviewImage",
        display_name="Preview Image",
        category="image",
        description="Shows the images without keeping them (written to the temp folder).",
        inputs=(In("images", "IMAGE", tooltip="The images to preview."),),
        outputs=(),
        output_node=True,
    )

    def execute(self, ctx: ExecutionContext, images: Any) -> NodeResult:
        return save_images(ctx, images, self.PREFIX, ctx.settings.temp_dir, "temp", compress_level=1)


# -- loading ----------------------------------------------------------------------------------


def walk_input_files(settings: Settings) -> Iterator[tuple[Path, Path]]:
    """``(root, path)`` for every file under the (resolved) input folders, in a stable order.

    Hidden files and folders are skipped; callers decide which of the rest they list.
    """
    for folder in settings.input_dirs():
        root = folder.resolve()
        if not root.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in filenames:
                if not filename.startswith("."):
                    yield root, Path(dirpath, filename)


def find_annotated_file(settings: Settings, name: str, input_name: str) -> tuple[str, Path]:
    """``(name, path)`` for a file-picker value: ``"x.png"`` is looked up in the input folders,
    ``"x.png [output]"`` / ``"[temp]"`` in that folder instead. ``name`` comes back without the
    annotation; ``path`` is the first existing candidate, else the first folder's (which may not
    exist). A name leading outside the folder is an error on input ``input_name``.
    """
    roots = settings.input_dirs()
    match = _ANNOTATION.match(name.strip())
    if match:
        name = match["name"]
        if match["kind"] != "input":
            roots = [settings.output_dir if match["kind"] == "output" else settings.temp_dir]
    candidates = [safe_join(root, name) for root in roots]
    if candidates[0] is None:
        raise NodeInputError(input_name, f"'{name}' points outside the {roots[0].name} folder")
    path = next((c for c in candidates if c is not None and c.is_file()), candidates[0])
    return name, path


def list_input_images(settings: Settings, registry: NodeRegistry | None = None) -> list[str]:
    """Image files under the input folders as ``name.png`` / ``sub/name.png``, sorted.

    Hidden files and folders are skipped, and so are links that lead outside their folder.
    """
    found: set[str] = set()
    for root, path in walk_input_files(settings):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        real = path.resolve()
        if real.is_file() and real.is_relative_to(root):
            found.add(path.relative_to(root).as_posix())
    return sorted(found)


def resolve_image_name(settings: Settings, name: str) -> Path:
    """The file a LoadImage ``image`` value names; ``"x.png [output]"`` selects another folder."""
    if not isinstance(name, str) or not name.strip():
        raise NodeInputError("image", "no image selected")
    name, path = find_annotated_file(settings, name, "image")
    if not path.is_file():
        available = list_input_images(settings)
        shown = ", ".join(available[:20]) + (f", … ({len(available)} in all)" if len(available) > 20 else "")
        hint = f"available: {shown}" if available else f"the input folder {settings.input_dir} has no images"
        raise NodeInputError("image", f"image file '{name}' not found; {hint}")
    return path


def _frame_to_tensors(frame: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """One PIL frame → image [H, W, 3] and mask [H, W] (1 − alpha; zeros without alpha)."""
    if frame.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N"):
        # 16-bit grayscale: keep its precision instead of squashing through 8 bits.
        gray = torch.from_numpy(_as_array(frame).astype("float32")) / 65535.0
        image = gray.clamp(0.0, 1.0)[..., None].expand(-1, -1, 3).contiguous()
    elif frame.mode == "F":
        image = torch.from_numpy(_as_array(frame)).clamp(0.0, 1.0)[..., None].expand(-1, -1, 3).contiguous()
    else:
        image = torch.from_numpy(_as_array(frame.convert("RGB"))).to(torch.float32) / 255.0
    has_alpha = "A" in frame.getbands() or "transparency" in frame.info
    if has_alpha:
        alpha = torch.from_numpy(_as_array(frame.convert("RGBA").getchannel("A"))).to(torch.float32) / 255.0
        mask = 1.0 - alpha
    else:
        mask = torch.zeros(image.shape[:2], dtype=torch.float32)
    return image, mask


def _as_array(img: Image.Image):
    import numpy as np  # numpy ships with torch's usual installs; only needed for the bridge

    return np.array(img).copy()


def read_image_file(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """All same-size frames of an image file → (IMAGE [B, H, W, 3], MASK [B, H, W]).

    EXIF orientation is applied; frames whose size differs from the first are skipped.
    """
    images: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    with Image.open(path) as img:
        for frame in ImageSequence.Iterator(img):
            upright = ImageOps.exif_transpose(frame) or frame
            image, mask = _frame_to_tensors(upright)
            if images and image.shape != images[0].shape:
                continue
            images.append(image)
            masks.append(mask)
            if img.format in _SINGLE_FRAME_FORMATS:
                break
    return torch.stack(images), torch.stack(masks)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LoadImage(Node):
    """Reads an image from the input folder; re-runs only when the file's content changes."""

    spec = NodeSpec(
        name="LoadImage",
        display_name="Load Image",
        category="image",
        description="Loads an image (all frames of an animation) and its alpha channel as a mask.",
        inputs=(
            In(
                "image",
                "COMBO",
                choices=list_input_images,
                tooltip="A file in the input folder.",
                strict_choices=False,  # check_inputs also accepts ComfyUI's "name.png [output]"
                editor_options={"image_upload": True},
            ),
        ),
        outputs=(Out("IMAGE"), Out("MASK")),
        deterministic=False,
    )

    def execute(self, ctx: ExecutionContext, image: str) -> tuple[torch.Tensor, torch.Tensor]:
        path = resolve_image_name(ctx.settings, image)
        try:
            return read_image_file(path)
        except UnidentifiedImageError as exc:
            raise NodeInputError("image", f"'{image}' is not an image that can be read (unknown format)") from exc
        except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
            raise NodeInputError("image", f"'{image}' could not be decoded: {exc}") from exc

    @classmethod
    def fingerprint(cls, settings: Settings, inputs: Mapping[str, Any]) -> str | None:
        """Content hash: an edited file re-runs, an untouched one is served from cache."""
        try:
            path = resolve_image_name(settings, inputs.get("image", ""))
        except NodeInputError:
            return None
        return _file_digest(path)

    @classmethod
    def check_inputs(cls, settings: Settings, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        name = inputs.get("image")
        if not isinstance(name, str):
            return []
        try:
            path = resolve_image_name(settings, name)
        except NodeInputError as exc:
            return [("image", str(exc))]
        try:
            Image.open(path).close()  # reads the header only: cheap, catches non-images
        except UnidentifiedImageError:
            return [("image", f"input 'image': '{name}' is not an image that can be read (unknown format)")]
        except Exception as exc:  # noqa: BLE001 - any decoder failure means "not an image"
            return [("image", f"input 'image': '{name}' is not an image that can be read: {exc}")]
        return []


# -- scaling ----------------------------------------------------------------------------------

UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
CROP_METHODS = ("disabled", "center")


def center_crop_to_aspect(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Crop ``[B, C, H, W]`` around the centre to the aspect ratio ``width:height``: the same
    margin, rounded, off both sides (ComfyUI's rule, so odd leftovers fall as its do)."""
    src_h, src_w = samples.shape[-2:]
    old, new = src_w / src_h, width / height
    if old > new:  # too wide
        x = round((src_w - src_w * (new / old)) / 2)
        return samples[..., :, x : src_w - x]
    if old < new:  # too tall
        y = round((src_h - src_h * (old / new)) / 2)
        return samples[..., y : src_h - y, :]
    return samples


def resize(samples: torch.Tensor, width: int, height: int, method: str) -> torch.Tensor:
    """Resize ``[B, C, H, W]`` float samples as ComfyUI's ``common_upscale`` does, pixel for pixel:
    torch's interpolation unclamped (bicubic may overshoot 0..1 a little, as ComfyUI's does), and
    lanczos through Pillow on the 8-bit picture."""
    if method not in UPSCALE_METHODS:
        raise NodeInputError("upscale_method", f"'{method}' is not one of {', '.join(UPSCALE_METHODS)}")
    dtype = samples.dtype
    work = samples.to(torch.float32)
    if method == "lanczos":
        out = _lanczos(work, width, height)
    elif method in ("bilinear", "bicubic"):
        out = F.interpolate(work, size=(height, width), mode=method, align_corners=False)
    else:
        out = F.interpolate(work, size=(height, width), mode=method)
    return out.to(dtype)


def _lanczos(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Pillow's lanczos on the picture clipped and truncated to 8 bits, back in 0..1 (ComfyUI's
    route, so its pixels are ours). RGB and RGBA go through Pillow as one picture (RGBA resizing
    weights colours by alpha); other channel counts plane by plane."""
    import numpy as np

    eight_bit = (samples.detach().cpu().movedim(1, -1).numpy() * 255.0).clip(0, 255).astype(np.uint8)
    channels = eight_bit.shape[-1]
    out = []
    for picture in eight_bit:
        if channels in (3, 4):
            resized = np.array(Image.fromarray(picture).resize((width, height), Image.Resampling.LANCZOS))
        else:
            resized = np.stack([np.array(Image.fromarray(np.ascontiguousarray(picture[..., c])).resize(
                (width, height), Image.Resampling.LANCZOS)) for c in range(channels)], axis=-1)
        out.append(torch.from_numpy(resized.astype(np.float32) / 255.0))
    return torch.stack(out).movedim(-1, 1).to(samples.device)


def target_size(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int]:
    """ComfyUI's rule: a 0 side follows the aspect ratio of the other."""
    if width == 0:
        width = max(1, round(src_w * height / src_h))
    elif height == 0:
        height = max(1, round(src_h * width / src_w))
    return width, height


class ImageScale(Node):
    """Resizes images to a size; 0 for one side keeps the aspect ratio."""

    spec = NodeSpec(
        name="ImageScale",
        display_name="Upscale Image",
        category="image/upscaling",
        description="Resizes images; with crop 'center' the image is cropped to the new aspect ratio first.",
        inputs=(
            In("image", "IMAGE"),
            In("upscale_method", "COMBO", choices=UPSCALE_METHODS, default="nearest-exact"),
            In("width", "INT", default=512, min=0, max=MAX_RESOLUTION, step=1),
            In("height", "INT", default=512, min=0, max=MAX_RESOLUTION, step=1),
            In("crop", "COMBO", choices=CROP_METHODS, default="disabled"),
        ),
        outputs=(Out("IMAGE"),),
    )

    def execute(
        self, ctx: ExecutionContext, image: torch.Tensor, upscale_method: str, width: int, height: int, crop: str
    ) -> tuple[torch.Tensor]:
        if not isinstance(image, torch.Tensor) or image.ndim != 4:
            raise NodeInputError("image", f"expected an IMAGE batch [B, H, W, C], got {getattr(image, 'shape', type(image))}")
        if crop not in CROP_METHODS:
            raise NodeInputError("crop", f"'{crop}' is not one of {', '.join(CROP_METHODS)}")
        for name, value in (("width", width), ("height", height)):
            if not 0 <= int(value) <= MAX_RESOLUTION:
                raise NodeInputError(name, f"{value} is outside 0..{MAX_RESOLUTION}")
        if width == 0 and height == 0:
            return (image,)
        samples = image.movedim(-1, 1)
        width, height = target_size(samples.shape[-1], samples.shape[-2], int(width), int(height))
        if crop == "center":
            samples = center_crop_to_aspect(samples, width, height)
        return (resize(samples, width, height, upscale_method).movedim(1, -1),)


NODES: list[type[Node]] = [SaveImage, PreviewImage, LoadImage, ImageScale]
