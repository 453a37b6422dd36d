"""Registers the built-in nodes through the same hooks a third-party plugin uses."""

from __future__ import annotations

from pathlib import Path

from latentgraph import hookimpl

DATA_DIR = Path(__file__).parent / "data"


@hookimpl
def register_nodes():
    from latentgraph.nodes import images
    from latentgraph.nodes import latents
    from latentgraph.nodes import conditioning, conditioning_nodes, latent_mask, loaders, lora
    from latentgraph.nodes.sampling import custom_nodes, forward_noise, hook_nodes, ksampler_nodes
    from latentgraph.nodes import control, image, inspect, latent, mask, models, text, utility

    return [
        *images.NODES,
        *latents.NODES,
        *ksampler_nodes.NODES,
        *forward_noise.NODES,
        *custom_nodes.NODES,
        *latent.NODES,
        *image.NODES,
        *mask.NODES,
        *utility.NODES,
        *text.NODES,
        *models.NODES,
        *inspect.NODES,
        *control.NODES,
        *loaders.NODES,
        *conditioning.NODES,
        *conditioning_nodes.NODES,
        *latent_mask.NODES,
        *lora.NODES,
        *hook_nodes.NODES,
    ]


@hookimpl
def register_types():
    from latentgraph.nodes import control, latent, text
    from latentgraph.nodes.sampling import hook_nodes
    from latentgraph.nodes.sampling.custom_nodes import TYPES

    return [*TYPES, *latent.TYPES, *text.TYPES, *control.TYPES, *hook_nodes.TYPES]


@hookimpl
def register_samplers():
    from latentgraph.nodes.sampling import builtin_samplers

    return builtin_samplers()


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
