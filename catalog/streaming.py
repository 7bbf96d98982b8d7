"""Serving audio: byte ranges of the original file, or a live ffmpeg transcode.

Both bodies are async iterators, so Daphne sends each chunk as it is read or encoded
and a long file never sits in memory (Django would buffer a sync iterator whole).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.http import http_date, parse_http_date_safe, quote_etag

logger = logging.getLogger(__name__)

FILE_CHUNK_BYTES = 256 * 1024
PIPE_CHUNK_BYTES = 32 * 1024


@dataclass(frozen=True)
class TranscodeFormat:
    name: str
    codec: str
    container: str
    mime_type: str
    extra: tuple[tuple[str, str], ...] = ()


TRANSCODE_FORMATS = {
    # -write_xing 0: a pipe cannot seek back to fill in the Xing header.
    "mp3": TranscodeFormat("mp3", "libmp3lame", "mp3", "audio/mpeg", (("write_xing", "0"),)),
    "opus": TranscodeFormat("opus", "libopus", "ogg", "audio/ogg", (("page_duration", "200000"),)),
}
BITRATE_MIN_KBPS = 32
BITRATE_MAX_KBPS = 320
BITRATE_DEFAULT_KBPS = {"mp3": 192, "opus": 128}


class StreamRequestError(ValueError):
    """Bad query parameters; str(exc) is the message for the client."""


class RangeNotSatisfiable(Exception):
    pass


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range asked for, None to send the whole file, or RangeNotSatisfiable.

    Syntactically invalid headers and multi-range requests are ignored (RFC 9110 14.2
    lets a server answer those with the full representation).
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if first == "":
        if not last.isdigit():
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    return ByteRange(start, min(end, size - 1))


def parse_transcode(params) -> tuple[TranscodeFormat, int] | None:
    """`?format=mp3|opus&bitrate=N` (kbit/s) -> what to encode, or None for the original."""
    name = params.get("format")
    bitrate = params.get("bitrate")
    if not name or name == "raw":
        if bitrate:
            raise StreamRequestError("bitrate needs format=mp3 or format=opus")
        return None
    fmt = TRANSCODE_FORMATS.get(name)
    if fmt is None:
        raise StreamRequestError(f"format must be one of {', '.join(['raw', *TRANSCODE_FORMATS])}")
    if bitrate is None or bitrate == "":
        return fmt, BITRATE_DEFAULT_KBPS[name]
    try:
        kbps = int(bitrate)
    except ValueError:
        raise StreamRequestError("bitrate must be a whole number of kbit/s") from None
    if not BITRATE_MIN_KBPS <= kbps <= BITRATE_MAX_KBPS:
        raise StreamRequestError(f"bitrate must be between {BITRATE_MIN_KBPS} and {BITRATE_MAX_KBPS} kbit/s")
    return fmt, kbps


def file_validators(stat: os.stat_result, checksum: str) -> tuple[str, int]:
    """Strong ETag and Last-Modified (epoch s) of the file as it is now on disk."""
    etag = quote_etag(f"{checksum[:16]}-{stat.st_size:x}-{stat.st_mtime_ns:x}")
    return etag, int(stat.st_mtime)


def _if_range_allows(request: HttpRequest, etag: str, last_modified: int) -> bool:
    """True when the Range header applies (no If-Range, or it names this version)."""
    condition = request.headers.get("If-Range")
    if not condition:
        return True
    if condition.startswith('"'):
        return condition == etag
    date = parse_http_date_safe(condition)
    return date is not None and date == last_modified


async def file_chunks(path: Path, start: int, length: int) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        await asyncio.to_thread(handle.seek, start)
        remaining = length
        while remaining > 0:
            data = await asyncio.to_thread(handle.read, min(FILE_CHUNK_BYTES, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
    finally:
        await asyncio.to_thread(handle.close)


def file_response(request: HttpRequest, path: Path, stat: os.stat_result, *, mime_type: str, etag: str, last_modified: int) -> HttpResponse:
    """200 or 206 (or 416) for the original file, honouring Range and If-Range."""
    size = stat.st_size
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Last-Modified": http_date(last_modified),
        "Cache-Control": "private, max-age=3600",
    }
    byte_range = None
    if _if_range_allows(request, etag, last_modified):
        try:
            byte_range = parse_range(request.headers.get("Range"), size)
        except RangeNotSatisfiable:
            response = HttpResponse(
                f"Range not satisfiable: the file has {size} bytes.", status=416, content_type="text/plain"
            )
            response["Content-Range"] = f"bytes */{size}"
            for key, value in headers.items():
                response[key] = value
            return response
    start, length, status = (0, size, 200) if byte_range is None else (byte_range.start, byte_range.length, 206)
    body = file_chunks(path, start, length) if request.method != "HEAD" else _empty()
    response = StreamingHttpResponse(body, status=status, content_type=mime_type)
    for key, value in headers.items():
        response[key] = value
    response["Content-Length"] = str(length)
    if byte_range is not None:
        response["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
    return response


async def _empty() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an async generator


def transcode_command(path: Path, fmt: TranscodeFormat, bitrate_kbps: int, *, start_s: float = 0) -> list[str]:
    stream = ffmpeg.input(str(path), ss=start_s) if start_s else ffmpeg.input(str(path))
    output = ffmpeg.output(
        stream.audio,
        "pipe:1",
        format=fmt.container,
        acodec=fmt.codec,
        audio_bitrate=f"{bitrate_kbps}k",
        map_metadata=0,
        flush_packets=1,
        **dict(fmt.extra),
    )
    return output.global_args("-nostdin", "-hide_banner", "-loglevel", "error").compile(cmd=settings.FFMPEG_BINARY)


async def transcode_chunks(command: list[str]) -> AsyncIterator[bytes]:
    """ffmpeg's output as it is produced; ffmpeg is killed if the client goes away."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        while data := await process.stdout.read(PIPE_CHUNK_BYTES):
            yield data
        stderr = await process.stderr.read()
        if await process.wait() != 0:
            logger.error("transcode failed", extra={"returncode": process.returncode, "stderr": stderr.decode(errors="replace")[-500:]})
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def transcode_response(request: HttpRequest, path: Path, fmt: TranscodeFormat, bitrate_kbps: int) -> HttpResponse:
    command = transcode_command(path, fmt, bitrate_kbps)
    body = transcode_chunks(command) if request.method != "HEAD" else _empty()
    response = StreamingHttpResponse(body, content_type=fmt.mime_type)
    response["Accept-Ranges"] = "none"
    response["Cache-Control"] = "private, no-store"
    response["X-Transcode"] = f"{fmt.name};bitrate={bitrate_kbps}k"
    return response
