"""Fixtures of the recorder tests: the simulator serving its real stream (ffmpeg, real time),
a channel on it with `record` on, running RecorderHosts, and ffprobe of what was written."""

from __future__ import annotations

import json
import subprocess

import pytest

from livefeed.models import LiveChannel
from livefeed.recorder import RecorderHost
from livefeed.simulator.server import SimulatorThread
from tests.livefeed.test_fetcher import Running

LIVE_ID = "7301"


@pytest.fixture(name="sim")
def sim_fixture(settings, tmp_path):
    with SimulatorThread(rate=5) as simulator:
        settings.LIVEFEED_SIMULATOR_ROOT = simulator.root
        settings.LIVEFEED_RECORDINGS_DIR = tmp_path / "recordings"
        settings.LIVEFEED_MIN_SEGMENT_S = 1.0
        settings.LIVEFEED_MIN_FREE_MB = 0
        settings.LIVEFEED_RECORD_STALL_S = 3
        settings.LIVEFEED_RECONNECT_MAX_S = 0.5
        settings.LIVEFEED_POSTPROCESS_TRIES = 2
        yield simulator


@pytest.fixture(name="recorded")
def recorded_fixture(alice, sim):
    """A simulator channel with record on, 2 s segments."""
    return LiveChannel.objects.create(platform="simulator", ref=LIVE_ID, added_by=alice, record=True, segment_s=2,
                                      check_interval_s=1)


@pytest.fixture(name="recorders")
async def recorders_fixture():
    running: list[Running] = []

    def start(owner: str = "test-recorder", lease_s: float = 3) -> Running:
        item = Running(RecorderHost(owner=owner, scan_s=0.1, lease_s=lease_s))
        running.append(item)
        return item

    yield start
    for item in running:
        if not item.task.done():
            await item.close()


def ffprobe(path: str) -> dict:
    """duration, start and the first and last packet times of a file, by ffprobe."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration,start_time:stream=codec_name",
                          "-of", "json", path], capture_output=True, check=True, timeout=30).stdout
    return json.loads(out)
