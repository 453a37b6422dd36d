"""Small pure-Python nodes for engine tests, registered through pluggy like any plugin."""

from __future__ import annotations

import random

import torch

from latentgraph import In, Node, NodeInputError, NodeResult, NodeSpec, Out, hookimpl


class Const(Node):
    spec = NodeSpec(name="Const", inputs=(In("value", "INT", default=0, min=-1000, max=1000),), outputs=(Out("INT"),))

    def execute(self, ctx, value):
        return (value,)


class Add(Node):
    spec = NodeSpec(
        name="Add",
        inputs=(In("a", "INT"), In("b", "INT", default=0), In("scale", "FLOAT", required=False, default=1.0, min=0.0, max=10.0)),
        outputs=(Out("INT", "sum"),),
    )

    def execute(self, ctx, a, b, scale=1.0):
        return (int((a + b) * scale),)


class Text(Node):
    spec = NodeSpec(
        name="Text",
        inputs=(In("text", "STRING", default="", multiline=True), In("mode", "COMBO", choices=("plain", "upper"), default="plain"), In("shout", "BOOLEAN", default=False)),
        outputs=(Out("STRING"),),
        aliases=("LegacyText",),
    )

    def execute(self, ctx, text, mode, shout):
        out = text.upper() if mode == "upper" or shout else text
        return (out,)


class Show(Node):
    spec = NodeSpec(name="Show", inputs=(In("value", "*"),), output_node=True, category="test")

    def execute(self, ctx, value):
        return NodeResult(ui={"value": [value if isinstance(value, (int, str, float)) else repr(value)]})


class Fail(Node):
    spec = NodeSpec(name="Fail", inputs=(In("value", "INT"), In("fail", "BOOLEAN", default=True)), outputs=(Out("INT"),))

    def execute(self, ctx, value, fail):
        if fail:
            raise NodeInputError("fail", "asked to fail")
        return (value,)


class Boom(Node):
    spec = NodeSpec(name="Boom", inputs=(In("value", "INT"),), outputs=(Out("INT"),))

    def execute(self, ctx, value):
        raise RuntimeError("kaboom")


class Random(Node):
    spec = NodeSpec(name="Random", inputs=(), outputs=(Out("INT"),), deterministic=False)

    def execute(self, ctx):
        return (random.randint(0, 10**9),)


class Steps(Node):
    """A long node: reports progress and honours interruption each step."""

    spec = NodeSpec(name="Steps", inputs=(In("value", "INT"), In("steps", "INT", default=5, min=1, max=1000)), outputs=(Out("INT"),))

    def execute(self, ctx, value, steps):
        for i in range(steps):
            ctx.progress(i + 1, steps)
        return (value + steps,)


class Blob(Node):
    """Allocates a real tensor of ``kib`` KiB, for cache budget tests."""

    spec = NodeSpec(name="Blob", inputs=(In("kib", "INT", min=1, max=1 << 20), In("tag", "INT", default=0)), outputs=(Out("LATENT"),))

    def execute(self, ctx, kib, tag):
        return ({"samples": torch.full((kib * 1024,), tag, dtype=torch.uint8)},)


class Size(Node):
    spec = NodeSpec(name="Size", inputs=(In("latent", "LATENT"),), outputs=(Out("INT"),))

    def execute(self, ctx, latent):
        return (int(latent["samples"].numel()),)


class BadReturn(Node):
    spec = NodeSpec(name="BadReturn", inputs=(In("value", "INT"),), outputs=(Out("INT"), Out("INT")))

    def execute(self, ctx, value):
        return (value,)


NODES = [Const, Add, Text, Show, Fail, Boom, Random, Steps, Blob, Size, BadReturn]


class GraphTestPlugin:
    @hookimpl
    def register_nodes(self):
        return NODES
