"""latentgraph: a typed node-graph workflow engine for latent diffusion."""

from latentgraph.context import ExecutionContext, InterruptFlag
from latentgraph.errors import ErrorDetail, ErrorReport, Interrupted, LatentgraphError, NodeFailure, NodeInputError
from latentgraph.node import ExecutionBlocker, In, InputSpec, Node, NodeResult, NodeSpec, Out, OutputSpec
from latentgraph.plugins.hookspecs import hookimpl
from latentgraph.registry import NodeRegistry, TypeSpec
from latentgraph.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "ErrorDetail",
    "ErrorReport",
    "ExecutionBlocker",
    "ExecutionContext",
    "In",
    "InputSpec",
    "Interrupted",
    "InterruptFlag",
    "LatentgraphError",
    "Node",
    "NodeFailure",
    "NodeInputError",
    "NodeRegistry",
    "NodeResult",
    "NodeSpec",
    "Out",
    "OutputSpec",
    "Settings",
    "TypeSpec",
    "hookimpl",
]
