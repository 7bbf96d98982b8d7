"""Revocation reaches open connections: real Daphne processes, real websockets and radio
streams, revoked through the pages a user or the host would use."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import threading
import time

import pytest
import websockets
from django.contrib.auth import get_user_model
from django.test import Client

from project.accounts.models import ApiToken
from project.accounts.services import token_create, user_deactivate
from rooms import services
from rooms.models import Membership, Room
from tests.factories import UserFactory, make_track

pytestmark = pytest.mark.django_db(transaction=True)

CLOSE_WITHIN_S = 5


@pytest.fixture
def lis(transactional_db):
    return UserFactory(username="lis")


@pytest.fixture
def hana(transactional_db):
    return UserFactory(username="hana")


def _room(owner, name: str, *, visibility: str = Room.Visibility.PUBLIC) -> Room:
    room = services.room_create(owner=owner, name=name, visibility=visibility)
    services.queue_add(room=room, actor=owner, track_id=make_track(f"{name} song", "Band", "Album", duration_s=200).pk)
    return room


async def _open(server, slug: str, *, token: str | None = None, cookie: str | None = None):
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = cookie
    socket = await websockets.connect(f"{server.ws_url}/ws/rooms/{slug}/", additional_headers=headers,
                                      origin=server.url if cookie else None, open_timeout=10)
    await _until(socket, "room.state")
    return socket


async def _until(socket, kind: str, timeout: float = 10) -> dict:
    async def wait():
        while True:
            event = json.loads(await socket.recv())
            if event["type"] == kind:
                return event

    return await asyncio.wait_for(wait(), timeout)


async def _closed_with(socket, timeout: float = CLOSE_WITHIN_S) -> int:
    """Wait for the server to close the socket (reading what comes before); its close code."""
    async def drain():
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await socket.recv()

    await asyncio.wait_for(drain(), timeout)
    return socket.close_code


async def _answers(socket) -> bool:
    """The socket is open and served: a time.ping gets its time.pong."""
    await socket.send(json.dumps({"type": "time.ping", "t0": 1.0}))
    return (await _until(socket, "time.pong", timeout=5))["t0"] == 1.0


def _session_cookie(client, user) -> str:
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


class RadioReader(threading.Thread):
    """Reads a radio stream like a player; records when the server ended it."""

    def __init__(self, server, path: str):
        super().__init__(daemon=True)
        self.server, self.path = server, path
        self.started = threading.Event()
        self.status = None
        self.received = 0
        self.ended_at: float | None = None
        self.clean_end: bool | None = None

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        connection.request("GET", self.path)
        response = connection.getresponse()
        self.status = response.status
        try:
            while chunk := response.read1(16384):
                self.received += len(chunk)
                if self.received > 8192:
                    self.started.set()
            self.clean_end = True
        except (http.client.HTTPException, OSError):
            self.clean_end = False  # cut off rather than ended (the test's end)
        finally:
            self.ended_at = time.monotonic()
            self.started.set()
            connection.close()


def test_revoking_a_token_on_the_settings_page_closes_only_that_tokens_sockets(asgi_server, lis, hana, client):
    room = _room(hana, "Token room")
    token_a, raw_a = token_create(user=lis, name="phone")
    _token_b, raw_b = token_create(user=lis, name="laptop")
    client.force_login(lis)

    async def scenario():
        with_a = await _open(asgi_server, room.slug, token=raw_a)
        with_b = await _open(asgi_server, room.slug, token=raw_b)
        try:
            revoked_at = time.monotonic()
            response = await asyncio.to_thread(client.post, f"/accounts/tokens/{token_a.pk}/revoke")
            assert response.status_code == 302
            assert await _closed_with(with_a) == 4401
            assert time.monotonic() - revoked_at < CLOSE_WITHIN_S
            assert await _answers(with_b)
        finally:
            await with_a.close()
            await with_b.close()

    asyncio.run(scenario())
    assert ApiToken.objects.get(pk=token_a.pk).revoked_at is not None


def test_a_user_made_inactive_in_the_admin_loses_every_socket_and_radio_stream(asgi_server, lis, hana, client):
    room = _room(hana, "Inactive room")
    _, raw = token_create(user=lis, name="phone")
    other_user = UserFactory(username="bystander")
    _, other_raw = token_create(user=other_user, name="phone")
    admin = get_user_model().objects.create_superuser(username="root", password="an-admin-password-77")
    cookie = _session_cookie(client, lis)
    admin_client = Client()
    admin_client.force_login(admin)
    radio = RadioReader(asgi_server, f"/rooms/{room.slug}/radio?token={raw}")
    radio.start()
    assert radio.started.wait(20)
    assert radio.status == 200

    async def scenario():
        by_token = await _open(asgi_server, room.slug, token=raw)
        by_session = await _open(asgi_server, room.slug, cookie=cookie)
        bystander = await _open(asgi_server, room.slug, token=other_raw)
        try:
            data = {"username": "lis", "email": "lis@example.org", "date_joined_0": "2026-01-01",
                    "date_joined_1": "10:00:00", "initial-date_joined_0": "2026-01-01",
                    "initial-date_joined_1": "10:00:00"}  # is_active left unticked
            revoked_at = time.monotonic()
            response = await asyncio.to_thread(admin_client.post, f"/admin/auth/user/{lis.pk}/change/", data)
            assert response.status_code == 302, response.content.decode()[:3000]
            assert await _closed_with(by_token) == 4401
            assert await _closed_with(by_session) == 4401
            assert time.monotonic() - revoked_at < CLOSE_WITHIN_S
            await asyncio.to_thread(radio.join, CLOSE_WITHIN_S)
            assert radio.ended_at is not None
            assert radio.clean_end
            assert radio.ended_at - revoked_at < CLOSE_WITHIN_S
            assert await _answers(bystander)
        finally:
            for socket in (by_token, by_session, bystander):
                await socket.close()

    asyncio.run(scenario())
    lis.refresh_from_db()
    assert not lis.is_active


def test_removing_a_member_from_a_private_room_closes_their_socket_and_radio_there_only(asgi_server, lis, hana, client):
    private = _room(hana, "Private room", visibility=Room.Visibility.PRIVATE)
    old_invite = private.invite_code
    services.room_join(room=private, user=lis, invite_code=old_invite)
    elsewhere = _room(hana, "Public room")
    _, raw = token_create(user=lis, name="phone")
    radio = RadioReader(asgi_server, f"/rooms/{private.slug}/radio?token={raw}")
    radio.start()
    assert radio.started.wait(20)
    assert radio.status == 200
    client.force_login(hana)

    async def scenario():
        in_private = await _open(asgi_server, private.slug, token=raw)
        in_public = await _open(asgi_server, elsewhere.slug, token=raw)
        try:
            removed_at = time.monotonic()
            response = await asyncio.to_thread(client.post, f"/rooms/{private.slug}/members/remove",
                                               {"user_id": lis.pk}, follow=True)
            assert "Member removed. The invite link has changed" in response.content.decode()
            assert await _closed_with(in_private) == 4403
            await asyncio.to_thread(radio.join, CLOSE_WITHIN_S)
            assert radio.ended_at is not None
            assert radio.clean_end
            assert radio.ended_at - removed_at < CLOSE_WITHIN_S
            assert await _answers(in_public)
            # Coming back is refused: the socket, and the old invite link.
            again = await websockets.connect(f"{asgi_server.ws_url}/ws/rooms/{private.slug}/", open_timeout=10,
                                             additional_headers={"Authorization": f"Bearer {raw}"})
            assert await _closed_with(again) == 4403
        finally:
            await in_private.close()
            await in_public.close()

    asyncio.run(scenario())
    assert not Membership.objects.filter(room=private, user=lis).exists()
    private.refresh_from_db()
    assert private.invite_code != old_invite
    client.force_login(lis)
    assert client.get(f"/rooms/{private.slug}/invite/{old_invite}").status_code == 403


def test_revoking_a_token_ends_a_radio_stream_opened_with_it(asgi_server, lis, hana):
    room = _room(hana, "Radio room")
    token, raw = token_create(user=lis, name="speaker")
    _, other_raw = token_create(user=lis, name="phone")
    radio = RadioReader(asgi_server, f"/rooms/{room.slug}/radio?token={raw}")
    other = RadioReader(asgi_server, f"/rooms/{room.slug}/radio?token={other_raw}")
    radio.start()
    other.start()
    assert radio.started.wait(20)
    assert other.started.wait(20)
    from project.accounts.services import token_revoke

    revoked_at = time.monotonic()
    token_revoke(user=lis, token_id=token.pk)
    radio.join(CLOSE_WITHIN_S)
    assert radio.ended_at is not None
    assert radio.clean_end
    assert radio.ended_at - revoked_at < CLOSE_WITHIN_S
    # The stream of the other token goes on: it keeps receiving audio.
    before = other.received
    deadline = time.monotonic() + 5
    while other.received <= before + 16384 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert other.received > before + 16384
    assert other.ended_at is None


def test_user_deactivate_service_closes_the_sockets(asgi_server, lis, hana):
    room = _room(hana, "Service room")
    _, raw = token_create(user=lis, name="phone")

    async def scenario():
        socket = await _open(asgi_server, room.slug, token=raw)
        try:
            await asyncio.to_thread(user_deactivate, user=lis)
            assert await _closed_with(socket) == 4401
        finally:
            await socket.close()

    asyncio.run(scenario())


@pytest.fixture
def private_redis(tmp_path, settings):
    """A redis-server of this test's own (killed and restarted), for this process too."""
    from tests.private_redis import PrivateRedis

    server = PrivateRedis(tmp_path / "redis").start()
    settings.REDIS_URL = server.url(4)
    settings.CHANNEL_LAYERS = {"default": {**settings.CHANNEL_LAYERS["default"],
                                           "CONFIG": {"hosts": [server.url(4)], "prefix": "chorus"}}}
    yield server
    server.stop()


def _wait_for_log(server, *texts: str, timeout: float = 15) -> None:
    """Until the server's log shows one of `texts`."""
    deadline = time.monotonic() + timeout
    while not any(text in server.log() for text in texts):
        assert time.monotonic() < deadline, f"none of {texts} in the server log"
        time.sleep(0.05)


def test_sockets_outlive_a_redis_restart_and_revocation_still_reaches_them(asgi_server_factory, private_redis,
                                                                           lis, hana):
    room = _room(hana, "Restart room")
    token, raw = token_create(user=lis, name="phone")
    (server,) = asgi_server_factory(1, env={"REDIS_URL": private_redis.url(4)})

    async def scenario():
        socket = await _open(server, room.slug, token=raw)
        try:
            private_redis.kill()
            # The socket's channel-layer reader noticed (or, as it did, the socket died: 1011).
            await asyncio.to_thread(_wait_for_log, server, "channel layer: Redis unavailable", "WSDISCONNECT")
            assert await _answers(socket)
            private_redis.start()  # empty: the group memberships were lost with it
            await asyncio.to_thread(_wait_for_log, server, "group memberships restored")
            assert await _answers(socket)
            from project.accounts.services import token_revoke

            await asyncio.to_thread(token_revoke, user=lis, token_id=token.pk)
            assert await _closed_with(socket) == 4401
        finally:
            await socket.close()

    asyncio.run(scenario())


# --- the revocation messages themselves (one channel-layer message per change) -------------


@pytest.fixture
def user_inbox(settings):
    """A channel in a user's group on the real channel layer: what their connections hear."""
    from channels.layers import get_channel_layer

    from project.accounts.revocation import user_group

    async def open_inbox(user):
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(user_group(user.pk), channel)

        async def next_message(timeout: float = 5) -> dict:
            return await asyncio.wait_for(layer.receive(channel), timeout)

        return next_message

    return open_inbox


async def test_each_revoking_change_sends_one_message_to_the_users_group(user_inbox, lis, hana):
    from asgiref.sync import sync_to_async

    from project.accounts.services import token_revoke

    token, _ = await sync_to_async(token_create)(user=lis, name="phone")
    room = await sync_to_async(_room)(hana, "Messages", visibility=Room.Visibility.PRIVATE)
    await sync_to_async(services.room_join)(room=room, user=lis, invite_code=room.invite_code)
    inbox = await user_inbox(lis)

    await sync_to_async(token_revoke)(user=lis, token_id=token.pk)
    assert await inbox() == {"type": "session.revoke", "reason": "token", "token_id": token.pk, "room_id": None}
    await sync_to_async(token_revoke)(user=lis, token_id=token.pk)  # already revoked: nothing new
    await sync_to_async(services.member_remove)(room=room, actor=hana, user_id=lis.pk)
    assert await inbox() == {"type": "session.revoke", "reason": "room", "token_id": None, "room_id": room.pk}
    await sync_to_async(user_deactivate)(user=lis)
    assert await inbox() == {"type": "session.revoke", "reason": "user", "token_id": None, "room_id": None}
    await sync_to_async(lis.delete)()
    assert await inbox() == {"type": "session.revoke", "reason": "user", "token_id": None, "room_id": None}


def test_close_code_matches_only_its_own_connection():
    from project.accounts.revocation import Credential, close_code

    token_message = {"type": "session.revoke", "reason": "token", "token_id": 7, "room_id": None}
    assert close_code(token_message, credential=Credential(user_id=1, token_id=7)) == 4401
    assert close_code(token_message, credential=Credential(user_id=1, token_id=8)) is None
    assert close_code(token_message, credential=Credential(user_id=1, token_id=None)) is None  # the session
    room_message = {"type": "session.revoke", "reason": "room", "token_id": None, "room_id": 3}
    assert close_code(room_message, credential=Credential(user_id=1), room_id=3) == 4403
    assert close_code(room_message, credential=Credential(user_id=1), room_id=4) is None
    user_message = {"type": "session.revoke", "reason": "user", "token_id": None, "room_id": None}
    assert close_code(user_message, credential=Credential(user_id=1, token_id=8), room_id=4) == 4401


def test_member_remove_permissions(lis, hana):
    from rooms.services import RoomError

    room = _room(hana, "Perms", visibility=Room.Visibility.PRIVATE)
    services.room_join(room=room, user=lis, invite_code=room.invite_code)
    other = UserFactory(username="other")
    services.room_join(room=room, user=other, invite_code=room.invite_code)
    with pytest.raises(RoomError) as listener_removes:
        services.member_remove(room=room, actor=lis, user_id=other.pk)
    assert listener_removes.value.code == "forbidden"
    with pytest.raises(RoomError) as last_host:
        services.member_remove(room=room, actor=hana, user_id=hana.pk)
    assert last_host.value.code == "invalid"
    with pytest.raises(RoomError) as stranger:
        services.member_remove(room=room, actor=hana, user_id=UserFactory(username="stranger").pk)
    assert stranger.value.code == "not_found"
    for bad in ("1", True, 10**30, 0):
        with pytest.raises(RoomError) as invalid:
            services.member_remove(room=room, actor=hana, user_id=bad)
        assert invalid.value.code == "invalid"
    services.member_remove(room=room, actor=lis, user_id=lis.pk)  # leaving is allowed
    assert set(Membership.objects.filter(room=room).values_list("user__username", flat=True)) == {"hana", "other"}


def test_member_remove_over_the_api(client, lis, hana):
    room = _room(hana, "Api perms", visibility=Room.Visibility.PRIVATE)
    services.room_join(room=room, user=lis, invite_code=room.invite_code)
    _, lis_raw = token_create(user=lis, name="api")
    _, hana_raw = token_create(user=hana, name="api")
    refused = client.delete(f"/api/rooms/{room.slug}/members/{hana.pk}", HTTP_AUTHORIZATION=f"Bearer {lis_raw}")
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"
    done = client.delete(f"/api/rooms/{room.slug}/members/{lis.pk}", HTTP_AUTHORIZATION=f"Bearer {hana_raw}")
    assert done.status_code == 204
    assert not Membership.objects.filter(room=room, user=lis).exists()
    gone = client.delete(f"/api/rooms/{room.slug}/members/{lis.pk}", HTTP_AUTHORIZATION=f"Bearer {lis_raw}")
    assert gone.status_code == 403  # no longer a member of the private room: it is not visible
    assert client.delete(f"/api/rooms/{room.slug}/members/{lis.pk}").status_code == 401


def test_only_the_host_sees_remove_buttons(client, lis, hana):
    room = _room(hana, "Buttons")
    services.room_join(room=room, user=lis)
    client.force_login(lis)
    assert "members/remove" not in client.get(f"/rooms/{room.slug}/").content.decode()
    client.force_login(hana)
    body = client.get(f"/rooms/{room.slug}/").content.decode()
    assert 'aria-label="Remove lis from the room"' in body
    assert 'aria-label="Remove hana from the room"' not in body
    response = client.post(f"/rooms/{room.slug}/members/remove", {"user_id": "nope"}, follow=True)
    assert "user_id must be the id of a member" in response.content.decode()


