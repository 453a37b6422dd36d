"""Nodes that load models from the model folders: checkpoints and standalone VAEs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latentgraph import model_folders
from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeSpec, Out
from latentgraph.nodes.checkpoints import BUILTIN_FORMATS, CheckpointError, load_checkpoint, load_vae
from latentgraph.settings import Settings


def resolve_model(settings: Settings, kind: str, name: Any, input_name: str) -> Path:
    """Path of a model file by its listed name in the model folder ``kind`` (ComfyUI's folder
    names, :mod:`latentgraph.model_folders`); a missing one names the folders and what is there."""
    if not isinstance(name, str) or not name.strip():
        raise NodeInputError(input_name, f"expected the name of a file in models/{kind}")
    clean = name.strip().replace("\\", "/")  # ComfyUI workflows saved on Windows
    found = model_folders.find(settings, kind, clean)
    if found is None:
        available = model_folders.list_folder(settings, kind)
        folders = ", ".join(str(d) for d in model_folders.folder_paths(settings, kind))
        shown = ", ".join(available[:20]) + (f" … ({len(available)} in all)" if len(available) > 20 else "")
        raise NodeInputError(
            input_name,
            f"'{name}' not found in {folders}; available: {shown or 'none (put model files into one of these folders)'}",
        )
    return found[0]


def file_fingerprint(settings: Settings, kind: str, name: Any) -> str | None:
    """Size and modification time of a model file (or of a folder's newest file): a replaced file reloads."""
    if not isinstance(name, str):
        return None
    found = model_folders.find(settings, kind, name.strip().replace("\\", "/"))
    if found is None:
        return "missing"
    path = found[0]
    try:
        if path.is_dir():
            stats = [p.stat() for p in path.rglob("*") if p.is_file()]
            return f"dir:{len(stats)}:{sum(s.st_size for s in stats)}:{max((s.st_mtime_ns for s in stats), default=0)}"
        st = path.stat()
    except OSError:
        return "unreadable"
    return f"{st.st_size}:{st.st_mtime_ns}"


def file_fingerprint_of(kind: str, *input_names: str) -> Any:
    """The ``fingerprint`` of a node that reads model files named by ``input_names``: a file
    replaced on disk (size or time) re-runs the node, an unchanged one is served from the cache."""

    def fingerprint(cls: Any, settings: Settings, inputs: Mapping[str, Any]) -> str | None:
        parts = [file_fingerprint(settings, kind, inputs.get(name)) for name in input_names]
        return parts[0] if len(parts) == 1 else "|".join(str(p) for p in parts)

    return classmethod(fingerprint)


class LoadCheckpoint(Node):
    spec = NodeSpec(
        name="LoadCheckpoint",
        display_name="Load Checkpoint",
        category="loaders",
        description="Loads an SD1.x, SD2.x or SDXL checkpoint (single file or diffusers folder) offline.",
        inputs=(In("ckpt_name", "COMBO", choices=model_folders.choices("checkpoints"), tooltip="a file or folder in models/checkpoints"),),
        outputs=(Out("MODEL"), Out("CLIP"), Out("VAE")),
        aliases=("CheckpointLoaderSimple",),
    )

    def execute(self, ctx, ckpt_name):
        path = resolve_model(ctx.settings, "checkpoints", ckpt_name, "ckpt_name")
        formats = ctx.registry.model_formats or {f.name: f for f in BUILTIN_FORMATS}
        try:
            loaded = load_checkpoint(path, ctx.settings, formats)
        except CheckpointError as exc:
            raise NodeInputError("ckpt_name", str(exc)) from None
        return (loaded.model, loaded.clip, loaded.vae)

    fingerprint = file_fingerprint_of("checkpoints", "ckpt_name")


class VAELoader(Node):
    spec = NodeSpec(
        name="VAELoader",
        display_name="Load VAE",
        category="loaders",
        description="Loads a standalone VAE (original or diffusers layout) from models/vae.",
        inputs=(In("vae_name", "COMBO", choices=model_folders.choices("vae")),),
        outputs=(Out("VAE"),),
    )

    def execute(self, ctx, vae_name):
        path = resolve_model(ctx.settings, "vae", vae_name, "vae_name")
        try:
            return (load_vae(path, ctx.settings),)
        except CheckpointError as exc:
            raise NodeInputError("vae_name", str(exc)) from None

    fingerprint = file_fingerprint_of("vae", "vae_name")


NODES = [LoadCheckpoint, VAELoader]
