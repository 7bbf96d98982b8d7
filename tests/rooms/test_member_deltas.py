"""A join sends the whole member list to the joining socket only; the others hear of it as a
small room.members_delta (a reconnect storm of N members costs N lists, not N^2)."""

import asyncio
import contextlib
import time

import pytest
from asgiref.sync import sync_to_async

from rooms import events, presence, services

pytestmark = pytest.mark.django_db(transaction=True)


def online(members: dict) -> set[str]:
    return {m["user"] for m in members["members"] if m.get("online")}


async def test_a_join_reaches_the_others_as_a_delta_of_the_joiner_alone(room, tokens, connect):
    host = await connect(room.slug, token=tokens["hana"])
    full = await host.expect("room.members")
    assert "delta" not in full
    assert {m["user"] for m in full["members"]} == {"hana", "dj", "lis"}
    # The room's first announcement is a whole list (nothing was announced before it).
    assert "delta" not in await host.expect("room.members", timeout=5)
    listener = await connect(room.slug, token=tokens["lis"])
    joined = await listener.expect("room.members")
    assert "delta" not in joined
    assert online(joined) == {"hana", "lis"}
    seen = await host.expect("room.members", timeout=5)
    while "lis" not in online(seen):
        seen = await host.expect("room.members", timeout=5)
    # lis only came online: the delta names lis by id, the entry is the one from the list
    assert seen["delta"]["online"] == [next(m["user_id"] for m in seen["members"] if m["user"] == "lis")]
    assert (seen["delta"]["changed"], seen["delta"]["removed"], seen["delta"]["offline"]) == ([], [], [])
    assert [m["user"] for m in seen["members"]] == ["hana", "lis", "dj"]  # online first, the host first

    await listener.close()
    gone = await host.expect("room.members", timeout=5)
    while "lis" in online(gone):
        gone = await host.expect("room.members", timeout=5)
    assert gone["delta"]["offline"] == [next(m["user_id"] for m in gone["members"] if m["user"] == "lis")]
    assert gone["delta"]["changed"] == []


async def test_a_removed_member_leaves_the_list_of_the_others(room, tokens, connect, people):
    host = await connect(room.slug, token=tokens["hana"])
    await host.expect("room.members")
    await sync_to_async(services.member_remove)(room=room, actor=people["hana"], user_id=people["lis"].pk)
    members = await host.expect("room.members", timeout=5)
    while "lis" in {m["user"] for m in members["members"]}:
        members = await host.expect("room.members", timeout=5)
    assert {m["user"] for m in members["members"]} == {"hana", "dj"}


async def test_a_join_in_a_busy_room_reads_the_room_from_memory(room, tokens, connect, monkeypatch):
    host = await connect(room.slug, token=tokens["hana"])
    await host.expect("room.settings")
    reads = []

    def counted(name):
        real = getattr(events, name)

        def read(*args, **kwargs):
            reads.append(name)
            return real(*args, **kwargs)
        return read

    for name in ("members_payload", "queue_event", "room_event"):
        monkeypatch.setattr(events, name, counted(name))
    listener = await connect(room.slug, token=tokens["lis"])
    await listener.expect("room.state", reason="join", version=0)
    assert len((await listener.expect("room.queue"))["entries"]) == 3
    assert online(await listener.expect("room.members")) == {"hana", "lis"}
    await listener.expect("room.settings", control_policy="djs")
    assert [r for r in reads if r != "members_payload"] == []  # the room's periodic check may read members


async def test_a_join_after_a_change_gets_the_room_as_changed(room, tokens, connect, people, tracks):
    host = await connect(room.slug, token=tokens["hana"])
    await host.expect("room.settings")
    await host.send({"type": "control", "action": "volume", "volume": 0.3})
    changed = await host.expect("room.state", reason="change")
    await sync_to_async(services.queue_add)(room=room, actor=people["hana"], track_id=tracks[0].pk)
    await host.expect("room.queue")
    await sync_to_async(services.room_update)(room=room, actor=people["hana"], control_policy="everyone")
    await host.expect("room.settings", control_policy="everyone")
    listener = await connect(room.slug, token=tokens["lis"])
    state = await listener.expect("room.state", reason="join")
    assert (state["version"], state["volume"]) == (changed["version"], 0.3)
    assert len((await listener.expect("room.queue"))["entries"]) == 4
    await listener.expect("room.settings", control_policy="everyone")


async def test_a_delta_published_while_a_socket_joins_is_not_undone_by_its_list(room, tokens, connect, people,
                                                                                monkeypatch):
    host = await connect(room.slug, token=tokens["hana"])
    await host.expect("room.members")
    await host.expect("room.members", timeout=5)  # the room's first announcement
    real_touch = presence.touch
    raced = []

    def touch(room_id, connections):
        real_touch(room_id, connections)
        if not raced and any(user_id == people["lis"].pk for user_id, _ in connections):
            raced.append(True)
            # While lis's join is under way, dj comes online on another server process and
            # that is announced; the delta reaches lis's socket before its join frames.
            real_touch(room_id, [(people["dj"].pk, "another-process")])
            services.announce_members(room=room)
            time.sleep(0.5)

    monkeypatch.setattr(presence, "touch", touch)
    listener = await connect(room.slug, token=tokens["lis"])
    await listener.expect("room.settings")
    assert raced
    seen = await host.expect("room.members", timeout=5)
    while "lis" not in online(seen):  # the announcement after lis's join has gone out
        seen = await host.expect("room.members", timeout=5)
    with contextlib.suppress(AssertionError):
        while True:  # whatever else reached lis meanwhile, folded into its list
            await listener.expect("room.members", timeout=1)
    assert online({"members": list(listener.members.values())}) == {"hana", "dj", "lis"}


async def test_members_who_only_come_online_are_announced_by_id(room, tokens, connect):
    host = await connect(room.slug, token=tokens["hana"])
    await host.expect("room.members")
    await host.expect("room.members", timeout=5)
    listener = await connect(room.slug, token=tokens["lis"])
    await listener.expect("room.settings")
    seen = await host.expect("room.members", timeout=5)
    while "lis" not in online(seen):
        seen = await host.expect("room.members", timeout=5)
    lis = next(m for m in seen["members"] if m["user"] == "lis")
    assert seen["delta"]["changed"] == []
    assert seen["delta"]["online"] == [lis["user_id"]]
    # the rest of the entry kept from the join's list (a listener: the role is left out)
    assert lis == {"user": "lis", "user_id": lis["user_id"], "online": True}


async def test_member_entries_leave_out_the_fields_at_their_default(room, tokens, connect, people, settings):
    settings.ROOMS_TICK_S = 0.3
    host = await connect(room.slug, token=tokens["hana"])
    listed = {m["user"]: m for m in (await host.expect("room.members"))["members"]}
    assert listed == {
        "hana": {"user": "hana", "user_id": people["hana"].pk, "role": "host", "online": True},
        "dj": {"user": "dj", "user_id": people["dj"].pk, "role": "dj"},  # offline, no figures
        "lis": {"user": "lis", "user_id": people["lis"].pk},  # an offline listener: its name and id alone
    }
    await host.send({"type": "report", "offset_ms": 0, "rtt_ms": 8, "drift_ms": 0})
    deadline = asyncio.get_running_loop().time() + 3
    hana = listed["hana"]
    while "drift_ms" not in hana and asyncio.get_running_loop().time() < deadline:
        members = await host.expect("room.members")
        hana = next(m for m in members["members"] if m["user"] == "hana")
    # 0 ms is a figure, not the default (no figure): it is sent
    assert hana == {"user": "hana", "user_id": people["hana"].pk, "role": "host", "online": True,
                    "offset_ms": 0, "rtt_ms": 8, "drift_ms": 0}
