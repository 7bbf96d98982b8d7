"""Every control over the websocket, with the rules of each control policy."""

import pytest
from asgiref.sync import sync_to_async

from rooms import presence, services
from rooms.models import PlaybackState, QueueEntry, Room

pytestmark = pytest.mark.django_db(transaction=True)


def entries(room):
    return list(QueueEntry.objects.filter(room=room).order_by("position").values_list("id", flat=True))


async def start_playing(client, room, people):
    """Play and report ready so the room leaves `waiting` at once."""
    await client.send({"type": "control", "action": "play"})
    state = await client.expect("room.state", reason="change", status="waiting")
    await client.send({"type": "ready", "entry_id": state["entry_id"]})
    return await client.expect("room.state", reason="change", status="playing")


async def test_play_waits_for_members_then_starts_on_a_scheduled_time(room, tokens, connect, people):
    host = await connect(room.slug, token=tokens["hana"])
    listener = await connect(room.slug, token=tokens["lis"])
    await host.send({"type": "control", "action": "play"})
    waiting = await host.expect("room.state", reason="change", status="waiting")
    first = (await sync_to_async(entries)(room))[0]
    assert waiting["entry_id"] == first
    await host.send({"type": "ready", "entry_id": first})
    with pytest.raises(AssertionError):  # the listener has not loaded the track yet
        await host.expect("room.state", reason="change", status="playing", timeout=0.5)
    await listener.send({"type": "ready", "entry_id": first})
    playing = await listener.expect("room.state", reason="change", status="playing")
    lead = playing["anchor_ms"] - playing["server_ms"]
    assert 300 <= lead <= 3100  # scheduled ahead so that both start together
    assert playing["position_s"] == 0


async def test_start_is_scheduled_at_twice_the_slowest_round_trip(room, tokens, connect):
    host = await connect(room.slug, token=tokens["hana"])
    await host.send({"type": "report", "offset_ms": 3, "rtt_ms": 900, "drift_ms": 0})
    state = await start_playing(host, room, None)
    assert 1700 <= state["anchor_ms"] - state["server_ms"] <= 1850


async def test_pause_keeps_the_position_and_play_resumes_there(room, tokens, connect, people):
    host = await connect(room.slug, token=tokens["hana"])
    playing = await start_playing(host, room, people)
    await sync_to_async(PlaybackState.objects.filter(room=room).update)(anchor_ms=presence.now_ms() - 1500)
    await host.send({"type": "control", "action": "pause", "version": playing["version"]})
    paused = await host.expect("room.state", reason="change", status="paused")
    assert 1.3 < paused["position_s"] < 2.5
    await host.send({"type": "control", "action": "play"})
    resumed = await host.expect("room.state", reason="change", status="playing")
    assert resumed["position_s"] == paused["position_s"]
    assert resumed["anchor_ms"] > resumed["server_ms"] - 50


async def test_stop_seek_volume(room, tokens, connect, people):
    host = await connect(room.slug, token=tokens["hana"])
    await start_playing(host, room, people)
    await host.send({"type": "control", "action": "seek", "position_s": 1.5})
    seeked = await host.expect("room.state", reason="change", position_s=1.5)
    assert seeked["status"] == "playing"
    await host.send({"type": "control", "action": "volume", "volume": 0.25})
    assert (await host.expect("room.state", reason="change", volume=0.25))["status"] == "playing"
    await host.send({"type": "control", "action": "stop"})
    stopped = await host.expect("room.state", reason="change", status="stopped")
    assert stopped["position_s"] == 0


async def test_next_previous_and_select(room, tokens, connect, people):
    queue = await sync_to_async(entries)(room)
    host = await connect(room.slug, token=tokens["hana"])
    await start_playing(host, room, people)
    await host.send({"type": "control", "action": "next"})
    assert (await host.expect("room.state", reason="change", status="waiting"))["entry_id"] == queue[1]
    await host.send({"type": "control", "action": "previous"})
    assert (await host.expect("room.state", reason="change", status="waiting"))["entry_id"] == queue[0]
    await host.send({"type": "control", "action": "select", "entry_id": queue[2]})
    assert (await host.expect("room.state", reason="change"))["entry_id"] == queue[2]
    await host.send({"type": "control", "action": "next"})  # past the end with repeat off: stop
    end = await host.expect("room.state", reason="change", status="stopped")
    assert end["entry_id"] is None


async def test_repeat_all_wraps_around(room, tokens, connect, people):
    queue = await sync_to_async(entries)(room)
    await sync_to_async(Room.objects.filter(pk=room.pk).update)(repeat="all")
    host = await connect(room.slug, token=tokens["hana"])
    await host.send({"type": "control", "action": "select", "entry_id": queue[2]})
    await host.expect("room.state", reason="change", entry_id=queue[2])
    await host.send({"type": "control", "action": "next"})
    assert (await host.expect("room.state", reason="change"))["entry_id"] == queue[0]


@pytest.mark.parametrize(
    ("policy", "who", "allowed"),
    [
        ("host_only", "hana", True), ("host_only", "dj", False), ("host_only", "lis", False),
        ("djs", "dj", True), ("djs", "lis", False),
        ("everyone", "lis", True),
    ],
)
async def test_control_policies(room, tokens, connect, policy, who, allowed):
    await sync_to_async(Room.objects.filter(pk=room.pk).update)(control_policy=policy)
    client = await connect(room.slug, token=tokens[who])
    await client.send({"type": "control", "action": "volume", "volume": 0.5, "request_id": "v"})
    if allowed:
        assert (await client.expect("ack", request_id="v"))["version"] == 1
    else:
        error = await client.expect("error", request_id="v")
        assert error["code"] == "forbidden"
        assert await sync_to_async(lambda: PlaybackState.objects.get(room=room).version)() == 0


async def test_stale_version_is_a_conflict_with_the_current_state(room, tokens, connect):
    host = await connect(room.slug, token=tokens["hana"])
    await host.send({"type": "control", "action": "volume", "volume": 0.4, "version": 0})
    await host.expect("room.state", reason="change", version=1)
    await host.send({"type": "control", "action": "volume", "volume": 0.9, "version": 0, "request_id": "late"})
    error = await host.expect("error", request_id="late")
    assert error["code"] == "conflict"
    assert error["state"]["version"] == 1
    assert error["state"]["volume"] == 0.4


def test_concurrent_controls_never_lose_an_update(room, people):
    """Eight controllers change the room at once: every accepted change has its own version."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def change(index):
        try:
            state = services.playback_control(
                room=room, actor=people["hana"], control=services.Control(action="volume", volume=index / 10)
            )
            return state.version
        except services.RoomError as exc:
            return exc.code  # only "conflict" is acceptable, checked below
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(change, range(8)))
    assert all(isinstance(r, int) or r == "conflict" for r in results)
    whose = {version: index for index, version in enumerate(results) if isinstance(version, int)}
    versions = sorted(r for r in results if isinstance(r, int))
    assert versions, "every change was refused as a conflict: nobody could change the room"
    assert versions == list(range(1, len(versions) + 1))  # exactly one change per version, none skipped
    state = PlaybackState.objects.get(room=room)
    assert state.version == versions[-1]
    assert state.volume == whose[versions[-1]] / 10  # the room has the last accepted change


def test_two_nexts_at_the_same_version_advance_once(room, people):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def press_next(_):
        try:
            return services.playback_control(
                room=room, actor=people["hana"], control=services.Control(action="next", version=0)
            ).entry_id
        except services.RoomError as exc:
            return exc.code
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(press_next, range(2)))
    assert sorted(map(str, results)).count("conflict") == 1
    state = PlaybackState.objects.get(room=room)
    assert state.entry_id == entries(room)[0]  # advanced once, not twice
    assert (state.version, state.status) == (2, "playing")  # then started: nobody online to wait for


def test_auto_advance_happens_once_whatever_the_number_of_processes(room, people):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    first, second = entries(room)[:2]
    duration = QueueEntry.objects.get(pk=first).track.duration_s
    PlaybackState.objects.filter(room=room).update(
        entry_id=first, status="playing", position_s=0, anchor_ms=presence.now_ms() - int(duration * 1000) - 50, version=7
    )

    def check(_):
        try:
            return services.advance_if_ended(room_id=room.pk, version=7)
        finally:
            connection.close()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(check, range(6)))
    assert sum(1 for r in results if r is not None) == 1
    state = PlaybackState.objects.get(room=room)
    # one advance (v8, waiting for members) and, with nobody online to wait for, one start (v9)
    assert (state.version, state.entry_id, state.status) == (9, second, "playing")


async def test_the_room_advances_by_itself_at_the_end_of_a_track(room, tokens, connect, people, settings):
    queue = await sync_to_async(entries)(room)
    host = await connect(room.slug, token=tokens["hana"])
    await start_playing(host, room, people)
    # Jump to just before the end; the room's clock takes it from there.
    state = await sync_to_async(PlaybackState.objects.select_related("entry__track").get)(room=room)
    await host.send({"type": "control", "action": "seek", "position_s": state.entry.track.duration_s - 0.3})
    await host.expect("room.state", reason="change")
    advanced = await host.expect("room.state", reason="change", status="waiting", timeout=5)
    assert advanced["entry_id"] == queue[1]
    with pytest.raises(AssertionError):  # and only once
        await host.expect("room.state", reason="change", timeout=1.0)


async def test_waiting_ends_after_the_timeout_even_if_someone_never_loads(room, tokens, connect, settings):
    settings.ROOMS_WAIT_TIMEOUT_S = 0.6
    host = await connect(room.slug, token=tokens["hana"])
    await connect(room.slug, token=tokens["lis"])  # never reports ready
    await host.send({"type": "control", "action": "play"})
    state = await host.expect("room.state", reason="change", status="waiting")
    await host.send({"type": "ready", "entry_id": state["entry_id"]})
    playing = await host.expect("room.state", reason="change", status="playing", timeout=3)
    assert playing["version"] == state["version"] + 1


async def playing_together(room, tokens, connect):
    """Host and listener connected, both ready, the room playing."""
    host = await connect(room.slug, token=tokens["hana"])
    listener = await connect(room.slug, token=tokens["lis"])
    await host.send({"type": "control", "action": "play"})
    state = await host.expect("room.state", reason="change", status="waiting")
    for client in (host, listener):
        await client.send({"type": "ready", "entry_id": state["entry_id"]})
    await host.expect("room.state", reason="change", status="playing")
    return host, listener


async def test_a_buffering_member_holds_the_room_until_ready(room, tokens, connect, people):
    host, listener = await playing_together(room, tokens, connect)
    await listener.send({"type": "buffering"})
    held = await host.expect("room.state", reason="change", status="waiting")
    for client in (host, listener):
        await client.send({"type": "ready", "entry_id": held["entry_id"]})
    resumed = await host.expect("room.state", reason="change", status="playing")
    assert resumed["position_s"] == held["position_s"]


async def test_a_member_that_keeps_stalling_is_not_waited_for(room, tokens, connect, people, settings):
    settings.ROOMS_MAX_STALLS_PER_MINUTE = 1
    host, listener = await playing_together(room, tokens, connect)
    await listener.send({"type": "buffering"})
    held = await host.expect("room.state", reason="change", status="waiting")
    await listener.send({"type": "buffering"})  # second stall in a minute: skipped from now on
    await host.send({"type": "ready", "entry_id": held["entry_id"]})
    assert (await host.expect("room.state", reason="change", status="playing"))["version"] == held["version"] + 1
