"""Rooms tests talk to the real ASGI application over WebsocketCommunicator, with the
real Redis (pub/sub fan-out, presence) and PostgreSQL (transactional: the consumer's
database work runs in other threads)."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator

from catalog.models import Track
from project.accounts.services import token_create
from rooms import events, services
from rooms.models import Room
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def clean_redis(redis_client):
    redis_client.flushdb()
    yield
    redis_client.flushdb()


@pytest.fixture
def people(transactional_db):
    return {name: UserFactory(username=name) for name in ("hana", "dj", "lis", "out")}


@pytest.fixture
def tokens(people):
    return {name: token_create(user=user, name="ws")[1] for name, user in people.items()}


@pytest.fixture
def tracks(transactional_db, library_dir):
    from catalog import services as catalog_services

    job = catalog_services.import_job_create(path=str(library_dir), enqueue=False)
    catalog_services.import_job_run(job_id=job.pk)
    return list(Track.objects.order_by("title"))


@pytest.fixture
def room(people, tracks):
    room = services.room_create(owner=people["hana"], name="Friday Mix", control_policy=Room.ControlPolicy.DJS)
    services.room_join(room=room, user=people["dj"])
    services.member_set_role(room=room, actor=people["hana"], user_id=people["dj"].pk, role="dj")
    services.room_join(room=room, user=people["lis"])
    for track in tracks[:3]:
        services.queue_add(room=room, actor=people["hana"], track_id=track.pk)
    return room


# How long a test waits for an event that must come. Not a latency requirement (tests that
# time something pass their own timeout): the budget of a machine running four test workers
# on two cores, where 3 s once ran out on SQLite for an event that comes in milliseconds alone.
EVENT_TIMEOUT_S = 10.0


class Client:
    """A websocket client of the real ASGI app, with helpers to wait for events."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.ws = communicator
        self.backlog: list[dict] = []
        self.closed = False
        self.close_code = None
        self.members: dict[int, dict] = {}  # the member list as room.js keeps it

    async def send(self, message: dict | str) -> None:
        await self.ws.send_to(text_data=message if isinstance(message, str) else json.dumps(message))

    async def _next(self, timeout: float) -> dict:
        """The next event, waiting at most `timeout` s. Unlike receive_from, a timeout here
        does not cancel the application, so a test may check that nothing arrives."""
        future = self.ws.future
        if future.done() and self.ws.output_queue.empty():
            future.result()  # raises the consumer's exception, if it crashed
            raise AssertionError("the connection is closed")
        message = await asyncio.wait_for(self.ws.output_queue.get(), timeout)
        if message["type"] == "websocket.close":
            self.close_code = message.get("code")
            raise AssertionError(f"the server closed the socket with {self.close_code}")
        return self.fold_members(json.loads(message["text"]))

    def fold_members(self, event: dict) -> dict:
        """Apply a room.members_delta to the list this client holds, as room.js does, and
        hand it on as the room.members it amounts to (the delta itself under "delta")."""
        if event["type"] not in ("room.members", "room.members_delta"):
            return event
        events.apply_members_delta(self.members, event)
        if event["type"] == "room.members":
            return event
        return {"type": "room.members", "members": events.sorted_members(self.members.values()), "delta": event}

    async def receive(self, timeout: float = EVENT_TIMEOUT_S) -> dict:
        if self.backlog:
            return self.backlog.pop(0)
        return await self._next(timeout)

    async def expect(self, kind: str, timeout: float = EVENT_TIMEOUT_S, **fields) -> dict:
        """The next event of `kind` whose fields match (others are kept for later)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        skipped = []
        try:
            for index, event in enumerate(list(self.backlog)):
                if event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                    del self.backlog[index]
                    return event
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AssertionError(f"no {kind} {fields} within {timeout}s; saw {skipped}")
                try:
                    event = await self._next(remaining)
                except TimeoutError:
                    continue
                if event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                    return event
                skipped.append(event)
        finally:
            self.backlog.extend(skipped)

    async def closed_with(self, timeout: float = EVENT_TIMEOUT_S) -> int:
        """Wait for the server to close the socket; returns the close code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                await self._next(deadline - loop.time())
            except AssertionError:
                self.closed = True
                return self.close_code
            except TimeoutError:
                break
        raise AssertionError("the socket stayed open")

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.ws.disconnect()


@pytest.fixture
async def connect():
    from project.asgi import application

    opened: list[Client] = []

    async def open_socket(slug: str, *, token: str | None = None, headers: list | None = None,
                          expect_open: bool = True) -> Client | WebsocketCommunicator:
        extra = list(headers or [])
        if token:
            extra.append((b"authorization", f"Bearer {token}".encode()))
        communicator = WebsocketCommunicator(application, f"/ws/rooms/{slug}/", headers=extra)
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        if not expect_open:
            return communicator
        client = Client(communicator)
        opened.append(client)
        return client

    yield open_socket
    for client in opened:
        await client.close()
