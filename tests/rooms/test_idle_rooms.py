"""Rooms are right with nobody connected: a track that ended has moved on whoever asks
(an HTTP client, a socket joining later, the beat's sweep), exactly once; and a member who
left stops being "listening now"."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from catalog.models import Track
from project import realtime
from rooms import presence, scrobbles, services, tasks
from rooms.models import PlaybackState, QueueEntry
from scrobbling import nowplaying
from tests.factories import shown_room

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def long_tracks(tracks):
    """Tracks of five minutes (as the room sees them), so that nothing ends by itself during a test."""
    Track.objects.update(duration_s=300.0)


def _entries(room) -> list[QueueEntry]:
    return list(QueueEntry.objects.filter(room=room).select_related("track").order_by("position"))


def _playing_since(room, entry, *, seconds_ago: float) -> PlaybackState:
    """The room has been playing `entry` from its start for `seconds_ago` (negative: it
    starts that far in the future), nobody connected."""
    services.playback_control(room=room, actor=room.owner, control=services.Control(action="select", entry_id=entry.pk))
    state = PlaybackState.objects.get(room=room)
    assert state.status == "playing"  # nobody online to wait for
    PlaybackState.objects.filter(room=room).update(anchor_ms=presence.now_ms() - int(seconds_ago * 1000),
                                                   position_s=0.0)
    return PlaybackState.objects.get(room=room)


@pytest.fixture
def room_events(redis_client, room):
    """The room's events as they are published (what every server process relays)."""
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(realtime.channel_prefix() + services.topic(room.pk))
    pubsub.get_message(timeout=1)

    def take(kind: str) -> list[dict]:
        found = []
        while (message := pubsub.get_message(timeout=0.5)) is not None:
            event = json.loads(message["data"])
            if event["type"] == kind:
                found.append(event)
        return found

    yield take
    pubsub.close()


def test_api_room_moves_on_after_its_track_ended_with_nobody_connected(client, room, people):
    first, second, _ = _entries(room)
    ended = _playing_since(room, first, seconds_ago=first.track.duration_s + 240)
    client.force_login(people["lis"])

    state = client.get(f"/api/rooms/{room.slug}").json()["state"]

    assert state["entry_id"] == second.pk
    assert state["status"] == "playing"
    assert state["version"] == ended.version + 2  # advanced (waiting), then started: nobody to wait for
    assert state["position_s"] == 0
    again = client.get(f"/api/rooms/{room.slug}").json()["state"]
    assert (again["entry_id"], again["version"]) == (second.pk, state["version"])  # asking again changes nothing


def test_api_room_still_playing_its_track_is_left_alone(client, room, people):
    first = _entries(room)[0]
    before = _playing_since(room, first, seconds_ago=-60)
    client.force_login(people["lis"])
    state = client.get(f"/api/rooms/{room.slug}").json()["state"]
    assert (state["entry_id"], state["version"], state["status"]) == (first.pk, before.version, "playing")


def test_api_room_stops_after_the_last_track_ended(client, room, people):
    last = _entries(room)[-1]
    _playing_since(room, last, seconds_ago=last.track.duration_s + 1)
    client.force_login(people["hana"])
    state = client.get(f"/api/rooms/{room.slug}").json()["state"]
    assert (state["status"], state["entry_id"]) == ("stopped", None)


def test_sweep_moves_on_every_ended_room_once_and_tells_its_members(room, people, tracks, room_events):
    first, second, _ = _entries(room)
    ended = _playing_since(room, first, seconds_ago=first.track.duration_s + 0.5)
    other = services.room_create(owner=people["out"], name="Still Going")
    services.queue_add(room=other, actor=people["out"], track_id=tracks[0].pk)
    still = _playing_since(other, _entries(other)[0], seconds_ago=-60)
    room_events("room.state")  # what the set-up sent

    tasks.clock_sweep()

    state = PlaybackState.objects.get(room=room)
    assert (state.entry_id, state.status, state.version) == (second.pk, "playing", ended.version + 2)
    assert PlaybackState.objects.get(room=other).version == still.version
    sent = room_events("room.state")
    assert [(e["version"], e["status"], e["entry_id"]) for e in sent] == [
        (ended.version + 1, "waiting", second.pk), (ended.version + 2, "playing", second.pk),
    ]
    assert services.rooms_catch_up() == 0  # a second sweep (or a process's own clock) finds nothing to do
    assert PlaybackState.objects.get(room=room).version == state.version


def test_sweep_starts_a_wait_that_timed_out(room, people):
    second = _entries(room)[1]
    presence.touch(room.pk, [(people["lis"].pk, "tab")])  # online, but never ready
    services.playback_control(room=room, actor=people["hana"], control=services.Control(action="select", entry_id=second.pk))
    waiting = PlaybackState.objects.get(room=room)
    assert waiting.status == "waiting"
    assert services.rooms_catch_up() == 0  # not timed out yet
    PlaybackState.objects.filter(room=room).update(
        waiting_since_ms=presence.now_ms() - int(settings.ROOMS_WAIT_TIMEOUT_S * 1000) - 1
    )

    assert services.rooms_catch_up() == 1

    state = PlaybackState.objects.get(room=room)
    assert (state.status, state.entry_id, state.version) == ("playing", second.pk, waiting.version + 1)


def test_the_beat_runs_the_rooms_clock_every_few_seconds():
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from project.celery import app

    DatabaseScheduler(app=app).setup_schedule()  # what beat does when it starts

    task = PeriodicTask.objects.get(name="rooms-clock")
    assert task.task == "rooms.tasks.clock_sweep"
    assert task.task in app.tasks
    assert task.interval.every == settings.ROOMS_CLOCK_SWEEP_S <= 10
    assert task.expire_seconds  # a sweep the worker could not run in time is dropped, not piled up


async def test_a_socket_joining_an_idle_room_gets_the_state_it_has_now(room, people, tokens, connect):
    from channels.db import database_sync_to_async

    first, second, _ = await database_sync_to_async(_entries)(room)
    ended = await database_sync_to_async(_playing_since)(room, first, seconds_ago=first.track.duration_s + 60)

    client = await connect(room.slug, token=tokens["lis"])
    joined = await client.expect("room.state", reason="join")

    # The track ended long ago: the room has moved on and waits for the one member online.
    assert (joined["entry_id"], joined["status"], joined["version"]) == (second.pk, "waiting", ended.version + 1)


# --- listening now ---------------------------------------------------------------------------


def _listening() -> dict[int, int | None]:
    return {e["user_id"]: (e["room"] or {}).get("id") for e in nowplaying.now_playing_list()}


async def test_a_member_who_closes_the_room_stops_listening_now(room, people, tokens, connect):
    from channels.db import database_sync_to_async

    host = await connect(room.slug, token=tokens["hana"])
    lis = await connect(room.slug, token=tokens["lis"])
    lis_second_tab = await connect(room.slug, token=tokens["lis"])
    for client in (host, lis, lis_second_tab):
        await client.expect("room.state", reason="join")
    await host.send({"type": "control", "action": "play"})
    await host.expect("room.state", status="waiting")
    for client in (host, lis, lis_second_tab):
        await client.send({"type": "ready", "entry_id": _entry_id(await client.expect("room.state", status="waiting"))})
    await host.expect("room.state", status="playing")
    listening = await database_sync_to_async(_listening)()
    assert listening == {people["hana"].pk: room.pk, people["lis"].pk: room.pk}

    await lis.close()
    assert await database_sync_to_async(_listening)() == listening  # still in the room in another tab
    await lis_second_tab.close()

    assert await database_sync_to_async(_listening)() == {people["hana"].pk: room.pk}


def _entry_id(event: dict) -> int:
    return event["entry_id"]


def test_a_member_whose_socket_died_stops_listening_now_once_their_presence_expires(room, people, tracks):
    lis, dj, out = people["lis"], people["dj"], people["out"]
    state = PlaybackState.objects.select_related("entry__track", "room").get(room=room)
    track = _entries(room)[0].track
    presence.touch(room.pk, [(lis.pk, "dead-tab"), (dj.pk, "live-tab")])
    nowplaying.now_playing_set_many(users=[lis, dj], track=track, position_s=0, source="room", room=shown_room(state.room))
    nowplaying.now_playing_set(user=out, track=track)  # not from a room: not the rooms' business
    # lis's server process died: its presence entry is no longer refreshed and runs out.
    presence.sync_redis().zadd(presence._key(room.pk, "presence"), {f"{lis.pk}:dead-tab": presence.now_ms() - 1})

    assert tasks.clock_sweep() is None

    assert _listening() == {dj.pk: room.pk, out.pk: None}


def test_listening_now_is_not_cleared_for_someone_who_moved_to_another_room(room, people, tracks):
    lis = people["lis"]
    other = services.room_create(owner=people["out"], name="Elsewhere")
    presence.touch(other.pk, [(lis.pk, "tab")])
    nowplaying.now_playing_set(user=lis, track=tracks[0], source="room", room=shown_room(other))

    assert scrobbles.listeners_left(room_id=room.pk, user_ids={lis.pk}) == 0
    services.listeners_sweep()

    assert _listening() == {lis.pk: other.pk}


def test_a_control_over_http_applies_to_where_the_room_is_now(client, room, people):
    first, second, _ = _entries(room)
    ended = _playing_since(room, first, seconds_ago=first.track.duration_s + 100)
    client.force_login(people["hana"])

    stale = client.post(f"/api/rooms/{room.slug}/control", {"action": "pause", "version": ended.version},
                        content_type="application/json")
    assert stale.status_code == 409  # seen before the track ended: the room has moved on since
    assert stale.json()["state"]["entry_id"] == second.pk

    paused = client.post(f"/api/rooms/{room.slug}/control", {"action": "pause"}, content_type="application/json").json()
    assert (paused["status"], paused["entry_id"]) == ("paused", second.pk)
    assert paused["position_s"] < 5  # not 400 s into a track that ended long ago


def test_sweeps_running_at_once_move_a_room_on_once(room, people, room_events):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    first, second, _ = _entries(room)
    ended = _playing_since(room, first, seconds_ago=first.track.duration_s + 1)
    room_events("room.state")  # what the set-up sent

    def sweep() -> int:
        try:
            return services.rooms_catch_up()
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        changed = list(pool.map(lambda _: sweep(), range(4)))

    state = PlaybackState.objects.get(room=room)
    assert (state.entry_id, state.version) == (second.pk, ended.version + 2)
    assert sum(changed) == 1
    assert [e["status"] for e in room_events("room.state")] == ["waiting", "playing"]
