"""FLV, as much as a live recorder needs: a streaming tag reader and a writer that starts a
new file at a keyframe with the stream's header and codec headers and timestamps from 0.

The simulator (livefeed/simulator/stream.py) uses the reader to let a viewer join a running
stream at a keyframe, as a CDN does; the recorder (livefeed/recorder.py) uses both to cut
ffmpeg's codec-copied output into segments by time and by size exactly at keyframes, with
nothing lost or doubled between two segments.

A file is a 9-byte header and a 4-byte zero, then tags: type (8 audio, 9 video, 18 script),
a 3-byte data size, a 3-byte timestamp (ms) and its high byte, a 3-byte stream id, the data,
and the 4-byte size of the tag just written.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

AUDIO, VIDEO, SCRIPT = 8, 9, 18
HEADER = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"  # audio + video, then PreviousTagSize0
MAX_TAG_BYTES = 16 * 1024 * 1024


class FlvError(ValueError):
    """Not FLV, or a tag that cannot be right (the stream is corrupt)."""


@dataclass(slots=True)
class Tag:
    type: int
    ts_ms: int
    data: bytes

    @property
    def keyframe(self) -> bool:
        return self.type == VIDEO and bool(self.data) and (self.data[0] >> 4) == 1

    @property
    def sequence_header(self) -> bool:
        """AVC/HEVC decoder configuration or AAC AudioSpecificConfig: every file needs them first."""
        if len(self.data) < 2:
            return False
        if self.type == VIDEO:
            return (self.data[0] & 0x0F) in (7, 12) and self.data[1] == 0
        if self.type == AUDIO:
            return (self.data[0] >> 4) == 10 and self.data[1] == 0
        return False

    def encode(self, ts_ms: int | None = None) -> bytes:
        ts = max(0, self.ts_ms if ts_ms is None else ts_ms) & 0xFFFFFFFF
        size = len(self.data)
        head = struct.pack(">B", self.type) + size.to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big") \
            + bytes([ts >> 24]) + b"\x00\x00\x00"
        return head + self.data + struct.pack(">I", size + 11)


class Reader:
    """Feed bytes as they come (`feed`), take the whole tags read so far (`tags`)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.header: bytes | None = None

    def feed(self, data: bytes) -> Iterator[Tag]:
        self._buffer += data
        if self.header is None:
            if len(self._buffer) < 13:
                return
            if self._buffer[:3] != b"FLV":
                raise FlvError("not an FLV stream (no FLV signature)")
            size = int.from_bytes(self._buffer[5:9], "big")
            if len(self._buffer) < size + 4:
                return
            self.header = bytes(self._buffer[:size + 4])
            del self._buffer[:size + 4]
        offset = 0
        buffer = self._buffer
        while len(buffer) - offset >= 11:
            kind = buffer[offset] & 0x1F
            size = int.from_bytes(buffer[offset + 1:offset + 4], "big")
            if kind not in (AUDIO, VIDEO, SCRIPT) or size > MAX_TAG_BYTES:
                raise FlvError(f"a tag of type {kind} and {size} bytes: the stream is corrupt")
            end = offset + 11 + size + 4
            if len(buffer) < end:
                break
            ts = int.from_bytes(buffer[offset + 4:offset + 7], "big") | (buffer[offset + 7] << 24)
            yield Tag(kind, ts, bytes(buffer[offset + 11:offset + 11 + size]))
            offset = end
        del buffer[:offset]


class Headers:
    """What a file (or a viewer joining) needs before the first keyframe: the stream's header,
    its metadata tag and the latest codec headers."""

    def __init__(self) -> None:
        self.header = HEADER
        self.metadata: Tag | None = None
        self.video: Tag | None = None
        self.audio: Tag | None = None

    def see(self, tag: Tag) -> bool:
        """Keep `tag` if it is one of them; True if it was."""
        if tag.type == SCRIPT and self.metadata is None:
            self.metadata = tag
            return True
        if tag.sequence_header:
            if tag.type == VIDEO:
                self.video = tag
            else:
                self.audio = tag
            return True
        return False

    @property
    def ready(self) -> bool:
        return self.video is not None

    def prologue(self, ts_ms: int = 0) -> bytes:
        parts = [self.header]
        for tag in (self.metadata, self.video, self.audio):
            if tag is not None:
                parts.append(tag.encode(ts_ms))
        return b"".join(parts)
