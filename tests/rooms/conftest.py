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
from rooms import services
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


class Client:
    """A websocket client of the real ASGI app, with helpers to wait for events."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.ws = communicator
        self.backlog: list[dict] = []

    async def send(self, message: dict | str) -> None:
        await self.ws.send_to(text_data=message if isinstance(message, str) else json.dumps(message))

    async def receive(self, timeout: float = 3) -> dict:
        if self.backlog:
            return self.backlog.pop(0)
        return json.loads(await self.ws.receive_from(timeout=timeout))

    async def expect(self, kind: str, timeout: float = 3, **fields) -> dict:
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
                event = json.loads(await self.ws.receive_from(timeout=remaining))
                if event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                    return event
                skipped.append(event)
        finally:
            self.backlog.extend(skipped)

    async def close(self) -> None:
        await self.ws.disconnect()


@pytest.fixture
def connect():
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
