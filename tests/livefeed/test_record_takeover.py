"""A livefeed worker (started as the Procfile starts it) recording a channel is killed with -9,
its ffmpeg with it: the half-written segment is kept and fixed up into a file ffprobe reads,
and the next recorder continues the same recording in a new segment well within 30 s."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from livefeed.models import LiveChannel, Recording, Segment
from tests.live import _server_env, start_livefeed_worker, stop_process_group
from tests.livefeed.record_fixtures import (  # noqa: F401 - the fixtures
    LIVE_ID,
    ffprobe,
    recorders_fixture,
    sim_fixture,
)
from tests.livefeed.test_fetcher import until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_redis"),
              pytest.mark.alone]  # Celery workers: see pyproject.toml's markers


@pytest.fixture
def start_worker(sim, redis_client, tmp_path):
    started: list[subprocess.Popen] = []
    env = _server_env({
        "LIVEFEED_SIMULATOR_ROOT": sim.root, "LIVEFEED_RECORDINGS_DIR": str(settings.LIVEFEED_RECORDINGS_DIR),
        "LIVEFEED_LEASE_S": "3", "LIVEFEED_SCAN_S": "0.2", "LIVEFEED_MIN_SEGMENT_S": "1", "LIVEFEED_MIN_FREE_MB": "0",
    })

    def start(name: str) -> subprocess.Popen:
        process = start_livefeed_worker(name, env=env, log_dir=tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        stop_process_group(process)


def _segments(channel_id: int) -> list[Segment]:
    return list(Segment.objects.filter(recording__channel_id=channel_id).order_by("index"))


async def test_a_killed_recorder_leaves_a_fixed_segment_and_the_next_one_records_on(sim, alice, start_worker,
                                                                                    recorders):
    channel = await sync_to_async(LiveChannel.objects.create)(platform="simulator", ref=LIVE_ID, added_by=alice,
                                                              record=True, segment_s=600)
    worker = start_worker("recorder")
    await until(lambda: (s := _segments(channel.pk)) and os.path.exists(s[0].file_path)
                and os.path.getsize(s[0].file_path) > 60_000, timeout_s=40, what="the worker recording")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)
    killed_at = asyncio.get_running_loop().time()
    recorders(owner="second")
    await until(lambda: len(_segments(channel.pk)) >= 2, timeout_s=30, what="a new segment")
    took_s = asyncio.get_running_loop().time() - killed_at
    assert took_s < 30, f"recorded on after {took_s:.1f}s"
    await until(lambda: _segments(channel.pk)[0].state == Segment.State.DONE, timeout_s=20,
                what="the left segment fixed up")
    first, second = (await sync_to_async(_segments)(channel.pk))[:2]
    assert first.recording_id == second.recording_id  # the same recording goes on
    assert float(ffprobe(first.file_path)["format"]["duration"]) >= 1
    assert first.duration_s >= 1
    assert first.size_bytes == os.path.getsize(first.file_path)
    assert await sync_to_async(Recording.objects.filter(channel_id=channel.pk).count)() == 1
    holder = await sync_to_async(lambda: LiveChannel.objects.get(pk=channel.pk).record_lease_owner)()
    assert holder == "second"
