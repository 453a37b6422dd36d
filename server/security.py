"""Keeping file access inside its folder and judging files by their bytes, not their names.

Client-supplied names are checked twice: lexically (no ``..``, no absolute or drive paths, no
NUL, backslashes count as separators, no component over 255 UTF-8 bytes) and after resolving
symlinks (the real path must still be inside the real folder). Uploads are identified from their
content (images by Pillow, audio and video by their signatures in ``media_sniff``), not their names.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

_DRIVE = re.compile(r"^[A-Za-z]:")
#: Bytes in one path component: the limit of Linux, macOS and Windows file systems.
MAX_NAME = 255
#: Room kept in an upload's name for the `` (n)`` a name clash adds.
NUMBER_ROOM = 12


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
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME:
            raise UnsafePath(f"{what} has a component longer than {MAX_NAME} bytes")
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
    """The last component of a client file name, without hidden-file dots or control characters,
    short enough (in UTF-8 bytes) to be stored with a `` (n)`` added; the suffix is kept."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = "".join(ch for ch in base if ch.isprintable() and ch not in '<>:"|?*' and not 0xD800 <= ord(ch) <= 0xDFFF)
    base = base.strip().lstrip(".")
    if not base or base in ("..", "."):
        base = default
    return fit_name(base, MAX_NAME - NUMBER_ROOM)


def fit_name(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` UTF-8 bytes, cutting the stem and keeping a short suffix."""
    if len(name.encode("utf-8")) <= limit:
        return name
    path = PurePosixPath(name)
    suffix = path.suffix if len(path.suffix.encode("utf-8")) <= 16 else ""
    stem = name[: len(name) - len(suffix)] if suffix else name
    room = limit - len(suffix.encode("utf-8"))
    stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip() or "upload"
    return stem + suffix


@dataclass(frozen=True)
class FileKind:
    """What a file's bytes say it is."""

    format: str  # Pillow's name for images (PNG, JPEG, WEBP, GIF, BMP, TIFF); MP4, WEBM, WAV… otherwise
    mime: str
    suffixes: tuple[str, ...]


IMAGE_KINDS = {
    "PNG": FileKind("PNG", "image/png", (".png",)),
    "JPEG": FileKind("JPEG", "image/jpeg", (".jpg", ".jpeg")),
    "WEBP": FileKind("WEBP", "image/webp", (".webp",)),
    "GIF": FileKind("GIF", "image/gif", (".gif",)),
    "BMP": FileKind("BMP", "image/bmp", (".bmp",)),
    "TIFF": FileKind("TIFF", "image/tiff", (".tif", ".tiff")),
}


def sniff_image(data: bytes) -> FileKind | None:
    """The image format of ``data`` if Pillow can parse it and we accept it, else None."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format
            img.verify()
    except Exception:  # Pillow raises many kinds on hostile bytes; none of them may reach the client
        return None
    return IMAGE_KINDS.get(fmt or "")


def sniff_file(path: Path) -> FileKind | None:
    """Format of an image file from its header (cheap: Pillow reads only the first bytes)."""
    try:
        with Image.open(path) as img:
            return IMAGE_KINDS.get(img.format or "")
    except Exception:
        return None
