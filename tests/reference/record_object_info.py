"""Record ComfyUI's ``/object_info`` entries as the contract reference for latentgraph's nodes.

This script is latentgraph's own code (MIT). It contains no ComfyUI code: it *imports* ComfyUI
(GPL) at run time from a source checkout given with ``--comfyui``, loads its core nodes
(``nodes.py``) and built-in extras (``comfy_extras/``, through ComfyUI's own
``init_builtin_extra_nodes``), and builds each node's entry the way ComfyUI's server does for
``GET /object_info`` (``server.py``: ``node_info``; V3 ``io.ComfyNode`` classes through their
``GET_NODE_INFO_V1()``). Only the node classes named in ``--nodes`` (default: issue 14's list plus
every class latentgraph registers that ComfyUI also has) are written to ``--out``.

ComfyUI version used: 0.8.0, upstream commit 3cd7b32f1b7e7e90395cefe7d9f9b1f89276d8ce
(2026-01-07); see tests/data/comfyui/README.md for how to get that source and the venv.

    /tmp/comfy-venv/bin/python tests/reference/record_object_info.py --comfyui /tmp/comfyui-ref \
        --out tests/data/comfyui/object_info.json

File-list COMBOs (checkpoints, images, upscale models, …) are recorded as ComfyUI lists them with
no model or input files present (usually ``[]``); the contract test does not compare file lists.
The output is deterministic (sorted keys).
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import importlib.machinery
import json
import logging
import os
import subprocess
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from record_comfyui import comfy_version, import_comfy  # noqa: E402

#: Issue 14's node classes (the catalogue of pixel- and latent-side nodes).
ISSUE_14 = [
    # latents
    "VAEEncodeTiled", "VAEDecodeTiled", "LatentUpscaleBy", "LatentComposite", "LatentCompositeMasked",
    "LatentBlend", "LatentFromBatch", "RepeatLatentBatch", "LatentBatch", "RebatchLatents",
    "LatentCrop", "LatentFlip", "LatentRotate", "SaveLatent", "LoadLatent", "LatentAdd",
    "LatentSubtract", "LatentMultiply", "LatentInterpolate", "LatentConcat", "LatentCut",
    "LatentBatchSeedBehavior", "LatentApplyOperation", "LatentApplyOperationCFG",
    "LatentOperationSharpen", "LatentOperationTonemapReinhard",
    # inpainting / outpainting
    "VAEEncodeForInpaint", "SetLatentNoiseMask", "InpaintModelConditioning", "ImagePadForOutpaint",
    "DifferentialDiffusion",
    # images
    "ImageScaleBy", "ImageScaleToTotalPixels", "ImageScaleToMaxDimension", "ImageCrop", "ImageFlip",
    "ImageRotate", "ImageStitch", "ImageInvert", "ImageBatch", "ImageFromBatch", "RepeatImageBatch",
    "RebatchImages", "GetImageSize", "ImageAddNoise", "ImageBlend", "ImageBlur", "ImageQuantize",
    "ImageSharpen", "Morphology", "ImageCompositeMasked", "JoinImageWithAlpha", "SplitImageWithAlpha",
    "PorterDuffImageComposite", "ResizeAndPadImage", "EmptyImage", "LoadImageOutput", "LoadImageMask",
    # masks
    "MaskToImage", "ImageToMask", "ImageColorToMask", "SolidMask", "InvertMask", "CropMask",
    "MaskComposite", "FeatherMask", "GrowMask", "ThresholdMask", "MaskPreview",
    # upscale models
    "UpscaleModelLoader", "ImageUpscaleWithModel",
    # utilities
    "PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline", "PrimitiveBoolean",
    "PreviewAny", "StringConcatenate", "StringReplace", "StringSubstring", "StringLength", "StringTrim",
    "StringContains", "StringCompare", "CaseConverter", "RegexMatch", "RegexExtract", "RegexReplace",
    "ComfySwitchNode", "SaveImageWebsocket",
]


#: Issue 15's node classes (the model-side catalogue).
ISSUE_15 = [
    # ControlNet / T2I-Adapter
    "ControlNetLoader", "DiffControlNetLoader", "ControlNetApply", "ControlNetApplyAdvanced",
    "SetUnionControlNetType", "Canny",
    # loaders
    "CheckpointLoader", "CLIPLoader", "DualCLIPLoader", "UNETLoader", "DiffusersLoader",
    "unCLIPCheckpointLoader", "HypernetworkLoader",
    # CLIP vision and friends
    "CLIPVisionLoader", "CLIPVisionEncode", "unCLIPConditioning", "StyleModelLoader", "StyleModelApply",
    "GLIGENLoader", "GLIGENTextBoxApply", "InstructPixToPixConditioning", "CLIPTextEncodeSDXL",
    "CLIPTextEncodeSDXLRefiner",
    # model patches and guidance
    "FreeU", "FreeU_V2", "HyperTile", "TomePatchModel", "PatchModelAddDownscale",
    "PerturbedAttentionGuidance", "SelfAttentionGuidance", "RescaleCFG", "ModelSamplingDiscrete",
    "ModelSamplingContinuousEDM", "ModelSamplingContinuousV", "Epsilon Scaling", "CLIPAttentionMultiply",
    "UNetCrossAttentionMultiply", "UNetSelfAttentionMultiply", "CFGNorm", "CFGZeroStar", "APG", "TCFG",
    "FreSca", "Mahiro", "ModelComputeDtype",
    # merging and saving
    "ModelMergeSimple", "ModelMergeBlocks", "ModelMergeSubtract", "ModelMergeAdd", "ModelMergeSD1",
    "ModelMergeSD2", "ModelMergeSDXL", "CLIPMergeSimple", "CLIPMergeSubtract", "CLIPMergeAdd",
    "CheckpointSave", "CLIPSave", "VAESave", "ModelSave", "LoraSave",
    # hooks
    "CreateHookLora", "CreateHookLoraModelOnly", "CreateHookModelAsLora", "CreateHookModelAsLoraModelOnly",
    "SetClipHooks", "CombineHooks2", "CombineHooks4", "CombineHooks8", "CreateHookKeyframe",
    "CreateHookKeyframesInterpolated", "CreateHookKeyframesFromFloats", "SetHookKeyframes",
    "ConditioningSetProperties", "ConditioningSetPropertiesAndCombine", "PairConditioningSetProperties",
    "PairConditioningSetPropertiesAndCombine", "PairConditioningSetDefaultCombine", "PairConditioningCombine",
]


def latentgraph_node_names() -> list[str]:
    """Every class name latentgraph registers today (``latentgraph nodes --json``)."""
    try:
        out = subprocess.run(["latentgraph", "nodes", "--json"], check=True, capture_output=True, text=True).stdout
        return sorted(json.loads(out))
    except Exception as exc:  # latentgraph not installed in the ComfyUI venv: fine, issue 14 only
        logging.warning("could not list latentgraph's nodes: %s", exc)
        return []


def stub_torchvision() -> None:
    """torchvision does not import beside torch 2.13.0 here. spandrel (nodes_upscale_model) imports
    ``torchvision.transforms.functional`` names at import time for its LaMa/RestoreFormer
    architectures; names that are never called while listing nodes."""
    try:
        import torchvision  # noqa: F401
        return
    except Exception:
        pass
    tv = types.ModuleType("torchvision")
    tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
    tv.__path__ = []
    tr = types.ModuleType("torchvision.transforms")
    tr.__path__ = []
    fn = types.ModuleType("torchvision.transforms.functional")

    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision is stubbed")

    fn.InterpolationMode = enum.Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC")
    fn.rotate = fn.normalize = unavailable
    tv.transforms, tr.functional = tr, fn
    sys.modules.update({"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.functional": fn})


def load_comfy_nodes(path: str):
    stub_torchvision()
    C = import_comfy(path)
    import folder_paths

    # no model/input files: file-list COMBOs come out empty and identical on every machine
    empty = tempfile.mkdtemp(prefix="comfy-empty-")
    folder_paths.set_input_directory(empty)
    folder_paths.set_output_directory(empty)
    folder_paths.set_temp_directory(empty)
    for name in list(folder_paths.folder_names_and_paths):
        exts = folder_paths.folder_names_and_paths[name][1]
        folder_paths.folder_names_and_paths[name] = ([empty], exts)
    import nodes

    # something in comfy's import chain puts comfy/ itself first on sys.path, where comfy/utils.py
    # would shadow ComfyUI's top-level utils/ package that server.py needs (nodes_images imports it)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p) != os.path.join(C.path, "comfy")]
    import server  # noqa: F401

    failed = asyncio.run(nodes.init_builtin_extra_nodes())
    if failed:
        logging.warning("comfy_extras that did not import (their nodes are absent): %s", failed)
    # SaveImageWebsocket ships as ComfyUI's example custom node (custom_nodes/websocket_image_save.py)
    example = os.path.join(C.path, "custom_nodes", "websocket_image_save.py")
    if os.path.isfile(example):
        asyncio.run(nodes.load_custom_node(example))
    return C, nodes


def node_info(nodes, node_class: str) -> dict:
    """``server.py``'s ``node_info`` (V1 classes) / ``GET_NODE_INFO_V1`` (V3 classes)."""
    from comfy_api.internal import _ComfyNodeInternal

    cls = nodes.NODE_CLASS_MAPPINGS[node_class]
    if issubclass(cls, _ComfyNodeInternal):
        return cls.GET_NODE_INFO_V1()
    info: dict = {}
    info["input"] = cls.INPUT_TYPES()
    info["input_order"] = {key: list(value.keys()) for key, value in cls.INPUT_TYPES().items()}
    info["output"] = cls.RETURN_TYPES
    info["output_is_list"] = getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES))
    info["output_name"] = getattr(cls, "RETURN_NAMES", info["output"])
    info["name"] = node_class
    info["display_name"] = nodes.NODE_DISPLAY_NAME_MAPPINGS.get(node_class, node_class)
    info["description"] = getattr(cls, "DESCRIPTION", "")
    info["python_module"] = getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes")
    info["category"] = getattr(cls, "CATEGORY", "sd")
    info["output_node"] = getattr(cls, "OUTPUT_NODE", False) is True
    if hasattr(cls, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = cls.OUTPUT_TOOLTIPS
    if getattr(cls, "DEPRECATED", False):
        info["deprecated"] = True
    if getattr(cls, "EXPERIMENTAL", False):
        info["experimental"] = True
    return info


def jsonable(value):
    """Tuples to lists, everything else JSON can't hold to its repr (never expected)."""
    return json.loads(json.dumps(value, default=repr))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfyui", required=True, help="ComfyUI source checkout")
    ap.add_argument("--out", default="tests/data/comfyui/object_info.json")
    ap.add_argument("--nodes", nargs="*", help="node classes (default: issues 14 and 15 + latentgraph's)")
    args = ap.parse_args()

    wanted = args.nodes or sorted(set(ISSUE_14) | set(ISSUE_15) | set(latentgraph_node_names()))
    C, nodes = load_comfy_nodes(args.comfyui)
    commit = "3cd7b32f1b7e7e90395cefe7d9f9b1f89276d8ce"
    try:
        commit = subprocess.run(["git", "-C", C.path, "rev-parse", "HEAD"], check=True, capture_output=True,
                                text=True).stdout.strip() or commit
    except Exception:
        pass
    entries, missing = {}, []
    for name in wanted:
        if name in nodes.NODE_CLASS_MAPPINGS:
            entries[name] = jsonable(node_info(nodes, name))
        else:
            missing.append(name)
    data = {
        "comfyui_version": comfy_version(C.path),
        "comfyui_commit": commit,
        "note": "GET /object_info entries built by ComfyUI's own node classes (server.py node_info); "
                "file-list COMBOs recorded with no files present. Generated by tests/reference/record_object_info.py.",
        "not_in_comfyui": missing,
        "nodes": entries,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(entries)} node entries to {args.out}; not in ComfyUI: {missing}")


if __name__ == "__main__":
    main()
