"""Registers the built-in nodes through the same hooks a third-party plugin uses."""

from __future__ import annotations

from latentgraph import hookimpl


@hookimpl
def register_nodes():
    return []
