"""SaveLatent / LoadLatent: ComfyUI's ``.latent`` files, both directions.

The format is safetensors with two tensors: ``latent_tensor`` (the LATENT's samples, unscaled VAE
latents as ComfyUI keeps them) and the empty marker ``latent_format_version_0``. A file without
the marker is from before it (ComfyUI stored scaled SD1 latents then) and is read back × 1/0.18215.
The prompt and workflow go into the safetensors metadata as JSON strings (key ``prompt``, plus the
editor's ``workflow``), as ComfyUI writes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from latentgraph.errors import NodeInputError
from latentgraph.node import In, Node, NodeResult, NodeSpec, Out
from latentgraph import pngmeta
from latentgraph.nodes.images import find_annotated_file, next_counter, resolve_save_prefix, walk_input_files
from latentgraph.nodes.latent.base import check_latent

TENSOR_KEY = "latent_tensor"
VERSION_KEY = "latent_format_version_0"
#: What files without the version marker were multiplied by (SD1's latent scale).
LEGACY_SCALE = 0.18215
SUFFIX = ".latent"


def latent_file_bytes(samples: torch.Tensor, metadata: Mapping[str, str] | None = None) -> bytes:
    tensors = {TENSOR_KEY: samples.detach().cpu().contiguous(), VERSION_KEY: torch.tensor([])}
    return safetensors.torch.save(tensors, metadata=dict(metadata) if metadata else None)


def read_latent_file(path: Path) -> dict[str, Any]:
    """A LATENT from a ``.latent`` file (old, scaled files are unscaled)."""
    tensors = safetensors.torch.load_file(str(path), device="cpu")
    if TENSOR_KEY not in tensors:
        raise ValueError(f"no '{TENSOR_KEY}' tensor (has: {', '.join(sorted(tensors)) or 'nothing'})")
    multiplier = 1.0 if VERSION_KEY in tensors else 1.0 / LEGACY_SCALE
    return {"samples": tensors[TENSOR_KEY].float() * multiplier}


def list_latent_files(settings, registry=None) -> list[str]:
    """``.latent`` files under the input folders (``name.latent``, ``sub/name.latent``), sorted."""
    found: set[str] = set()
    for root, path in walk_input_files(settings):
        if path.name.endswith(SUFFIX) and path.resolve().is_relative_to(root):
            found.add(path.relative_to(root).as_posix())
    return sorted(found)


def resolve_latent_name(settings, name: Any) -> Path:
    """The file a LoadLatent ``latent`` value names; ``"x.latent [output]"`` selects another folder."""
    if not isinstance(name, str) or not name.strip():
        raise NodeInputError("latent", "no latent file selected")
    name, path = find_annotated_file(settings, name, "latent")
    if not path.is_file():
        available = list_latent_files(settings)
        hint = f"available: {', '.join(available[:20])}" if available else f"the input folder {settings.input_dir} has no .latent files"
        raise NodeInputError("latent", f"latent file '{name}' not found; {hint}")
    return path


class SaveLatent(Node):
    spec = NodeSpec(
        name="SaveLatent",
        category="_for_testing",
        description="Saves the latent as a ComfyUI .latent file (safetensors) in the output folder.",
        inputs=(In("samples", "LATENT"), In("filename_prefix", "STRING", default="latents/ComfyUI")),
        outputs=(),
        output_node=True,
    )

    def execute(self, ctx, samples, filename_prefix="latents/ComfyUI"):
        latent = check_latent(samples, "samples")
        target = resolve_save_prefix(ctx.settings.output_dir, str(filename_prefix), 0, 0)
        extra = ctx.extra or {}
        chunks = pngmeta.workflow_chunks(extra.get("prompt"), extra.get("workflow"), extra.get("extra_pnginfo"))
        metadata = {"prompt": chunks.pop("prompt", ""), **chunks}
        data = latent_file_bytes(latent["samples"], metadata)
        try:
            target.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NodeInputError("filename_prefix", f"cannot create the folder '{target.subfolder}': {exc.strerror or exc}") from exc
        counter = next_counter(target.folder, target.name)
        while True:
            filename = f"{target.name}_{counter:05}_{SUFFIX}"
            try:
                with open(target.folder / filename, "xb") as fh:
                    fh.write(data)
                break
            except FileExistsError:  # another run took this number meanwhile
                counter += 1
        return NodeResult(outputs=(), ui={"latents": [{"filename": filename, "subfolder": target.subfolder, "type": "output"}]})


class LoadLatent(Node):
    spec = NodeSpec(
        name="LoadLatent",
        category="_for_testing",
        description="Loads a ComfyUI .latent file from the input folder.",
        inputs=(In("latent", "COMBO", choices=list_latent_files, strict_choices=False),),
        outputs=(Out("LATENT"),),
        deterministic=False,
    )

    def execute(self, ctx, latent):
        path = resolve_latent_name(ctx.settings, latent)
        try:
            return (read_latent_file(path),)
        except Exception as exc:  # noqa: BLE001 - any reader failure means "not a latent file"
            raise NodeInputError("latent", f"'{latent}' is not a .latent file that can be read: {exc}") from exc

    @classmethod
    def fingerprint(cls, settings, inputs: Mapping[str, Any]) -> str | None:
        """Content hash: a replaced file re-runs, an untouched one is served from cache."""
        try:
            path = resolve_latent_name(settings, inputs.get("latent", ""))
        except NodeInputError:
            return None
        return hashlib.sha256(path.read_bytes()).hexdigest()

    @classmethod
    def check_inputs(cls, settings, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        name = inputs.get("latent")
        if not isinstance(name, str):
            return []
        try:
            resolve_latent_name(settings, name)
        except NodeInputError as exc:
            return [("latent", str(exc))]
        return []


NODES = [SaveLatent, LoadLatent]
