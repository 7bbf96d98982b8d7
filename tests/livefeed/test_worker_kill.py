"""A livefeed worker killed with -9 mid-broadcast: another worker (started as the Procfile
starts it) takes the channel over once the lease expires, well within 30 s, continues the
same session, records the gap, and nothing the platform sent after it is lost or doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import pytest
from asgiref.sync import sync_to_async

from livefeed import services
from livefeed.models import LiveChannel, LiveMessage, LiveSession
from tests.live import _server_env, start_livefeed_worker, stop_process_group
from tests.livefeed.bilibili_fake import danmu
from tests.livefeed.bilibili_fixtures import bilibili_fixture  # noqa: F401 - the fixture
from tests.livefeed.test_fetcher import until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.alone]  # Celery workers: pyproject.toml's markers
LEASE_S = 3


@pytest.fixture
def start_worker(bilibili, redis_client, tmp_path):
    redis_client.delete("livefeed")
    started: list[subprocess.Popen] = []
    env = _server_env({
        "LIVEFEED_BILIBILI_API_ROOT": bilibili.api_root, "LIVEFEED_BILIBILI_NAV_URL": bilibili.nav_url,
        "LIVEFEED_BILIBILI_WS_URL": bilibili.ws_url, "LIVEFEED_LEASE_S": str(LEASE_S), "LIVEFEED_SCAN_S": "0.2",
        "LIVEFEED_RECONNECT_MAX_S": "1",
    })

    def start(name: str) -> subprocess.Popen:
        process = start_livefeed_worker(name, env=env, log_dir=tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        stop_process_group(process)


def _contents(channel_id: int) -> list[str]:
    return list(LiveMessage.objects.filter(channel_id=channel_id).order_by("id").values_list("content", flat=True))


async def test_a_killed_worker_is_taken_over_within_30_s_in_the_same_session(bilibili, alice, start_worker):
    channel = await sync_to_async(LiveChannel.objects.create)(platform="bilibili", ref="5440", added_by=alice)
    await sync_to_async(services.channel_follow)(channel_id=channel.pk, actor=alice)
    first = start_worker("first")
    await bilibili.wait_for_socket(timeout_s=60)
    await bilibili.push([danmu(f"前{n}", id_str=f"a{n}") for n in range(5)])
    await until(lambda: len(_contents(channel.pk)) == 5, timeout_s=20, what="stored by the first worker")

    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    await bilibili.drop()  # its socket dies with it
    killed_at = asyncio.get_running_loop().time()
    start_worker("second")
    await bilibili.wait_for_socket(timeout_s=60)
    took_s = asyncio.get_running_loop().time() - killed_at
    assert took_s < 30, f"took over after {took_s:.1f}s"
    # The platform re-sends what it sent before the drop, then goes on.
    await bilibili.push([danmu(f"前{n}", id_str=f"a{n}") for n in range(3, 5)] +
                        [danmu(f"后{n}", id_str=f"b{n}") for n in range(5)])
    await until(lambda: len(_contents(channel.pk)) == 10, timeout_s=20, what="stored by the second worker")
    await asyncio.sleep(0.5)
    assert await sync_to_async(_contents)(channel.pk) == [f"前{n}" for n in range(5)] + [f"后{n}" for n in range(5)]
    sessions = await sync_to_async(lambda: list(LiveSession.objects.filter(channel=channel)))()
    assert len(sessions) == 1
    assert sessions[0].ended_at is None
    assert len(sessions[0].gaps) == 1
    owner = await sync_to_async(lambda: LiveChannel.objects.get(pk=channel.pk).lease_owner)()
    assert owner
