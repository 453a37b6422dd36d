"""A well-behaved plugin: it must keep working whatever the other plugins in the folder do."""

from latentgraph import In, Node, NodeResult, NodeSpec, Out, hookimpl


class IsoNumber(Node):
    spec = NodeSpec(name="IsoNumber", inputs=(In("value", "INT", default=1, min=0, max=100),), outputs=(Out("INT"),))

    def execute(self, ctx, value):
        return (value,)


class IsoShow(Node):
    spec = NodeSpec(name="IsoShow", inputs=(In("value", "*"),), output_node=True)

    def execute(self, ctx, value):
        return NodeResult(ui={"value": [value]})


@hookimpl
def register_nodes():
    return [IsoNumber, IsoShow]
