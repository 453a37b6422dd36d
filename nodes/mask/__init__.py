"""MASK nodes: making, converting, combining and shaping masks (``[B, H, W]`` floats 0..1)."""

NODES: list = []  # the package's node classes, gathered from its modules
