"""Where the web editor's files come from: ComfyUI's frontend and workflow templates, both PyPI
packages we depend on (GPL-3.0: installed beside us, never copied into this repository).

``comfyui-frontend-package`` is a wheel of static files (``comfyui_frontend_package/static``);
``comfyui-workflow-templates`` (optional) maps template asset names to files through its
``comfyui_workflow_templates_core`` manifest helpers.
"""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

log = logging.getLogger("latentgraph.server")

#: The frontend version this project is tested with (``pyproject.toml`` pins it too).
TESTED_FRONTEND_VERSION = "1.35.9"
FRONTEND_PACKAGE = "comfyui-frontend-package"
TEMPLATES_PACKAGE = "comfyui-workflow-templates"


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def default_editor_dir() -> Path | None:
    """The installed frontend's ``static`` folder, or None when the package is missing."""
    try:
        import comfyui_frontend_package
    except ImportError:
        return None
    folder = Path(comfyui_frontend_package.__file__).resolve().parent / "static"
    return folder if (folder / "index.html").is_file() else None


def check_editor_dir(folder: Path) -> Path:
    """A usable frontend folder (holds ``index.html``), resolved; ValueError otherwise."""
    folder = Path(folder).expanduser().resolve()
    if not (folder / "index.html").is_file():
        raise ValueError(f"{folder} holds no index.html: not a frontend build")
    return folder


def templates_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("comfyui_workflow_templates") is not None


def template_assets() -> dict[str, Path]:
    """``asset name → file`` of every installed workflow-template asset (``index.json``, the
    templates, their thumbnails); empty when the templates package is not installed."""
    try:
        from comfyui_workflow_templates import get_asset_path, iter_templates  # type: ignore[import-not-found]
    except ImportError:
        return {}
    assets: dict[str, Path] = {}
    try:
        for entry in iter_templates():
            for asset in entry.assets:
                assets[asset.filename] = Path(get_asset_path(entry.template_id, asset.filename))
    except Exception as exc:  # a broken templates install must not stop the server
        log.warning("workflow templates unavailable: %s", exc)
        return {}
    return assets
