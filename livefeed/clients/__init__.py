"""Clients for the live-stream platforms, one module per platform, the interface they share
(`LiveClient`, `Connection`) and the registry that lists them (`registry`, see
project/outside.py for the registry and the error classes).

A client knows one platform's protocol and nothing about storage, leases or browsers: it
parses a room URL into the platform's room reference, fetches the room's info, and opens a
`Connection` that yields the decoded messages of each frame while it answers the platform's
acks and heartbeats by itself. The fetcher (livefeed/fetcher.py) owns reconnects, back-off,
leases, storage and the push to browsers.

Failures are the shared classes of project/outside.py: `RetryLater` (drop, timeout, stall,
5xx: connect again after a back-off), `GiveUp` and its subclasses below (the room does not
exist, the platform blocks us, a signer is needed: a person has to act; the message says
what to do), `NotAllowed` (an address the outbound guard refuses).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from livefeed.messages import Malformed, Message
from project.outside import GiveUp, NotAllowed, Registry, RetryLater, UnknownService

__all__ = ["Blocked", "Connection", "GiveUp", "LiveClient", "NotAllowed", "RetryLater", "RoomInfo",
           "RoomNotFound", "SignerNeeded", "UnknownService", "UnsupportedUrl", "client_for_url", "registry"]


class UnsupportedUrl(ValueError):
    """The text is not the URL of a live room of any platform Chorus follows (the message says
    which forms are accepted)."""


class RoomNotFound(GiveUp):
    """The platform has no room with that reference."""


class Blocked(GiveUp):
    """The platform answered with its anti-bot, captcha or login page, or refused the socket."""


class SignerNeeded(Blocked):
    """The platform wants a signature Chorus was not configured to make (LIVEFEED_DOUYIN_SIGNER)."""


@dataclass(slots=True)
class RoomInfo:
    ref: str  # the platform's room reference as the user gave it (Douyin live_id, Bilibili room id)
    live: bool
    title: str = ""
    streamer_name: str = ""
    streamer_id: str = ""
    avatar_url: str = ""
    viewers: int | None = None
    stream_urls: dict[str, str] = field(default_factory=dict)  # quality -> pull URL (FLV or HLS)
    internal: dict[str, Any] = field(default_factory=dict)  # what connect() needs (Douyin room_id, ttwid; Bilibili real id)


class Connection:
    """An open live socket. `async for batch in connection` yields, per frame, the list of what
    was in it (`Message`s and `Malformed` reports); it raises RetryLater when the socket drops
    or sends nothing for `stall_s`, and ends after a `control` message with status `ended`.
    Use as `async with`; close() is idempotent and returns within a second."""

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[list[Message | Malformed]]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class LiveClient:
    """One platform. Instances are cheap; one per fetcher."""

    name: ClassVar[str]  # stored in LiveChannel.platform
    label: ClassVar[str]

    @classmethod
    def parse_url(cls, url: str) -> str | None:
        """The room reference in `url`, or None when the URL is not one of this platform's rooms."""
        raise NotImplementedError

    @classmethod
    def room_url(cls, ref: str) -> str:
        raise NotImplementedError

    async def room_info(self, ref: str) -> RoomInfo:
        raise NotImplementedError

    async def connect(self, info: RoomInfo, *, stall_s: float) -> Connection:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the client's HTTP connections."""


registry: Registry[type[LiveClient]] = Registry(
    "live platform", modules=("livefeed.clients.douyin", "livefeed.clients.bilibili", "livefeed.clients.simulator"))


def client_for_url(url: str) -> tuple[type[LiveClient], str]:
    """(client class, room reference) for a room URL, or UnsupportedUrl."""
    for client in registry:
        ref = client.parse_url(url)
        if ref:
            return client, ref
    raise UnsupportedUrl("Not a live room Chorus can follow: give a https://live.douyin.com/<id> or "
                         "https://live.bilibili.com/<id> URL.")
