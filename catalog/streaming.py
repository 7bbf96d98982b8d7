"""Serving audio: byte ranges of the original file, or a live ffmpeg transcode.

Both bodies are async iterators, so Daphne sends each chunk as it is read or encoded
and a long file never sits in memory here (Django would buffer a sync iterator whole).
Daphne itself has no flow control, though: it accepts every chunk at once and Twisted
queues what the client has not taken yet (see the stream section of docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.cache import get_conditional_response
from django.utils.http import http_date, parse_http_date_safe, quote_etag

from catalog import transcode_slots

logger = logging.getLogger(__name__)

FILE_CHUNK_BYTES = 256 * 1024
PIPE_CHUNK_BYTES = 32 * 1024
STDERR_TAIL_BYTES = 2000


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


_DIGITS = re.compile(r"[0-9]+")
# More digits than this is beyond any file; int() of thousands of digits would raise.
_HUGE_DIGITS = 18


def _position(text: str) -> int | None:
    """A byte position of a Range header (ASCII digits only), or None when it is not one."""
    if not _DIGITS.fullmatch(text):
        return None
    digits = text.lstrip("0") or "0"
    return int(digits) if len(digits) <= _HUGE_DIGITS else 10**_HUGE_DIGITS


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
    first_text, dash, last_text = (part.strip() for part in spec.partition("-"))
    if not dash:
        return None
    first, last = _position(first_text), _position(last_text)
    if not first_text:  # a suffix: the last N bytes
        if last is None:
            return None
        if last == 0 or size == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(0, size - last), size - 1)
    if first is None or (last_text and last is None) or (last is not None and last < first):
        return None
    if first >= size:
        raise RangeNotSatisfiable
    return ByteRange(first, size - 1 if last is None else min(last, size - 1))


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


def file_response(request: HttpRequest, path: Path, stat: os.stat_result, *, mime_type: str, checksum: str) -> HttpResponseBase:
    """304 or 412 for conditional requests; else 200 or 206 (or 416), honouring Range and If-Range."""
    etag, last_modified = file_validators(stat, checksum)
    size = stat.st_size
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Last-Modified": http_date(last_modified),
        "Cache-Control": "private, max-age=3600",
    }
    # A response with the headers lets a 304 repeat ETag and Cache-Control (RFC 9110 15.4.5);
    # get_conditional_response hands it back unchanged when no condition applies.
    unconditional = HttpResponse(headers=headers)
    conditional = get_conditional_response(request, etag=etag, last_modified=last_modified, response=unconditional)
    if conditional is not unconditional:
        return conditional
    byte_range = None
    if _if_range_allows(request, etag, last_modified):
        try:
            byte_range = parse_range(request.headers.get("Range"), size)
        except RangeNotSatisfiable:
            return HttpResponse(
                f"Range not satisfiable: the file has {size} bytes.",
                status=416,
                content_type="text/plain",
                headers={**headers, "Content-Range": f"bytes */{size}"},
            )
    start, length, status = (0, size, 200) if byte_range is None else (byte_range.start, byte_range.length, 206)
    body = file_chunks(path, start, length) if request.method != "HEAD" else _empty()
    response = StreamingHttpResponse(body, status=status, content_type=mime_type, headers=headers)
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


class TranscodeFailed(Exception):
    """ffmpeg could not be started, or exited without writing any audio."""


async def _tail(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Read `stream` to its end, keeping the last `limit` bytes."""
    tail = b""
    while chunk := await stream.read(4096):
        tail = (tail + chunk)[-limit:]
    return tail


class Transcode:
    """A running ffmpeg whose stdout is a response body (an async iterable with `close()`).

    `start()` waits for the first bytes, so a file ffmpeg cannot read becomes an error
    response instead of an empty 200. stderr is drained all along: a chatty ffmpeg (a
    damaged file logs an error per bad frame) would otherwise fill the pipe and stall.
    ffmpeg is killed when the iteration stops early (the client went away: the request
    task is cancelled inside `read`) and, as a last resort, when Django closes the
    response without having read it to the end.

    A client that stops reading pauses ffmpeg: the body waits in `yield` until Daphne has
    sent the chunk (project/flow.py), the pipe fills and ffmpeg blocks on its write, so at
    most a pipe and a reader buffer (about 200 KiB) wait for it. One that takes nothing
    for TRANSCODE_IDLE_S loses its ffmpeg and its slot (`slot`, transcode_slots.py), which
    is released whenever the transcode ends, however it ends.
    """

    def __init__(self, process: asyncio.subprocess.Process, source: Path, slot: transcode_slots.Slot | None = None):
        self._process = process
        self._source = source
        self._slot = slot
        self._loop = asyncio.get_running_loop()
        self._stderr = asyncio.create_task(_tail(process.stderr, STDERR_TAIL_BYTES))
        self._first = b""
        self._killed = False
        self._waiting_since: float | None = None  # loop time a chunk was handed over, until taken
        self._watchdog = asyncio.create_task(self._stop_when_idle())

    @classmethod
    async def start(cls, command: list[str], *, source: Path, slot: transcode_slots.Slot | None = None) -> Transcode:
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            logger.error("transcode could not start", extra={"command": command[0], "source": str(source), "error": str(exc)})
            raise TranscodeFailed(str(exc)) from exc
        transcode = cls(process, source, slot)
        try:
            transcode._first = await process.stdout.read(PIPE_CHUNK_BYTES)
            if not transcode._first and await transcode._wait_and_log() != 0:
                raise TranscodeFailed("ffmpeg wrote no audio")
        except BaseException:
            await transcode._stop()
            raise
        return transcode

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            data = self._first
            while data:
                self._waiting_since = self._loop.time()
                yield data
                self._waiting_since = None
                data = await self._process.stdout.read(PIPE_CHUNK_BYTES)
            await self._wait_and_log()
        finally:
            await self._stop()

    def close(self) -> None:
        """Called by Django when the response is finished, possibly from a worker thread."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._abandon)

    def _abandon(self) -> None:
        self._kill()
        self._watchdog.cancel()
        transcode_slots.release_soon(self._slot)

    async def _stop_when_idle(self) -> None:
        idle_s = settings.TRANSCODE_IDLE_S
        while self._process.returncode is None:
            await asyncio.sleep(min(idle_s / 4, 5))
            if self._waiting_since is not None and self._loop.time() - self._waiting_since > idle_s:
                logger.info("transcode stopped: the client took nothing", extra={"source": str(self._source), "idle_s": idle_s})
                self._abandon()
                return

    def _kill(self) -> None:
        if self._process.returncode is None:
            self._killed = True
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()

    async def _wait_and_log(self) -> int:
        """ffmpeg's exit status once stdout is at its end; failures are logged with its stderr."""
        returncode = await self._process.wait()
        stderr = await self._stderr
        if returncode != 0 and not self._killed:
            logger.error(
                "transcode failed",
                extra={"returncode": returncode, "source": str(self._source), "stderr": stderr.decode(errors="replace")},
            )
        return returncode

    async def _stop(self) -> None:
        self._kill()
        # wait() returns only once every pipe has reached its end, and asyncio stops reading
        # a pipe whose unread buffer is full: drop what nobody will read, or this hangs.
        while await self._process.stdout.read(PIPE_CHUNK_BYTES):
            pass
        await self._process.wait()
        self._stderr.cancel()
        self._watchdog.cancel()
        if self._slot is not None:
            await self._slot.release()


async def transcode_response(
    request: HttpRequest, path: Path, fmt: TranscodeFormat, bitrate_kbps: int, *, user_id: int
) -> HttpResponseBase:
    """200 with ffmpeg's output as it is encoded; raises TranscodeFailed when there is none,
    TranscodeBusy when `user_id` or the server already runs as many transcodes as allowed."""
    if request.method == "HEAD":
        body = _empty()
    else:
        slot = await transcode_slots.acquire(user_id=user_id)
        try:
            body = await Transcode.start(transcode_command(path, fmt, bitrate_kbps), source=path, slot=slot)
        except BaseException:
            await slot.release()
            raise
    response = StreamingHttpResponse(body, content_type=fmt.mime_type)
    response["Accept-Ranges"] = "none"
    response["Cache-Control"] = "private, no-store"
    response["X-Transcode"] = f"{fmt.name};bitrate={bitrate_kbps}k"
    return response
