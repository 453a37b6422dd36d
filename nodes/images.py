"""Image I/O nodes: SaveImage, PreviewImage, LoadImage, ImageScale."""

NODES: list = []
