"""The one realtime path: services publish events after commit; every server process
relays them to its own sockets.

Fan-out is one Redis pub/sub message per event per server process (not one channel-layer
message per socket): the process's `Hub` receives the frame, already serialised, and
writes that same text to each local socket subscribed to the topic; under Daphne the
websocket frame itself is built once and its bytes handed to every socket that can take
them directly (project/wsframes.py). Nothing in this path touches the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import weakref
from collections.abc import Awaitable, Callable

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.db import transaction
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from project.metrics import realtime_frames
from project.wsframes import Frame, Writer

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
    # A few quick retries: after a Redis restart every pooled connection is dead and the
    # first command on each must reconnect; while Redis is down a call fails within about
    # half a second (redis-py's default of ten retries would hold a request or a task for
    # seconds per call).
    retry = Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.25), retries=3)
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, retry=retry)


def sync_redis() -> redis.Redis:
    """A (thread-safe, pooled) client for REDIS_URL, for synchronous code."""
    return _client_for(settings.REDIS_URL)


def encode(event: dict) -> str:
    """JSON text of an event. JSON has no NaN or Infinity: a non-finite number raises here
    (ValueError) rather than going out in a frame that clients cannot parse."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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
ResubscribeHook = Callable[[str], Awaitable[None]]

# While Redis is unreachable the hub tries to subscribe again this often at most (backing
# off from RESUBSCRIBE_FIRST_S), so sockets hear again within that long of Redis answering.
RESUBSCRIBE_FIRST_S = 0.05
RESUBSCRIBE_MAX_S = 0.5


_PREPARED, _OWN = realtime_frames.labels(path="prepared"), realtime_frames.labels(path="own")


async def write_all(sinks: list[tuple[Sink, Writer | None]], frame: Frame) -> None:
    """Write one frame to many sockets: the prepared bytes where the socket's writer takes
    them (no await, no copy), its sink otherwise."""
    prepared = 0
    for index, (sink, write) in enumerate(sinks, start=1):
        try:
            if write is not None and write(frame):
                prepared += 1
            else:
                await sink(frame.text)
        except Exception:  # a socket that is closing must not stop the others
            logger.debug("realtime sink failed", exc_info=True)
        if index % 64 == 0:
            await asyncio.sleep(0)  # let the server write what is queued: early sockets get it sooner
    _PREPARED.inc(prepared)
    _OWN.inc(len(sinks) - prepared)


class Hub:
    """Per process (per event loop): one Redis subscription per topic with local sockets.

    When the connection to Redis breaks (a restart, a network cut), the reader subscribes
    every topic that still has local sockets again, retrying until Redis answers, then calls
    the topic's resubscribe hooks: events published while the hub was deaf are lost, so the
    owner of the topic (rooms.runtime) sends its sockets the current state from the database.
    """

    def __init__(self) -> None:
        # No retries inside redis-py: the reader runs its own loop, so that it knows when
        # it has subscribed again (and calls the hooks) and never waits in a hidden backoff.
        self._client = aioredis.Redis.from_url(settings.REDIS_URL, retry=AsyncRetry(NoBackoff(), 0),
                                               socket_connect_timeout=2)
        self._prefix = channel_prefix()
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._sinks: dict[str, dict[int, tuple[Sink, Writer | None]]] = {}
        self._listeners: dict[str, list[Callable[[str, str], None]]] = {}
        self._hooks: dict[str, list[ResubscribeHook]] = {}
        self._reader: asyncio.Task | None = None
        self._hook_tasks: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()
        self._broken = False  # a subscribe or unsubscribe failed: the reader subscribes anew
        self.failed_resubscribes = 0  # attempts that found Redis still away (for tests and logs)
        self.resubscribes = 0  # times the hub subscribed again after losing Redis

    async def subscribe(self, topic: str, key: int, sink: Sink, *, write: Writer | None = None) -> None:
        """Frames of `topic` go to `await sink(text)`; with `write`, first to `write(frame)`,
        which writes the prepared frame at once or declines (then the sink gets it)."""
        async with self._lock:
            sinks = self._sinks.setdefault(topic, {})
            first = not sinks
            sinks[key] = (sink, write)
            if first and not self._broken:
                try:
                    await self._pubsub.subscribe(self._prefix + topic)
                except (redis.RedisError, OSError):
                    # The reader subscribes every topic again once Redis answers, this one too.
                    logger.warning("realtime subscribe failed; retrying", extra={"topic": topic})
                    self._broken = True
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
                if not self._broken:
                    try:
                        await self._pubsub.unsubscribe(self._prefix + topic)
                    except (redis.RedisError, OSError):
                        self._broken = True  # the next subscription leaves this topic out

    def add_listener(self, topic: str, listener: Callable[[str, str], None]) -> None:
        """A plain function called with (topic, frame) for every event (e.g. a cache)."""
        self._listeners.setdefault(topic, []).append(listener)

    def remove_listener(self, topic: str, listener: Callable[[str, str], None]) -> None:
        listeners = self._listeners.get(topic, [])
        if listener in listeners:
            listeners.remove(listener)
        if not listeners:
            self._listeners.pop(topic, None)

    def add_resubscribe_hook(self, topic: str, hook: ResubscribeHook) -> None:
        """`await hook(topic)` each time the hub has subscribed `topic` again after losing
        Redis (whatever was published in between never arrived)."""
        self._hooks.setdefault(topic, []).append(hook)

    def remove_resubscribe_hook(self, topic: str, hook: ResubscribeHook) -> None:
        hooks = self._hooks.get(topic, [])
        if hook in hooks:
            hooks.remove(hook)
        if not hooks:
            self._hooks.pop(topic, None)

    async def deliver(self, topic: str, frame: str) -> None:
        """Hand one frame to every local sink of `topic` (and the listeners)."""
        for listener in list(self._listeners.get(topic, [])):
            try:
                listener(topic, frame)
            except Exception:
                logger.exception("realtime listener failed", extra={"topic": topic})
        await write_all(list(self._sinks.get(topic, {}).values()), Frame(frame))

    async def _read(self) -> None:
        while True:
            try:
                if self._broken:
                    if not await self._resubscribe():
                        return  # no local sockets left
                    continue
                if not self._pubsub.subscribed:
                    await asyncio.sleep(0.05)
                    if not self._sinks and not self._pubsub.subscribed:
                        return
                    continue
                message = await self._pubsub.get_message(timeout=1.0)
                if message is None or message.get("type") != "message":
                    continue
                topic = message["channel"].decode()[len(self._prefix):]
                data = message["data"]
                await self.deliver(topic, data.decode() if isinstance(data, bytes) else data)
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                logger.warning("realtime hub lost Redis (%s); subscribing again", exc)
                self._broken = True

    async def _resubscribe(self) -> bool:
        """Subscribe every topic with local sockets on a new connection, retrying until
        Redis answers; then run the hooks. False when no topic is left to subscribe."""
        delay_s = RESUBSCRIBE_FIRST_S
        while True:
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RESUBSCRIBE_MAX_S)
            async with self._lock:
                old, self._pubsub = self._pubsub, self._client.pubsub(ignore_subscribe_messages=True)
                with contextlib.suppress(Exception):
                    await old.aclose()
                topics = list(self._sinks)
                if not topics:
                    self._broken = False
                    return False
                try:
                    await self._pubsub.subscribe(*[self._prefix + topic for topic in topics])
                except (redis.RedisError, OSError):
                    self.failed_resubscribes += 1
                    continue
                self._broken = False
                self.resubscribes += 1
            logger.warning("realtime hub subscribed again", extra={"topics": len(topics)})
            task = asyncio.create_task(self._run_hooks(topics), name="realtime-hub-resync")
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)
            return True

    async def _run_hooks(self, topics: list[str]) -> None:
        async def run(topic: str, hook: ResubscribeHook) -> None:
            try:
                await hook(topic)
            except Exception:
                logger.exception("realtime resubscribe hook failed", extra={"topic": topic})

        await asyncio.gather(*(run(topic, hook) for topic in topics for hook in list(self._hooks.get(topic, []))))


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The hub of the running event loop (one per server process in production)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = Hub()
    return hub
