"""A V3 extension whose entrypoint fails: reported as the pack's error, nothing registered."""

from comfy_api.latest import ComfyExtension, io


class Fine(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="FineButUnlisted")

    @classmethod
    def execute(cls):
        return io.NodeOutput()


class BrokenExtension(ComfyExtension):
    async def get_node_list(self):
        raise ConnectionError("could not reach the model server")


async def comfy_entrypoint():
    return BrokenExtension()
