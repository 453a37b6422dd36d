"""The hooks a latentgraph plugin may implement. Every hook is documented in docs/plugins.md.

Built-in nodes register through these same hooks. Implement them with
``from latentgraph import hookimpl``.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("latentgraph")


@hookspec
def register_nodes():
    """Return an iterable of node types (``latentgraph.Node`` subclasses) this plugin adds."""


@hookspec
def register_types():
    """Return connection types this plugin adds: an iterable of ``latentgraph.TypeSpec``.

    A type may declare which other types it accepts (e.g. a ``HDR_IMAGE`` input accepting ``IMAGE``).
    """


@hookspec
def register_samplers():
    """Return sampler definitions (``latentgraph.nodes.sampling.SamplerDef``) that KSampler lists."""


@hookspec
def register_schedulers():
    """Return noise-schedule definitions (``latentgraph.nodes.sampling.ScheduleDef``) KSampler lists."""


@hookspec
def register_model_formats():
    """Return checkpoint-format loaders (``latentgraph.nodes.sd.loading.ModelFormat``)."""


@hookspec
def register_model_roots():
    """Return extra folders holding ``checkpoints/``, ``vae/``, ``loras/`` … subfolders."""


@hookspec
def register_routes(app, prefix):
    """Add aiohttp routes to the server's ``app``; paths must start with ``prefix`` (``/plugins/<name>``)."""


@hookspec
def startup(registry, settings):
    """Called once when an engine has been assembled (CLI run or server start)."""


@hookspec
def before_node(prompt_id, node_id, class_type):
    """Called before a node executes (not for nodes served from cache)."""


@hookspec
def after_node(prompt_id, node_id, class_type, seconds):
    """Called after a node executed successfully."""


@hookspec
def on_execution_error(prompt_id, failure):
    """Called when a run stops at a failing node; ``failure`` is a ``latentgraph.NodeFailure``."""


hookimpl = pluggy.HookimplMarker("latentgraph")
