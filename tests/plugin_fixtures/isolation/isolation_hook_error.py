"""Imports fine, but its hooks raise."""

from latentgraph import hookimpl


@hookimpl
def register_nodes():
    raise RuntimeError("cannot build my node list")


@hookimpl
def startup(registry, settings):
    raise RuntimeError("startup went wrong")
