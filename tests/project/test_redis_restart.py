"""Redis killed (-9) and started again under live Daphne processes with real websocket
clients: every room recovers by itself.

The servers run on a private redis-server of the test (never the shared one), without
persistence, so the restart also loses every presence key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
import redis as redis_lib
import websockets

from project import realtime
from project.accounts.services import token_create
from rooms import events, services
from rooms.models import Room
from tests.factories import UserFactory, make_track
from tests.private_redis import PrivateRedis

# Recovery within RECOVERY_TIMEOUT_S of a restart, timed: see pyproject.toml's markers.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.alone]

RECOVERY_TIMEOUT_S = 5


@pytest.fixture
def private_redis(tmp_path, settings):
    server = PrivateRedis(tmp_path / "redis").start()
    settings.REDIS_URL = server.url(3)  # this process too: the services it calls publish there
    yield server
    server.stop()


@pytest.fixture
def people(private_redis):
    users = {name: UserFactory(username=name) for name in ("hana", "dj", "lis")}
    return {name: (user, token_create(user=user, name="ws")[1]) for name, user in users.items()}


def make_room(people, *durations_s: float) -> Room:
    host = people["hana"][0]
    room = services.room_create(owner=host, name="Restart", control_policy=Room.ControlPolicy.EVERYONE)
    for name in ("dj", "lis"):
        services.room_join(room=room, user=people[name][0])
    for index, duration_s in enumerate(durations_s):
        track = make_track(f"Song {index}", "Band", "Album", duration_s=duration_s)
        services.queue_add(room=room, actor=host, track_id=track.pk)
    return room


class Socket:
    """A real websocket client that records every event it receives."""

    def __init__(self, name: str, ws):
        self.name = name
        self.ws = ws
        self.events: list[tuple[float, dict]] = []
        self.arrived = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, server, slug: str, name: str, token: str) -> Socket:
        ws = await websockets.connect(f"{server.ws_url}/ws/rooms/{slug}/", open_timeout=10,
                                      additional_headers={"Authorization": f"Bearer {token}"})
        return cls(name, ws)

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self.events.append((time.monotonic(), json.loads(raw)))
                self.arrived.set()

    def find(self, kind: str, since: float = 0.0, **fields) -> dict | None:
        for at, event in self.events:
            if at >= since and event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                return event
        return None

    async def expect(self, kind: str, since: float = 0.0, timeout: float = RECOVERY_TIMEOUT_S, **fields) -> dict:
        deadline = time.monotonic() + timeout
        while (event := self.find(kind, since, **fields)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.reader.done():
                seen = [(e["type"], e.get("reason"), e.get("entry_id"), e.get("status"), e.get("version"))
                        for at, e in self.events if at >= since]
                raise AssertionError(f"{self.name}: no {kind} {fields} within {timeout} s; saw {seen[-12:]}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)
        return event

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


async def online(socket: Socket, names: set[str], since: float) -> None:
    """Wait until the member list sent after `since` shows exactly `names` online: the first
    full room.members after it (Redis lost the last announced list, so one is sent), with the
    room.members_delta events that follow it applied, as a client does."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S + 5
    while True:
        shown, view = [], None
        for at, event in socket.events:
            if at < since or (view is None and event["type"] != "room.members"):
                continue
            if event["type"] in ("room.members", "room.members_delta"):
                if view is None:
                    view = {}
                events.apply_members_delta(view, event)
                shown.append({m["user"] for m in view.values() if m.get("online")})
        if names in shown:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{socket.name}: never {names} online after the restart; saw {shown}")
        socket.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(socket.arrived.wait(), 0.5)


def subscribers(server: PrivateRedis, topic: str) -> int:
    client = redis_lib.Redis.from_url(server.url(3))
    try:
        return client.pubsub_numsub(realtime.channel_prefix() + topic)[0][1]
    finally:
        client.close()


async def open_sockets(servers, room: Room, people) -> list[Socket]:
    """Two sockets per person, spread over the servers; each has its join events."""
    sockets = []
    for index, (name, (_, token)) in enumerate(sorted(people.items()) * 2):
        sockets.append(await Socket.open(servers[index % len(servers)], room.slug, f"{name}#{index}", token))
    for socket in sockets:
        await socket.expect("room.settings")
    return sockets


def test_every_room_socket_hears_again_after_redis_is_killed_and_restarted(asgi_server_factory, private_redis,
                                                                          people):
    room = make_room(people, 600.0)
    servers = asgi_server_factory(2, env={"REDIS_URL": private_redis.url(3), "ROOMS_TICK_S": "0.5"})

    async def scenario():
        sockets = await open_sockets(servers, room, people)
        host = sockets[0]
        try:
            await online(host, {"hana", "dj", "lis"}, since=0)
            private_redis.kill()
            down_at = time.monotonic()
            # The clocks go on without Redis: every socket still gets its ticks.
            for socket in sockets:
                await socket.expect("room.state", since=down_at, reason="tick")
            await asyncio.sleep(1)
            await asyncio.to_thread(private_redis.start)
            back_at = time.monotonic()

            for socket in sockets:
                resync = await socket.expect("room.state", since=back_at, reason="resync")
                assert resync["version"] == 0
                await socket.expect("room.queue", since=back_at)
            # Presence was lost with Redis: the members are put back.
            await online(host, {"hana", "dj", "lis"}, since=back_at)
            assert subscribers(private_redis, services.topic(room.pk)) == len(servers)

            # A change made after the restart reaches every socket, on both processes.
            changed_at = time.monotonic()
            await host.ws.send(json.dumps({"type": "control", "action": "volume", "volume": 0.3}))
            for socket in sockets:
                changed = await socket.expect("room.state", since=changed_at, reason="change")
                assert (changed["version"], changed["volume"]) == (1, 0.3)
        finally:
            for socket in sockets:
                await socket.close()

    asyncio.run(scenario())


def test_a_room_changed_while_redis_was_away_is_resent_and_its_clock_goes_on(asgi_server_factory, private_redis,
                                                                           people):
    room = make_room(people, 600.0, 2.0, 600.0)
    _, short_entry, last_entry = room.queue.order_by("position").values_list("pk", flat=True)
    extra = make_track("Added while away", "Band", "Album", duration_s=100.0)
    servers = asgi_server_factory(2, env={"REDIS_URL": private_redis.url(3), "ROOMS_TICK_S": "0.5",
                                          "ROOMS_WAIT_TIMEOUT_S": "1"})

    async def scenario():
        sockets = await open_sockets(servers, room, people)
        host = sockets[0]
        try:
            await host.ws.send(json.dumps({"type": "control", "action": "select", "entry_id": short_entry}))
            for socket in sockets:
                await socket.expect("room.state", reason="change", entry_id=short_entry, status="waiting")
            private_redis.kill()
            # While Redis is away the wait times out (asking to start fails without Redis,
            # and is asked again), and a track is added: committed, but its event is lost.
            await asyncio.to_thread(services.queue_add, room=room, actor=people["dj"][0], track_id=extra.pk)
            await asyncio.sleep(1.5)
            await asyncio.to_thread(private_redis.start)
            back_at = time.monotonic()
            for socket in sockets:
                await socket.expect("room.state", since=back_at, reason="resync")
                queue = await socket.expect("room.queue", since=back_at)
                assert queue["entries"][-1]["track"]["title"] == "Added while away"
            # The room's clock goes on: it starts the waiting track (just before or just after
            # the hub hears again: a change or the resync shows it), plays its 2 s to the end
            # and moves on to the next one.
            for socket in sockets:
                await socket.expect("room.state", since=back_at, entry_id=short_entry, status="playing")
                await socket.expect("room.state", since=back_at, timeout=10, reason="change", entry_id=last_entry,
                                    status="playing")
        finally:
            for socket in sockets:
                await socket.close()

    asyncio.run(scenario())


def test_a_socket_that_leaves_while_redis_is_away_is_let_go_without_a_crash(asgi_server_factory, private_redis,
                                                                           people):
    room = make_room(people, 600.0)
    server, = asgi_server_factory(1, env={"REDIS_URL": private_redis.url(3)})

    async def scenario():
        sockets = await open_sockets([server], room, {name: people[name] for name in ("hana", "lis")})
        stays, leaves = sockets[0], sockets[1]
        try:
            private_redis.kill()
            await leaves.close()
            # Either the leave is logged as done without Redis, or the consumer crashed.
            deadline = time.monotonic() + RECOVERY_TIMEOUT_S
            while not any(line in server.log() for line in ("room left without Redis", "Exception inside application")):
                assert time.monotonic() < deadline, "the server never finished with the socket"
                await asyncio.sleep(0.05)
            assert "Exception inside application" not in server.log()
            await asyncio.to_thread(private_redis.start)
            await stays.expect("room.state", since=private_redis.answered_at, reason="resync")
        finally:
            for socket in sockets:
                await socket.close()

    asyncio.run(scenario())
