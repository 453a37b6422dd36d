"""ComfyUI's model folder names, for ``/models`` and ``/models/{folder}``.

Clients ask for the folders ComfyUI's ``folder_paths`` knows (and the editor for its legacy names
``clip`` and ``unet``); each is looked up in the same sub-folders of every model root as ComfyUI's
(``text_encoders`` also in ``clip/``, ``diffusion_models`` also in ``unet/``…). A folder that
exists under a model root but is not listed (a plugin's) is served too.
"""

from __future__ import annotations

from latentgraph.settings import Settings

PT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".pkl", ".sft")

#: name → (sub-folders of each model root, file suffixes); ComfyUI's order.
FOLDERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "checkpoints": (("checkpoints",), PT_SUFFIXES),
    "configs": (("configs",), (".yaml",)),
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


def list_folder(settings: Settings, folder: str) -> list[str]:
    """Model names in ``folder`` (relative paths, first root and first sub-folder win), sorted."""
    subfolders, suffixes = FOLDERS.get(ALIASES.get(folder, folder), ((folder,), PT_SUFFIXES))
    names: dict[str, None] = {}
    for sub in subfolders:
        found = settings.list_models(sub, suffixes) if suffixes else settings.list_models(sub, ("\0",))
        names.update(dict.fromkeys(found))
    return sorted(names)
