"""The recorder's real segments (the simulator's live stream, ffmpeg, remuxed to mp4) with the
chat said while they were recorded: each segment's ASS, read back by ffmpeg, holds exactly
the messages said while it was being written, each at its time from the segment's start; and
when the broadcast ends the recording is a catalog title, its parts the segments, their
danmaku those messages."""

from __future__ import annotations

import asyncio
import re
import subprocess

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from catalog.models import Title
from livefeed import exports, services
from livefeed.messages import now_ms
from livefeed.models import LiveChannel, Recording, Segment
from livefeed.storage import messages_store
from tests.livefeed.conftest import chat
from tests.livefeed.record_fixtures import (  # noqa: F401 - the fixtures
    LIVE_ID,
    recorders_fixture,
    sim_fixture,
)
from tests.livefeed.test_fetcher import until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_redis")]

CUE = re.compile(r"(\d+):(\d\d):(\d\d),(\d\d\d) --> .*\n(.*)")


def _ass_cues(segment: Segment) -> list[tuple[float, str]]:
    """(start_s, text) of the segment's ASS as ffmpeg reads it."""
    text = "".join(exports.segment_file(segment=segment, fmt="ass"))
    out = subprocess.run([settings.FFMPEG_BINARY, "-nostdin", "-loglevel", "error", "-f", "ass", "-i", "pipe:0",
                          "-f", "srt", "pipe:1"], input=text.encode(), capture_output=True, timeout=30, check=True)
    return [(int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000, re.sub(r"<[^>]+>|\{[^}]*\}", "", line))
            for h, m, s, ms, line in CUE.findall(out.stdout.decode())]


async def test_comments_said_while_recording_land_in_their_segment_at_their_time(sim, alice, recorders):
    channel = await sync_to_async(LiveChannel.objects.create)(
        platform="simulator", ref=LIVE_ID, added_by=alice, record=True, segment_s=3, container="mp4",
        check_interval_s=1)
    session, _ = await sync_to_async(services.session_open)(channel_id=channel.pk, title="A room")
    host = recorders()
    await until(lambda: Segment.objects.filter(recording__channel_id=channel.pk).exists(), timeout_s=20,
                what="the first segment")
    said: list[int] = []
    for n in range(16):  # one every 0.45 s for 7 s: over two segment cuts
        at = now_ms()
        said.append(at)
        await sync_to_async(messages_store)(channel_id=channel.pk, session_id=session.pk,
                                            messages=[chat(f"said {n}", at_ms=at)])
        await asyncio.sleep(0.45)
    sim.command(LIVE_ID, "end")
    await until(lambda: Recording.objects.filter(channel_id=channel.pk, ended_at__isnull=False).exists()
                and not Segment.objects.filter(recording__channel_id=channel.pk,
                                               state__in=["recording", "processing"]).exists(),
                timeout_s=30, what="the recording ended and its segments processed")
    await host.close()

    def check():
        segments = list(Segment.objects.filter(recording__channel_id=channel.pk, state="done")
                        .select_related("recording").order_by("index"))
        assert len(segments) >= 2, [(s.index, s.state, s.duration_s) for s in segments]
        assert all(s.file_path.endswith(".mp4") for s in segments)
        assert segments[0].recording.session_id == session.pk
        placed = {}
        for segment in segments:
            end_ms = segment.ended_at_ms or segment.started_at_ms + round(segment.duration_s * 1000)
            expected = [(n, at) for n, at in enumerate(said) if segment.started_at_ms <= at < end_ms]
            cues = _ass_cues(segment)
            assert [text for _, text in cues] == [f"said {n}" for n, _ in expected], (segment.index, cues)
            for (start_s, _), (n, at) in zip(cues, expected, strict=True):
                assert abs(start_s - (at - segment.started_at_ms) / 1000) <= 0.01
                assert start_s <= segment.duration_s + 1.0  # inside the file (its last second at most)
                placed[n] = segment.index
        # Every message said inside the recording is in a segment, but those in a gap between two (< 2 s).
        first, last = segments[0].started_at_ms, segments[-1].started_at_ms + segments[-1].duration_s * 1000
        inside = [n for n, at in enumerate(said) if first <= at < last]
        assert len(placed) >= len(inside) - 4, (placed, inside)
        assert len(placed) >= 10, placed

        title = Title.objects.get(kind="recording")
        parts = list(title.seasons.get().episodes.order_by("number"))
        assert [p.number for p in parts] == [s.index for s in segments]
        for part, segment in zip(parts, segments, strict=True):
            assert part.videos.get().file_path == segment.file_path
            offsets = list(part.danmaku.values_list("offset_ms", flat=True))
            assert offsets == [at - segment.started_at_ms for n, at in enumerate(said) if placed.get(n) == segment.index]

    await sync_to_async(check)()
