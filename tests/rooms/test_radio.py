"""The room radio through a real Daphne process: one continuous MP3 stream that follows
the room across a track change, readable by ffprobe/ffmpeg like any media player would."""

import http.client
import itertools
import json
import subprocess
import threading
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
    listener = threading.Thread(target=record, args=(f"{server.url}/rooms/{room.slug}/radio?token={token}", 9, result, ready))
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
    heard = [f for f in frequencies if f]
    first_track = [i for i, f in enumerate(frequencies) if abs(f - 330) <= 15]
    second_track = [i for i, f in enumerate(frequencies) if abs(f - 440) <= 15]
    assert len(first_track) >= 8, str(frequencies)  # about 4 s of the first track...
    assert len(second_track) >= 6, str(frequencies)  # ...then about 3 s of the second
    assert max(first_track) < min(second_track), frequencies  # in that order, in one stream
    assert len(heard) >= len(first_track) + len(second_track) - 2


def test_radio_needs_a_token_or_session(asgi_server, room):
    parts = urlsplit(asgi_server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("GET", f"/rooms/{room.slug}/radio")
    response = connection.getresponse()
    assert response.status == 401
    assert response.getheader("WWW-Authenticate") == 'Basic realm="Chorus", charset="UTF-8"'
    assert "token" in json.loads(response.read())["message"]
