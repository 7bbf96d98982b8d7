"""Websocket /ws/live/<id>/ against the real ASGI app and Redis: the status and the recent
messages on connect, new messages pushed as one frame, auth, and bad frames answered with an
error that names what was wrong."""

from __future__ import annotations

import pytest

from livefeed import live, services, storage
from tests.livefeed.conftest import chat

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_redis")]


def _store(channel, session, messages):
    result = storage.messages_store(channel_id=channel.pk, session_id=session.pk, messages=messages)
    live.messages_push(channel_id=channel.pk, rows=result.stored)
    return result


async def test_a_watcher_gets_the_status_then_the_recent_messages_then_new_ones(watch, channel, session):
    from asgiref.sync import sync_to_async

    await sync_to_async(_store)(channel, session, [chat("早上好"), chat("hello")])
    client = await watch(channel.pk)
    status = await client.expect("live.status")
    assert status["channel_id"] == channel.pk
    assert status["session_id"] == session.pk
    history = await client.expect("live.messages")
    assert history["history"] is True
    assert [m["content"] for m in history["messages"]] == ["早上好", "hello"]
    await sync_to_async(_store)(channel, session, [chat("第三条"), chat("第四条")])
    pushed = await client.expect("live.messages")
    assert [m["content"] for m in pushed["messages"]] == ["第三条", "第四条"]
    assert all(isinstance(m["id"], int) for m in pushed["messages"])


async def test_a_status_change_reaches_the_watchers(watch, channel, alice):
    from asgiref.sync import sync_to_async

    client = await watch(channel.pk)
    await client.expect("live.status")
    await sync_to_async(services.channel_follow)(channel_id=channel.pk, actor=alice)
    event = await client.expect("live.status", desired="follow")
    assert event["state"] == "idle"


async def test_no_login_is_4401_and_an_unknown_channel_4404(watch, channel):
    anonymous = await watch(channel.pk, token=None)
    assert await anonymous.closed_with() == 4401
    unknown = await watch(999999)
    assert await unknown.closed_with() == 4404


@pytest.mark.parametrize(("frame", "field"), [("not json", None), ('{"type": "control"}', "type"),
                                              ('{"a": NaN}', None), ("[" * 20000 + "]" * 20000, None)])
async def test_garbage_from_a_watcher_is_an_error_event_and_the_socket_stays(watch, channel, frame, field):
    client = await watch(channel.pk)
    await client.expect("live.status")
    await client.send(frame)
    error = await client.expect("error")
    assert error["message"]
    if field:
        assert error["field"] == field
    await client.send({"type": "ping"})
    await client.expect("pong")


async def test_without_redis_a_watcher_still_gets_the_status_and_an_empty_history(watch, channel, monkeypatch):
    import redis

    def away(**kwargs):
        raise redis.ConnectionError("Redis is restarting")

    monkeypatch.setattr(live, "recent_messages", away)
    client = await watch(channel.pk)
    assert (await client.expect("live.status"))["channel_id"] == channel.pk
    history = await client.expect("live.messages")
    assert history["messages"] == []
