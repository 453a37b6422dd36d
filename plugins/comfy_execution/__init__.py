"""latentgraph's stand-in for ComfyUI's ``comfy_execution`` package, as far as custom nodes import
it: ``comfy_execution.graph_utils`` (``GraphBuilder``, ``is_link``) for nodes that expand into a
subgraph. Installed under the name ``comfy_execution`` together with ``comfy_api`` (see
:func:`latentgraph.plugins.comfy_v3.install_comfy_api_alias`)."""
