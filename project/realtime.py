"""The one realtime path: services publish events after commit; every server process
relays them to its own sockets.

Fan-out is one Redis pub/sub message per event per server process (not one channel-layer
message per socket): the process's `Hub` receives the frame, already serialised, and
writes that same text to each local socket subscribed to the topic. Nothing in this path
touches the database.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import weakref
from collections.abc import Awaitable, Callable

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

def channel_prefix() -> str:
    """Pub/sub channels are shared by every database of a Redis server, so they are named
    after the database number of REDIS_URL: installations (or test runs) that share one Redis
    server on different databases never hear each other."""
    return _prefix_for(settings.REDIS_URL)


@functools.cache
def _prefix_for(url: str) -> str:
    return f"chorus:db{redis.connection.parse_url(url).get('db', 0)}:rt:"

@functools.cache
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def sync_redis() -> redis.Redis:
    """A (thread-safe, pooled) client for REDIS_URL, for synchronous code."""
    return _client_for(settings.REDIS_URL)


def encode(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def publish(topic: str, event: dict | str) -> None:
    """Send `event` to every socket subscribed to `topic`, in every server process, now."""
    frame = event if isinstance(event, str) else encode(event)
    sync_redis().publish(channel_prefix() + topic, frame)


def broadcast_on_commit(topic: str, event_factory: Callable[[], dict] | dict) -> None:
    """Publish once the current transaction commits (immediately outside one).

    `event_factory` may be a callable, so that the event is built from committed data."""

    def send() -> None:
        event = event_factory() if callable(event_factory) else event_factory
        try:
            publish(topic, event)
        except redis.RedisError:
            logger.exception("realtime publish failed", extra={"topic": topic})

    transaction.on_commit(send, robust=True)


Sink = Callable[[str], Awaitable[None]]


class Hub:
    """Per process (per event loop): one Redis subscription per topic with local sockets."""

    def __init__(self) -> None:
        self._client = aioredis.Redis.from_url(settings.REDIS_URL)
        self._prefix = channel_prefix()
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._sinks: dict[str, dict[int, Sink]] = {}
        self._listeners: dict[str, list[Callable[[str, str], None]]] = {}
        self._reader: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    async def subscribe(self, topic: str, key: int, sink: Sink) -> None:
        async with self._lock:
            sinks = self._sinks.setdefault(topic, {})
            first = not sinks
            sinks[key] = sink
            if first:
                await self._pubsub.subscribe(self._prefix + topic)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="realtime-hub-reader")

    async def unsubscribe(self, topic: str, key: int) -> None:
        async with self._lock:
            sinks = self._sinks.get(topic)
            if sinks is None:
                return
            sinks.pop(key, None)
            if not sinks:
                del self._sinks[topic]
                await self._pubsub.unsubscribe(self._prefix + topic)

    def add_listener(self, topic: str, listener: Callable[[str, str], None]) -> None:
        """A plain function called with (topic, frame) for every event (e.g. a cache)."""
        self._listeners.setdefault(topic, []).append(listener)

    def remove_listener(self, topic: str, listener: Callable[[str, str], None]) -> None:
        listeners = self._listeners.get(topic, [])
        if listener in listeners:
            listeners.remove(listener)
        if not listeners:
            self._listeners.pop(topic, None)

    def local_count(self, topic: str) -> int:
        return len(self._sinks.get(topic, {}))

    async def deliver(self, topic: str, frame: str) -> None:
        """Hand one frame to every local sink of `topic` (and the listeners)."""
        for listener in list(self._listeners.get(topic, [])):
            try:
                listener(topic, frame)
            except Exception:
                logger.exception("realtime listener failed", extra={"topic": topic})
        for index, sink in enumerate(list(self._sinks.get(topic, {}).values()), start=1):
            try:
                await sink(frame)
            except Exception:  # a socket that is closing must not stop the others
                logger.debug("realtime sink failed", exc_info=True)
            if index % 64 == 0:
                await asyncio.sleep(0)  # let the server write what is queued: early sockets get it sooner

    async def _read(self) -> None:
        backoff_s = 0.1
        while True:
            try:
                if not self._pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    if not self._sinks:
                        return
                    continue
                message = await self._pubsub.get_message(timeout=1.0)
                backoff_s = 0.1
                if message is None or message.get("type") != "message":
                    continue
                topic = message["channel"].decode()[len(self._prefix):]
                data = message["data"]
                await self.deliver(topic, data.decode() if isinstance(data, bytes) else data)
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError):
                logger.warning("realtime hub lost Redis; resubscribing", exc_info=True)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5)
                try:
                    async with self._lock:
                        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                        if self._sinks:
                            await self._pubsub.subscribe(*[self._prefix + t for t in self._sinks])
                except (redis.RedisError, OSError):
                    continue


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop (one per server process in production)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub
