"""V3 classes in NODE_CLASS_MAPPINGS (mixed with a V1 class), some unusable: the rest must load."""

from comfy_api.latest import io


class Negate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="NegateV3", category="math", inputs=[io.Float.Input("x", default=1.0)],
                         outputs=[io.Float.Output()])

    @classmethod
    def execute(cls, x):
        return io.NodeOutput(-x)


class Blocker(io.ComfyNode):
    """Stops the prompt with a message (ComfyUI's block_execution)."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="Blocker", inputs=[io.Float.Input("x", default=1.0)], outputs=[io.Float.Output()])

    @classmethod
    def execute(cls, x):
        return io.NodeOutput(block_execution="x must be reviewed first")


class SchemaRaises(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        raise RuntimeError("cannot describe myself")

    @classmethod
    def execute(cls):
        return io.NodeOutput()


class SameIdTwice(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="SameIdTwice", inputs=[io.Int.Input("a"), io.Float.Input("a")])

    @classmethod
    def execute(cls, a):
        return io.NodeOutput()


class NoExecute(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="NoExecute")


class NotASchema(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return {"node_id": "NotASchema"}

    @classmethod
    def execute(cls):
        return io.NodeOutput()


class HalveV1:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("FLOAT", {"default": 1.0})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "halve"

    def halve(self, x):
        return (x / 2,)


NODE_CLASS_MAPPINGS = {
    "Negate": Negate,  # registered under its key, as ComfyUI does for mappings
    "Blocker": Blocker,
    "SchemaRaises": SchemaRaises,
    "SameIdTwice": SameIdTwice,
    "NoExecute": NoExecute,
    "NotASchema": NotASchema,
    "HalveV1": HalveV1,
}
NODE_DISPLAY_NAME_MAPPINGS = {"Negate": "Negate (V3)"}
