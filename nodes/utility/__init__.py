"""Utility nodes: primitives, strings, switches, previews of any value."""

NODES: list = []  # the package's node classes, gathered from its modules
