"""The recorder against the simulator's real live stream (ffmpeg, real time): segments by time
and by size with under 2 s between them, wall-clock starts that match the stream's own
timestamps, the end of the broadcast, a dropped stream reconnected, and the state and log
pushed to the channel's watchers."""

from __future__ import annotations

import asyncio
import itertools
import os

import pytest
from asgiref.sync import sync_to_async

from livefeed.models import LiveChannel, Recording, Segment
from livefeed.record_services import file_size
from livefeed.simulator.server import SimulatorThread
from tests.livefeed.record_fixtures import (  # noqa: F401 - the fixtures
    LIVE_ID,
    ffprobe,
    recorded_fixture,
    recorders_fixture,
    sim_fixture,
)
from tests.livefeed.test_fetcher import until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_redis")]


def _segments(channel_id: int) -> list[Segment]:
    return list(Segment.objects.filter(recording__channel_id=channel_id).order_by("recording_id", "index"))


def _closed(channel_id: int) -> list[Segment]:
    return [s for s in _segments(channel_id) if s.state in (Segment.State.DONE, Segment.State.FAILED)]


def _gaps_ms(segments: list[Segment]) -> list[int]:
    """Between consecutive segments: the next one's start minus the end of this one, its
    start plus the duration ffprobe measures in the file."""
    gaps = []
    for before, after in itertools.pairwise(segments):
        duration_ms = float(ffprobe(before.file_path)["format"]["duration"]) * 1000
        gaps.append(round(after.started_at_ms - (before.started_at_ms + duration_ms)))
    return gaps


@pytest.mark.alone  # times ffmpeg's start and keyframes against the stream's clock
async def test_segments_split_by_time_with_no_gap_and_wall_clock_starts(sim, recorded, recorders, watch):
    socket = await watch(recorded.pk)
    host = recorders()
    await until(lambda: len(_closed(recorded.pk)) >= 2, timeout_s=25, what="two segments closed")
    sim.command(LIVE_ID, "end")
    await until(lambda: Recording.objects.filter(channel_id=recorded.pk, ended_at__isnull=False).exists(),
                timeout_s=20, what="the recording ended with the broadcast")
    segments = await sync_to_async(_segments)(recorded.pk)
    done = [s for s in segments if s.state == Segment.State.DONE]
    assert len(done) >= 2
    for segment in done[:-1]:  # cut at the first keyframe (one a second) at or after 2 s
        assert 1.9 <= segment.duration_s <= 3.2, segment.duration_s
        assert (segment.video_codec, segment.audio_codec) == ("h264", "aac")
        assert (segment.width, segment.height) == (320, 180)
        assert segment.size_bytes == os.path.getsize(segment.file_path)
        assert len(segment.checksum) == 64
        with open(segment.log_path) as log:
            assert "Input #0" in log.read()
    assert all(abs(gap) < 2000 for gap in await sync_to_async(_gaps_ms)(done)), await sync_to_async(_gaps_ms)(done)
    # offset_s: where each starts in the broadcast (here the recording: no fetcher follows the room)
    assert done[0].offset_s < 5
    for before, after in itertools.pairwise(done):
        assert abs(after.offset_s - (before.offset_s + before.duration_s)) < 0.5
    # The first segment starts with the first tag the simulator sent this recorder, on its clock.
    viewer = sim.room(LIVE_ID).stream_viewers[0]
    assert abs(done[0].started_at_ms - viewer.first_wall_ms) < 500
    recording = await sync_to_async(Recording.objects.get)(channel_id=recorded.pk)
    assert recording.state == "idle"
    assert recording.segments_total == len([s for s in segments if s.state != "discarded"])
    channel = await sync_to_async(LiveChannel.objects.get)(pk=recorded.pk)
    assert channel.record_state == "idle"
    # Watchers saw the state machine and ffmpeg's progress.
    await socket.expect("live.recording", timeout=5, state="idle")
    frames = socket.backlog
    states = [frame["state"] for frame in frames if frame["type"] == "live.recording"]
    assert states[0] == "checking", states
    assert {"recording", "processing"} <= set(states), states
    logs = [frame for frame in frames if frame["type"] == "live.record_log"]
    assert any((frame["progress"].get("size_bytes") or 0) > 0 for frame in logs), logs[:3]
    assert any("Input #0" in line["text"] for frame in logs for line in frame["lines"])
    await host.close()


@pytest.fixture
def fast_sim(settings, tmp_path):
    """A simulator whose stream is a constant 4 Mbit/s (500 KB a second)."""
    with SimulatorThread(rate=5, stream_kbps=4000) as simulator:
        settings.LIVEFEED_SIMULATOR_ROOT = simulator.root
        settings.LIVEFEED_RECORDINGS_DIR = tmp_path / "recordings"
        settings.LIVEFEED_MIN_SEGMENT_S = 0.5
        settings.LIVEFEED_MIN_FREE_MB = 0
        yield simulator


@pytest.mark.alone  # times ffmpeg's start and keyframes against the stream's clock
async def test_segments_split_by_size_at_a_keyframe(fast_sim, alice, recorders):
    channel = await sync_to_async(LiveChannel.objects.create)(platform="simulator", ref=LIVE_ID, added_by=alice,
                                                              record=True, segment_s=3600, segment_mb=1)
    host = recorders()
    await until(lambda: len(_closed(channel.pk)) >= 2, timeout_s=25, what="two segments cut by size")
    await host.close()
    segments = await sync_to_async(_closed)(channel.pk)
    for segment in segments[:2]:
        # cut at the first keyframe after 1 MB: one more second (500 KB) at most
        assert 1024 * 1024 <= segment.size_bytes <= 1024 * 1024 + 600 * 1024, segment.size_bytes
        assert segment.duration_s < 4
    assert all(abs(gap) < 2000 for gap in await sync_to_async(_gaps_ms)(segments))


@pytest.mark.alone  # times ffmpeg's start and keyframes against the stream's clock
async def test_a_dropped_stream_is_reconnected_and_recorded_on_with_a_gap_under_2_s(sim, recorded, recorders):
    host = recorders()
    await until(lambda: len(_segments(recorded.pk)) >= 1 and sim.room(LIVE_ID).stream_viewers
                and sim.room(LIVE_ID).stream_viewers[0].last_wall_ms, timeout_s=15, what="recording")
    await asyncio.sleep(1.5)
    sim.command(LIVE_ID, "stream_drop")
    await until(lambda: len(sim.room(LIVE_ID).stream_viewers) >= 2, timeout_s=10, what="a new connection")
    await asyncio.sleep(2.5)
    sim.command(LIVE_ID, "expire")  # the URL no longer works: a new one is fetched from the room
    await until(lambda: len(sim.room(LIVE_ID).stream_viewers) >= 3, timeout_s=15, what="a connection on a new URL")
    await asyncio.sleep(2.5)
    sim.command(LIVE_ID, "end")
    await until(lambda: Recording.objects.filter(channel_id=recorded.pk, ended_at__isnull=False).exists(),
                timeout_s=20, what="the recording ended")
    await host.close()
    viewers = sim.room(LIVE_ID).stream_viewers
    for before, after in itertools.pairwise(viewers):  # what the platform sent: under 2 s missing
        assert after.first_wall_ms - before.last_wall_ms < 2000
    segments = [s for s in await sync_to_async(_segments)(recorded.pk) if s.state == Segment.State.DONE]
    recording = await sync_to_async(Recording.objects.get)(channel_id=recorded.pk)
    assert recording.segments_total == len(segments)
    gaps = await sync_to_async(_gaps_ms)(segments)
    assert all(abs(gap) < 2000 for gap in gaps), gaps
    covered_s = sum(s.duration_s for s in segments)
    sent_s = sum(v.last_wall_ms - v.first_wall_ms for v in viewers) / 1000
    assert covered_s >= sent_s - 2 * len(viewers), (covered_s, sent_s)


async def test_a_stalled_stream_ends_its_segment_and_recording_goes_on_when_it_resumes(sim, recorded, recorders,
                                                                                        settings):
    settings.LIVEFEED_RECORD_STALL_S = 1.5
    await sync_to_async(LiveChannel.objects.filter(pk=recorded.pk).update)(segment_s=600)
    host = recorders()
    await until(lambda: _segments(recorded.pk) and sim.room(LIVE_ID).stream_viewers, timeout_s=15, what="recording")
    await asyncio.sleep(1.5)
    sim.command(LIVE_ID, "stream_stall")
    # -rw_timeout (LIVEFEED_RECORD_STALL_S, 1.5 s here) ends ffmpeg: the segment is closed and kept
    await until(lambda: _segments(recorded.pk)[0].state == Segment.State.DONE, timeout_s=15,
                what="the stalled segment closed")
    sim.command(LIVE_ID, "stream_resume")
    await until(lambda: any(s.index > 1 and s.state == Segment.State.RECORDING for s in _segments(recorded.pk))
                and file_size(next(s for s in _segments(recorded.pk) if s.state == "recording").file_path)
                > 20_000, timeout_s=20, what="recording on after the stall")
    await host.close()
    first = (await sync_to_async(_segments)(recorded.pk))[0]
    assert first.duration_s >= 1.5
    with open(first.log_path) as log:
        assert "Connection timed out" in log.read()  # ffmpeg's -rw_timeout, in the segment's own log


async def test_turning_record_off_stops_within_seconds_keeping_what_was_recorded(sim, recorded, recorders):
    await sync_to_async(LiveChannel.objects.filter(pk=recorded.pk).update)(segment_s=600)
    recorders()
    await until(lambda: (s := _segments(recorded.pk)) and file_size(s[0].file_path) > 40_000, timeout_s=15,
                what="recording")
    await sync_to_async(LiveChannel.objects.filter(pk=recorded.pk).update)(record=False)
    turned_off = asyncio.get_running_loop().time()
    await until(lambda: Recording.objects.filter(channel_id=recorded.pk, ended_at__isnull=False).exists(),
                timeout_s=10, what="the recording ended")
    assert asyncio.get_running_loop().time() - turned_off < 5
    await until(lambda: LiveChannel.objects.get(pk=recorded.pk).record_lease_owner == "", timeout_s=5,
                what="the lease released")
    assert (await sync_to_async(LiveChannel.objects.get)(pk=recorded.pk)).record_state == "idle"
    (segment,) = await sync_to_async(_segments)(recorded.pk)
    assert segment.state == Segment.State.DONE
    assert segment.size_bytes == os.path.getsize(segment.file_path)
    assert not sim.room(LIVE_ID).stream_viewers[-1].as_json()["open"]


async def test_a_stream_url_that_404s_is_an_error_with_the_reason_tried_again_with_backoff(sim, recorded, recorders):
    sim.command(LIVE_ID, "stream_refuse", status="404")
    recorders()
    await until(lambda: LiveChannel.objects.get(pk=recorded.pk).record_failures >= 2, timeout_s=20,
                what="two failed tries")
    channel = await sync_to_async(LiveChannel.objects.get)(pk=recorded.pk)
    assert channel.record_state in ("error", "checking")
    assert "without a frame" in channel.record_error
    assert "404" in channel.record_error
    assert not await sync_to_async(Segment.objects.filter(recording__channel=recorded).exists)()
    sim.command(LIVE_ID, "stream_refuse", status="0")
    await until(lambda: Segment.objects.filter(recording__channel=recorded).exists(), timeout_s=20,
                what="recording once the stream is back")
