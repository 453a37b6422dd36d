"""Utility nodes: primitives, strings, switches, previews of any value."""

from latentgraph.nodes.utility import primitives, strings, websocket

NODES: list = [*primitives.NODES, *strings.NODES, *websocket.NODES]
