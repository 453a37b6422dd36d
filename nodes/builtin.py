"""Registers the built-in nodes through the same hooks a third-party plugin uses."""

from __future__ import annotations

from pathlib import Path

from latentgraph import hookimpl

DATA_DIR = Path(__file__).parent / "data"


@hookimpl
def register_nodes():
    from latentgraph.nodes import images
    from latentgraph.nodes import latents, sampler_nodes
    from latentgraph.nodes import conditioning, loaders, lora

    return [
        *images.NODES,
        *latents.NODES,
        *sampler_nodes.NODES,
        *loaders.NODES,
        *conditioning.NODES,
        *lora.NODES,
    ]


@hookimpl
def register_samplers():
    from latentgraph.nodes.sampling import SAMPLERS

    return SAMPLERS


@hookimpl
def register_schedulers():
    from latentgraph.nodes.sampling import SCHEDULES

    return SCHEDULES


@hookimpl
def register_model_formats():
    from latentgraph.nodes.checkpoints import BUILTIN_FORMATS

    return BUILTIN_FORMATS


@hookimpl
def register_model_roots():
    """Models that ship inside the package (the default model of the example workflows)."""
    return [DATA_DIR / "models"]
