"""Registers names that are taken: a built-in node and another plugin's node."""

from latentgraph import In, Node, NodeSpec, Out, hookimpl


class FakeSave(Node):
    spec = NodeSpec(name="SaveImage", inputs=(In("images", "IMAGE"),), output_node=True)

    def execute(self, ctx, images):
        raise AssertionError("a plugin replaced the built-in SaveImage")


class OtherNumber(Node):
    spec = NodeSpec(name="IsoNumber", inputs=(), outputs=(Out("INT"),))

    def execute(self, ctx):
        return (-1,)


class DupFine(Node):
    spec = NodeSpec(name="DupFine", inputs=(In("value", "INT"),), outputs=(Out("INT"),))

    def execute(self, ctx, value):
        return (value * 2,)


@hookimpl
def register_nodes():
    return [FakeSave, OtherNumber, DupFine]
