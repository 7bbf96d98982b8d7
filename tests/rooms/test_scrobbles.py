"""Rooms scrobble each play once per member who is listening, however many server
processes watch the room, and show the room's track as the members' now playing."""

import asyncio
import json
import time

import pytest

from catalog.models import Track
from rooms import presence, services
from rooms.models import PlaybackState, Room
from scrobbling import nowplaying
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


async def clock_turns(*sockets, version: int, since_ms: int = 0) -> None:
    """Wait for two ticks of `version` sent after `since_ms` on each socket. A process's room
    clock checks whether the play is due to be scrobbled (and waits for that) just before it
    sends its ticks, and a socket gets the ticks of its own process; the first such tick may
    come from a turn that checked earlier, the second cannot."""

    async def two_ticks(socket):
        seen = 0
        while seen < 2:
            tick = await next_event(socket, "room.state", reason="tick", version=version)
            seen += tick["server_ms"] > since_ms

    await asyncio.gather(*(two_ticks(socket) for socket in sockets))


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
            # Seeking past the threshold (half of 62 s) is not listening: nothing is scrobbled.
            await host.send(json.dumps({"type": "control", "action": "seek", "position_s": 40,
                                        "version": playing["version"]}))
            seeked = await next_event(listener, "room.state", reason="change", version=playing["version"] + 1)
            # Both processes' clocks have looked at the seeked play (each socket gets ticks
            # from its own process), and neither scrobbled it.
            await clock_turns(host, listener, version=seeked["version"])
            assert not await asyncio.to_thread(Play.objects.exists)
            assert seeked["heard_s"] < 5
            # As if the room had played 30 s of it: the next change carries heard_s, and about
            # a second of listening later both processes see the threshold pass.
            await asyncio.to_thread(PlaybackState.objects.filter(room=long_room).update, heard_s=30.0)
            await host.send(json.dumps({"type": "control", "action": "volume", "volume": 0.5}))
            louder = await next_event(listener, "room.state", reason="change", version=playing["version"] + 2)
            deadline = time.monotonic() + 10
            while await asyncio.to_thread(Play.objects.count) < 2:
                assert time.monotonic() < deadline, "the play was never scrobbled"
                await asyncio.sleep(0.1)
            # The threshold has passed, so each process's clock, at its next turns, scrobbles
            # too (if it has not yet): after those turns no second play per member may appear.
            await clock_turns(host, listener, version=louder["version"], since_ms=presence.now_ms())
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


def heard(room, seconds: float) -> None:
    """As if the room had played `seconds` of the current play."""
    PlaybackState.objects.filter(room=room).update(heard_s=seconds)


def test_heard_time_counts_playing_stretches_and_not_seeks(long_room, people, redis_client):
    redis_client.flushdb()
    host = people["hana"]
    services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "play"}))
    services.start_if_ready(room_id=long_room.pk, force=True)
    # Playing since a (scheduled) anchor 3 s ago, then a seek: 3 s heard, the seek adds nothing.
    PlaybackState.objects.filter(room=long_room).update(anchor_ms=presence.now_ms() - 3000)
    state = services.playback_control(room=long_room, actor=host,
                                      control=services.parse_control({"action": "seek", "position_s": 50.0}))
    assert 2.9 < state.heard_s < 3.5
    paused = services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "pause"}))
    assert paused.heard_s < 3.5  # the new anchor was in the future: nothing more heard yet
    stopped = services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "stop"}))
    assert stopped.heard_s == 0


def test_a_new_play_of_the_same_track_is_scrobbled_again(long_room, people, redis_client):
    redis_client.flushdb()
    presence.touch(long_room.pk, [(people["hana"].pk, "c1")])
    host = people["hana"]
    services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "play"}))
    services.start_if_ready(room_id=long_room.pk, force=True)
    services.playback_control(room=long_room, actor=host,
                              control=services.parse_control({"action": "seek", "position_s": 40.0}))
    assert services.scrobble_if_due(room_id=long_room.pk) == 0  # seeking is not listening
    heard(long_room, 31.5)
    assert services.scrobble_if_due(room_id=long_room.pk) == 1
    assert services.scrobble_if_due(room_id=long_room.pk) == 0  # the same play, asked again
    # Stop and play again: a new play with its own start time.
    services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "stop"}))
    services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "play"}))
    assert services.scrobble_if_due(room_id=long_room.pk) == 0  # just started
    heard(long_room, 31.5)
    assert services.scrobble_if_due(room_id=long_room.pk) == 1
    assert Play.objects.filter(user=host).count() == 2


def test_members_listening_see_the_room_track_as_now_playing(long_room, people, redis_client):
    redis_client.flushdb()
    presence.touch(long_room.pk, [(people["hana"].pk, "c1"), (people["lis"].pk, "c2")])
    host = people["hana"]
    services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "play"}))
    services.start_if_ready(room_id=long_room.pk, force=True)
    entries = {e["username"]: e for e in nowplaying.now_playing_list()}
    assert set(entries) == {"hana", "lis"}
    assert entries["lis"]["room"]["slug"] == long_room.slug
    assert entries["lis"]["title"] == "Long Song"
    assert entries["lis"]["paused"] is False
    services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "pause"}))
    assert all(e["paused"] for e in nowplaying.now_playing_list())
    services.playback_control(room=long_room, actor=host, control=services.parse_control({"action": "stop"}))
    assert nowplaying.now_playing_list() == []
