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

    return [
        SamplerDef(
            "deis",
            "DEISMultistepScheduler",
            {"algorithm_type": "deis", "solver_order": 2},
            sigma_space=False,  # variance-preserving sample, like DPM-Solver++
            description="DEIS multistep (2nd order), deterministic",
        )
    ]


@hookimpl
def register_schedulers():
    from latentgraph.nodes.sampling import ScheduleDef

    return [
        ScheduleDef(
            "linspace",
            {"timestep_spacing": "linspace"},
            "timesteps evenly spaced over the whole training range, the last one included",
        )
    ]
