"""Under Daphne a room's frames are built once and the same bytes written to every socket
(project/wsframes.py). Real clients on real websockets must get them intact, with each of
the three lengths a frame header can carry, in order with the frames a socket is sent the
usual way, also when the socket cannot take a whole frame at once (the rest is queued and
what follows waits behind it); /metrics says the fan-out took the prepared path."""

import asyncio
import json
import re
import socket
import urllib.request

import pytest
import websockets
from asgiref.sync import sync_to_async

from rooms import services
from rooms.models import Membership
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


async def _open(server, slug: str, token: str, *, receive_buffer: int | None = None):
    sock = None
    if receive_buffer is not None:  # a fixed, small receive window (no autotuning)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.connect(("127.0.0.1", server.port))
        sock.setblocking(False)
    return await websockets.connect(f"{server.ws_url}/ws/rooms/{slug}/", sock=sock,
                                    additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10)


async def _until(socket, predicate, timeout: float = 10) -> tuple[str, list[str]]:
    """The first raw frame for which `predicate(event)` holds, and every frame before it."""
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            raw = await socket.recv()
            if predicate(json.loads(raw)):
                return raw, seen
            seen.append(raw)


def _prepared_frames(server) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = re.search(r'^chorus_realtime_frames_total\{path="prepared"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def big_room(room):
    """The room with enough members with long names that its list needs a 64-bit length
    (over 64 KiB)."""
    extra = [UserFactory(username=f"member-{index:03d}-" + "x" * 100) for index in range(600)]
    Membership.objects.bulk_create([Membership(room=room, user=user) for user in extra])
    return room


def test_one_prepared_frame_reaches_every_socket_intact(asgi_server_factory, big_room, tokens):
    room = big_room
    (server,) = asgi_server_factory(1, env={"ROOMS_TICK_S": "0.5"})

    async def scenario():
        host = await _open(server, room.slug, tokens["hana"])
        listener = await _open(server, room.slug, tokens["lis"])
        try:
            kinds = []
            sizes = {}
            while len(kinds) < 4:  # the join's four frames, prepared once for the batch
                raw = await listener.recv()
                event = json.loads(raw)
                kinds.append(event["type"])
                sizes[event["type"]] = len(raw.encode())
            assert kinds == ["room.state", "room.queue", "room.members", "room.settings"]
            assert sizes["room.members"] > 0xFFFF  # 127: a 64-bit length
            assert 125 < sizes["room.state"] <= 0xFFFF  # 126: a 16-bit length
            assert sizes["room.settings"] <= 125  # the length in the header's second byte

            # A pong goes the usual way (the consumer's send), the change the prepared way:
            # the listener gets both, each whole, the pong first as it was written first.
            await listener.send(json.dumps({"type": "time.ping", "t0": 1}))
            await asyncio.sleep(0.2)
            await host.send(json.dumps({"type": "control", "action": "volume", "volume": 0.25, "request_id": "v"}))
            change, before = await _until(listener, lambda e: e["type"] == "room.state" and e["reason"] == "change")
            assert json.loads(change)["volume"] == 0.25
            assert any(json.loads(raw)["type"] == "time.pong" for raw in before)
            host_change, _ = await _until(host, lambda e: e["type"] == "room.state" and e["reason"] == "change")
            assert host_change == change  # the same bytes for both sockets
            tick, _ = await _until(listener, lambda e: e["type"] == "room.state" and e["reason"] == "tick")
            assert json.loads(tick)["volume"] == 0.25
        finally:
            await host.close()
            await listener.close()

    assert _prepared_frames(server) == 0
    asyncio.run(scenario())
    # The change to both sockets, ticks, and member deltas went the prepared way.
    assert _prepared_frames(server) >= 3


def test_a_socket_that_reads_slowly_gets_every_frame_whole_and_in_order(asgi_server_factory, big_room, tokens,
                                                                       people):
    """Each role change sends the whole list (80 KB here) to everyone: a hundred of them to a
    socket with a small receive window that reads nothing meanwhile are more than the kernel
    takes (about 4 MB on loopback), so a send stops part-way and the rest, and every frame
    after it, wait in Twisted's buffer. The client must still get them whole, in order."""
    room = big_room
    (server,) = asgi_server_factory(1, env={"ROOMS_TICK_S": "60"})
    roles = ["listener" if index % 2 else "dj" for index in range(100)]

    async def scenario():
        listener = await _open(server, room.slug, tokens["lis"], receive_buffer=8192)
        try:
            await _until(listener, lambda e: e["type"] == "room.settings")  # joined
            # and the room's first announcement (a whole list): from now on only the role
            # changes send whole lists
            await _until(listener, lambda e: e["type"] == "room.members")
            listener.transport.pause_reading()  # read nothing while the lists pile up
            for role in roles:
                await sync_to_async(services.member_set_role)(room=room, actor=people["hana"],
                                                              user_id=people["dj"].pk, role=role)
            await asyncio.sleep(1)
            listener.transport.resume_reading()
            seen = []
            while len(seen) < len(roles):
                raw, _ = await _until(listener, lambda e: e["type"] == "room.members", timeout=20)
                dj = next(m for m in json.loads(raw)["members"] if m["user"] == "dj")
                seen.append(dj.get("role", "listener"))
            return seen
        finally:
            await listener.close()

    assert asyncio.run(scenario()) == roles
    assert _prepared_frames(server) >= len(roles)
