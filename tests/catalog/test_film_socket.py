"""Websocket /ws/catalog/titles/<id>/: a danmaku posted on a title reaches its watchers
(in-process against the real ASGI app and Redis, and across two Daphne processes on real
sockets within a second), auth and unknown titles close the socket, and bad frames are an
`error` naming what was wrong while the socket stays open."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from catalog import film_services as services
from catalog.models import Danmaku
from project.accounts.services import token_create
from tests.factories import TitleFactory
from tests.rooms.conftest import Client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_redis")]


@pytest.fixture
def title():
    return TitleFactory(title="英雄", runtime_min=99)


@pytest.fixture
def alice_token(alice) -> str:
    return token_create(user=alice, name="ws")[1]


@pytest.fixture
async def watch(alice_token):
    from project.asgi import application

    opened: list[Client] = []

    async def open_socket(title_id: int, *, token: str | None = alice_token) -> Client:
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        communicator = WebsocketCommunicator(application, f"/ws/catalog/titles/{title_id}/", headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        client = Client(communicator)
        opened.append(client)
        return client

    yield open_socket
    for client in opened:
        await client.close()


async def test_a_posted_danmaku_reaches_the_titles_watchers_only(watch, title, bob):
    other = await sync_to_async(TitleFactory)(title="Other")
    watcher = await watch(title.pk)
    elsewhere = await watch(other.pk)
    assert (await watcher.expect("catalog.hello"))["title_id"] == title.pk
    await elsewhere.expect("catalog.hello")
    row = await sync_to_async(services.danmaku_post)(user=bob, title=title, text="前方高能", offset_ms=1500,
                                                     color="#00ff00", mode="bottom")
    event = await watcher.expect("catalog.danmaku")
    assert event["danmaku"] == {**services.danmaku_json(row), "created_at": event["danmaku"]["created_at"]}
    assert (event["danmaku"]["text"], event["danmaku"]["user"], event["danmaku"]["mode"]) == ("前方高能", "bob", "bottom")
    await elsewhere.send({"type": "ping"})
    assert (await elsewhere.receive())["type"] == "pong"  # and no catalog.danmaku before it


async def test_a_watcher_posts_over_the_socket(watch, title):
    watcher = await watch(title.pk)
    await watcher.expect("catalog.hello")
    await watcher.send({"type": "danmaku.post", "text": "从这里发", "offset_ms": 2000, "color": "#ffcc00"})
    posted = await watcher.expect("danmaku.posted")
    assert posted["danmaku"]["text"] == "从这里发"
    pushed = await watcher.expect("catalog.danmaku")
    assert pushed["danmaku"]["id"] == posted["danmaku"]["id"]
    assert await Danmaku.objects.acount() == 1


async def test_no_login_is_4401_and_an_unknown_title_4404(watch, title):
    anonymous = await watch(title.pk, token=None)
    assert await anonymous.closed_with() == 4401
    unknown = await watch(999999)
    assert await unknown.closed_with() == 4404
    huge = await watch(10**20)
    assert await huge.closed_with() == 4404


@pytest.mark.parametrize(("frame", "field"), [
    ("not json", None), ('{"type": "control"}', "type"), ('{"a": NaN}', "a"), ("[" * 20000 + "]" * 20000, None),
    ('{"type": "danmaku.post", "text": "", "offset_ms": 0}', "text"),
    ('{"type": "danmaku.post", "text": "' + "长" * 101 + '", "offset_ms": 0}', "text"),
    ('{"type": "danmaku.post", "text": "hi", "offset_ms": -5}', "offset_ms"),
    ('{"type": "danmaku.post", "text": "hi", "offset_ms": 99999999}', "offset_ms"),
    ('{"type": "danmaku.post", "text": "hi", "offset_ms": 1e400}', "offset_ms"),
    ('{"type": "danmaku.post", "text": "hi", "offset_ms": 0, "mode": "spin"}', "mode"),
    ('{"type": "danmaku.post", "text": "hi", "offset_ms": 0, "episode_id": "x"}', "episode_id"),
    ('{"type": "danmaku.post", "text": "x", "offset_ms": 0, "pad": "' + "x" * 5000 + '"}', None),
])
async def test_bad_frames_are_an_error_naming_the_field_and_the_socket_stays(watch, title, frame, field):
    watcher = await watch(title.pk)
    await watcher.expect("catalog.hello")
    await watcher.send(frame)
    error = await watcher.expect("error")
    assert error["message"]
    assert error.get("field") == field
    await watcher.send({"type": "ping"})
    await watcher.expect("pong")
    assert await Danmaku.objects.acount() == 0


async def test_the_sixth_post_in_ten_seconds_over_the_socket_is_refused(watch, title):
    watcher = await watch(title.pk)
    await watcher.expect("catalog.hello")
    for n in range(5):
        await watcher.send({"type": "danmaku.post", "text": f"第{n}", "offset_ms": n})
        await watcher.expect("danmaku.posted")
    await watcher.send({"type": "danmaku.post", "text": "第六", "offset_ms": 6})
    error = await watcher.expect("error")
    assert error["code"] == "rate_limited"
    assert "At most 5 danmaku in 10 s" in error["message"]


def test_a_danmaku_posted_through_one_process_reaches_a_watcher_of_another_within_a_second(
        asgi_server_factory, title, alice_token, bob):
    first, second = asgi_server_factory(2)
    bob_token = token_create(user=bob, name="poster")[1]

    async def scenario() -> list[float]:
        async with websockets.connect(f"{second.ws_url}/ws/catalog/titles/{title.pk}/", open_timeout=10,
                                      additional_headers={"Authorization": f"Bearer {alice_token}"}) as socket:
            assert json.loads(await socket.recv())["type"] == "catalog.hello"
            async with httpx.AsyncClient(base_url=first.url, timeout=10) as http:
                delays = []
                # The first post also pays for each fresh process's first request (imports, a
                # database connection): it is checked, not timed; the next three are timed.
                for text in ("热身", "跨进程", "又一条", "第三条"):
                    started = time.monotonic()
                    response = await http.post(f"/api/catalog/titles/{title.pk}/danmaku",
                                               headers={"Authorization": f"Bearer {bob_token}"},
                                               json={"text": text, "offset_ms": 3000})
                    assert response.status_code == 201, response.text
                    event = json.loads(await asyncio.wait_for(socket.recv(), 5))
                    delays.append(time.monotonic() - started)
                    assert (event["type"], event["danmaku"]["text"], event["danmaku"]["user"]) == (
                        "catalog.danmaku", text, "bob")
            return delays[1:]

    delays = asyncio.run(scenario())
    assert statistics.median(delays) < 1.0, delays
