"""Pure-Python nodes for the server tests; a stand-alone plugin module (also copied into a
``<data dir>/plugins/`` folder for the subprocess tests), so it imports nothing from tests/."""

from __future__ import annotations

import time

from latentgraph import In, Node, NodeInputError, NodeResult, NodeSpec, Out, hookimpl


class SrvNumber(Node):
    spec = NodeSpec(name="SrvNumber", inputs=(In("value", "INT", default=0, min=-(10**9), max=10**9),), outputs=(Out("INT"),))

    def execute(self, ctx, value):
        return (value,)


class SrvAdd(Node):
    spec = NodeSpec(name="SrvAdd", inputs=(In("a", "INT"), In("b", "INT", default=0, min=-(10**9), max=10**9)), outputs=(Out("INT"),))

    def execute(self, ctx, a, b):
        return (a + b,)


class SrvWait(Node):
    """A long node: ``steps`` progress ticks ``delay`` seconds apart, with optional previews."""

    spec = NodeSpec(
        name="SrvWait",
        inputs=(
            In("value", "INT"),
            In("steps", "INT", default=3, min=1, max=100_000),
            In("delay", "FLOAT", default=0.0, min=0.0, max=60.0),
            In("preview", "BOOLEAN", default=False),
        ),
        outputs=(Out("INT"),),
    )

    def execute(self, ctx, value, steps, delay, preview):
        def render(i=0):
            from PIL import Image

            return Image.new("RGB", (64, 48), (i * 40 % 256, 100, 200))

        for i in range(steps):
            if delay:
                time.sleep(delay)
            ctx.progress(i + 1, steps, preview=(lambda i=i: render(i)) if preview else None)
        return (value + steps,)


class SrvShow(Node):
    spec = NodeSpec(name="SrvShow", inputs=(In("value", "INT"),), output_node=True, category="test")

    def execute(self, ctx, value):
        return NodeResult(ui={"value": [value]})


class SrvBoom(Node):
    spec = NodeSpec(name="SrvBoom", inputs=(In("value", "INT"), In("fail", "BOOLEAN", default=True)), outputs=(Out("INT"),))

    def execute(self, ctx, value, fail):
        if fail:
            raise NodeInputError("fail", "asked to fail")
        return (value,)


NODES = [SrvNumber, SrvAdd, SrvWait, SrvShow, SrvBoom]


@hookimpl
def register_nodes():
    return NODES


@hookimpl
def register_routes(app, prefix):
    from aiohttp import web

    async def hello(request):
        return web.json_response({"hello": "from a plugin"})

    app.router.add_get(prefix + "/hello", hello)


class SrvExtra(Node):
    """Shows what the server passed in ``ctx.extra`` (the editor workflow, the client id)."""

    spec = NodeSpec(name="SrvExtra", inputs=(In("value", "INT", default=0),), output_node=True, deterministic=False)

    def execute(self, ctx, value):
        extra = ctx.extra or {}
        return NodeResult(ui={"workflow": [extra.get("workflow")], "client_id": [extra.get("client_id")]})


NODES.append(SrvExtra)
