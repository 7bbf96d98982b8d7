"""Rooms scrobble each play once per member who is listening, however many server
processes watch the room, and show the room's track as the members' now playing."""

import asyncio
import json

import pytest

from catalog.models import Track
from rooms import presence, services
from rooms.models import Room
from scrobbling import services as scrobbling
from scrobbling.models import Play
from tests.factories import make_track
from tests.rooms.test_two_processes import next_event, open_socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def long_room(people):
    song = make_track("Long Song", "The Band", "Long Album", duration_s=62.0)
    room = services.room_create(owner=people["hana"], name="Long Room", control_policy=Room.ControlPolicy.DJS)
    for name in ("dj", "lis"):
        services.room_join(room=room, user=people[name])
    services.queue_add(room=room, actor=people["hana"], track_id=song.pk)
    return room


def test_each_listening_member_scrobbles_a_play_once_with_two_processes(asgi_server_factory, long_room, tokens, people):
    first, second = asgi_server_factory(2, env={"ROOMS_TICK_S": "0.5"})

    async def scenario():
        host = await open_socket(first, long_room.slug, tokens["hana"])
        listener = await open_socket(second, long_room.slug, tokens["lis"])
        try:
            await host.send(json.dumps({"type": "control", "action": "play"}))
            waiting = await next_event(host, "room.state", reason="change", status="waiting")
            for socket in (host, listener):
                await socket.send(json.dumps({"type": "ready", "entry_id": waiting["entry_id"]}))
            playing = await next_event(listener, "room.state", reason="change", status="playing")
            # Nothing is scrobbled before the threshold (half of 62 s).
            await asyncio.sleep(1.0)
            assert not await asyncio.to_thread(Play.objects.exists)
            await host.send(json.dumps({"type": "control", "action": "seek", "position_s": 31.5,
                                        "version": playing["version"]}))
            await next_event(listener, "room.state", reason="change", version=playing["version"] + 1)
            # Both processes' clocks see the threshold pass; give them time to both ask.
            for _ in range(30):
                await asyncio.sleep(0.2)
                if await asyncio.to_thread(Play.objects.count) >= 2:
                    break
            await asyncio.sleep(1.0)
        finally:
            await host.close()
            await listener.close()

    asyncio.run(scenario())
    plays = list(Play.objects.order_by("user__username"))
    # hana and lis were listening; dj is a member who was not online; nobody got two.
    assert [(p.user.username, p.source, p.room_id) for p in plays] == [
        ("hana", "room", long_room.pk), ("lis", "room", long_room.pk)]
    assert plays[0].played_at == plays[1].played_at
    assert plays[0].played_s >= 31
    assert Track.objects.get(title="Long Song").play_count == 2


def test_a_new_play_of_the_same_track_is_scrobbled_again(long_room, people, redis_client):
    redis_client.flushdb()
    presence.touch(long_room.pk, [(people["hana"].pk, "c1")])
    host = people["hana"]
    services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "play"}))
    services.start_if_ready(room_id=long_room.pk, force=True)
    services.playback_control(room=long_room, actor=host,
                              control=services.parse_control({"action": "seek", "position_s": 40.0}))
    assert services.scrobble_if_due(room_id=long_room.pk) == 1
    assert services.scrobble_if_due(room_id=long_room.pk) == 0  # the same play, asked again
    # Stop and play again: a new play with its own start time.
    services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "stop"}))
    services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "play"}))
    assert services.scrobble_if_due(room_id=long_room.pk) == 0  # just started
    services.playback_control(room=long_room, actor=host,
                              control=services.parse_control({"action": "seek", "position_s": 40.0}))
    assert services.scrobble_if_due(room_id=long_room.pk) == 1
    assert Play.objects.filter(user=host).count() == 2


def test_members_listening_see_the_room_track_as_now_playing(long_room, people, redis_client):
    redis_client.flushdb()
    presence.touch(long_room.pk, [(people["hana"].pk, "c1"), (people["lis"].pk, "c2")])
    host = people["hana"]
    services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "play"}))
    services.start_if_ready(room_id=long_room.pk, force=True)
    entries = {e["username"]: e for e in scrobbling.now_playing_list()}
    assert set(entries) == {"hana", "lis"}
    assert entries["lis"]["room"]["slug"] == long_room.slug
    assert entries["lis"]["title"] == "Long Song"
    assert entries["lis"]["paused"] is False
    services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "pause"}))
    assert all(e["paused"] for e in scrobbling.now_playing_list())
    services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "stop"}))
    assert scrobbling.now_playing_list() == []
