"""Room radio: what a room plays as one continuous MP3 stream, paced in real time, for
any media player (VLC, mpv, ffplay, a smart speaker).

One encoder per room per server process: a `Station` runs ffmpeg on the room's current
track from the room's current position (`-re` paces it in real time), or on silence
while the room is paused, stopped or waiting, and copies each chunk to every listener's
queue. 50 listeners cost one ffmpeg plus 50 queue writes. When the room's state changes
the station restarts ffmpeg at the new track/position; MP3 frames need no container, so
the listeners' byte stream simply continues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from channels.db import database_sync_to_async
from django.conf import settings
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_safe

from catalog import playlists
from catalog.streaming import StreamRequestError
from project.accounts.auth import STREAM_AUTH_CHALLENGE, STREAM_AUTH_HELP, astream_user, stream_user
from rooms import events, presence, runtime, selectors
from rooms.services import RoomError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 44100
BITRATE_KBPS = 128
CHUNK_BYTES = 4096
LISTENER_QUEUE_CHUNKS = 256  # ~64 s of audio at 128 kbit/s; a listener that far behind is dropped


def _encode_args() -> list[str]:
    return [
        "-vn", "-ac", "2", "-ar", str(SAMPLE_RATE), "-c:a", "libmp3lame", "-b:a", f"{BITRATE_KBPS}k",
        "-f", "mp3", "-write_xing", "0", "-id3v2_version", "0", "-flush_packets", "1", "pipe:1",
    ]


def track_command(path: str, position_s: float) -> list[str]:
    return [settings.FFMPEG_BINARY, "-nostdin", "-hide_banner", "-loglevel", "error", "-re",
            "-ss", f"{max(0.0, position_s):.3f}", "-i", path, *_encode_args()]


def silence_command() -> list[str]:
    return [settings.FFMPEG_BINARY, "-nostdin", "-hide_banner", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", f"anullsrc=r={SAMPLE_RATE}:cl=stereo", *_encode_args()]


class Station:
    def __init__(self, room_id: int):
        self.room_id = room_id
        self.listeners: set[asyncio.Queue] = set()
        self.member = runtime.Member(None, f"radio-{id(self)}", self._on_frame)
        self._source: tuple | None = None
        self._encoder: asyncio.Task | None = None
        self._switch_at: asyncio.TimerHandle | None = None
        self._runtime: runtime.RoomRuntime | None = None
        self._paths: dict[int, str] = {}

    async def start(self) -> None:
        self._runtime = await runtime.attach(self.room_id, self.member)
        state = await database_sync_to_async(events.current_state_event)(self.room_id, reason="join")
        self._runtime.remember(state)
        await self._follow(state)

    async def stop(self) -> None:
        if self._switch_at is not None:
            self._switch_at.cancel()
        if self._encoder is not None:
            self._encoder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._encoder
        await runtime.detach(self.room_id, self.member)

    async def _on_frame(self, frame: str) -> None:
        if '"type":"room.state"' in frame[:40] and self._runtime is not None and self._runtime.state:
            await self._follow(self._runtime.state)

    async def _follow(self, state: dict) -> None:
        """Play what `state` says: the track from its position, or silence."""
        if self._switch_at is not None:
            self._switch_at.cancel()
            self._switch_at = None
        if state["status"] != "playing" or state["track"] is None:
            self._play(("silence",))
            return
        now = presence.now_ms()
        if state["anchor_ms"] > now + 5:  # a scheduled start: silence until then
            self._play(("silence",))
            delay_s = (state["anchor_ms"] - now) / 1000
            self._switch_at = asyncio.get_running_loop().call_later(
                delay_s, lambda: asyncio.ensure_future(self._follow(state))
            )
            return
        position = events.position_at(state, now)
        path = await self._path_of(state["track"]["id"])
        if path is None or position >= state["track"]["duration_s"]:
            self._play(("silence",))
        else:
            self._play(("track", path, state["version"], position))

    async def _path_of(self, track_id: int) -> str | None:
        if track_id not in self._paths:
            from catalog.models import Track

            track = await Track.objects.filter(pk=track_id).afirst()
            exists = track is not None and await asyncio.to_thread(Path(track.file_path).exists)
            self._paths[track_id] = track.file_path if exists else None
        return self._paths[track_id]

    def _play(self, source: tuple) -> None:
        if source[:3] == (self._source or ())[:3] and self._encoder is not None and not self._encoder.done():
            return  # already playing exactly this
        self._source = source
        if self._encoder is not None:
            self._encoder.cancel()
        command = silence_command() if source[0] == "silence" else track_command(source[1], source[3])
        self._encoder = asyncio.create_task(self._encode(command, then_silence=source[0] == "track"))

    async def _encode(self, command: list[str], *, then_silence: bool) -> None:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            pending = b""
            while chunk := await process.stdout.read(CHUNK_BYTES):
                # ffmpeg writes one 418-byte MP3 frame at a time: hand listeners 4 KiB at
                # once (a quarter second), which costs a third of the CPU with 50 of them.
                pending += chunk
                if len(pending) >= CHUNK_BYTES:
                    self._fan_out(pending)
                    pending = b""
            if pending:
                self._fan_out(pending)
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if then_silence:  # the track ended before the room moved on: keep the stream alive
            self._source = ("silence",)
            self._encoder = asyncio.create_task(self._encode(silence_command(), then_silence=False))

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
        queue: asyncio.Queue = asyncio.Queue(maxsize=LISTENER_QUEUE_CHUNKS)
        self.listeners.add(queue)
        return queue


_stations: dict[tuple[int, int], Station] = {}


async def listen(room_id: int):
    """Async iterator of MP3 bytes for one listener of the room's station."""
    loop_key = (id(asyncio.get_running_loop()), room_id)
    station = _stations.get(loop_key)
    if station is None:
        station = _stations[loop_key] = Station(room_id)
        await station.start()
    queue = station.add_listener()
    try:
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
    response = StreamingHttpResponse(listen(room.pk), content_type="audio/mpeg")
    response["Cache-Control"] = "no-store"
    response["icy-name"] = f"Chorus: {room.name}"
    return response
