"""Declares nodes the registry must refuse, next to one valid node."""

from latentgraph import In, Node, NodeSpec, Out, hookimpl


class BadType(Node):
    spec = NodeSpec(name="BadType", inputs=(In("x", "NOT_A_TYPE"),), outputs=(Out("INT"),))

    def execute(self, ctx, x):
        return (1,)


class NoChoices(Node):
    spec = NodeSpec(name="NoChoices", inputs=(In("mode", "COMBO"),), outputs=(Out("INT"),))

    def execute(self, ctx, mode):
        return (1,)


class NotANode:
    spec = "NotANode"


class InvalidFine(Node):
    spec = NodeSpec(name="InvalidFine", inputs=(In("value", "INT"),), outputs=(Out("INT"),))

    def execute(self, ctx, value):
        return (value + 1,)


@hookimpl
def register_nodes():
    return [BadType, NoChoices, NotANode, InvalidFine]
