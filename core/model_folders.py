"""ComfyUI's model folder names: the one table loader nodes, ``/models`` and ``/models/{folder}`` use.

A folder name (what ComfyUI's ``folder_paths`` knows, or the editor's legacy ``clip``/``unet``)
is looked up in the same sub-folders of every model root as ComfyUI's (``text_encoders`` also in
``clip/``, ``diffusion_models`` also in ``unet/``, ``controlnet`` also in ``t2i_adapter/``…). A
folder that exists under a model root but is not listed (a plugin's) works too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from latentgraph.settings import Settings

PT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".pkl", ".sft")

#: name → (sub-folders of each model root, file suffixes); ComfyUI's order.
FOLDERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "checkpoints": (("checkpoints",), PT_SUFFIXES),
    "configs": (("configs",), (".yaml", ".yml", ".json")),
    "loras": (("loras",), PT_SUFFIXES),
    "vae": (("vae",), PT_SUFFIXES),
    "text_encoders": (("text_encoders", "clip"), PT_SUFFIXES),
    "diffusion_models": (("unet", "diffusion_models"), PT_SUFFIXES),
    "clip_vision": (("clip_vision",), PT_SUFFIXES),
    "style_models": (("style_models",), PT_SUFFIXES),
    "embeddings": (("embeddings",), PT_SUFFIXES),
    "diffusers": (("diffusers",), ()),
    "vae_approx": (("vae_approx",), PT_SUFFIXES),
    "controlnet": (("controlnet", "t2i_adapter"), PT_SUFFIXES),
    "gligen": (("gligen",), PT_SUFFIXES),
    "upscale_models": (("upscale_models",), PT_SUFFIXES),
    "latent_upscale_models": (("latent_upscale_models",), PT_SUFFIXES),
    "hypernetworks": (("hypernetworks",), PT_SUFFIXES),
    "photomaker": (("photomaker",), PT_SUFFIXES),
    "classifiers": (("classifiers",), PT_SUFFIXES),
    "model_patches": (("model_patches",), PT_SUFFIXES),
    "audio_encoders": (("audio_encoders",), PT_SUFFIXES),
}
#: The editor's legacy names.
ALIASES = {"clip": "text_encoders", "unet": "diffusion_models"}


def known(settings: Settings, folder: str) -> bool:
    """A ComfyUI folder name (or alias), or a folder present under a model root."""
    return folder in FOLDERS or folder in ALIASES or any(d.is_dir() for d in settings.model_dirs(folder))


def subfolders(folder: str) -> tuple[str, ...]:
    """The sub-folders of each model root that ``folder`` is looked up in, in ComfyUI's order."""
    return FOLDERS.get(ALIASES.get(folder, folder), ((folder,), ()))[0]


def list_folder(settings: Settings, folder: str, suffixes: tuple[str, ...] | None = None) -> list[str]:
    """Model names in ``folder`` (relative paths, first root and first sub-folder win), sorted;
    ``suffixes`` narrows the folder's file types (a node that reads only some of them)."""
    subs, known_suffixes = FOLDERS.get(ALIASES.get(folder, folder), ((folder,), PT_SUFFIXES))
    suffixes = suffixes or known_suffixes
    names: dict[str, None] = {}
    for sub in subs:
        found = settings.list_models(sub, suffixes) if suffixes else settings.list_models(sub, ("\0",))
        names.update(dict.fromkeys(found))
    return sorted(names)


def find(settings: Settings, folder: str, name: str) -> tuple[Path, str] | None:
    """``(path, sub-folder)`` of the model ``name`` lists as in ``folder``; never outside the roots."""
    for sub in subfolders(folder):
        path = settings.find_model(sub, name)
        if path is not None:
            return path, sub
    return None


def folder_paths(settings: Settings, folder: str) -> list[Path]:
    """Every directory ``folder`` is looked up in (for messages that say where to put files)."""
    return [d for sub in subfolders(folder) for d in settings.model_dirs(sub)]


def choices(folder: str, suffixes: tuple[str, ...] | None = None) -> Callable[[Settings, Any], list[str]]:
    """A loader node's live COMBO choices: the files of ``folder``, listed again at each validation."""

    def listed(settings: Settings, registry: Any) -> list[str]:
        return list_folder(settings, folder, suffixes)

    return listed
