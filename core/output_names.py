"""Output file names that survive a re-run: the hook between file-writing nodes and the server.

A prompt that the server re-runs after a crash must write the same files again, not new ones
beside them: otherwise the first attempt's files are orphans that a client may already have
been told about. The server puts an :class:`OutputNames` in ``ctx.extra[EXTRA_KEY]``; a node
that writes files asks it for the name an earlier attempt reserved before choosing a new one,
and reserves (durably) a new one before creating the file. Without it (the CLI) names are
chosen afresh each run. Files are written under a hidden temporary name and moved into place,
so a crash never leaves a half-written file under a real name.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

EXTRA_KEY = "output_names"


class OutputNames(Protocol):
    """The names one prompt reserved, keyed by (node id, what the node writes, index)."""

    def reserved(self, key: str) -> tuple[str, bool] | None:
        """``(path relative to the folder root, written)`` from an earlier attempt, or None."""

    def reserve(self, key: str, folder_type: str, path: str, *, written: bool = False) -> None:
        """Record ``path`` before the file is created (``written=False``) and once it is in place."""


def output_names(extra: dict[str, Any] | None) -> OutputNames | None:
    names = (extra or {}).get(EXTRA_KEY)
    return names if names is not None and hasattr(names, "reserve") else None


def name_key(node_id: str, folder_type: str, index: int) -> str:
    return f"{node_id}\x1f{folder_type}\x1f{index}"


def write_atomically(path: Path, data: bytes | Callable[[Path], None], *, replace: bool) -> bool:
    """Write through a hidden temporary file moved into place, so neither a reader nor a crash
    ever leaves a partial file under the real name. ``data`` is the bytes, or a function that
    writes the file it is given (large files: no second copy in memory). ``replace=False`` never
    overwrites: False when ``path`` already exists."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        if callable(data):
            data(tmp)
        else:
            with open(tmp, "wb") as fh:
                fh.write(data)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # atomic and exclusive
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: claim the name, then move over it
            try:
                open(path, "xb").close()
            except FileExistsError:
                return False
            os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def remove_partials(path: Path) -> None:
    """Temporary files a killed process left while writing ``path``."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.partial"):
        stale.unlink(missing_ok=True)


def file_under(root: Path, rel: str) -> Path | None:
    """``root / rel`` if it stays inside ``root`` (a reserved name is re-checked before use)."""
    if not rel or "\x00" in rel or rel.startswith("/") or ".." in PurePosixPath(rel).parts:
        return None
    base = root.resolve()
    path = (base / rel).resolve()
    return path if path.is_relative_to(base) else None


def files_in(outputs: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(type, "subfolder/filename")`` of every file the ui outputs name."""
    for output in outputs.values():
        if not isinstance(output, dict):
            continue
        for values in output.values():
            for value in values if isinstance(values, list) else ():
                if isinstance(value, dict) and isinstance(value.get("filename"), str):
                    sub = value.get("subfolder") or ""
                    yield str(value.get("type", "output")), f"{sub}/{value['filename']}" if sub else value["filename"]
