"""The room radio through a real Daphne process: one continuous MP3 stream that follows
the room across a track change, readable by ffprobe/ffmpeg like any media player would."""

import asyncio
import http.client
import itertools
import json
import os
import subprocess
import threading
import time
from array import array
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from project.accounts.services import token_create
from rooms import services
from rooms.models import Room

pytestmark = pytest.mark.django_db(transaction=True)


def record(url: str, seconds: float, into: list, ready: threading.Event) -> None:
    """Read the stream for about `seconds` of audio (128 kbit/s) like a player would."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
    connection.request("GET", f"{parts.path}?{parts.query}")
    response = connection.getresponse()
    into.append(response.status)
    into.append(response.getheader("Content-Type"))
    ready.set()
    wanted = int(seconds * 128_000 / 8)
    data = bytearray()
    while len(data) < wanted:
        chunk = response.read1(16384)
        if not chunk:
            break
        data.extend(chunk)
    connection.close()
    into.append(bytes(data))


def dominant_frequencies(mp3: bytes, window_s: float = 0.25) -> list[int]:
    """Decode with ffmpeg and estimate each window's frequency from zero crossings."""
    pcm = subprocess.run(
        [settings.FFMPEG_BINARY, "-v", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1", "-ar", "8000", "pipe:1"],
        input=mp3, capture_output=True, check=True, timeout=60,
    ).stdout
    samples = array("h", pcm[: len(pcm) // 2 * 2])
    size = int(8000 * window_s)
    result = []
    for start in range(0, len(samples) - size, size):
        window = samples[start:start + size]
        if max(abs(v) for v in window) < 500:
            result.append(0)  # silence
            continue
        crossings = sum(1 for a, b in itertools.pairwise(window) if (a < 0) != (b < 0))
        result.append(round(crossings / 2 / window_s))
    return result


def test_radio_streams_the_room_across_a_track_change(asgi_server_factory, people, tracks):
    server = asgi_server_factory(1, env={"ROOMS_TICK_S": "1"})[0]
    by_title = {t.title: t for t in tracks}
    room = services.room_create(owner=people["hana"], name="Radio Room", control_policy=Room.ControlPolicy.HOST_ONLY)
    services.queue_add(room=room, actor=people["hana"], track_id=by_title["Test Song"].pk)  # 4 s at 330 Hz
    services.queue_add(room=room, actor=people["hana"], track_id=by_title["Second Song"].pk)  # 3 s at 440 Hz
    _, token = token_create(user=people["lis"], name="player")

    result: list = []
    ready = threading.Event()
    # 12 s: the burst of what the station played before (silence: the room is stopped), then
    # about 4 s of the first track and 3 s of the second.
    listener = threading.Thread(target=record, args=(f"{server.url}/rooms/{room.slug}/radio?token={token}", 12, result, ready))
    listener.start()
    assert ready.wait(15)
    services.playback_control(room=room, actor=people["hana"], control=services.Control(action="play"))
    listener.join(30)
    status, content_type, mp3 = result
    assert (status, content_type) == (200, "audio/mpeg")

    probe = json.loads(subprocess.run(
        [settings.FFPROBE_BINARY, "-v", "error", "-print_format", "json", "-show_streams", "-show_format", "pipe:0"],
        input=mp3, capture_output=True, check=True, timeout=60,
    ).stdout)
    assert probe["streams"][0]["codec_name"] == "mp3"
    assert probe["streams"][0]["sample_rate"] == "44100"

    frequencies = dominant_frequencies(mp3)
    first_track = [i for i, f in enumerate(frequencies) if abs(f - 330) <= 15]
    second_track = [i for i, f in enumerate(frequencies) if abs(f - 440) <= 15]
    assert len(first_track) >= 8, str(frequencies)  # about 4 s of the first track...
    assert len(second_track) >= 6, str(frequencies)  # ...then about 3 s of the second
    # In that order, in one stream (with the silence of the room's own move to the next
    # track between them, and once the queue has ended).
    tones = [name for name in segments(frequencies, {"first": 330, "second": 440}) if name != "-"]
    assert tones == ["first", "second"], str(frequencies)


def test_radio_needs_a_token_or_session(asgi_server, room):
    parts = urlsplit(asgi_server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", f"/rooms/{room.slug}/radio")
    response = connection.getresponse()
    assert response.status == 401
    assert response.getheader("WWW-Authenticate") == 'Basic realm="Chorus", charset="UTF-8"'
    assert "token" in json.loads(response.read())["message"]


# --- continuity: a player's buffer never runs dry ------------------------------------------

BYTES_PER_S = 128_000 / 8


class TimedRecording(threading.Thread):
    """Reads the radio like a player, noting when each piece arrived (monotonic s, bytes)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.arrivals: list[tuple[float, int]] = []
        self.data = bytearray()
        self.connected = threading.Event()
        self.status = None
        self.stopping = threading.Event()

    def run(self) -> None:
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=15)
        connection.request("GET", f"{parts.path}?{parts.query}")
        response = connection.getresponse()
        self.status = response.status
        self.started = time.monotonic()
        self.connected.set()
        while not self.stopping.is_set():
            chunk = response.read1(65536)
            if not chunk:
                break
            self.arrivals.append((time.monotonic(), len(chunk)))
            self.data.extend(chunk)
        connection.close()

    def bytes_within(self, seconds: float) -> int:
        return sum(size for at, size in self.arrivals if at - self.started <= seconds)

    def worst_deficit_s(self, after_s: float) -> float:
        """How far, at worst, what arrived fell behind real time, counted from `after_s` after
        connecting: a player that had started then would have run dry by this much (<= 0: never)."""
        total = 0
        ref_time = ref_bytes = None
        worst = -1e9
        for at, size in self.arrivals:
            if ref_time is None and at - self.started >= after_s:
                ref_time, ref_bytes = at, total
            if ref_time is not None:
                worst = max(worst, (at - ref_time) - (total - ref_bytes) / BYTES_PER_S)
            total += size
        return worst


@pytest.fixture
def long_tracks(tracks, library_dir):
    """Two 30 s tracks with their own tones: 330 Hz and 550 Hz."""
    from catalog import services as catalog_services
    from catalog.models import Track
    from tests.conftest import make_audio

    folder = library_dir / "long"
    folder.mkdir()
    for name, frequency in (("Tone A", 330), ("Tone B", 550)):
        make_audio(folder / f"{name}.mp3", 30, ["-c:a", "libmp3lame", "-b:a", "128k"], {"title": name, "artist": "Radio"}, frequency)
    catalog_services.import_job_run(job_id=catalog_services.import_job_create(path=str(folder), enqueue=False).pk)
    return {name: Track.objects.get(title=name) for name in ("Tone A", "Tone B")}


def test_radio_keeps_real_time_across_a_skip_and_a_pause_and_resume(asgi_server_factory, people, long_tracks):
    """The stream never falls behind real time at a transition (mpv, with its ~1 s buffer,
    used to run dry at every skip and resume), and its audio follows the room."""
    server = asgi_server_factory(1, env={"ROOMS_TICK_S": "1", "RADIO_BURST_S": "3"})[0]
    room = services.room_create(owner=people["hana"], name="Steady Radio", control_policy=Room.ControlPolicy.HOST_ONLY)
    for title in ("Tone A", "Tone B"):
        services.queue_add(room=room, actor=people["hana"], track_id=long_tracks[title].pk)
    _, token = token_create(user=people["lis"], name="player")
    host = people["hana"]

    services.playback_control(room=room, actor=host, control=services.Control(action="play"))
    player = TimedRecording(f"{server.url}/rooms/{room.slug}/radio?token={token}")
    player.start()
    assert player.connected.wait(15)
    assert player.status == 200
    time.sleep(3)
    services.playback_control(room=room, actor=host, control=services.Control(action="next"))  # a skip
    time.sleep(3)
    services.playback_control(room=room, actor=host, control=services.Control(action="pause"))
    time.sleep(2)
    services.playback_control(room=room, actor=host, control=services.Control(action="play"))  # a resume
    time.sleep(4)
    player.stopping.set()
    player.join(20)

    # A newly connected player got the burst at once...
    assert player.bytes_within(1.0) >= 0.9 * 3 * BYTES_PER_S, player.arrivals[:10]
    # ...and from then on audio kept arriving at least as fast as it plays.
    deficit = player.worst_deficit_s(after_s=1.0)
    assert deficit < 0.5, f"the stream fell {deficit:.2f} s behind real time"

    # What a listener heard: A, B after the skip, silence while paused, B again.
    frequencies = dominant_frequencies(bytes(player.data), window_s=0.25)
    assert segments(frequencies, {"A": 330, "B": 550}) == ["A", "B", "-", "B"], frequencies


def segments(frequencies: list[int], tones: dict[str, int]) -> list[str]:
    """The tones heard in order ("-" for silence), each at least half a second long; the
    windows that straddle a change, and the silence before the first tone, left out."""
    labels = []
    for f in frequencies:
        name = "-" if f == 0 else next((n for n, hz in tones.items() if abs(f - hz) <= hz * 0.05), "?")
        labels.append(name)
    runs = [(name, len(list(group))) for name, group in itertools.groupby(labels)]
    kept = [name for name, length in runs if name != "?" and length >= 2]
    collapsed = [name for name, _ in itertools.groupby(kept)]
    return collapsed[1:] if collapsed[:1] == ["-"] else collapsed


def test_a_player_joining_a_playing_station_gets_the_burst_within_a_second(asgi_server_factory, people, long_tracks):
    server = asgi_server_factory(1, env={"RADIO_BURST_S": "3"})[0]
    room = services.room_create(owner=people["hana"], name="Burst Radio", control_policy=Room.ControlPolicy.HOST_ONLY)
    services.queue_add(room=room, actor=people["hana"], track_id=long_tracks["Tone A"].pk)
    services.playback_control(room=room, actor=people["hana"], control=services.Control(action="play"))
    _, token = token_create(user=people["lis"], name="player")
    url = f"{server.url}/rooms/{room.slug}/radio?token={token}"
    first = TimedRecording(url)
    first.start()
    assert first.connected.wait(15)
    time.sleep(4)  # the station has been playing for a while
    second = TimedRecording(url)
    second.start()
    assert second.connected.wait(15)
    time.sleep(1.5)
    for player in (first, second):
        player.stopping.set()
    second.join(20)
    first.join(20)
    assert second.bytes_within(1.0) >= 0.9 * 3 * BYTES_PER_S, second.arrivals[:10]
    frequencies = dominant_frequencies(bytes(second.data))
    assert sum(1 for f in frequencies if abs(f - 330) <= 15) >= 8, frequencies  # the burst is the room's audio


async def test_a_station_stopped_while_its_next_decoder_starts_leaves_no_ffmpeg(monkeypatch, long_tracks):
    """The last listener leaves while the station is starting the room's next track: that
    decoder is stopped too, not left blocked on its pipe for ever."""
    from rooms import radio, runtime
    from tests.catalog.test_stream import ffmpeg_children, ffmpeg_children_once_gone

    track = long_tracks["Tone A"]
    starting, go_on = asyncio.Event(), asyncio.Event()
    start = radio._Decoder.start

    async def slow_start(decoder):
        starting.set()
        await go_on.wait()
        await start(decoder)

    async def not_attached(room_id, member):
        return None

    monkeypatch.setattr(radio._Decoder, "start", slow_start)
    monkeypatch.setattr(runtime, "detach", not_attached)
    station = radio.Station(room_id=0)
    state = {"version": 1, "status": "playing", "track": {"id": track.pk, "duration_s": track.duration_s},
             "anchor_ms": radio.presence.now_ms(), "position_s": 0.0, "rate": 1.0}
    following = asyncio.create_task(station._follow(state))
    await asyncio.wait_for(starting.wait(), 10)
    await station.stop()
    go_on.set()
    await following
    assert station._next is None
    assert await asyncio.to_thread(ffmpeg_children_once_gone, os.getpid()) == [], ffmpeg_children(os.getpid())
