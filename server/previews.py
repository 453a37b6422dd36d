"""Live preview frames: JPEG bytes in ComfyUI's binary websocket framing, at a bounded rate.

A frame is ``uint32 BE event type`` (1 = preview image) + ``uint32 BE format`` (1 = JPEG) + the
encoded image. Rendering happens in the worker thread, and only when someone is listening and
the throttle allows, so previews never slow a run that nobody watches.
"""

from __future__ import annotations

import io
import struct
import time
from dataclasses import dataclass, field
from typing import Any

PREVIEW_IMAGE = 1
FORMAT_JPEG = 1
FORMAT_PNG = 2
HEADER = struct.Struct(">II")


def encode_frame(image: Any, *, max_size: int = 512, quality: int = 85) -> bytes:
    """A PIL image → one binary preview frame."""
    img = image
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    if max(img.size) > max_size:
        img = img.copy()
        img.thumbnail((max_size, max_size))
    buf = io.BytesIO()
    buf.write(HEADER.pack(PREVIEW_IMAGE, FORMAT_JPEG))
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_frame(frame: bytes) -> tuple[int, int, bytes]:
    """``(event_type, image_format, image_bytes)``; for tests and clients."""
    event, fmt = HEADER.unpack_from(frame)
    return event, fmt, frame[HEADER.size :]


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
