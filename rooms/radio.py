"""Room radio: what a room plays as one continuous MP3 stream, paced in real time, for
any media player (VLC, mpv, ffplay, a smart speaker), and the room's queue as a playlist.

One station per room per server process, with one long-lived MP3 encoder (ffmpeg reading
PCM on its stdin). The station's pacer writes, every PACE_S, the PCM that is due by the
clock: the room's current track, decoded by a second ffmpeg from the room's position, or
silence while the room is paused, stopped or waiting, before a scheduled start and after a
track's end. So the encoder never starves and never restarts: a skip, a seek, a pause or a
resume changes what the PCM is, not whether it flows, and the MP3 stream is one encoder's
output from the first byte to the last (no new encoder priming, no gap in time). A change
is exact to the sample: the next track's decoder is started as soon as the room's state
says so and its PCM begins at the sample of the state's anchor (the scheduled start).

The station keeps the last RADIO_BURST_S of MP3 and sends it at once to a player that
connects (Icecast's burst-on-connect), so the player's buffer starts full and, as audio then
arrives in real time, stays so; a station that starts prefills that much of the room's
audio. 50 listeners cost two ffmpeg processes and 50 queue writes per 4 KiB.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from pathlib import Path

from channels.db import database_sync_to_async
from django.conf import settings
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_safe

from catalog import playlists
from catalog import selectors as catalog_selectors
from catalog.streaming import StreamRequestError
from project.accounts import revocation
from project.accounts.auth import STREAM_AUTH_CHALLENGE, STREAM_AUTH_HELP, astream_user, stream_user
from rooms import events, presence, runtime, selectors
from rooms.services import RoomError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 44100
SAMPLE_BYTES = 4  # s16le, stereo
BITRATE_KBPS = 128
CHUNK_BYTES = 4096
LISTENER_QUEUE_CHUNKS = 256  # ~64 s of audio at 128 kbit/s; a listener that far behind is dropped
PACE_S = 0.05
# The most PCM one pace writes: after a longer stall (a suspended machine) the clock skips.
MAX_CATCH_UP_S = 5.0
# A decoder that has not produced its PCM by then is heard as silence for that stretch.
DECODER_WAIT_S = 0.25
ENCODER_RESTART_S = 0.5


def _ffmpeg() -> list[str]:
    return [settings.FFMPEG_BINARY, "-nostdin", "-hide_banner", "-loglevel", "error"]


def _pcm_args() -> list[str]:
    return ["-f", "s16le", "-ac", "2", "-ar", str(SAMPLE_RATE)]


def decoder_command(path: str, position_s: float) -> list[str]:
    """PCM of a track from `position_s`, as fast as it is read."""
    return [*_ffmpeg(), "-ss", f"{max(0.0, position_s):.3f}", "-i", path, "-vn", *_pcm_args(), "pipe:1"]


def encoder_command() -> list[str]:
    """The station's MP3 encoder: PCM in on stdin, MP3 frames out on stdout, as they come."""
    return [*_ffmpeg(), *_pcm_args(), "-i", "pipe:0", "-c:a", "libmp3lame", "-b:a", f"{BITRATE_KBPS}k",
            "-f", "mp3", "-write_xing", "0", "-id3v2_version", "0", "-flush_packets", "1", "pipe:1"]


class _Decoder:
    """One track's PCM from a position, heard from station sample `from_sample` on."""

    def __init__(self, path: str, position_s: float, from_sample: int):
        self.path = path
        self.position_s = position_s
        self.from_sample = from_sample
        self.ended = False
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *decoder_command(self.path, self.position_s), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )

    async def read(self, size: int) -> bytes:
        """`size` bytes of PCM, or fewer at the track's end or when the decoder is late."""
        if self.ended or self._process is None:
            return b""
        try:
            return await asyncio.wait_for(self._process.stdout.readexactly(size), DECODER_WAIT_S)
        except asyncio.IncompleteReadError as exc:  # the end of the track
            self.ended = True
            return exc.partial
        except TimeoutError:  # nothing taken from the pipe: it is read on time next pace
            logger.warning("radio decoder late", extra={"path": self.path})
            return b""

    def stop(self) -> None:
        self.ended = True
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            task = asyncio.ensure_future(_reap(self._process))
            _reaping.add(task)
            task.add_done_callback(_reaping.discard)


_reaping: set[asyncio.Task] = set()


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Wait for a killed ffmpeg: asyncio stops reading a pipe whose buffer is full, so drop
    what nobody will read, or the process is never waited for."""
    with contextlib.suppress(Exception):
        while await process.stdout.read(65536):
            pass
        await process.wait()


class Station:
    def __init__(self, room_id: int):
        self.room_id = room_id
        self.listeners: set[asyncio.Queue] = set()
        self.member = runtime.Member(None, f"radio-{id(self)}", self._on_frame)
        self._runtime: runtime.RoomRuntime | None = None
        self._paths: dict[int, str | None] = {}
        loop = asyncio.get_running_loop()
        burst_s = settings.RADIO_BURST_S
        # The station's clock: sample 0 is burst_s ago, so the first pace writes the burst.
        self._t0 = loop.time() - burst_s
        self._wall0_ms = presence.now_ms() - burst_s * 1000
        self._written = 0  # samples handed to the encoder
        self._current: _Decoder | None = None  # None: silence
        self._next: tuple[int, _Decoder | None] | None = None  # (from sample, source)
        self._followed: tuple | None = None
        self._follows = 0
        self._burst: collections.deque[bytes] = collections.deque()
        self._burst_bytes = 0
        self._task: asyncio.Task | None = None

    # --- the room's clock and state -----------------------------------------------------

    def _sample_of(self, wall_ms: float) -> int:
        return int((wall_ms - self._wall0_ms) / 1000 * SAMPLE_RATE)

    def _wall_ms_of(self, sample: int) -> float:
        return self._wall0_ms + sample / SAMPLE_RATE * 1000

    async def start(self) -> None:
        self._runtime = await runtime.attach(self.room_id, self.member)
        state = await database_sync_to_async(events.current_state_event)(self.room_id, reason="join")
        self._runtime.remember(state)
        await self._follow(state)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._follows += 1  # a state being followed right now is dropped, its decoder with it
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for source in (self._current, self._next[1] if self._next else None):
            if source is not None:
                source.stop()
        await runtime.detach(self.room_id, self.member)

    async def _on_frame(self, frame: str) -> None:
        if '"type":"room.state"' in frame[:40] and self._runtime is not None and self._runtime.state:
            await self._follow(self._runtime.state)

    async def _follow(self, state: dict) -> None:
        """From the state's start on, play what it says: the track from its position, or silence."""
        track = state["track"]
        key = (state["version"], state["status"], track and track["id"])
        if key == self._followed:
            return  # a tick of the state already followed
        self._followed = key
        self._follows += 1
        follow = self._follows
        if state["status"] != "playing" or track is None:
            self._schedule(self._written, None)
            return
        from_sample = max(self._written, self._sample_of(state["anchor_ms"]))
        position = events.position_at(state, int(self._wall_ms_of(from_sample)))
        path = await self._path_of(track["id"])
        if path is None or position >= track["duration_s"]:
            if follow == self._follows:
                self._schedule(self._written, None)
            return
        decoder = _Decoder(path, position, from_sample)
        await decoder.start()
        if follow != self._follows:  # a newer state came while this one was starting
            decoder.stop()
            return
        self._schedule(from_sample, decoder)

    def _schedule(self, from_sample: int, source: _Decoder | None) -> None:
        if self._next is not None and self._next[1] is not None:
            self._next[1].stop()
        self._next = (from_sample, source)

    async def _path_of(self, track_id: int) -> str | None:
        if track_id not in self._paths:
            track = await database_sync_to_async(catalog_selectors.track_get)(track_id=track_id)
            exists = track is not None and await asyncio.to_thread(Path(track.file_path).exists)
            self._paths[track_id] = track.file_path if exists else None
        return self._paths[track_id]

    # --- PCM in, MP3 out ----------------------------------------------------------------

    async def _run(self) -> None:
        """The encoder and its pacer; an encoder that dies is replaced, the clock goes on."""
        while True:
            encoder = await asyncio.create_subprocess_exec(
                *encoder_command(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            reader = asyncio.create_task(self._read_mp3(encoder.stdout))
            try:
                await self._pace(encoder.stdin, reader)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                reader.cancel()
                if encoder.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        encoder.kill()
                await _reap(encoder)
            logger.warning("radio encoder stopped; starting a new one", extra={"room_id": self.room_id})
            await asyncio.sleep(ENCODER_RESTART_S)

    async def _pace(self, stdin: asyncio.StreamWriter, reader: asyncio.Task) -> None:
        loop = asyncio.get_running_loop()
        while not reader.done():
            due = int((loop.time() - self._t0) * SAMPLE_RATE) - self._written
            if due > MAX_CATCH_UP_S * SAMPLE_RATE:  # a long stall: skip the time, not the audio
                skipped = due - int(PACE_S * SAMPLE_RATE)
                self._t0 += skipped / SAMPLE_RATE
                self._wall0_ms += skipped / SAMPLE_RATE * 1000
                due -= skipped
            if due > 0:
                stdin.write(await self._pcm(due))
                await stdin.drain()
            await asyncio.sleep(PACE_S)

    async def _pcm(self, samples: int) -> bytes:
        """The next `samples` of the station's timeline."""
        out = bytearray()
        at, end = self._written, self._written + samples
        while at < end:
            if self._next is not None and self._next[0] <= at:
                start, source = self._next
                self._next = None
                if self._current is not None:
                    self._current.stop()
                self._current = source
                if source is not None and at > start:  # began late: skip to where it should be
                    await source.read((at - start) * SAMPLE_BYTES)
            until = end if self._next is None else min(end, max(at, self._next[0]))
            size = (until - at) * SAMPLE_BYTES
            data = await self._current.read(size) if self._current is not None else b""
            out += data
            out += bytes(size - len(data))
            at = until
        self._written = end
        return bytes(out)

    async def _read_mp3(self, stdout: asyncio.StreamReader) -> None:
        pending = b""
        while chunk := await stdout.read(CHUNK_BYTES):
            # ffmpeg writes one 418-byte MP3 frame at a time: hand listeners 4 KiB at
            # once (a quarter second), which costs a third of the CPU with 50 of them.
            pending += chunk
            if len(pending) >= CHUNK_BYTES:
                self._emit(pending)
                pending = b""

    def _emit(self, chunk: bytes) -> None:
        self._burst.append(chunk)
        self._burst_bytes += len(chunk)
        burst_bytes = settings.RADIO_BURST_S * BITRATE_KBPS * 1000 / 8
        while self._burst and self._burst_bytes - len(self._burst[0]) >= burst_bytes:
            self._burst_bytes -= len(self._burst.popleft())
        self._fan_out(chunk)

    def _fan_out(self, chunk: bytes) -> None:
        for queue in list(self.listeners):
            try:
                queue.put_nowait(chunk)
            except asyncio.QueueFull:  # this listener stopped reading: end its stream
                self.listeners.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    def add_listener(self) -> asyncio.Queue:
        """A listener's queue, holding the burst already."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=LISTENER_QUEUE_CHUNKS)
        for chunk in self._burst:
            queue.put_nowait(chunk)
        self.listeners.add(queue)
        return queue


_stations: dict[tuple[int, int], Station] = {}


def _end_stream(queue: asyncio.Queue) -> None:
    """Make the listener's stream end after what it has already read."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(None)


async def listen(room_id: int, *, credential: revocation.Credential | None = None):
    """Async iterator of MP3 bytes for one listener of the room's station. With
    `credential`, the stream ends as soon as that credential is revoked (its token, its
    user, or its user's place in the room)."""
    loop_key = (id(asyncio.get_running_loop()), room_id)
    station = _stations.get(loop_key)
    if station is None:
        station = _stations[loop_key] = Station(room_id)
        await station.start()
    queue = station.add_listener()
    try:
        async with contextlib.AsyncExitStack() as stack:
            if credential is not None:
                await stack.enter_async_context(
                    revocation.watch(credential, room_id=room_id, on_revoke=lambda code: _end_stream(queue))
                )
            while True:
                chunk = await queue.get()
                if chunk is None:
                    return
                yield chunk
    finally:
        station.listeners.discard(queue)
        if not station.listeners and _stations.get(loop_key) is station:
            del _stations[loop_key]
            await station.stop()


def _not_authenticated() -> JsonResponse:
    response = JsonResponse({"error": "not_authenticated", "message": STREAM_AUTH_HELP}, status=401)
    response["WWW-Authenticate"] = STREAM_AUTH_CHALLENGE
    return response


@require_safe
def room_playlist(request, slug: str):
    """The room's queue, from the track playing now, as an M3U playlist for a media player."""
    user = stream_user(request)
    if user is None:
        return _not_authenticated()
    try:
        room, _ = selectors.room_visible(slug=slug, user=user)
    except RoomError as exc:
        return JsonResponse({"error": exc.code, "message": exc.message}, status=exc.http_status)
    try:
        return playlists.playlist_response(request, user=user, tracks=selectors.room_queue_tracks(room=room), title=room.name)
    except StreamRequestError as exc:
        return JsonResponse({"error": "invalid", "message": str(exc)}, status=400)


@require_safe
async def radio_stream(request, slug: str):
    user = await astream_user(request)
    if user is None:
        return _not_authenticated()
    try:
        room, _ = await database_sync_to_async(selectors.room_visible)(slug=slug, user=user)
    except RoomError as exc:
        return JsonResponse({"error": exc.code, "message": exc.message}, status=exc.http_status)
    response = StreamingHttpResponse(listen(room.pk, credential=revocation.Credential.of(user)),
                                     content_type="audio/mpeg")
    response["Cache-Control"] = "no-store"
    response["icy-name"] = f"Chorus: {room.name}"
    return response
