"""Live preview frames: opt-in, as in ComfyUI, in its binary websocket framing, at a bounded rate.

Previews are off unless the server default (``--preview-method``) or the prompt's
``extra_data.preview_method`` turns them on: clients that never asked get no binary frame (some
ComfyUI clients crash on one, or take it for the result). The only renderer is the latent→RGB
approximation, so ``auto``, ``latent2rgb`` and ``taesd`` all use it (ComfyUI too falls back to it
when no TAESD decoder is installed).

The client's feature flags choose the framing, as in ComfyUI: one that sent
``{"type": "feature_flags", "data": {"supports_preview_metadata": true}}`` as its first message
gets ``uint32 BE 4`` + ``uint32 BE len(json)`` + metadata JSON + the JPEG; any other gets
``uint32 BE 1`` (preview image) + ``uint32 BE 1`` (JPEG) + the JPEG. Rendering happens in the
worker thread, and only when someone is listening and the throttle allows.
"""

from __future__ import annotations

import io
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from latentgraph.serve_cli import PREVIEW_METHODS  # ComfyUI's; a prompt may also say "default"

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
FORMAT_JPEG = 1
FORMAT_PNG = 2
HEADER = struct.Struct(">II")
UINT32 = struct.Struct(">I")



def effective_method(requested: Any, default: str) -> str:
    """The prompt's ``extra_data.preview_method`` if it names a method, else the server default
    (ComfyUI's rule: ``"default"``, a missing or unknown value → the default)."""
    return requested if isinstance(requested, str) and requested in PREVIEW_METHODS else default


def encode_jpeg(image: Any, *, max_size: int = 512, quality: int = 85) -> bytes:
    """A PIL image → JPEG bytes, at most ``max_size`` on its longer side."""
    img = image
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    if max(img.size) > max_size:
        img = img.copy()
        img.thumbnail((max_size, max_size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def legacy_frame(data: bytes, image_format: int = FORMAT_JPEG) -> bytes:
    return HEADER.pack(PREVIEW_IMAGE, image_format) + data


def metadata_frame(data: bytes, metadata: dict[str, Any], image_type: str = "image/jpeg") -> bytes:
    meta = json.dumps({**metadata, "image_type": image_type}, separators=(",", ":")).encode()
    return UINT32.pack(PREVIEW_IMAGE_WITH_METADATA) + UINT32.pack(len(meta)) + meta + data


def node_metadata(node_id: str, prompt_id: str) -> dict[str, Any]:
    """The metadata ComfyUI sends with a node's preview or image frame (no subgraphs: the node is its own display and real node)."""
    return {"node_id": node_id, "prompt_id": prompt_id, "display_node_id": node_id, "parent_node_id": None, "real_node_id": node_id}


def encode_png(image: Any) -> bytes:
    """A PIL image → PNG bytes, full size (SaveImageWebsocket's frames)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def encode_frame(image: Any, *, max_size: int = 512, quality: int = 85) -> bytes:
    """A PIL image → one legacy binary preview frame."""
    return legacy_frame(encode_jpeg(image, max_size=max_size, quality=quality))


def decode_frame(frame: bytes) -> tuple[int, int, bytes]:
    """``(event_type, image_format, image_bytes)`` of a legacy frame; for tests and clients."""
    event, fmt = HEADER.unpack_from(frame)
    return event, fmt, frame[HEADER.size :]


def decode_metadata_frame(frame: bytes) -> tuple[dict[str, Any], bytes]:
    """``(metadata, image_bytes)`` of a type-4 frame; for tests and clients."""
    (event,) = UINT32.unpack_from(frame)
    if event != PREVIEW_IMAGE_WITH_METADATA:
        raise ValueError(f"not a preview-with-metadata frame: type {event}")
    (length,) = UINT32.unpack_from(frame, 4)
    return json.loads(frame[8 : 8 + length]), frame[8 + length :]


@dataclass
class PreviewThrottle:
    """At most one frame per ``interval`` seconds per prompt; the first frame always passes."""

    interval: float = 0.1
    _last: dict[str, float] = field(default_factory=dict)

    def allow(self, prompt_id: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        last = self._last.get(prompt_id)
        if last is not None and now - last < self.interval:
            return False
        self._last[prompt_id] = now
        return True

    def forget(self, prompt_id: str) -> None:
        self._last.pop(prompt_id, None)
