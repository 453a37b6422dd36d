"""The testing kit's model fixture (a pytest plugin, entry point ``pytest11``, beside
:mod:`latentgraph.testing`): it needs the built-in nodes' checkpoint writer, which the core kit
must not import.

    ``tiny_checkpoint`` A tiny random SD1 checkpoint in ``models/checkpoints`` of ``lg_settings``'
                        data dir (runs in seconds on a CPU): ``txt2img(tiny_checkpoint.name)``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from latentgraph.settings import Settings


@pytest.fixture
def tiny_checkpoint(lg_settings: Settings) -> Path:
    from latentgraph.nodes.tiny_models import make_tiny_checkpoint

    path = lg_settings.model_dirs("checkpoints")[0] / "tiny-test-sd1.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    make_tiny_checkpoint(path, arch="sd1", seed=0)
    return path
