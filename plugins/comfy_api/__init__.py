"""latentgraph's stand-in for ComfyUI's ``comfy_api`` package (the V3 custom-node API).

Custom-node files import it as ``comfy_api`` (``from comfy_api.latest import ComfyExtension, io,
ui``): :func:`latentgraph.plugins.comfy_v3.install_comfy_api_alias` maps that name onto this
package when a plugins folder is loaded, and never otherwise, so nothing named ``comfy_api`` is
installed as a top-level package. Written from ComfyUI's public V3 documentation and behaviour;
only the declaration side lives here (schemas, types, outputs); running a node is the adapter's
job (:mod:`latentgraph.plugins.comfy_v3`). What is covered is listed in docs/plugins.md.
"""
