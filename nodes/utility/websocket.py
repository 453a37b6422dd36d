"""SaveImageWebsocket: the images go to the client over the websocket, not to disk.

As ComfyUI (its example node ``custom_nodes/websocket_image_save.py``): each image is sent full
size as a PNG in the binary framing of previews — ``uint32 BE 1`` (preview image) + ``uint32 BE 2``
(PNG) + the PNG bytes — to every client, as ComfyUI's ``send_image`` does. Nothing is written and
no metadata is embedded.

The engine side is :meth:`ExecutionContext.send_image`: an ``ImageSent`` event the server turns
into that frame for the client that queued the prompt, whatever the preview setting.
"""

from __future__ import annotations

from typing import Any

from latentgraph.node import In, Node, NodeResult, NodeSpec
from latentgraph.nodes.images import _as_batch, tensor_to_pil


class SaveImageWebsocket(Node):
    spec = NodeSpec(
        name="SaveImageWebsocket",
        category="api/image",
        description="Sends the images to the client over the websocket (binary PNG frames); saves nothing.",
        inputs=(In("images", "IMAGE"),),
        outputs=(),
        output_node=True,
        deterministic=False,  # as ComfyUI: always runs, so a listening client always gets the images
    )

    def execute(self, ctx, images: Any) -> NodeResult:
        batch = _as_batch(images)
        total = int(batch.shape[0])
        for index in range(total):
            ctx.send_image(tensor_to_pil(batch[index]), "PNG")
            ctx.progress(index + 1, total)
        return NodeResult(outputs=(), ui=None)


NODES = [SaveImageWebsocket]
