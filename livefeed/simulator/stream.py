"""The simulator's video: a real live FLV stream over HTTP, made by ffmpeg in real time
(testsrc2 with the wall-clock time drawn on it, and a sine tone; H.264 + AAC, one keyframe a
second), served at the pull URLs the room's enter API lists (`stream_url.flv_pull_url`), on
a port of its own as Douyin's CDN is a host of its own.

One ffmpeg per room (or one for every room with `shared=True`, for benchmarks of many
streams) starts with the room's first viewer. A viewer joining gets at once the FLV header,
the metadata and codec headers and the tags since the last keyframe (a CDN's GOP cache), then
every tag as it comes, with the generator's own timestamps (ms since the generator started).

Timestamps a test can check: `epoch_ms` is the wall-clock time of timestamp 0, measured at
the source (the smallest arrival time minus timestamp of any tag ffmpeg wrote), so a tag with
timestamp t was made at epoch_ms + t. Each viewer's first and last tag sent are kept in
`Viewer.first_wall_ms` / `last_wall_ms` (room.stream_viewers), which says how much of the
broadcast a recorder received and where its gaps are.

URLs carry `expire` and `sign`: after the `expire` command the room's sign changes, its
viewers are cut off and the old URL answers 403, as an expired CDN URL does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from livefeed import flv

log = logging.getLogger(__name__)
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
MAX_BUFFERED_BYTES = 8 * 1024 * 1024  # a viewer this far behind is cut off


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def generator_args(*, width: int = 320, height: int = 180, fps: int = 15, video_kbps: int = 250,
                   cbr: bool = False) -> list[str]:
    """ffmpeg making a live FLV on stdout in real time (-re), cheap to encode; with `cbr`, at
    exactly `video_kbps` (padded), for streams of a known size a second."""
    video = f"testsrc2=size={width}x{height}:rate={fps}"
    if os.path.exists(FONT):
        video += (f",drawtext=fontfile={FONT}:fontsize={max(10, height // 8)}:fontcolor=white:box=1:boxcolor=black"
                  r":x=4:y=4:text='%{localtime\:%H\\\:%M\\\:%S} %{pts\:hms}'")
    return ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050",
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(fps),
            "-b:v", f"{video_kbps}k", *(["-minrate", f"{video_kbps}k", "-maxrate", f"{video_kbps}k", "-bufsize",
                                        f"{video_kbps // 2}k", "-x264-params", "nal-hrd=cbr"] if cbr else []),
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "32k", "-ac", "1",
            "-f", "flv", "-flvflags", "no_duration_filesize", "-flush_packets", "1", "pipe:1"]


@dataclass(eq=False)
class Viewer:
    writer: asyncio.StreamWriter
    live_id: str
    joined_ms: int = field(default_factory=now_ms)
    started: bool = False
    first_wall_ms: int | None = None
    last_wall_ms: int | None = None
    bytes_sent: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, data: bytes) -> None:
        if self.closed.is_set():
            return
        if self.writer.transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
            self.close()
            return
        self.writer.write(data)
        self.bytes_sent += len(data)

    def close(self, *, abort: bool = False) -> None:
        if not self.closed.is_set():
            self.closed.set()
            if abort:
                self.writer.transport.abort()
            else:
                self.writer.close()

    def as_json(self) -> dict:
        return {"joined_ms": self.joined_ms, "first_wall_ms": self.first_wall_ms, "last_wall_ms": self.last_wall_ms,
                "bytes_sent": self.bytes_sent, "open": not self.closed.is_set()}


class Source:
    """One ffmpeg making the stream, and the viewers it is sent to."""

    def __init__(self, args: list[str]):
        self.args = args
        self.headers = flv.Headers()
        self.viewers: set[Viewer] = set()
        self.epoch_ms: int | None = None
        self.paused: set[str] = set()  # live ids whose viewers get nothing for now (a stalled CDN)
        self.gop: list[flv.Tag] = []  # since the last keyframe, for viewers joining
        self.waiting: set[Viewer] = set()  # joined before the first keyframe
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None

    def ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self.headers = flv.Headers()
            self.gop = []
            self._task = asyncio.create_task(self._run(), name="sim-stream")

    async def _run(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *self.args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        reader = flv.Reader()
        try:
            while chunk := await self._process.stdout.read(65536):
                arrived = now_ms()
                for tag in reader.feed(chunk):
                    self._tag(tag, arrived)
        finally:
            for viewer in list(self.viewers):
                viewer.close()
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()

    def _tag(self, tag: flv.Tag, arrived_ms: int) -> None:
        if self.headers.see(tag):
            return
        if tag.type != flv.SCRIPT:
            estimate = arrived_ms - tag.ts_ms
            self.epoch_ms = estimate if self.epoch_ms is None else min(self.epoch_ms, estimate)
        if tag.keyframe:
            self.gop = []
            for viewer in list(self.waiting):
                self.waiting.discard(viewer)
                if not viewer.closed.is_set() and self.headers.ready:
                    viewer.started = True
                    viewer.send(self.headers.prologue(tag.ts_ms))
                    viewer.first_wall_ms = (self.epoch_ms or arrived_ms) + tag.ts_ms
        if self.gop or tag.keyframe:
            self.gop.append(tag)
        for viewer in list(self.viewers):
            if viewer.closed.is_set():
                self.viewers.discard(viewer)
                continue
            if not viewer.started or viewer.live_id in self.paused:
                continue
            viewer.send(tag.encode())
            viewer.last_wall_ms = (self.epoch_ms or arrived_ms) + tag.ts_ms

    def join(self, viewer: Viewer) -> None:
        """A new viewer: the headers and the GOP so far now, the rest as it comes."""
        self.viewers.add(viewer)
        if self.headers.ready and self.gop and self.epoch_ms is not None:
            viewer.started = True
            viewer.send(self.headers.prologue(self.gop[0].ts_ms) + b"".join(tag.encode() for tag in self.gop))
            viewer.first_wall_ms = self.epoch_ms + self.gop[0].ts_ms
            viewer.last_wall_ms = self.epoch_ms + self.gop[-1].ts_ms
        else:
            self.waiting.add(viewer)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


class StreamServer:
    """`GET /stream/<room_id>_<quality>.flv?expire=..&sign=..` on its own port."""

    def __init__(self, simulator, *, host: str, port: int = 0, shared: bool = False, kbps: int | None = None):
        self.simulator = simulator
        self.host = host
        self.port = port
        self.shared = shared
        self.kbps = kbps  # None: a cheap stream of about 280 kbit/s; a number: constant, that many kbit/s
        self.sources: dict[str, Source] = {}
        self._server: asyncio.Server | None = None

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for source in self.sources.values():
            await source.stop()
        self.sources.clear()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()
            self._server = None

    def source_for(self, live_id: str) -> Source:
        key = "shared" if self.shared else live_id
        if key not in self.sources:
            self.sources[key] = Source(generator_args(video_kbps=self.kbps, cbr=True) if self.kbps else generator_args())
        return self.sources[key]

    def viewers(self, live_id: str) -> list[Viewer]:
        source = self.sources.get("shared" if self.shared else live_id)
        return [viewer for viewer in source.viewers if viewer.live_id == live_id] if source else []

    def cut(self, live_id: str) -> None:
        """Close the room's viewers' connections without a word (a network drop)."""
        for viewer in self.viewers(live_id):
            viewer.close(abort=True)

    def pause(self, live_id: str, paused: bool) -> None:
        source = self.source_for(live_id)
        (source.paused.add if paused else source.paused.discard)(live_id)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        status, viewer_room = self._route(parts[1] if len(parts) == 3 else "", parts[0])
        if viewer_room is None:
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(status) + 1}\r\n"
                         f"Connection: close\r\n\r\n{status}\n".encode())
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nCache-Control: no-cache\r\n"
                     b"Connection: close\r\n\r\n")
        room = viewer_room
        viewer = Viewer(writer=writer, live_id=room.live_id)
        room.stream_viewers.append(viewer)
        source = self.source_for(room.live_id)
        source.ensure_started()
        source.join(viewer)
        reading = asyncio.ensure_future(reader.read())  # the client closing its side ends the viewer too
        closed = asyncio.ensure_future(viewer.closed.wait())
        try:
            await asyncio.wait({reading, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reading.cancel()
            closed.cancel()
            viewer.close()
            source.viewers.discard(viewer)

    def _route(self, target: str, method: str):
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query))
        name = parts.path.rsplit("/", 1)[-1]
        if method != "GET" or not parts.path.startswith("/stream/") or not name.endswith(".flv") or "_" not in name:
            return "404 Not Found", None
        room = self.simulator._room_by_id(name.split("_", 1)[0])
        if room is None or not room.live:
            return "404 Not Found", None
        if query.get("sign") != room.stream_sign:
            return "403 Forbidden", None
        if room.stream_refuse:
            return room.stream_refuse, None
        return "200 OK", room
