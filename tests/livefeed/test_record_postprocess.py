"""After a segment closes: its post-processing steps on a real recorded file (a few seconds of
the simulator's stream copied by ffmpeg), each result recorded, a failed step never losing the
file; too short segments discarded; the admin pages; and the
recorder refusing to start, or stopping cleanly, when the disk is low, or with no ffmpeg."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from livefeed import postprocess
from livefeed.models import LiveChannel, Recording, Segment
from livefeed.simulator.server import SimulatorThread
from tests.livefeed.record_fixtures import (  # noqa: F401 - the fixtures
    LIVE_ID,
    recorded_fixture,
    recorders_fixture,
    sim_fixture,
)
from tests.livefeed.test_fetcher import until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_redis")]


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory):
    """3 s of the simulator's live stream, codecs copied, as the recorder writes it."""
    path = tmp_path_factory.mktemp("stream") / "live.flv"
    with SimulatorThread(rate=0) as sim:
        room = sim.room(LIVE_ID)
        url = room.enter_json(f"{sim.simulator.host}:{sim.simulator.port}", sim.simulator.streams.netloc)[
            "data"]["data"][0]["stream_url"]["flv_pull_url"]["FULL_HD1"]
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", url, "-t", "3", "-c", "copy", "-f", "flv",
                        str(path)], check=True, timeout=30)
    return path


@pytest.fixture
def segment_of(alice, settings, tmp_path):
    settings.LIVEFEED_MIN_SEGMENT_S = 1
    settings.LIVEFEED_POSTPROCESS_TRIES = 2

    def make(source, *, container: str = "flv", steps: list | None = None) -> Segment:
        channel = LiveChannel.objects.create(platform="simulator", ref=LIVE_ID, added_by=alice, container=container,
                                             postprocess=steps or [], output_dir=str(tmp_path / "out"))
        recording = Recording.objects.create(channel=channel, started_at=timezone.now())
        (tmp_path / "out").mkdir(exist_ok=True)
        path = tmp_path / "out" / "segment_001.flv"
        shutil.copy(source, path)
        return Segment.objects.create(recording=recording, index=1, file_path=str(path), original_path=str(path),
                                      started_at_ms=1_796_000_000_000)

    return make


def _finish(segment: Segment) -> Segment:
    return postprocess.finish_segment(segment_id=segment.pk, ended_at_ms=None)


def _sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_mp4_container_remuxes_with_faststart_and_removes_the_flv(stream_file, segment_of):
    segment = _finish(segment_of(stream_file, container="mp4"))
    assert segment.state == Segment.State.DONE
    assert segment.file_path.endswith(".mp4")
    assert not os.path.exists(segment.original_path)
    with open(segment.file_path, "rb") as handle:
        head = handle.read()
    assert head.index(b"moov") < head.index(b"mdat")  # faststart: a browser can start before the end
    assert [(step["step"], step["ok"]) for step in segment.steps] == [("remux", True), ("delete_original", True)]
    assert segment.checksum == _sha256(segment.file_path)
    assert segment.size_bytes == os.path.getsize(segment.file_path)
    assert 2.5 < segment.duration_s < 3.5
    assert (segment.video_codec, segment.audio_codec, segment.width, segment.height) == ("h264", "aac", 320, 180)
    recording = Recording.objects.get(pk=segment.recording_id)
    assert recording.segments_total == 1
    assert recording.size_bytes > 0


def test_a_failing_command_is_retried_and_recorded_and_the_file_is_kept(stream_file, segment_of, tmp_path):
    script = tmp_path / "upload.py"
    script.write_text("import sys; print('quota exceeded for', sys.argv[1]); sys.exit(3)\n")
    segment = _finish(segment_of(stream_file, steps=[{"step": "command", "run": [sys.executable, str(script), "{path}"]},
                                                     {"step": "delete_original"}]))
    assert segment.state == Segment.State.FAILED
    assert os.path.exists(segment.file_path)
    assert segment.file_path == segment.original_path
    (step,) = segment.steps  # the chain stopped: delete_original never ran
    assert step["ok"] is False
    assert step["attempts"] == 2
    assert "exited 3" in step["error"]
    assert "quota exceeded" in step["error"]
    assert "command" in segment.error


def test_a_failed_remux_keeps_the_original(segment_of, tmp_path):
    broken = tmp_path / "broken.flv"
    # An FLV header and then noise. Fixed noise: about 1 in 40 runs of fresh random bytes
    # happened to hold a tag that ffmpeg could remux, and the test failed.
    broken.write_bytes(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00" + random.Random(1).randbytes(4000))
    segment = segment_of(broken, container="mp4")
    Segment.objects.filter(pk=segment.pk).update(state=Segment.State.PROCESSING)  # measured already
    segment = postprocess.process_segment(segment_id=segment.pk, sleep=lambda _s: None)
    assert segment.state == Segment.State.FAILED
    assert os.path.exists(segment.original_path)
    assert segment.file_path == segment.original_path
    assert [step["step"] for step in segment.steps] == ["remux"]
    assert not any(name.endswith((".mp4", ".part")) for name in os.listdir(tmp_path / "out"))


def test_move_copy_and_command_get_the_file_where_it_is_now(stream_file, segment_of, tmp_path):
    seen = tmp_path / "seen.txt"
    script = tmp_path / "note.py"
    script.write_text(f"import sys; open({str(seen)!r}, 'w').write(sys.argv[1])\n")
    segment = _finish(segment_of(stream_file, steps=[
        {"step": "copy", "to": str(tmp_path / "backup")}, {"step": "move", "to": str(tmp_path / "archive")},
        {"step": "command", "run": [sys.executable, str(script)]}]))
    assert segment.state == Segment.State.DONE
    assert segment.file_path == str(tmp_path / "archive" / "segment_001.flv")
    assert os.path.exists(tmp_path / "backup" / "segment_001.flv")
    assert seen.read_text() == segment.file_path  # {path} left out: the path comes last
    assert [step["ok"] for step in segment.steps] == [True, True, True]


def test_delete_original_alone_refuses_to_delete_the_only_copy(stream_file, segment_of):
    segment = _finish(segment_of(stream_file, steps=[{"step": "delete_original"}]))
    assert segment.state == Segment.State.FAILED
    assert os.path.exists(segment.file_path)
    assert "original is kept" in segment.steps[0]["error"]


def test_a_segment_shorter_than_the_minimum_is_discarded(stream_file, segment_of, settings):
    settings.LIVEFEED_MIN_SEGMENT_S = 10
    segment = _finish(segment_of(stream_file))
    assert segment.state == Segment.State.DISCARDED
    assert not os.path.exists(segment.file_path)
    assert "LIVEFEED_MIN_SEGMENT_S" in segment.error
    assert Recording.objects.get(pk=segment.recording_id).segments_total == 0


async def test_the_recorder_refuses_to_start_on_a_full_disk_with_the_reason(sim, recorded, recorders, settings,
                                                                              watch):
    settings.LIVEFEED_MIN_FREE_MB = 10**9
    socket = await watch(recorded.pk)
    recorders()
    event = await socket.expect("live.recording", timeout=10, state="error")
    assert "LIVEFEED_MIN_FREE_MB" in event["error"]
    assert event["next_try_at"]
    channel = await sync_to_async(LiveChannel.objects.get)(pk=recorded.pk)
    assert channel.record_state == "error"
    assert "free" in channel.record_error
    assert not await sync_to_async(Recording.objects.filter(channel=recorded).exists)()
    assert sim.room(LIVE_ID).stream_viewers == []  # never even connected


async def test_the_recorder_stops_cleanly_when_the_disk_fills(sim, recorded, recorders, settings):
    await sync_to_async(LiveChannel.objects.filter(pk=recorded.pk).update)(segment_s=600)
    recorders()
    await until(lambda: Segment.objects.filter(recording__channel=recorded, size_bytes__gte=0).exists()
                and sim.room(LIVE_ID).stream_viewers, timeout_s=15, what="recording")
    await until(lambda: os.path.exists(Segment.objects.filter(recording__channel=recorded).first().file_path),
                timeout_s=10, what="a file")
    settings.LIVEFEED_MIN_FREE_MB = 10**9
    await until(lambda: LiveChannel.objects.get(pk=recorded.pk).record_state == "error", timeout_s=15,
                what="stopped on the disk")
    await until(lambda: not Segment.objects.filter(recording__channel=recorded,
                                                   state__in=["recording", "processing"]).exists(),
                timeout_s=15, what="the segment finished")
    segment = await sync_to_async(Segment.objects.get)(recording__channel=recorded)
    assert segment.state == Segment.State.DONE
    assert os.path.getsize(segment.file_path) == segment.size_bytes > 0
    assert "free" in (await sync_to_async(LiveChannel.objects.get)(pk=recorded.pk)).record_error
    assert not sim.room(LIVE_ID).stream_viewers[-1].as_json()["open"]


def test_the_admin_shows_a_recording_with_its_segments_and_state(stream_file, segment_of, admin_client):
    segment = _finish(segment_of(stream_file))
    page = admin_client.get(f"/admin/livefeed/recording/{segment.recording_id}/change/")
    assert page.status_code == 200
    assert segment.file_path in page.content.decode()
    listing = admin_client.get("/admin/livefeed/livechannel/?record_state__exact=idle")
    assert listing.status_code == 200


async def test_a_missing_ffmpeg_is_an_error_with_the_reason_and_is_tried_again(sim, recorded, recorders, settings):
    settings.FFMPEG_BINARY = "/nonexistent/ffmpeg"
    recorders()
    await until(lambda: LiveChannel.objects.get(pk=recorded.pk).record_state == "error", timeout_s=15,
                what="an error")
    channel = await sync_to_async(LiveChannel.objects.get)(pk=recorded.pk)
    assert "ffmpeg could not start (/nonexistent/ffmpeg)" in channel.record_error
    assert channel.record_next_try_at is not None
    recording = await sync_to_async(Recording.objects.get)(channel=recorded)
    assert recording.state == "error"
    assert not await sync_to_async(Segment.objects.filter(recording=recording).exists)()
    await until(lambda: LiveChannel.objects.get(pk=recorded.pk).record_failures >= 2, timeout_s=10,
                what="tried again with backoff")


def test_ts_container_remuxes_into_mpeg_ts(stream_file, segment_of):
    segment = _finish(segment_of(stream_file, container="ts"))
    assert segment.state == Segment.State.DONE
    assert segment.file_path.endswith(".ts")
    assert not os.path.exists(segment.original_path)
    with open(segment.file_path, "rb") as handle:
        assert handle.read(1) == b"G"  # MPEG-TS sync byte
    assert 2.5 < segment.duration_s < 3.5
