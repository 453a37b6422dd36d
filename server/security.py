"""Keeping file access inside its folder and judging files by their bytes, not their names.

Client-supplied names are checked twice: lexically (no ``..``, no absolute or drive paths, no
NUL, backslashes count as separators) and after resolving symlinks (the real path must still be
inside the real folder). Uploaded images are identified by Pillow from their content.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_NAME = 255


class UnsafePath(ValueError):
    """A client-supplied path that could reach outside its folder."""


def relative_parts(text: str, *, what: str = "path") -> tuple[str, ...]:
    """Split a client path into safe components; ``""`` → ``()``."""
    if text is None:
        return ()
    if "\x00" in text:
        raise UnsafePath(f"{what} contains a NUL byte")
    normal = text.replace("\\", "/")
    if normal.startswith("/") or _DRIVE.match(normal):
        raise UnsafePath(f"{what} must be relative, got {text!r}")
    parts = tuple(p for p in normal.split("/") if p not in ("", "."))
    for part in parts:
        if part == "..":
            raise UnsafePath(f"{what} must not contain '..': {text!r}")
        if len(part) > MAX_NAME:
            raise UnsafePath(f"{what} has a component longer than {MAX_NAME} characters")
    return parts


def resolve_inside(root: Path, *paths: str, what: str = "path") -> Path:
    """``root/paths…`` with symlinks resolved; raises :class:`UnsafePath` if it leaves ``root``."""
    real_root = Path(root).resolve()
    parts: list[str] = []
    for p in paths:
        parts.extend(relative_parts(p, what=what))
    candidate = real_root.joinpath(*parts)
    real = candidate.resolve()
    if real != real_root and not real.is_relative_to(real_root):
        raise UnsafePath(f"{what} leads outside its folder")
    return real


def safe_filename(name: str | None, *, default: str = "upload") -> str:
    """The last component of a client file name, without hidden-file dots or control characters."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '<>:"|?*').strip().lstrip(".")
    if not base or base in ("..", "."):
        base = default
    return base[:MAX_NAME]


@dataclass(frozen=True)
class ImageKind:
    format: str  # Pillow's name: PNG, JPEG, WEBP, GIF, BMP, TIFF
    mime: str
    suffixes: tuple[str, ...]  # the first one is used when a name must be fixed


IMAGE_KINDS = {
    "PNG": ImageKind("PNG", "image/png", (".png",)),
    "JPEG": ImageKind("JPEG", "image/jpeg", (".jpg", ".jpeg")),
    "WEBP": ImageKind("WEBP", "image/webp", (".webp",)),
    "GIF": ImageKind("GIF", "image/gif", (".gif",)),
    "BMP": ImageKind("BMP", "image/bmp", (".bmp",)),
    "TIFF": ImageKind("TIFF", "image/tiff", (".tif", ".tiff")),
}


def sniff_image(data: bytes) -> ImageKind | None:
    """The image format of ``data`` if Pillow can parse it and we accept it, else None."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
            img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return IMAGE_KINDS.get(fmt or "")


def sniff_file(path: Path) -> ImageKind | None:
    """Format of an image file from its header (cheap: Pillow reads only the first bytes)."""
    try:
        with Image.open(path) as img:
            return IMAGE_KINDS.get(img.format or "")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def name_for_kind(filename: str, kind: ImageKind) -> str:
    """Keep the name when its suffix matches the content, else give it the right suffix."""
    path = PurePosixPath(filename)
    if path.suffix.lower() in kind.suffixes:
        return filename
    return f"{path.stem or 'upload'}{kind.suffixes[0]}"
