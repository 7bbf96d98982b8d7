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

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import websockets

from livefeed import messages as kinds
from livefeed.messages import Malformed, Message
from project.outside import GiveUp, NotAllowed, Registry, RetryLater, UnknownService

__all__ = ["Blocked", "Connection", "GiveUp", "LiveClient", "NotAllowed", "RetryLater", "RoomInfo",
           "RoomNotFound", "SignerNeeded", "SocketConnection", "UnknownService", "UnsupportedUrl", "client_for_url",
           "closed_text", "ends_broadcast", "registry"]


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


class SocketConnection(Connection):
    """A Connection over one `websockets` client connection: what every platform's socket
    shares. The read loop yields a list per frame that carried anything, raises RetryLater on a
    stall (no frame for `stall_s`) or a close, and ends after a `control` message `ended`;
    `every()` runs a heartbeat; close() returns within a second. A platform implements
    `read(frame)` (decode it, and send an ack there if the platform wants one) and sets `label`
    ("Bilibili's live socket") for the messages; `_pending` holds what arrived before the
    iteration began (during a handshake)."""

    label: ClassVar[str] = "the live socket"

    def __init__(self, ws: Any, *, stall_s: float):
        self._ws = ws
        self.stall_s = stall_s
        self._pending: list[Message | Malformed] = []
        self._tasks: list[asyncio.Task] = []
        self._closed = False

    async def read(self, frame: bytes | str) -> list[Message | Malformed]:
        raise NotImplementedError

    def every(self, interval_s: float, send: Callable[[], Awaitable[None]], *, name: str, now: bool = False) -> None:
        """Call `send` every `interval_s` until the socket closes (the first time at once with `now`)."""
        async def beat() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                if now:
                    await send()
                while True:
                    await asyncio.sleep(interval_s)
                    await send()

        self._tasks.append(asyncio.create_task(beat(), name=name))

    def __aiter__(self) -> AsyncIterator[list[Message | Malformed]]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[list[Message | Malformed]]:
        if self._pending:
            batch, self._pending = self._pending, []
            yield batch
            if ends_broadcast(batch):
                return
        while not self._closed:
            try:
                frame = await asyncio.wait_for(self._ws.recv(), timeout=self.stall_s)
            except TimeoutError:
                raise RetryLater(f"{self.label} sent nothing for {self.stall_s:g}s (stalled)") from None
            except websockets.ConnectionClosed as exc:
                if self._closed:
                    return
                raise RetryLater(f"{self.label} closed ({closed_text(exc)})") from None
            items = await self.read(frame)
            if items:
                yield items
                if ends_broadcast(items):
                    return

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        try:
            async with asyncio.timeout(1.0):
                await self._ws.close()
        except (TimeoutError, OSError):
            self._ws.transport.abort()


def ends_broadcast(batch: list[Message | Malformed]) -> bool:
    """Whether the batch holds the `control` message that ends the broadcast."""
    return any(isinstance(item, Message) and item.type == kinds.CONTROL and item.extra.get("status") == kinds.ENDED
               for item in batch)


def closed_text(exc: websockets.ConnectionClosed) -> str:
    """"code 1006" / "code 1000: reason" / "no close frame", for error messages."""
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "no close frame"
    return f"code {frame.code}{': ' + frame.reason if frame.reason else ''}"


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
