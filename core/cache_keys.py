"""Merkle cache keys: a node's key hashes its class, version, literal inputs and the keys of the
nodes feeding it, so an edit changes exactly the edited node's key and its descendants'."""

from __future__ import annotations

import hashlib

from latentgraph.node import Node
from latentgraph.validation import PlannedNode

_blake2b = hashlib.blake2b


def needs_fingerprint(node_type: type[Node]) -> bool:
    """Nodes that define a fingerprint, and non-deterministic ones, mix one into their key."""
    return node_type.fingerprint.__func__ is not Node.fingerprint.__func__ or not node_type.spec.deterministic


def node_key(node: PlannedNode, keys: dict[str, bytes], fingerprint: str | None) -> bytes:
    """``keys`` holds the keys of the nodes feeding ``node``; ``fingerprint`` is its fingerprint text."""
    spec = node.node_type.spec
    text = f"{spec.name}\x1f{spec.version}\x1f{node.literal_key}"
    links = node.links
    if links:
        for name, link in sorted(links.items()) if len(links) > 1 else links.items():
            text += f"\x1f{name}={keys[link.node_id].hex()}:{link.output}"
    if fingerprint is not None:
        text += "\x1f" + fingerprint
    return _blake2b(text.encode(), digest_size=16).digest()
