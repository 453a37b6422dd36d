"""A V3 file importing a part of comfy_api that latentgraph does not provide: an import error."""

from comfy_api.latest import io  # noqa: F401
from comfy_api.input_impl import VideoFromFile  # noqa: F401


async def comfy_entrypoint():
    raise AssertionError("never reached")
