"""Textual-inversion embeddings: ``embedding:NAME`` in a prompt, as ComfyUI reads it.

* **Syntax.** ``embedding:NAME`` starts a prompt piece or follows a space or newline; NAME is the
  next whitespace-separated word (a trailing comma is tolerated: ``embedding:foo,``), may name a
  subfolder (``embedding:styles/foo``) and may carry its extension. Weights work as for words:
  ``(embedding:foo:1.2)``. ``embedding:`` inside a word (``xembedding:foo``) is plain text.
* **Files.** ``<model root>/embeddings/`` (every model root, first wins; subfolders searched as
  ComfyUI does), ``NAME``, ``NAME.safetensors``, ``NAME.pt`` or ``NAME.bin``. Pickles are read
  with ``torch.load(weights_only=True)`` only: a file that needs more than tensors is refused.
  Layouts: A1111 (``string_to_param`` → ``{"*": [n, D]}``), SD2 (``emb_params``), SDXL
  (``clip_l`` [n, 768] + ``clip_g`` [n, 1280]), diffusers' ``{token: [D]}``, lists of dicts and
  "bundled" LoRA embeddings (``bundle_emb.NAME.string_to_param.*`` / ``….clip_l``).
* **Per encoder.** Each text encoder takes the tensor named after it (``clip_l``, ``clip_g``,
  ``clip_h``) or else the first tensor as wide as its token embeddings; an embedding with no
  tensor of the right width is left out of that encoder with a warning (an SD1 embedding in an
  SDXL prompt reaches CLIP-L only).
* **Unknown names** are left out of the prompt with a warning that is logged and returned to the
  node (which shows it to the user); they are never read as words.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

log = logging.getLogger("latentgraph.embeddings")

PREFIX = "embedding:"
SUFFIXES = (".safetensors", ".pt", ".bin")
#: ``embedding:`` at the start of a piece or after a space or newline (ComfyUI's rule).
_SPLIT = re.compile(r"(?:^|(?<=[ \n]))" + re.escape(PREFIX))


@dataclass(frozen=True)
class EmbeddingRef:
    """An ``embedding:NAME`` found in a prompt."""

    name: str


def split_embeddings(text: str) -> list[str | EmbeddingRef]:
    """Plain text and :class:`EmbeddingRef` pieces of one weighted prompt piece, in order."""
    out: list[str | EmbeddingRef] = []
    pos = 0
    for match in _SPLIT.finditer(text):
        if match.start() < pos:
            continue
        if match.start() > pos:
            out.append(text[pos : match.start()])
        rest = text[match.end() :]
        word = re.match(r"\S*", rest).group(0)
        name = word.strip("\n")
        if not name:  # "embedding:" alone stays text
            out.append(PREFIX)
            pos = match.end()
            continue
        out.append(EmbeddingRef(name))
        pos = match.end() + len(word)
    if pos < len(text):
        out.append(text[pos:])
    return [p for p in out if p != ""]


def _search_dirs(dirs: Iterable[Path]) -> list[Path]:
    """The folders and their subfolders (ComfyUI looks in subfolders too)."""
    found: list[Path] = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        found.append(d)
        for root, subdirs, _files in os.walk(d, followlinks=True):
            subdirs.sort()
            found += [Path(root) / s for s in subdirs]
    return list(dict.fromkeys(found))


def find_embedding(name: str, dirs: Iterable[Path]) -> Path | None:
    """The file ``embedding:name`` means, inside one of ``dirs`` (never outside them)."""
    if not name or "\0" in name:
        return None
    for folder in _search_dirs(dirs):
        base = folder.resolve()
        candidate = (base / name).resolve()
        if not candidate.is_relative_to(base):
            continue
        for path in (candidate, *(candidate.with_name(candidate.name + s) for s in SUFFIXES)):
            if path.is_file() and path.suffix.lower() in (*SUFFIXES, ".pth", ".ckpt"):
                return path
    return None


class EmbeddingError(Exception):
    """An embedding file that exists but cannot be used."""


_cache: dict[tuple[str, float, int], dict[str, torch.Tensor]] = {}
_cache_lock = threading.Lock()


def load_embedding_file(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors by name, each ``[n, D]`` (a single vector becomes ``[1, D]``)."""
    stat = path.stat()
    key = (str(path), stat.st_mtime, stat.st_size)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    tensors = _read(path)
    if not tensors:
        raise EmbeddingError(f"{path.name} holds no embedding vectors")
    with _cache_lock:
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = tensors
    return tensors


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            data = load_file(str(path), device="cpu")
        except Exception as exc:
            raise EmbeddingError(f"{path.name} is not a readable safetensors file: {exc}") from None
    else:
        import pickle

        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise EmbeddingError(
                f"refusing to load {path.name}: it holds Python objects, not just tensors, and unpickling them "
                f"could run arbitrary code; convert it to .safetensors with a tool you trust"
            ) from None
        except Exception as exc:
            raise EmbeddingError(f"{path.name} is not a readable embedding file: {str(exc).splitlines()[0][:200]}") from None
    return _vectors(data)


def _vectors(data: object) -> dict[str, torch.Tensor]:
    """Name → ``[n, D]`` float tensors of any of the known layouts, in the file's order."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(data, Mapping) and isinstance(data.get("string_to_param"), Mapping):  # A1111
        for k, v in data["string_to_param"].items():
            if isinstance(v, torch.Tensor):
                out[f"string_to_param.{k}"] = v
    elif isinstance(data, (list, tuple)):  # a list of {name: tensor}
        rows = [v for d in data if isinstance(d, Mapping) for v in d.values() if isinstance(v, torch.Tensor)]
        by_width: dict[int, list[torch.Tensor]] = {}
        for v in rows:
            by_width.setdefault(v.shape[-1], []).append(v.reshape(-1, v.shape[-1]))
        out = {f"list.{w}": torch.cat(vs) for w, vs in by_width.items()}
    elif isinstance(data, Mapping):
        bundled = sorted(k for k in data if isinstance(k, str) and k.startswith("bundle_emb."))
        if bundled:  # embeddings bundled in a LoRA file: one name, vectors per encoder
            groups: dict[str, list[torch.Tensor]] = {}
            for k in bundled:
                tail = k.rsplit(".", 1)[-1]
                group = "string_to_param" if ".string_to_param." in k else tail
                groups.setdefault(group, []).append(data[k])
            out = {g: torch.cat([v.reshape(-1, v.shape[-1]) for v in vs]) for g, vs in groups.items()}
        else:
            out = {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    return {k: v.detach().reshape(-1, v.shape[-1]).float() for k, v in out.items() if v.ndim >= 1 and v.numel()}


def encoder_key(arch: str, index: int, width: int) -> str:
    """The name an embedding file gives this encoder's vectors: SDXL's ``clip_l``/``clip_g``…"""
    if arch == "sdxl":
        return ("clip_l", "clip_g")[min(index, 1)]
    if arch == "sd2" or width == 1024:
        return "clip_h"
    return "clip_l"


def pick_vectors(tensors: Mapping[str, torch.Tensor], key: str, width: int) -> torch.Tensor | None:
    """The vectors one encoder takes: those named ``key``, else the first of its width."""
    if key in tensors and tensors[key].shape[-1] == width:
        return tensors[key]
    named = {"clip_l", "clip_g", "clip_h"}
    for name, value in tensors.items():
        if name not in named and value.shape[-1] == width:
            return value
    return None


@dataclass
class EmbeddingLookup:
    """Resolves ``embedding:`` names for one encoding; collects the warnings it raises."""

    dirs: Sequence[Path] | None
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
            log.warning(message)

    def vectors(self, name: str, key: str, width: int) -> tuple[torch.Tensor | None, str]:
        """``([n, width] or None, text)`` for this encoder; None comes with a warning.

        ``text`` is what of the word is prompt text after all: ``embedding:foo,`` is ``foo`` and a
        comma when only ``foo`` exists (ComfyUI's rule)."""
        if self.dirs is None:
            self.warn(f"embedding:{name} ignored: no embeddings folder is known to this text encoder")
            return None, ""
        path, text = find_embedding(name, self.dirs), ""
        if path is None:
            stripped = name.strip(",")
            if stripped and stripped != name and (path := find_embedding(stripped, self.dirs)) is not None:
                text = name[len(name.rstrip(",")):]
        if path is None:
            self.warn(
                f"embedding:{name} not found in the embeddings folders "
                f"({', '.join(str(d) for d in self.dirs) or 'none'}); it was left out of the prompt"
            )
            return None, ""
        try:
            tensors = load_embedding_file(path)
        except EmbeddingError as exc:
            self.warn(f"embedding:{name} left out of the prompt: {exc}")
            return None, text
        picked = pick_vectors(tensors, key, width)
        if picked is None:
            widths = sorted({v.shape[-1] for v in tensors.values()})
            self.warn(
                f"embedding:{name} left out for the {key} text encoder: its vectors are {widths} wide, "
                f"the encoder's are {width} (an embedding made for another model?)"
            )
        return picked, text


def list_embeddings(dirs: Iterable[Path]) -> list[str]:
    """Names usable after ``embedding:`` (relative path without extension), first folder wins."""
    names: dict[str, None] = {}
    for folder in dirs:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in SUFFIXES:
                names.setdefault(path.relative_to(folder).with_suffix("").as_posix())
    return list(names)
