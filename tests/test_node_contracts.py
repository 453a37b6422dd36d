"""Issue 14's contract test: latentgraph's ``/object_info`` entry of each ComfyUI node matches ComfyUI's.

The reference is ``tests/data/comfyui/object_info.json``, recorded from ComfyUI 0.8.0's own node
classes by ``tests/reference/record_object_info.py`` (see tests/data/comfyui/README.md). Ours is
built by ``latentgraph.object_info`` (what ``latentgraph nodes --json`` and ``GET /object_info``
serve) on a real engine registry with the built-in nodes.

Compared field for field: the input names per section (required / optional) and their order,
each input's type, default, min, max, step, multiline and COMBO choices; the outputs' types, names
and is_list flags; category, output_node and display_name. Not compared: tooltips, descriptions,
python_module, hidden inputs, V3-only keys (``lazy``, ``api_node``, ``experimental``, …), and the
choices of file-list COMBOs (recorded with no files present: ``[]``).

A node latentgraph does not have yet is reported as xfail "not implemented yet" (so the run shows
progress); once it is registered, every difference fails. Deliberate deviations are listed in
``DEVIATIONS`` with the reason.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from latentgraph.object_info import object_info
from latentgraph.settings import Settings
from latentgraph.testing import make_engine

HERE = Path(__file__).parent
REFERENCE = json.loads((HERE / "data" / "comfyui" / "object_info.json").read_text())


def _recorder():
    spec = importlib.util.spec_from_file_location("_record_object_info", HERE / "reference" / "record_object_info.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ISSUE_14 = list(_recorder().ISSUE_14)
ISSUE_15 = [n for n in _recorder().ISSUE_15 if n not in ISSUE_14]
#: latentgraph's other nodes that ComfyUI also has (recorded in the reference too).
EXISTING = sorted(set(REFERENCE["nodes"]) - set(ISSUE_14) - set(ISSUE_15))

#: ComfyUI's V3 "match type" placeholder: an input/output whose type follows what is connected.
#: latentgraph spells "accepts/produces anything" ``*`` (core.node.ANY_TYPE); the editor treats
#: both as a wildcard.
TYPE_EQUIVALENTS = {"COMFY_MATCHTYPE_V3": "*"}

#: The value an editor gives a widget whose entry has no ``default``; COMBOs: the first choice.
IMPLICIT_DEFAULTS = {"STRING": "", "BOOLEAN": False}

#: (node, field) -> why latentgraph differs on purpose. ``field`` is a key of ``_contract``'s
#: result (``"input.required.NAME.default"``, ``"output_name"``, ``"display_name"``, …).
DEVIATIONS: dict[tuple[str, str], str] = {
    ("SaveImage", "input.required.filename_prefix.default"): "files are named after latentgraph, not ComfyUI",
    ("VAELoader", "input.required.vae_name.choices"): "a list of VAE files; ComfyUI adds 'pixel_space' "
    "(and TAESD entries), which latentgraph has no VAE for",
    ("VAELoader", "input.required.vae_name.default"): "the same: ComfyUI's first choice is 'pixel_space'",
    ("EmptyLatentImage", "input.optional"): "latentgraph extension: an optional VAE builds the latent for "
    "that VAE at once (otherwise the sampler sizes it); ComfyUI workflows never set it",
    ("EmptyLatentImage", "input.optional.vae.type"): "the same optional VAE",
    ("EmptyLatentImage", "input.optional.vae.multiline"): "the same optional VAE",
    ("LoraLoaderModelOnly", "display_name"): "ComfyUI has no display name for it (shows the class name)",
}

#: (node, field) -> mismatches known and left to the owner of that node's file: reported as
#: xfail (not hidden) until fixed; an entry that no longer differs makes the test fail, so the
#: list shrinks as they are fixed.
PENDING: dict[tuple[str, str], str] = {}


def _entry(spec: Any) -> dict[str, Any]:
    """An input's ``[type, options]`` (V1 combos: ``[[choices], options]``; V3: ``["COMBO", {options}]``)."""
    head, opts = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
    if isinstance(head, list):
        typ, choices = "COMBO", head
    elif head == "COMBO":
        typ, choices = "COMBO", opts.get("options", [])
    else:
        typ, choices = TYPE_EQUIVALENTS.get(head, head), None
    out: dict[str, Any] = {"type": typ}
    if choices is not None:
        out["choices"] = list(choices)
    for key in ("default", "min", "max", "step"):
        if key in opts:
            out[key] = opts[key]
    # what an editor shows when no default is given: the first choice, an empty text, unchecked
    if "default" not in out:
        if typ == "COMBO" and choices:
            out["default"] = choices[0]
        elif typ in IMPLICIT_DEFAULTS:
            out["default"] = IMPLICIT_DEFAULTS[typ]
    out["multiline"] = bool(opts.get("multiline", False))
    return out


def _contract(info: dict[str, Any], file_lists: set[str] = frozenset()) -> dict[str, Any]:
    """The compared fields of one object_info entry, flattened to ``field -> value``."""
    flat: dict[str, Any] = {}
    for section in ("required", "optional"):
        inputs = info.get("input", {}).get(section, {}) or {}
        order = (info.get("input_order") or {}).get(section) or list(inputs)
        flat[f"input.{section}"] = list(order)
        for name in order:
            for key, value in _entry(inputs[name]).items():
                if key in ("choices", "default") and f"{section}.{name}" in file_lists:
                    continue
                flat[f"input.{section}.{name}.{key}"] = value
    flat["output"] = [TYPE_EQUIVALENTS.get(t, t) for t in info["output"]]
    flat["output_name"] = list(info["output_name"])
    flat["output_is_list"] = [bool(x) for x in info["output_is_list"]]
    for key in ("category", "output_node"):
        flat[key] = info.get(key)
    # V3 nodes without a display name show their class name, as V1 ones do
    flat["display_name"] = info.get("display_name") or info.get("name")
    return flat


def _file_lists(ref: dict[str, Any]) -> set[str]:
    """COMBOs ComfyUI recorded with no choices: lists of files, which differ by machine."""
    found = set()
    for section in ("required", "optional"):
        for name, spec in (ref.get("input", {}).get(section) or {}).items():
            entry = _entry(spec)
            if entry["type"] == "COMBO" and not entry["choices"]:
                found.add(f"{section}.{name}")
    return found


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> dict[str, Any]:
    settings = Settings.from_env(tmp_path_factory.mktemp("contracts") / "lg-data", environ={}, device="cpu")
    engine = make_engine(settings)
    return object_info(engine.registry, settings)


def _compare(name: str, ours: dict[str, Any]) -> None:
    ref = REFERENCE["nodes"].get(name)
    assert ref is not None, f"{name} is not in the reference: re-run tests/reference/record_object_info.py"
    if name not in ours:
        pytest.xfail("not implemented yet")
    files = _file_lists(ref)
    want, got = _contract(ref, files), _contract(ours[name], files)
    if "alias_of" in ours[name]:  # the display name belongs to latentgraph's own name of the node
        got["display_name"] = want["display_name"]
    problems, pending = [], []
    for field in sorted(set(want) | set(got)):
        if (name, field) in DEVIATIONS:
            continue
        w, g = want.get(field, "<absent>"), got.get(field, "<absent>")
        if (name, field) in PENDING:
            assert w != g, f"{name} {field} matches now: remove it from PENDING"
            pending.append(f"{field}: {PENDING[name, field]}")
        elif w != g:
            problems.append(f"  {field}: ComfyUI {w!r}, latentgraph {g!r}")
    if pending and not problems:
        pytest.xfail("known mismatch, pending: " + "; ".join(pending))
    assert not problems, f"{name} differs from ComfyUI {REFERENCE['comfyui_version']}:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", ISSUE_14)
def test_issue_14_node_matches_comfyui(name: str, ours: dict[str, Any]) -> None:
    _compare(name, ours)


@pytest.mark.parametrize("name", ISSUE_15)
def test_issue_15_node_matches_comfyui(name: str, ours: dict[str, Any]) -> None:
    _compare(name, ours)


@pytest.mark.parametrize("name", EXISTING)
def test_existing_node_matches_comfyui(name: str, ours: dict[str, Any]) -> None:
    _compare(name, ours)


def test_reference_is_complete() -> None:
    assert REFERENCE["comfyui_version"] == "0.8.0"
    missing = [n for n in ISSUE_14 + ISSUE_15 if n not in REFERENCE["nodes"]]
    assert not missing, f"catalogue nodes missing from the reference: {missing}"


def test_contract_normalisation() -> None:
    v1 = {"input": {"required": {"m": [["a", "b"]], "x": ["INT", {"default": 1, "min": 0, "max": 9, "step": 1}]}},
          "input_order": {"required": ["x", "m"]}, "output": ["MASK"], "output_name": ["MASK"],
          "output_is_list": [False], "category": "mask", "output_node": False, "display_name": "D"}
    v3 = json.loads(json.dumps(v1))
    v3["input"]["required"]["m"] = ["COMBO", {"multiselect": False, "options": ["a", "b"]}]
    assert _contract(v1) == _contract(v3)
    assert _contract(v1)["input.required"] == ["x", "m"]
