"""Built-in nodes: model loading, text encoding, sampling and image I/O on diffusers/transformers.

They register through the same pluggy hook as any third-party plugin (see ``builtin.py``).
"""
