"""Watching an FLV/TS recording in a browser: the segment's codec-copy mp4 remux, made on the
first request into the playback cache and served with byte ranges; the same copy served again
until the file changes; the segment still being written remuxed as far as it is on disk
(time-shift), again once it grew; the cache kept under its cap; faults answered with a reason."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import AsyncClient

from catalog.models import Video
from livefeed import playback, postprocess, recordings
from livefeed.models import Recording, Segment
from tests.catalog.test_stream import fetch
from tests.livefeed.test_recording_api import START, make_clip

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cache(settings, tmp_path) -> Path:
    settings.LIVEFEED_PLAYBACK_CACHE_DIR = tmp_path / "playback"
    settings.LIVEFEED_PLAYBACK_CACHE_MB = 64
    settings.LIVEFEED_PLAYBACK_REFRESH_S = 30
    return settings.LIVEFEED_PLAYBACK_CACHE_DIR


@pytest.fixture
def viewer(alice) -> AsyncClient:
    client = AsyncClient()
    client.force_login(alice)
    return client


@pytest.fixture
def flv_recording(channel, session, tmp_path):
    """An ended recording of one 3 s FLV segment (H.264 + AAC, as the recorder copies it)."""
    clip = make_clip(tmp_path / "recordings" / "show_001.flv", seconds=3)
    recording = Recording.objects.create(channel=channel, session=session, started_at=START,
                                         ended_at=START + timedelta(seconds=4), state="idle", segments_total=1)
    segment = Segment.objects.create(recording=recording, index=1, file_path=str(clip), started_at_ms=0,
                                     ended_at_ms=3_000, offset_s=0, duration_s=3.0, size_bytes=clip.stat().st_size,
                                     state="done")
    return recording, segment


def probe(data: bytes, tmp_path: Path) -> dict:
    path = tmp_path / "served.mp4"
    path.write_bytes(data)
    out = subprocess.run([django_settings.FFPROBE_BINARY, "-v", "error", "-print_format", "json", "-show_format",
                          "-show_streams", str(path)], capture_output=True, check=True, timeout=30).stdout
    return json.loads(out)


def test_an_flv_part_is_played_from_its_mp4_remux_made_once(viewer, flv_recording, cache, tmp_path):
    recording, segment = flv_recording
    recordings.recording_finish(recording_id=recording.pk)
    video = Video.objects.get(file_path=segment.file_path)
    url = f"/live/segments/{segment.pk}/playable.mp4"
    assert (video.stream_url, video.mime_type, video.get_stream_url()) == (url, "video/mp4", url)
    # The catalog's own stream URL for it sends the player to the mp4, not the FLV bytes.
    redirect, _ = fetch(viewer, f"/catalog/videos/{video.pk}/stream")
    assert (redirect.status_code, redirect["Location"]) == (302, url)

    response, body = fetch(viewer, url)
    assert response.status_code == 200, body[:300]
    assert response["Content-Type"] == "video/mp4"
    info = probe(body, tmp_path)
    assert "mp4" in info["format"]["format_name"]
    assert abs(float(info["format"]["duration"]) - 3.0) < 0.3
    codecs = {s["codec_type"]: s["codec_name"] for s in info["streams"]}
    assert codecs == {"video": "h264", "audio": "aac"}  # copied, as recorded
    assert body[4:8] == b"ftyp"
    assert body.find(b"moov") < body.find(b"mdat")

    [copy] = list(cache.glob("*.mp4"))
    made = copy.stat().st_mtime_ns
    ranged, part = fetch(viewer, url, range="bytes=100-1099")
    assert ranged.status_code == 206
    assert part == body[100:1100]
    assert list(cache.glob("*.mp4")) == [copy]
    assert copy.stat().st_mtime_ns == made

    # The file changed (a post-processing step rewrote it): the next request remuxes it again.
    shorter = make_clip(Path(segment.file_path), seconds=2)
    os.utime(shorter, ns=(time.time_ns(), made + 10**9))
    again, body = fetch(viewer, url)
    assert again.status_code == 200
    assert abs(float(probe(body, tmp_path)["format"]["duration"]) - 2.0) < 0.3
    assert copy.exists() is False
    assert len(list(cache.glob("*.mp4"))) == 1


def test_concurrent_first_requests_remux_once(flv_recording, cache, monkeypatch):
    _, segment = flv_recording
    calls = []
    real = postprocess.remux

    def counted(*args, **kwargs):
        calls.append(args)
        time.sleep(0.3)  # long enough for the other request to arrive meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(postprocess, "remux", counted)
    results = []
    threads = [threading.Thread(target=lambda: results.append(playback.playable_file(segment=segment)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 3
    assert len(set(results)) == 1
    assert len(calls) == 1


def test_the_segment_being_written_can_be_watched_so_far_and_again_once_it_grew(
        alice_client, viewer, channel, flv_recording, cache, tmp_path, settings):
    recording, segment = flv_recording
    whole = Path(segment.file_path).read_bytes()
    growing = Path(segment.file_path)
    growing.write_bytes(whole[: len(whole) // 2])  # ffmpeg is still writing it
    Recording.objects.filter(pk=recording.pk).update(ended_at=None, state="recording")
    Segment.objects.filter(pk=segment.pk).update(state="recording", duration_s=0, size_bytes=0)

    page = alice_client.get(f"/live/{channel.pk}/").content.decode()
    assert f'href="/live/recordings/{recording.pk}/watch"' in page  # time-shift: watchable now
    watch = alice_client.get(f"/live/recordings/{recording.pk}/watch")
    assert watch.status_code == 302
    assert watch["Location"].startswith("/catalog/titles/")
    title_page = alice_client.get(watch["Location"]).content.decode()
    assert "recording now" in title_page
    assert f"/live/segments/{segment.pk}/playable.mp4" in title_page

    url = f"/live/segments/{segment.pk}/playable.mp4"
    first, body = fetch(viewer, url)
    assert first.status_code == 200, body[:300]
    so_far = float(probe(body, tmp_path)["format"]["duration"])
    assert 0.5 < so_far < 2.6
    growing.write_bytes(whole)  # it grew
    # A reload within LIVEFEED_PLAYBACK_REFRESH_S gets the same copy (no remux every second) ...
    assert fetch(viewer, url)[1] == body
    # ... after it, what is on disk now.
    settings.LIVEFEED_PLAYBACK_REFRESH_S = 0
    later, body = fetch(viewer, url)
    assert later.status_code == 200
    assert float(probe(body, tmp_path)["format"]["duration"]) > so_far + 0.5
    assert len(list(cache.glob("*.mp4"))) == 1  # the older copy is gone


def test_the_cache_stays_under_its_cap_dropping_the_least_recently_watched(cache, flv_recording, settings):
    _, segment = flv_recording
    cache.mkdir(parents=True)
    settings.LIVEFEED_PLAYBACK_CACHE_MB = 1
    now = time.time()
    old = [cache / f"segment-{900 + n}-1-1.mp4" for n in range(3)]
    for n, path in enumerate(old):
        path.write_bytes(b"\0" * 400_000)
        os.utime(path, (now - 1000 + n * 100, now - 1000 + n * 100))  # 900 watched longest ago
    kept = playback.playable_file(segment=segment)
    remaining = sorted(cache.glob("*.mp4"))
    assert kept in remaining
    assert sum(path.stat().st_size for path in remaining) <= 1024 * 1024
    assert old[0] not in remaining
    assert old[2] in remaining


def test_faults_are_answered_with_a_reason(viewer, flv_recording, cache, settings):
    _, segment = flv_recording
    url = f"/live/segments/{segment.pk}/playable.mp4"
    assert fetch(AsyncClient(), url)[0].status_code == 401
    assert fetch(viewer, "/live/segments/999999/playable.mp4")[0].status_code == 404

    real_ffmpeg, settings.FFMPEG_BINARY = settings.FFMPEG_BINARY, "/nonexistent/ffmpeg"
    missing, body = fetch(viewer, url)
    assert missing.status_code == 502
    assert json.loads(body)["error"] == "remux_failed"
    assert "ffmpeg" in json.loads(body)["message"]

    settings.FFMPEG_BINARY = real_ffmpeg
    Path(segment.file_path).write_bytes(b"FLV but not really" * 100)
    broken, body = fetch(viewer, url)
    assert broken.status_code == 502
    assert json.loads(body)["error"] == "remux_failed"
    assert not list(cache.glob("*.mp4"))
    assert not list(cache.glob("*.part"))

    Path(segment.file_path).unlink()
    gone, body = fetch(viewer, url)
    assert gone.status_code == 410
    assert json.loads(body)["error"] == "gone"


def test_an_flv_that_ffmpeg_is_writing_in_real_time_is_watched_so_far(viewer, flv_recording, cache, tmp_path,
                                                                       settings):
    """As the recorder leaves it: ffmpeg writing the stream's FLV at its own pace, header first,
    the index never (an FLV has none); what is on disk now plays, and later more of it."""
    recording, segment = flv_recording
    live = Path(segment.file_path).with_name("show_live.flv")
    Recording.objects.filter(pk=recording.pk).update(ended_at=None, state="recording")
    Segment.objects.filter(pk=segment.pk).update(state="recording", file_path=str(live), duration_s=0, size_bytes=0)
    writer = subprocess.Popen(
        [django_settings.FFMPEG_BINARY, "-nostdin", "-hide_banner", "-loglevel", "error", "-re",
         "-f", "lavfi", "-i", "testsrc2=duration=6:size=320x180:rate=25", "-f", "lavfi", "-i", "sine=duration=6",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-flush_packets", "1", "-f", "flv", str(live)])
    try:
        url = f"/live/segments/{segment.pk}/playable.mp4"
        deadline = time.monotonic() + 20
        while not (live.exists() and live.stat().st_size > 150_000) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert writer.poll() is None, "ffmpeg finished before the file could be watched while written"
        first, body = fetch(viewer, url)
        assert first.status_code == 200, body[:300]
        so_far = float(probe(body, tmp_path)["format"]["duration"])
        assert 0.5 < so_far < 5.5
        assert writer.wait(timeout=30) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
    settings.LIVEFEED_PLAYBACK_REFRESH_S = 0
    later, body = fetch(viewer, url)
    assert later.status_code == 200
    assert abs(float(probe(body, tmp_path)["format"]["duration"]) - 6.0) < 0.3


def test_a_ts_part_plays_from_its_remux_too(viewer, flv_recording, cache, tmp_path):
    """MPEG-TS (the other copy-as-is container): its ADTS audio goes into the mp4 as it is."""
    _, segment = flv_recording
    clip = make_clip(Path(segment.file_path).with_name("show_001.ts"), seconds=3)
    Segment.objects.filter(pk=segment.pk).update(file_path=str(clip), size_bytes=clip.stat().st_size)
    response, body = fetch(viewer, f"/live/segments/{segment.pk}/playable.mp4")
    assert response.status_code == 200, body[:300]
    info = probe(body, tmp_path)
    assert "mp4" in info["format"]["format_name"]
    assert {s["codec_type"]: s["codec_name"] for s in info["streams"]} == {"video": "h264", "audio": "aac"}
    assert abs(float(info["format"]["duration"]) - 3.0) < 0.3
