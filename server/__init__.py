"""HTTP + websocket server speaking ComfyUI's protocol, with a persistent queue."""

from latentgraph.server.app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]
