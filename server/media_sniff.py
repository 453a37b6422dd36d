"""Audio and video files identified by their leading bytes, as ComfyUI's editor uploads them.

The editor sends videos and sounds (``LoadVideo``, ``LoadAudio``) through ``/upload/image``; they are
accepted when their container signature says what they are, and ``/view`` serves them with that
type. Everything else that is not an image stays refused (415).
"""

from __future__ import annotations

from pathlib import Path

from latentgraph.server.security import FileKind

#: Bytes read from a file's start to identify it.
HEAD_BYTES = 64

MP4 = FileKind("MP4", "video/mp4", (".mp4", ".m4v"))
MOV = FileKind("MOV", "video/quicktime", (".mov",))
M4A = FileKind("M4A", "audio/mp4", (".m4a",))
WEBM = FileKind("WEBM", "video/webm", (".webm",))
MKV = FileKind("MKV", "video/x-matroska", (".mkv",))
AVI = FileKind("AVI", "video/x-msvideo", (".avi",))
WAV = FileKind("WAV", "audio/wav", (".wav",))
OGG = FileKind("OGG", "audio/ogg", (".ogg", ".oga", ".opus", ".ogv"))
FLAC = FileKind("FLAC", "audio/flac", (".flac",))
MP3 = FileKind("MP3", "audio/mpeg", (".mp3",))
AAC = FileKind("AAC", "audio/aac", (".aac",))


def sniff_media(head: bytes) -> FileKind | None:
    """The audio/video container ``head`` (a file's first bytes) starts, or None."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return MOV if brand == b"qt  " else M4A if brand in (b"M4A ", b"M4B ") else MP4
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return WEBM if b"webm" in head[:HEAD_BYTES] else MKV
    if head.startswith(b"RIFF") and head[8:12] in (b"WAVE", b"AVI "):
        return WAV if head[8:12] == b"WAVE" else AVI
    if head.startswith(b"OggS"):
        return OGG
    if head.startswith(b"fLaC"):
        return FLAC
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE6 in (0xE2, 0xE4, 0xE6)):
        return MP3  # an ID3 tag, or an MPEG audio frame header (layer I–III)
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return AAC  # an ADTS frame header
    return None


def sniff_media_file(path: Path) -> FileKind | None:
    try:
        with open(path, "rb") as fh:
            return sniff_media(fh.read(HEAD_BYTES))
    except OSError:
        return None
