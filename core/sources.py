"""Reads a workflow from whatever a user has: API JSON, editor JSON, or a PNG with the workflow inside.

Everything comes out as API-format data plus the per-prompt ``extra`` (the editor JSON under
``workflow``) so a SaveImage of the run embeds both again, as ComfyUI does. A PNG's ``prompt``
chunk is what actually ran, so it is preferred: re-running it reproduces the image exactly.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from latentgraph.editor_format import convert_editor_workflow, is_api_workflow, is_editor_workflow
from latentgraph.errors import ErrorDetail, ErrorReport, LatentgraphError
from latentgraph.node import InputSpec, NodeSpec
from latentgraph.workflow import parse_json_text

if TYPE_CHECKING:
    from latentgraph.registry import NodeRegistry

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class WorkflowSourceError(LatentgraphError):
    """The source cannot be read at all (missing file, an image that is not a PNG, …)."""


@dataclass
class LoadedWorkflow:
    """API-format data ready for validation, and what else the run should carry."""

    #: API-format workflow (what the engine validates); None when nothing usable was found.
    prompt: Any
    #: Per-prompt data for the executor: ``workflow`` (editor JSON) and ``extra_pnginfo``.
    extra: dict[str, Any] = field(default_factory=dict)
    #: Problems reading or converting; empty when the prompt is ready for validation.
    report: ErrorReport = field(default_factory=ErrorReport)
    #: ``"api"``, ``"editor"``, ``"png"`` (API chunk used) or ``"png-editor"`` (editor chunk converted).
    kind: str = "api"

    @property
    def ok(self) -> bool:
        return not self.report


def load_source(
    source: str | Path | bytes,
    registry: NodeRegistry,
    *,
    apply_controls: bool = False,
    rng: random.Random | None = None,
) -> LoadedWorkflow:
    """Read a file (or its bytes): JSON in either format, or a PNG written by SaveImage or ComfyUI."""
    if isinstance(source, bytes):
        data, name = source, "the data"
    else:
        path = Path(source)
        if not path.is_file():
            raise WorkflowSourceError(f"workflow file not found: {source}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise WorkflowSourceError(f"cannot read {source}: {exc.strerror or exc}") from exc
        name = f"'{source}'"
    if data.startswith(PNG_SIGNATURE):
        return from_png(data, registry, apply_controls=apply_controls, rng=rng, name=name)
    if _looks_like_other_image(data):
        raise WorkflowSourceError(f"{name} is an image but not a PNG; only PNG files carry ComfyUI workflows")
    parsed, report = parse_json_text(data)
    if report:
        return LoadedWorkflow(parsed, report=report)
    return from_data(parsed, registry, apply_controls=apply_controls, rng=rng)


def from_data(
    data: Any,
    registry: NodeRegistry,
    *,
    apply_controls: bool = False,
    rng: random.Random | None = None,
) -> LoadedWorkflow:
    """Parsed JSON in any accepted shape: API, editor, or a ``POST /prompt`` body ``{"prompt", "extra_data"}``."""
    if is_editor_workflow(data):
        conversion = convert_editor_workflow(data, registry, apply_controls=apply_controls, rng=rng)
        return LoadedWorkflow(conversion.prompt, {"workflow": conversion.workflow}, conversion.report, "editor")
    if isinstance(data, dict) and is_api_workflow(data.get("prompt")):
        extra: dict[str, Any] = {}
        extra_data = data.get("extra_data")
        pnginfo = extra_data.get("extra_pnginfo") if isinstance(extra_data, dict) else None
        if isinstance(pnginfo, dict):
            if isinstance(pnginfo.get("workflow"), dict):
                extra["workflow"] = pnginfo["workflow"]
            others = {k: v for k, v in pnginfo.items() if k != "workflow"}
            if others:
                extra["extra_pnginfo"] = others
        return LoadedWorkflow(data["prompt"], extra)
    # API format, or something the validator will explain (it reports every problem at once).
    return LoadedWorkflow(data)


def from_png(
    data: bytes,
    registry: NodeRegistry,
    *,
    apply_controls: bool = False,
    rng: random.Random | None = None,
    name: str = "the PNG",
) -> LoadedWorkflow:
    """The workflow stored in a PNG's ``prompt``/``workflow`` text chunks."""
    from latentgraph.pngmeta import PROMPT_KEY, WORKFLOW_KEY, PngMetadataError, read_workflow_from_png

    try:
        chunks = read_workflow_from_png(data)
    except PngMetadataError as exc:
        report = ErrorReport(error=ErrorDetail("invalid_prompt", f"Cannot read the workflow in {name}", details=str(exc)))
        return LoadedWorkflow(None, report=report, kind="png")
    prompt, workflow = chunks.get(PROMPT_KEY), chunks.get(WORKFLOW_KEY)
    others = {k: v for k, v in chunks.items() if k not in (PROMPT_KEY, WORKFLOW_KEY) and v is not None and not isinstance(v, str)}
    extra: dict[str, Any] = {"extra_pnginfo": others} if others else {}
    if is_api_workflow(prompt) and not apply_controls:
        if workflow is not None:
            extra["workflow"] = workflow
        return LoadedWorkflow(prompt, extra, kind="png")
    if is_editor_workflow(workflow):
        loaded = from_data(workflow, registry, apply_controls=apply_controls, rng=rng)
        loaded.extra.update(extra)
        loaded.kind = "png-editor"
        return loaded
    if is_api_workflow(prompt):
        return LoadedWorkflow(prompt, extra, kind="png")
    found = ", ".join(sorted(k for k, v in chunks.items() if v is not None)) or "no text chunks"
    report = ErrorReport(
        error=ErrorDetail(
            "invalid_prompt",
            f"{name} holds no workflow",
            details=f"expected a 'prompt' or 'workflow' text chunk (as SaveImage and ComfyUI write); found {found}",
        )
    )
    return LoadedWorkflow(None, report=report, kind="png")


def _looks_like_other_image(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff" or (data[:4] == b"RIFF" and data[8:12] == b"WEBP") or data[:6] in (b"GIF87a", b"GIF89a")


# -- model names ---------------------------------------------------------------------------------


def model_inputs(spec: NodeSpec) -> list[InputSpec]:
    """Inputs naming a model file: the file COMBOs of loader nodes (choices listed from disk)."""
    if "loader" not in spec.category.lower() and "loader" not in spec.name.lower():
        return []
    return [i for i in spec.inputs if i.type == "COMBO" and callable(i.choices)]


def parse_model_map(items: list[str]) -> dict[str, str]:
    """``["OLD=NEW", …]`` → ``{OLD: NEW}``; raises ValueError naming the bad item."""
    mapping: dict[str, str] = {}
    for item in items:
        old, eq, new = item.partition("=")
        if not eq or not old.strip() or not new.strip():
            raise ValueError(f"--map-model {item!r}: expected OLD=NEW (model file names)")
        mapping[old.strip()] = new.strip()
    return mapping


def model_names_in(prompt: Mapping[str, Any], registry: NodeRegistry) -> dict[str, list[tuple[str, str]]]:
    """Model names a workflow uses: ``{name: [(node_id, input_name), …]}``."""
    found: dict[str, list[tuple[str, str]]] = {}
    for node_id, node in prompt.items():
        if not isinstance(node, dict):
            continue
        node_cls = registry.get(str(node.get("class_type", "")))
        inputs = node.get("inputs")
        if node_cls is None or not isinstance(inputs, dict):
            continue
        for inp in model_inputs(node_cls.spec):
            value = inputs.get(inp.name)
            if isinstance(value, str):
                found.setdefault(value, []).append((str(node_id), inp.name))
    return found


def map_models(prompt: dict[str, Any], mapping: Mapping[str, str], registry: NodeRegistry) -> dict[str, int]:
    """Rewrite model names in place (``--map-model OLD=NEW``); returns how often each OLD was replaced.

    OLD matches a name exactly, or its file name without folders, or without folders and extension,
    so ``--map-model v1-5-pruned-emaonly=mine.safetensors`` also catches ``SD15/v1-5-pruned-emaonly.ckpt``.
    """
    used = {old: 0 for old in mapping}
    for name, places in model_names_in(prompt, registry).items():
        old = _matching_key(name, mapping)
        if old is None:
            continue
        for node_id, input_name in places:
            prompt[node_id]["inputs"][input_name] = mapping[old]
            used[old] += 1
    return used


def _matching_key(name: str, mapping: Mapping[str, str]) -> str | None:
    path = PurePosixPath(name.replace("\\", "/"))
    for candidate in (name, path.name, path.stem):
        if candidate in mapping:
            return candidate
    return None


def apply_model_map(prompt: Any, items: list[str], registry: NodeRegistry) -> None:
    """``--map-model OLD=NEW`` items applied to an API workflow; ValueError for an unusable item."""
    mapping = parse_model_map(items)
    if not mapping:
        return
    if not isinstance(prompt, dict):
        raise ValueError("--map-model needs a workflow whose nodes can be read")
    before = model_names_in(prompt, registry)
    used = map_models(prompt, mapping, registry)
    unused = [old for old, count in used.items() if count == 0]
    if unused:
        names = ", ".join(sorted(before)) or "none"
        raise ValueError(f"--map-model {unused[0]}=…: the workflow uses no model of that name (model names in it: {names})")


def model_hint(report: ErrorReport, prompt: Any, registry: NodeRegistry) -> str | None:
    """A hint for a workflow naming models this installation lacks (the usual case for a shared one)."""
    if not isinstance(prompt, dict):
        return None
    used = model_names_in(prompt, registry)
    missing = sorted(
        {
            str(err.extra_info.get("received_value"))
            for _node, err in report.all_errors()
            if err.type == "value_not_in_list" and err.extra_info.get("received_value") in used
        }
    )
    if not missing:
        return None
    return f"hint: to run with a model you have, add --map-model '{missing[0]}=<available name>' (repeatable)"
