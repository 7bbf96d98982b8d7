"""Fixtures shared by the live-feed tests: a channel, an open session, message builders, a
watcher's websocket."""

from __future__ import annotations

import itertools

import pytest
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from livefeed import messages as kinds
from livefeed.messages import LiveUser, Message
from project.accounts.services import token_create
from tests.rooms.conftest import Client

_ids = itertools.count(1)
BASE_MS = 1_764_590_400_000  # 2025-12-01 12:00 UTC, on a minute


@pytest.fixture
def channel(alice):
    from livefeed.models import LiveChannel

    return LiveChannel.objects.create(platform="douyin", ref="123456789", added_by=alice, title="A room")


@pytest.fixture
def session(channel):
    from livefeed.models import LiveSession

    session = LiveSession.objects.create(channel=channel, started_at=timezone.now(), title_at_start="A room")
    channel.current_session = session
    channel.save(update_fields=["current_session"])
    return session


def user(n: int, name: str | None = None) -> LiveUser:
    return LiveUser(id=f"u{n}", name=name or f"viewer {n}", display_id=f"d{n}", level=n % 50)


def chat(text: str, *, by: int = 1, at_ms: int = BASE_MS, msg_id: str | None = None, kind: str = kinds.CHAT) -> Message:
    return Message(type=kind, platform_msg_id=msg_id or f"m{next(_ids)}", ts_ms=at_ms, user=user(by), content=text,
                   received_ms=at_ms + 150)


def gift(*, combo: str | None, count: int, by: int = 2, unit_value: int = 1, at_ms: int = BASE_MS,
         msg_id: str | None = None, end: bool = False, name: str = "Rose") -> Message:
    extra = {"gift_id": 463, "gift_name": name, "count": count, "unit_value": unit_value,
             "total_value": unit_value * count, "value_unit": kinds.DOUYIN_DIAMOND}
    if combo is not None:
        extra["combo_id"] = combo
    if end:
        extra["combo_end"] = True
    return Message(type=kinds.GIFT, platform_msg_id=msg_id or f"g{next(_ids)}", ts_ms=at_ms, user=user(by),
                   content=f"sent {name} x{count}", extra=extra, received_ms=at_ms + 200)


def like(count: int, *, by: int = 3, at_ms: int = BASE_MS) -> Message:
    return Message(type=kinds.LIKE, platform_msg_id=f"l{next(_ids)}", ts_ms=at_ms, user=user(by),
                   extra={"count": count, "total": 1000 + count}, received_ms=at_ms + 100)


def viewers(current: int, *, at_ms: int = BASE_MS) -> Message:
    return Message(type=kinds.VIEWERS, platform_msg_id=f"v{next(_ids)}", ts_ms=at_ms,
                   extra={"current": current, "total": current * 3}, received_ms=at_ms + 100)


# Watching a channel over the real ASGI app (test_consumer.py, test_fetcher.py).

@pytest.fixture
def alice_token(alice) -> str:
    return token_create(user=alice, name="ws")[1]


@pytest.fixture
async def watch(alice_token):
    from project.asgi import application

    opened: list[Client] = []
    raw = alice_token

    async def open_socket(channel_id: int, *, token: str | None = raw) -> Client:
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        communicator = WebsocketCommunicator(application, f"/ws/live/{channel_id}/", headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        client = Client(communicator)
        opened.append(client)
        return client

    yield open_socket
    for client in opened:
        await client.close()
