"""A ComfyUI pack that imports ComfyUI internals: cannot load in latentgraph, must be reported."""

import folder_paths  # noqa: F401

NODE_CLASS_MAPPINGS = {}
