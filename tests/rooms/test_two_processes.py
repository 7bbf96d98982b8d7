"""Two Daphne processes sharing Redis and PostgreSQL, with clients on real websockets."""

import asyncio
import contextlib
import json

import pytest
import websockets

from rooms import events
from rooms.models import PlaybackState

pytestmark = pytest.mark.django_db(transaction=True)


async def open_socket(server, slug: str, token: str):
    return await websockets.connect(
        f"{server.ws_url}/ws/rooms/{slug}/", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10
    )


_member_lists: dict[int, dict[int, dict]] = {}  # by id(socket): the list as room.js keeps it


def folded(socket, event: dict) -> dict:
    """A room.members_delta applied to the socket's member list, as the room.members it amounts to."""
    if event["type"] not in ("room.members", "room.members_delta"):
        return event
    members = _member_lists.setdefault(id(socket), {})
    events.apply_members_delta(members, event)
    return {"type": "room.members", "members": events.sorted_members(members.values())}


async def next_event(socket, kind: str, timeout: float = 5, **fields) -> dict:
    async def wait():
        while True:
            event = folded(socket, json.loads(await socket.recv()))
            if event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                return event

    return await asyncio.wait_for(wait(), timeout)


def test_members_on_different_processes_share_state_and_presence(asgi_server_factory, room, tokens):
    first, second = asgi_server_factory(2, env={"ROOMS_TICK_S": "0.5"})

    async def scenario():
        host = await open_socket(first, room.slug, tokens["hana"])
        listener = await open_socket(second, room.slug, tokens["lis"])
        try:
            await next_event(listener, "room.state", reason="join")
            online = set()
            while online != {"hana", "lis"}:
                members = await next_event(host, "room.members")
                online = {m["user"] for m in members["members"] if m.get("online")}
            await host.send(json.dumps({"type": "control", "action": "volume", "volume": 0.3}))
            changed = await next_event(listener, "room.state", reason="change")
            assert (changed["version"], changed["volume"]) == (1, 0.3)
            await listener.close()
            while "lis" in online:
                members = await next_event(host, "room.members")
                online = {m["user"] for m in members["members"] if m.get("online")}
        finally:
            await host.close()
            await listener.close()

    asyncio.run(scenario())


def test_a_track_end_advances_once_with_two_processes_watching(asgi_server_factory, room, tokens, people):
    first, second = asgi_server_factory(2, env={"ROOMS_TICK_S": "0.5"})

    async def scenario():
        sockets = [await open_socket(first, room.slug, tokens["hana"]), await open_socket(second, room.slug, tokens["lis"])]
        try:
            await sockets[0].send(json.dumps({"type": "control", "action": "play"}))
            waiting = await next_event(sockets[0], "room.state", reason="change", status="waiting")
            for socket in sockets:
                await socket.send(json.dumps({"type": "ready", "entry_id": waiting["entry_id"]}))
            playing = await next_event(sockets[1], "room.state", reason="change", status="playing")
            # The first track is a few seconds long: both processes see it end.
            advanced = await next_event(sockets[1], "room.state", timeout=10, reason="change", version=playing["version"] + 1)
            assert advanced["entry_id"] != playing["entry_id"]
            assert advanced["status"] == "waiting"
            # Members are online but not ready for the next track, so nothing else may change:
            # a second advance by the other process would show up as a later version.
            later = []
            with contextlib.suppress(TimeoutError):
                while True:
                    later.append(await next_event(sockets[1], "room.state", timeout=2, reason="change"))
            assert later == []
            return advanced["version"]
        finally:
            for socket in sockets:
                await socket.close()

    version = asyncio.run(scenario())
    assert PlaybackState.objects.get(room=room).version == version
