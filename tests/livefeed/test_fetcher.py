"""The fetcher end to end against the local fake Bilibili over real websockets, with the real
database and Redis: follow, store once across a drop and a re-send, reconnect, stop within
2 s, end of broadcast, take-over of an abandoned lease, one fetcher per channel."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from livefeed import services
from livefeed.fetcher import Host, backoff_s
from livefeed.models import LiveChannel, LiveMessage, LiveSession, LiveStateChange
from tests.livefeed.bilibili_fake import danmu, preparing
from tests.livefeed.bilibili_fixtures import bilibili_fixture  # noqa: F401 - the fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_redis")]


@pytest.fixture
def platform(settings, bilibili):
    settings.LIVEFEED_BILIBILI_API_ROOT = bilibili.api_root
    settings.LIVEFEED_BILIBILI_NAV_URL = bilibili.nav_url
    settings.LIVEFEED_BILIBILI_WS_URL = bilibili.ws_url
    settings.LIVEFEED_RECONNECT_MAX_S = 0.5
    settings.LIVEFEED_STALL_S = 5
    return bilibili


@pytest.fixture
def followed(alice):
    channel = LiveChannel.objects.create(platform="bilibili", ref="5440", added_by=alice)
    services.channel_follow(channel_id=channel.pk, actor=alice)
    return channel


class Running:
    def __init__(self, host: Host):
        self.host = host
        self.stop = asyncio.Event()
        self.task = asyncio.ensure_future(host.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def hosts():
    running: list[Running] = []

    def start(owner: str = "test-host", **options) -> Running:
        item = Running(Host(owner=owner, scan_s=0.1, lease_s=options.pop("lease_s", 3), **options))
        running.append(item)
        return item

    yield start
    for item in running:
        if not item.task.done():
            await item.close()


def _channel(pk: int) -> LiveChannel:
    return LiveChannel.objects.select_related("current_session").get(pk=pk)


async def until(predicate, timeout_s: float = 10, what: str = ""):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await sync_to_async(predicate)()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(0.05)


def _contents(channel_id: int) -> list[str]:
    return list(LiveMessage.objects.filter(channel_id=channel_id).order_by("id").values_list("content", flat=True))


async def test_following_stores_every_message_once_across_a_drop_and_a_resend(platform, followed, hosts):
    hosts()
    await platform.wait_for_socket()
    await until(lambda: _channel(followed.pk).state == "running", what="running")
    first = [danmu(f"第{n}条", id_str=f"id{n}", ts_ms=1_723_979_200_000 + n) for n in range(5)]
    await platform.push(first)
    await until(lambda: len(_contents(followed.pk)) == 5, what="5 stored")
    await platform.drop()
    await platform.wait_for_socket()  # reconnected by itself
    # The platform sends recent messages again after a reconnect, then new ones.
    await platform.push(first[2:] + [danmu(f"第{n}条", id_str=f"id{n}") for n in range(5, 8)], version=2)
    await until(lambda: len(_contents(followed.pk)) == 8, what="8 stored")
    await asyncio.sleep(0.3)  # a late duplicate would be stored by now
    assert await sync_to_async(_contents)(followed.pk) == [f"第{n}条" for n in range(8)]
    channel = await sync_to_async(_channel)(followed.pk)
    assert channel.state == "running"
    assert channel.reconnects >= 1
    session = await sync_to_async(LiveSession.objects.get)(channel=followed)
    assert session.messages_total == 8
    assert session.ended_at is None
    assert len(session.gaps) == 1
    assert session.gaps[0][0] <= session.gaps[0][1]
    states = await sync_to_async(lambda: list(LiveStateChange.objects.filter(channel=followed).order_by("id")
                                               .values_list("to_state", flat=True)))()
    assert states[:2] == ["starting", "running"]
    assert "reconnecting" in states


async def test_a_room_unreachable_at_first_opens_its_session_with_no_gap(platform, followed, hosts):
    """Not reaching the platform before anything was followed is not a gap in a session: the
    session starts when the room is first reached (`make run` starts the worker before the
    simulator listens)."""
    platform.fail_next("/room/v1/Room/room_init", status=503)
    hosts()
    await platform.wait_for_socket()
    await until(lambda: _channel(followed.pk).state == "running", what="running")
    await platform.push([danmu("来了", id_str="first")])
    await until(lambda: _contents(followed.pk) == ["来了"], what="stored")
    states = await sync_to_async(lambda: list(LiveStateChange.objects.filter(channel=followed).order_by("id")
                                               .values_list("to_state", flat=True)))()
    assert states == ["starting", "reconnecting", "running"]
    session = await sync_to_async(LiveSession.objects.get)(channel=followed)
    assert session.gaps == []


async def test_stop_finishes_within_two_seconds_and_keeps_what_was_received(platform, followed, hosts, alice):
    hosts()
    await platform.wait_for_socket()
    await until(lambda: _channel(followed.pk).state == "running")
    await platform.push([danmu("最后一条", id_str="last")])
    await until(lambda: _contents(followed.pk) == ["最后一条"])
    started = asyncio.get_running_loop().time()
    await sync_to_async(services.channel_unfollow)(channel_id=followed.pk, actor=alice)
    await until(lambda: _channel(followed.pk).state == "idle", timeout_s=2, what="idle within 2 s")
    assert asyncio.get_running_loop().time() - started < 2
    session = await sync_to_async(LiveSession.objects.get)(channel=followed)
    assert session.end_reason == "stopped"
    assert session.messages_total == 1
    await until(lambda: not _channel(followed.pk).lease_token, what="lease released")


async def test_the_end_of_the_broadcast_closes_the_session(platform, followed, hosts):
    hosts()
    await platform.wait_for_socket()
    await until(lambda: _channel(followed.pk).state == "running")
    await platform.push([danmu("拜拜", id_str="bye"), preparing()])
    await until(lambda: _channel(followed.pk).state == "idle", what="idle after PREPARING")
    channel = await sync_to_async(_channel)(followed.pk)
    assert channel.desired == "stop"
    assert channel.current_session is None
    session = await sync_to_async(LiveSession.objects.get)(channel=followed)
    assert session.end_reason == "ended"
    assert session.ended_at is not None


async def test_an_abandoned_lease_is_taken_over_and_the_same_session_continues(platform, followed, hosts):
    # A worker that was killed: it held the lease (now expired) and left its session open.
    session = await sync_to_async(services.session_open)(channel_id=followed.pk, title="before")
    await sync_to_async(LiveChannel.objects.filter(pk=followed.pk).update)(
        lease_owner="dead-worker", lease_token="deadbeef" * 4, state="running",
        lease_expires_at=timezone.now() + timedelta(seconds=1),
        last_message_at=timezone.now() - timedelta(seconds=5))
    hosts(owner="survivor")
    await platform.wait_for_socket(timeout_s=15)
    await until(lambda: _channel(followed.pk).lease_owner == "survivor")
    await platform.push([danmu("接着来", id_str="after")])
    await until(lambda: _contents(followed.pk) == ["接着来"])
    sessions = await sync_to_async(lambda: list(LiveSession.objects.filter(channel=followed)))()
    assert [s.pk for s in sessions] == [session[0].pk]
    assert len(sessions[0].gaps) == 1
    gap_start, gap_end = sessions[0].gaps[0]
    assert gap_end - gap_start >= 4000  # from the last message stored until the new fetcher listened


async def test_two_fetchers_never_follow_one_channel_at_once(platform, followed, hosts):
    hosts(owner="one")
    hosts(owner="two")
    await platform.wait_for_socket()
    await until(lambda: _channel(followed.pk).state == "running")
    await asyncio.sleep(1)
    assert len(platform.connections) == 1


async def test_a_room_that_does_not_exist_is_an_error_a_person_can_read(platform, alice, hosts):
    channel = await sync_to_async(LiveChannel.objects.create)(platform="bilibili", ref="99999999", added_by=alice)
    await sync_to_async(services.channel_follow)(channel_id=channel.pk, actor=alice)
    hosts()
    found = await until(lambda: _channel(channel.pk).state == "error" and _channel(channel.pk), what="error state")
    assert found.desired == "stop"
    assert found.last_error


def test_reconnect_back_off_starts_within_two_seconds_and_is_capped():
    firsts = [backoff_s(1, max_s=60) for _ in range(200)]
    assert max(firsts) <= 1.0
    assert min(firsts) >= 0.5
    assert max(backoff_s(30, max_s=60) for _ in range(200)) <= 60


async def test_watchers_get_new_messages_in_one_frame_and_stats_every_few_seconds(platform, followed, hosts, watch,
                                                                                settings):
    settings.LIVEFEED_STATS_S = 0.3
    client = await watch(followed.pk)
    await client.expect("live.status")
    hosts()
    await platform.wait_for_socket()
    await client.expect("live.status", state="running", timeout=10)
    await platform.push([danmu(f"弹幕{n}", id_str=f"w{n}") for n in range(20)])
    frame = await client.expect("live.messages", timeout=5)
    contents = [m["content"] for m in frame["messages"]]
    while len(contents) < 20:  # a frame carries what one flush stored: 20 messages in one or a few frames
        contents += [m["content"] for m in (await client.expect("live.messages", timeout=5))["messages"]]
    assert contents == [f"弹幕{n}" for n in range(20)]
    stats_frame = await client.expect("live.stats", timeout=5)
    assert stats_frame["totals"]["messages"] == 20
    assert stats_frame["top_chatters"][0]["chats"] == 20


async def test_auto_follow_waits_while_offline_and_follows_when_the_room_goes_live(platform, alice, hosts):
    platform.rooms[5440].live_status = 0
    channel, _ = await sync_to_async(services.channel_add)(user=alice, url="https://live.bilibili.com/5440",
                                                           auto_follow=True)
    await sync_to_async(LiveChannel.objects.filter(pk=channel.pk).update)(check_interval_s=1)
    hosts()
    waiting = await until(lambda: _channel(channel.pk).state == "waiting" and _channel(channel.pk), what="waiting")
    assert waiting.next_check_at is not None
    assert waiting.desired == "follow"
    platform.rooms[5440].live_status = 1
    await platform.wait_for_socket(timeout_s=10)
    await until(lambda: _channel(channel.pk).state == "running", what="running once live")
    await platform.push([preparing()])
    await until(lambda: _channel(channel.pk).state == "waiting", what="waiting again after the broadcast")
    assert await sync_to_async(lambda: _channel(channel.pk).desired)() == "follow"


async def test_a_flush_the_database_refuses_keeps_its_messages_for_the_next(platform, followed, hosts, monkeypatch,
                                                                           caplog):
    from django.db import OperationalError

    from livefeed import fetcher

    real = fetcher._store_and_push
    refused = []

    def store_once_refused(**kwargs):
        if not refused:
            refused.append(len(kwargs["messages"]))
            raise OperationalError("the database is restarting")
        return real(**kwargs)

    monkeypatch.setattr(fetcher, "_store_and_push", store_once_refused)
    hosts()
    await platform.wait_for_socket()
    await until(lambda: _channel(followed.pk).state == "running")
    await platform.push([danmu(f"留着{n}", id_str=f"k{n}") for n in range(4)])
    await until(lambda: len(_contents(followed.pk)) == 4, what="stored on a later flush")
    assert refused == [4]
    assert await sync_to_async(_contents)(followed.pk) == [f"留着{n}" for n in range(4)]
    assert "kept for the next flush" in caplog.text


async def test_a_follower_that_crashes_leaves_the_channel_in_error_and_lets_it_go(platform, followed, hosts,
                                                                                 monkeypatch, caplog):
    from livefeed import fetcher

    async def broken(self, client, channel):
        raise RuntimeError("a bug")

    monkeypatch.setattr(fetcher.Follower, "_one_connection", broken)
    hosts()
    found = await until(lambda: _channel(followed.pk).state == "error" and _channel(followed.pk), what="error")
    assert "internal error" in found.last_error
    assert found.desired == "stop"  # not taken again by the next scan
    await until(lambda: not _channel(followed.pk).lease_token, what="lease released")
    assert "live follower crashed" in caplog.text
