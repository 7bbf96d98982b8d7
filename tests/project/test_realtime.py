"""The realtime path: one publish reaches every subscribed sink of every hub."""

import asyncio

import pytest
import redis as redis_lib

from project import realtime
from tests.private_redis import PrivateRedis


async def wait_for(queue: asyncio.Queue, timeout: float = 2) -> str:
    return await asyncio.wait_for(queue.get(), timeout)


async def test_a_published_event_reaches_every_local_sink_once(settings):
    hub = realtime.Hub()
    first, second = asyncio.Queue(), asyncio.Queue()
    await hub.subscribe("test.topic", 1, first.put)
    await hub.subscribe("test.topic", 2, second.put)
    await asyncio.to_thread(realtime.publish, "test.topic", {"type": "hello", "n": 1})
    assert await wait_for(first) == '{"type":"hello","n":1}'
    assert await wait_for(second) == '{"type":"hello","n":1}'
    await asyncio.to_thread(realtime.publish, "other.topic", {"type": "elsewhere"})
    await hub.unsubscribe("test.topic", 2)
    await asyncio.to_thread(realtime.publish, "test.topic", {"type": "hello", "n": 2})
    assert await wait_for(first) == '{"type":"hello","n":2}'
    assert second.empty()
    await hub.unsubscribe("test.topic", 1)


async def test_installations_on_other_redis_databases_do_not_hear_each_other(settings):
    base = settings.REDIS_URL.rsplit("/", 1)[0]
    settings.REDIS_URL = f"{base}/7"
    hub = realtime.Hub()
    received = asyncio.Queue()
    await hub.subscribe("room.1", 1, received.put)
    settings.REDIS_URL = f"{base}/8"
    await asyncio.to_thread(realtime.publish, "room.1", {"type": "room.state"})
    with pytest.raises(TimeoutError):
        await wait_for(received, timeout=0.5)
    settings.REDIS_URL = f"{base}/7"
    await asyncio.to_thread(realtime.publish, "room.1", {"type": "room.state"})
    assert await wait_for(received) == '{"type":"room.state"}'
    await hub.unsubscribe("room.1", 1)


@pytest.mark.django_db(transaction=True)
def test_broadcast_on_commit_waits_for_the_commit(settings, redis_client):
    from django.db import transaction

    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(realtime.channel_prefix() + "t")
    with transaction.atomic():
        realtime.broadcast_on_commit("t", {"type": "x"})
        assert pubsub.get_message(timeout=0.3) is None
    assert pubsub.get_message(timeout=2)["data"] == b'{"type":"x"}'
    def roll_back():
        with transaction.atomic():
            realtime.broadcast_on_commit("t", {"type": "rolled back"})
            raise RuntimeError

    with pytest.raises(RuntimeError):
        roll_back()
    assert pubsub.get_message(timeout=0.3) is None
    pubsub.close()


# --- losing Redis -----------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path, settings):
    """REDIS_URL on a redis-server of this test's own, which the test may kill."""
    server = PrivateRedis(tmp_path / "redis").start()
    settings.REDIS_URL = server.url(0)
    yield server
    server.stop()


async def until(condition, timeout: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("the condition never held")
        await asyncio.sleep(0.02)


def subscribers(server: PrivateRedis, topic: str) -> int:
    client = redis_lib.Redis.from_url(server.url(0))
    try:
        return client.pubsub_numsub(realtime.channel_prefix() + topic)[0][1]
    finally:
        client.close()


async def test_the_hub_subscribes_again_once_redis_is_back_even_if_the_first_attempts_fail(private_redis):
    hub = realtime.Hub()
    received, resubscribed = asyncio.Queue(), asyncio.Queue()
    await hub.subscribe("room.1", 1, received.put)
    await hub.subscribe("room.2", 2, received.put)
    hub.add_resubscribe_hook("room.1", resubscribed.put)
    await asyncio.to_thread(realtime.publish, "room.1", {"type": "before"})
    assert await wait_for(received) == '{"type":"before"}'

    await asyncio.to_thread(private_redis.kill)
    await until(lambda: hub.failed_resubscribes >= 2)  # Redis is away: tried, failed, tried again
    await hub.subscribe("room.3", 3, received.put)  # a socket that joins meanwhile
    await hub.unsubscribe("room.2", 2)  # and one that leaves
    await asyncio.to_thread(private_redis.start)

    assert await wait_for(resubscribed, timeout=3) == "room.1"
    assert hub.resubscribes == 1
    await asyncio.to_thread(realtime.publish, "room.1", {"type": "after"})
    assert await wait_for(received) == '{"type":"after"}'
    await asyncio.to_thread(realtime.publish, "room.3", {"type": "joined while away"})
    assert await wait_for(received) == '{"type":"joined while away"}'
    assert [subscribers(private_redis, t) for t in ("room.1", "room.2", "room.3")] == [1, 0, 1]
    await hub.unsubscribe("room.1", 1)
    await hub.unsubscribe("room.3", 3)


async def test_the_hub_keeps_trying_when_its_first_attempts_to_subscribe_again_fail(private_redis, monkeypatch):
    hub = realtime.Hub()
    received = asyncio.Queue()
    await hub.subscribe("room.1", 1, received.put)
    failures = 2
    new_pubsub = hub._client.pubsub

    def flaky_pubsub(**kwargs):
        """A pubsub whose subscribe fails while `failures` lasts (Redis still starting)."""
        pubsub = new_pubsub(**kwargs)
        subscribe = pubsub.subscribe

        async def failing_subscribe(*channels):
            nonlocal failures
            if failures:
                failures -= 1
                raise redis_lib.ConnectionError("Redis is loading the dataset in memory")
            return await subscribe(*channels)

        pubsub.subscribe = failing_subscribe
        return pubsub

    monkeypatch.setattr(hub._client, "pubsub", flaky_pubsub)
    await asyncio.to_thread(private_redis.kill)
    await asyncio.to_thread(private_redis.start)
    await until(lambda: failures == 0)
    await until(lambda: subscribers(private_redis, "room.1") == 1)
    await asyncio.to_thread(realtime.publish, "room.1", {"type": "after"})
    assert await wait_for(received) == '{"type":"after"}'
    await hub.unsubscribe("room.1", 1)


async def test_a_hub_whose_sockets_all_left_while_redis_was_away_stops_trying(private_redis):
    hub = realtime.Hub()
    await hub.subscribe("room.1", 1, asyncio.Queue().put)
    await asyncio.to_thread(private_redis.kill)
    await until(lambda: hub.failed_resubscribes >= 1)
    await hub.unsubscribe("room.1", 1)
    await until(lambda: hub._reader.done())
    await asyncio.to_thread(private_redis.start)
    received = asyncio.Queue()
    await hub.subscribe("room.4", 4, received.put)  # and works again for the next socket
    await asyncio.to_thread(realtime.publish, "room.4", {"type": "hello"})
    assert await wait_for(received) == '{"type":"hello"}'
    await hub.unsubscribe("room.4", 4)


@pytest.mark.django_db(transaction=True)
def test_publishing_from_a_worker_works_on_the_first_try_after_a_redis_restart(private_redis):
    from django.db import transaction

    listener = redis_lib.Redis.from_url(private_redis.url(0))
    realtime.publish("t", {"type": "warm"})  # the worker's pooled connection exists
    private_redis.kill()
    with transaction.atomic():
        realtime.broadcast_on_commit("t", {"type": "lost"})  # Redis is away: logged, not raised
    private_redis.start()
    pubsub = listener.pubsub()
    pubsub.subscribe(realtime.channel_prefix() + "t")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    realtime.publish("t", {"type": "after"})  # the dead pooled connection is replaced
    assert pubsub.get_message(timeout=2)["data"] == b'{"type":"after"}'
    pubsub.close()
    listener.close()


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_number_is_never_encoded_into_a_frame(number):
    with pytest.raises(ValueError, match="JSON compliant"):
        realtime.encode({"type": "room.state", "position_ms": number})
