"""Revocation reaches open connections: websockets and radio streams opened with a
credential that is no longer valid are closed within a second or two, in every server
process.

Each connection joins its user's channel-layer group (`user_group`) when it opens and
remembers how it authenticated (`Credential`: the API token's id, or None for the browser
session). Services call `revoke_on_commit` after the change that revokes (a token
revoked, a user made inactive or deleted, a member removed from a room); it is the one
place that calls `group_send`. Each connection then decides with `close_code` whether the
message is about it: a revoked token closes only the connections opened with that token,
an inactive user closes all of theirs, a room removal only their connections to that room.

Close codes (docs/protocol.md): 4401 the credential is no longer valid, 4403 no longer
allowed in the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

CLOSE_REVOKED = 4401  # token revoked, or the user made inactive or deleted
CLOSE_REMOVED = 4403  # removed from the room the connection is in

REASON_TOKEN = "token"  # noqa: S105 - a reason, not a secret
REASON_USER = "user"
REASON_ROOM = "room"
MESSAGE_TYPE = "session.revoke"  # -> the consumer's session_revoke handler


def user_group(user_id: int) -> str:
    """The channel-layer group of every open connection of one user."""
    return f"user.{user_id}"


@dataclass(frozen=True)
class Credential:
    """How a connection authenticated: its user, and the API token (None: session)."""

    user_id: int
    token_id: int | None = None

    @classmethod
    def of(cls, user) -> Credential:
        """A user from `token_authenticate` carries `auth_token_id`; a session user does not."""
        return cls(user_id=user.pk, token_id=getattr(user, "auth_token_id", None))


def revoke_on_commit(*, user_id: int, reason: str, token_id: int | None = None, room_id: int | None = None) -> None:
    """Once the current transaction commits, tell every process to close the matching
    connections of `user_id`. A failure to reach Redis is logged: the connection is then
    refused at its next connect, as before."""
    if reason not in {REASON_TOKEN, REASON_USER, REASON_ROOM}:
        raise ValueError(f"unknown revocation reason {reason!r}")
    message = {"type": MESSAGE_TYPE, "reason": reason, "token_id": token_id, "room_id": room_id}

    def send() -> None:
        try:
            async_to_sync(get_channel_layer().group_send)(user_group(user_id), message)
        except Exception:
            logger.exception("revocation could not be sent", extra={"user_id": user_id, "reason": reason})

    transaction.on_commit(send, robust=True)


def close_code(message: dict, *, credential: Credential, room_id: int | None = None) -> int | None:
    """The close code if `message` ends a connection made with `credential` (to `room_id`)."""
    reason = message.get("reason")
    if reason == REASON_USER:
        return CLOSE_REVOKED
    if reason == REASON_TOKEN and credential.token_id is not None and message.get("token_id") == credential.token_id:
        return CLOSE_REVOKED
    if reason == REASON_ROOM and room_id is not None and message.get("room_id") == room_id:
        return CLOSE_REMOVED
    return None


@contextlib.asynccontextmanager
async def watch(credential: Credential, *, room_id: int | None, on_revoke: Callable[[int], None]) -> AsyncIterator[None]:
    """For connections that are not consumers (the room radio's HTTP stream): while inside,
    `on_revoke(close_code)` is called once when a revocation concerns this connection."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = user_group(credential.user_id)
    await layer.group_add(group, channel)

    async def receive() -> None:
        while True:
            message = await layer.receive(channel)
            code = close_code(message, credential=credential, room_id=room_id)
            if code is not None:
                on_revoke(code)
                return

    task = asyncio.create_task(receive(), name="revocation-watch")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await layer.group_discard(group, channel)
