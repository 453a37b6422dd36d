"""Loads fine; its node fails when it runs."""

from latentgraph import In, Node, NodeSpec, Out, hookimpl


class IsoCrash(Node):
    spec = NodeSpec(name="IsoCrash", inputs=(In("value", "INT"),), outputs=(Out("INT"),))

    def execute(self, ctx, value):
        return (value // 0,)


@hookimpl
def register_nodes():
    return [IsoCrash]
