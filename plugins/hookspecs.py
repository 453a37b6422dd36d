"""The hooks a latentgraph plugin may implement. Every hook is documented in docs/plugins.md.

Built-in nodes register through these same hooks. Implement them with
``from latentgraph import hookimpl``; a plugin implements only the hooks it needs, and may leave
out arguments it does not use (pluggy passes arguments by name).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("latentgraph")


@hookspec
def register_nodes():
    """Return an iterable of node types (``latentgraph.Node`` subclasses) this plugin adds.

    A name (or alias) that is already registered — by the built-ins or an earlier plugin — is
    refused and reported; the plugin's other nodes still load.
    """


@hookspec
def register_types():
    """Return connection types this plugin adds: an iterable of ``latentgraph.TypeSpec``.

    ``TypeSpec("HDR_IMAGE", accepts=("IMAGE",))`` lets an ``HDR_IMAGE`` input take an ``IMAGE``
    output. Declaring an existing type without ``accepts`` is a no-op (plugins may share a type).
    """


@hookspec
def register_samplers():
    """Return sampler definitions (``latentgraph.nodes.sampling.SamplerDef``) that KSampler lists.

    ``SamplerDef(name, function)``: ``function(model, x, sigmas, *, seed, callback, noise_sampler,
    **options) → x`` integrates the noisy σ-form latent ``x`` from ``sigmas[0]`` to ``sigmas[-1]``
    with ``model(x, σ)`` as the denoiser (an x0 estimate). A name already registered is refused.
    """


@hookspec
def register_schedulers():
    """Return noise-schedule definitions (``latentgraph.nodes.sampling.ScheduleDef``) KSampler lists.

    ``ScheduleDef(name, function)``: ``function(model_sampling, steps) → sigmas``, ``steps + 1``
    descending noise levels ending in 0, from the model's ``ModelSampling`` (trained σ's, σ ↔ t).
    """


@hookspec
def register_model_formats():
    """Return checkpoint-format loaders (``latentgraph.nodes.checkpoints.ModelFormat``).

    ``LoadCheckpoint`` asks each format, highest ``priority`` first, whether it can load a file.
    """


@hookspec
def register_model_roots():
    """Return extra folders holding ``checkpoints/``, ``vae/``, ``loras/`` … subfolders."""


@hookspec
def register_routes(app, prefix):
    """Add aiohttp routes to ``app``; every path must start with ``prefix`` (``/plugins/<name>``).

    Routes outside the prefix are refused and reported; the server also serves them under ``/api``.
    """


@hookspec
def startup(registry, settings):
    """Called once when an engine has been assembled (CLI run, server start, test engine)."""


@hookspec
def before_node(prompt_id, node_id, class_type):
    """Called before a node executes (not for nodes served from cache)."""


@hookspec
def after_node(prompt_id, node_id, class_type, seconds):
    """Called after a node executed successfully; ``seconds`` is its run time."""


@hookspec
def on_execution_error(prompt_id, failure):
    """Called when a run stops at a failing node; ``failure`` is a ``latentgraph.NodeFailure``."""


hookimpl = pluggy.HookimplMarker("latentgraph")
