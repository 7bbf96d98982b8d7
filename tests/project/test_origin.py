"""Websocket origin check: a browser's socket must come from this site's own origin
(scheme, host and port), or from one in CSRF_TRUSTED_ORIGINS."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from project.accounts.ws import origin_allowed
from rooms import services
from tests.factories import UserFactory


def scope(origin: str | None, host: str | None = "testserver", **headers: str) -> dict:
    raw = []
    if origin is not None:
        raw.append((b"origin", origin.encode()))
    if host is not None:
        raw.append((b"host", host.encode()))
    raw += [(name.replace("_", "-").lower().encode(), value.encode()) for name, value in headers.items()]
    return {"type": "websocket", "headers": raw}


@pytest.mark.parametrize(
    ("origin", "host", "headers"),
    [
        ("http://testserver", "testserver", {}),
        ("http://testserver:80", "testserver", {}),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", {}),
        ("HTTP://LOCALHOST:8000", "localhost:8000", {}),
        ("https://testserver", "testserver", {"x_forwarded_proto": "https"}),  # behind the TLS proxy
        ("https://testserver", "testserver:443", {"x_forwarded_proto": "https"}),
    ],
)
def test_the_sites_own_origin_is_allowed(origin, host, headers):
    assert origin_allowed(scope(origin, host, **headers))


@pytest.mark.parametrize(
    ("origin", "host", "headers"),
    [
        ("http://testserver:8001", "testserver", {}),            # another port of an allowed host
        ("http://127.0.0.1:9999", "127.0.0.1:8000", {}),         # another local service's page
        ("https://testserver", "testserver", {}),                # scheme differs (no TLS proxy said so)
        ("http://testserver", "testserver", {"x_forwarded_proto": "https"}),  # an http page on an https site
        ("http://evil.example", "evil.example", {}),             # DNS rebinding: Host not allowed
        ("http://sub.testserver", "testserver", {}),
        ("null", "testserver", {}),
        ("http://[::1", "testserver", {}),
        ("ftp://testserver", "testserver", {}),
        ("http://testserver", None, {}),                        # no Host to compare with
        ("http://testserver:notaport", "testserver", {}),
    ],
)
def test_any_other_origin_is_refused(origin, host, headers):
    assert not origin_allowed(scope(origin, host, **headers))


def test_csrf_trusted_origins_are_allowed_exactly(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chorus.example.org:8443", "https://*.example.net"]
    assert origin_allowed(scope("https://chorus.example.org:8443"))
    assert not origin_allowed(scope("https://chorus.example.org"))
    assert not origin_allowed(scope("http://chorus.example.org:8443"))
    assert origin_allowed(scope("https://radio.example.net"))
    assert origin_allowed(scope("https://example.net"))
    assert not origin_allowed(scope("https://radio.example.net:8443"))
    assert not origin_allowed(scope("https://example.net.evil.example"))


@pytest.mark.django_db(transaction=True)
def test_a_browser_socket_from_another_port_is_refused_by_the_server(asgi_server, client):
    host = UserFactory(username="hana")
    room = services.room_create(owner=host, name="Origins")
    client.force_login(host)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    url = f"{asgi_server.ws_url}/ws/rooms/{room.slug}/"

    async def scenario():
        async with websockets.connect(url, origin=asgi_server.url, additional_headers={"Cookie": cookie},
                                      open_timeout=10) as socket:
            assert '"type":"room.state"' in await asyncio.wait_for(socket.recv(), 10)
        other_port = f"http://127.0.0.1:{asgi_server.port + 1}"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, origin=other_port, additional_headers={"Cookie": cookie}, open_timeout=10)
        assert refused.value.response.status_code == 403

    asyncio.run(scenario())
