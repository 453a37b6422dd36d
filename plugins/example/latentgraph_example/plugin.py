"""The hook implementations latentgraph finds through the ``latentgraph`` entry point."""

from __future__ import annotations

from latentgraph import hookimpl


@hookimpl
def register_nodes():
    from latentgraph_example.nodes import NODES

    return NODES


@hookimpl
def register_samplers():
    from latentgraph.nodes.sampling import SamplerDef
    from latentgraph_example.sampling import euler_midpoint

    return [SamplerDef("euler_midpoint", euler_midpoint, description="explicit midpoint (2nd order, 2 model calls a step)")]


@hookimpl
def register_schedulers():
    from latentgraph.nodes.sampling import ScheduleDef
    from latentgraph_example.sampling import linspace

    return [ScheduleDef("linspace", linspace, "trained timesteps evenly spaced from the top to t = 0, then σ = 0")]
