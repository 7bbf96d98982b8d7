"""The realtime path: one publish reaches every subscribed sink of every hub."""

import asyncio

import pytest

from project import realtime


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
