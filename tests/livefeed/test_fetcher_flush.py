"""A fetcher that fell behind stores its backlog FLUSH_MAX messages at a time: every message
once and in order, each `live.messages` frame at most FLUSH_MAX messages (a browser never gets
a frame of a whole minute's backlog)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from livefeed import fetcher
from livefeed.models import LiveMessage
from tests.livefeed import test_fetcher
from tests.livefeed.bilibili_fake import danmu
from tests.livefeed.bilibili_fixtures import bilibili_fixture  # noqa: F401 - the fixture
from tests.livefeed.test_fetcher import until

platform, followed, hosts = test_fetcher.platform, test_fetcher.followed, test_fetcher.hosts  # its fixtures
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_redis")]


async def test_a_backlog_is_stored_in_capped_batches_and_pushed_in_capped_frames(platform, followed, hosts, watch,
                                                                               monkeypatch):
    monkeypatch.setattr(fetcher, "FLUSH_MAX", 7)
    client = await watch(followed.pk)
    await client.expect("live.status")
    hosts(flush_s=1.5)  # 30 messages arrive within one flush period: one flush finds all of them
    await platform.wait_for_socket()
    await client.expect("live.status", state="running", timeout=10)
    await platform.push([danmu(f"积压{n}", id_str=f"b{n}") for n in range(30)])
    sizes, contents = [], []
    while len(contents) < 30:
        frame = await client.expect("live.messages", timeout=10)
        sizes.append(len(frame["messages"]))
        contents += [m["content"] for m in frame["messages"]]
    assert contents == [f"积压{n}" for n in range(30)]
    assert max(sizes) <= 7
    assert len(sizes) >= 5  # 30 messages, at most 7 a frame
    stored = await until(lambda: list(LiveMessage.objects.filter(channel_id=followed.pk).order_by("id")
                                      .values_list("content", flat=True)) or None, what="stored")
    assert stored == [f"积压{n}" for n in range(30)]


def test_statistics_are_computed_and_pushed_only_while_someone_watches(followed, published):
    from livefeed.services import live_group, session_open
    from project import realtime

    session, _ = session_open(channel_id=followed.pk, title="stats")
    assert fetcher._push_stats(channel_id=followed.pk, session_id=session.pk) is False
    assert published.of_type("live.stats") == []
    watcher = realtime.sync_redis().pubsub()  # what a server process with a watcher holds
    watcher.subscribe(realtime.channel_prefix() + live_group(followed.pk))
    try:
        assert fetcher._push_stats(channel_id=followed.pk, session_id=session.pk) is True
    finally:
        watcher.close()
    [(topic, event)] = published.of_type("live.stats")
    assert topic == live_group(followed.pk)
    assert event["session_id"] == session.pk
    assert event["totals"]["messages"] == 0


async def test_a_room_is_not_read_past_its_buffer_while_the_database_is_away(platform, followed, hosts, monkeypatch,
                                                                             caplog):
    """LIVEFEED_BUFFER_MAX: with the database away, the fetcher holds at most that many of a
    room's messages and leaves the rest unread in the socket; once the database is back,
    every message is stored, once and in order. The trouble is logged once, not per flush."""
    import asyncio

    from django.db import OperationalError

    real = fetcher._store_and_push
    database_back = False

    def store_while_up(**kwargs):
        if not database_back:
            raise OperationalError("the database is restarting")
        return real(**kwargs)

    monkeypatch.setattr(fetcher, "_store_and_push", store_while_up)
    running = hosts(buffer_max=10, flush_s=0.05)
    await platform.wait_for_socket()
    await until(lambda: test_fetcher._channel(followed.pk).state == "running")
    for frame_number in range(4):  # 4 frames of 10: the first fills the buffer
        await platform.push([danmu(f"等{frame_number}-{n}", id_str=f"w{frame_number}-{n}") for n in range(10)])
    follower = running.host.followers[followed.pk]
    for _ in range(40):  # 40 flushes refused, 2 s: the buffer stays at its bound
        await asyncio.sleep(0.05)
        assert len(follower.buffer) <= 10
    assert len(follower.buffer) == 10
    assert "reading the room paused" in caplog.text
    assert await sync_to_async(LiveMessage.objects.filter(channel_id=followed.pk).count)() == 0

    database_back = True
    expected = [f"等{f}-{n}" for f in range(4) for n in range(10)]
    stored = await until(lambda: (lambda rows: rows if len(rows) == 40 else None)(
        list(LiveMessage.objects.filter(channel_id=followed.pk).order_by("id").values_list("content", flat=True))),
        what="all 40 stored once the database is back")
    assert stored == expected
    assert "reading the room resumed" in caplog.text
    # 40 refused flushes, one log line (a line a minute at most), and one when it recovers
    assert caplog.text.count("kept for the next flush") == 1
    assert caplog.text.count("reading the room paused") == 1
    assert "live messages stored again" in caplog.text
