"""The fetcher: follows many live rooms at once in one asyncio loop per worker process.

A `Host` runs in each Celery worker that consumes the `livefeed` queue (livefeed/worker.py
starts it with the worker and stops it with it). Every `scan_s` it asks the database which
channels someone wants followed (`desired = follow`) and whose lease is free or expired,
takes the lease of each by a conditional update (livefeed/services.py), and runs one
`Follower` coroutine per channel it holds. A heartbeat renews every lease it holds; a lease
it fails to renew was taken over (it had expired: this process stalled), and that follower
stops at once without touching the channel's state. So exactly one fetcher works a channel,
and a worker killed with -9 loses its channels for at most a lease (`LIVEFEED_LEASE_S`, 15 s
by default) plus a scan: another worker (or the same one restarted) takes them over,
continues the open session and records the stretch nobody was listening as a gap.

A follower's life, each state stored and pushed (services.channel_transition):
    starting -> (room offline: waiting, auto-follow; error "offline", otherwise)
             -> running <-> reconnecting (drops, stalls, 5xx: back-off with jitter, the
                first retry within 2 s, up to LIVEFEED_RECONNECT_MAX_S; after
                LIVEFEED_MAX_FAILURES failed connects in a row: error, or waiting)
             -> stopping -> idle (a user stopped it: what was received is flushed first)
    End of broadcast (a `control` message with status `ended`) closes the session within a
    flush; auto-follow channels go back to waiting, others to idle.

Messages are buffered and flushed every `flush_s` (LIVEFEED_FLUSH_S, 0.25 s): one storage call (one
transaction, duplicates dropped by the database: a re-send after a reconnect or a take-over
stores nothing twice), then the newly stored ones go to browsers as one `live.messages`
frame, which caps the push at four frames a second per channel (by default) however busy
the room is. A flush that finds more than FLUSH_MAX messages (the worker fell behind) stores them
FLUSH_MAX at a time, each call its own transaction and frame. Database work runs in one thread beside the loop (Django's ORM is synchronous); the
loop itself only reads sockets and decodes.

The buffer is bounded (LIVEFEED_BUFFER_MAX messages a room): a room whose messages come in
faster than the database takes them, or while the database is away, stops being read at
that many until flushes make room again. The messages wait in the socket and then at the
platform, which holds them or drops the connection (a reconnect follows, and the platform's
re-sent messages are stored once), instead of growing the worker until the kernel kills it
and everything it held is lost.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from livefeed import live, selectors, services, stats, storage
from livefeed import messages as kinds
from livefeed.clients import GiveUp, LiveClient, NotAllowed, RetryLater, registry
from livefeed.messages import Malformed, Message
from project import metrics, outside, realtime

logger = logging.getLogger(__name__)

FLUSH_MAX = 2000  # messages a storage call and a push frame (bench/livefeed_ingest.py)
LOG_EVERY_S = 60.0  # a repeating trouble (the database away, a room ahead of it) is logged once a minute


def _in_db_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args, **kwargs):
        close_old_connections()  # a connection broken by a database restart is replaced
        return fn(*args, **kwargs)
    return sync_to_async(call, thread_sensitive=True)


def backoff_s(failures: int, *, max_s: float, first_s: float = 1.0) -> float:
    """Seconds before connect attempt number `failures` + 1: doubling from `first_s`, capped
    at `max_s`, with jitter (half to all of it) so that a platform outage does not bring
    every follower back in the same second."""
    return outside.backoff_s(max(0, failures - 1), first_s=first_s, max_s=max_s)


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Follower:
    """One channel followed by this process."""

    host: Host
    channel_id: int
    lease_token: str
    task: asyncio.Task | None = None
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    lost_lease: bool = False
    buffer: collections.deque[Message] = field(default_factory=collections.deque)
    has_room: asyncio.Event = field(default_factory=asyncio.Event)  # set by a flush that left the buffer not full
    pauses: int = 0
    failed_flushes: int = 0  # in a row
    logged_at: dict[str, float] = field(default_factory=dict)
    malformed: dict[str, int] = field(default_factory=dict)
    logged_kinds: set[str] = field(default_factory=set)
    session_id: int | None = None
    session_ended: bool = False
    gap_started_ms: int | None = None
    platform: str = ""
    stored_since_stats: int = 0

    def request_stop(self) -> None:
        self.stop_requested.set()

    async def run(self) -> None:
        db = self.host.db
        try:
            await self._follow()
        except asyncio.CancelledError:
            if not self.lost_lease:
                with contextlib.suppress(Exception):
                    await self._flush()
            raise
        except Exception:  # the fetcher never dies of one channel: record it and let go
            logger.exception("live follower crashed", extra={"channel_id": self.channel_id})
            with contextlib.suppress(Exception):
                await self._flush()
            with contextlib.suppress(Exception):
                # Settled (no longer wanted), or the next scan would take it again at once.
                await self._settle("error", "An internal error stopped the fetcher; see the logs.")
        finally:
            if not self.lost_lease:
                with contextlib.suppress(Exception):
                    await db(services.lease_release)(channel_id=self.channel_id, token=self.lease_token)

    async def _follow(self) -> None:
        db = self.host.db
        channel = await db(selectors.channel_get)(channel_id=self.channel_id)
        client: LiveClient = registry.get(channel.platform)()
        self.platform = channel.platform
        try:
            await db(services.channel_transition)(channel_id=self.channel_id, to="starting", reason="following")
            failures = 0
            while not self.stop_requested.is_set():
                outcome = await self._one_connection(client, channel)
                if outcome == "stopped":
                    break
                if outcome == "ended":
                    failures = 0
                    if not channel.auto_follow:
                        await self._settle("idle", "The broadcast ended.")
                        return
                    await self._wait_offline(channel, reason="The broadcast ended; waiting for the next one.")
                    continue
                if outcome == "offline":
                    if not channel.auto_follow:
                        await self._settle("error", "The room is not live now. Turn on auto-follow to start when it goes live.")
                        return
                    await self._wait_offline(channel, reason="The room is offline.")
                    continue
                if isinstance(outcome, GiveUp | NotAllowed):
                    await self._close_session("error")
                    await self._settle("error", _reason(outcome))
                    return
                # RetryLater: a drop, a stall, a timeout, a 5xx
                failures = 1 if outcome.connected else await db(services.channel_failure)(channel_id=self.channel_id)
                if failures >= settings.LIVEFEED_MAX_FAILURES:
                    reason = f"Gave up after {failures} failed connects: {_reason(outcome)}"
                    if channel.auto_follow:
                        await self._wait_offline(channel, reason=reason)
                        failures = 0
                        continue
                    await self._close_session("error")
                    await self._settle("error", reason)
                    return
                self.gap_started_ms = self.gap_started_ms or kinds.now_ms()
                metrics.live_reconnects.labels(self.platform).inc()
                await db(services.channel_transition)(channel_id=self.channel_id, to="reconnecting",
                                                      reason=_reason(outcome))
                await self._sleep(backoff_s(failures, max_s=settings.LIVEFEED_RECONNECT_MAX_S))
            # a user asked to stop
            await db(services.channel_transition)(channel_id=self.channel_id, to="stopping", reason="stop asked")
            await self._flush()
            await self._close_session("stopped")
            await db(services.channel_transition)(channel_id=self.channel_id, to="idle", reason="Stopped.")
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _one_connection(self, client: LiveClient, channel) -> Any:
        """Connect once and read until the socket ends. Returns "stopped", "ended", "offline",
        or the error that ended it (RetryLater with `.connected` set when it had been running)."""
        db = self.host.db
        connected = False
        try:
            info = await client.room_info(channel.ref)
            await db(services.channel_update_info)(channel_id=self.channel_id, title=info.title,
                                                  streamer_name=info.streamer_name, streamer_id=info.streamer_id,
                                                  avatar_url=info.avatar_url)
            if not info.live:
                return "offline"
            await self._open_session(info)
            connection = await client.connect(info, stall_s=settings.LIVEFEED_STALL_S)
            async with connection:
                connected = True
                await db(services.channel_transition)(channel_id=self.channel_id, to="running", reason="connected")
                await self._close_gap()
                reader = asyncio.ensure_future(self._read(connection))
                stopper = asyncio.ensure_future(self.stop_requested.wait())
                try:
                    done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopper.cancel()
                    if not reader.done():
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await reader
                if reader in done:
                    reader.result()  # raises what ended the socket
                    if self.session_ended:
                        return "ended"
                    raise RetryLater("The platform closed the connection.")
                return "stopped"
        except (RetryLater, GiveUp, NotAllowed) as exc:
            await self._flush()
            exc.connected = connected  # type: ignore[attr-defined]
            return exc
        except (TimeoutError, OSError) as exc:
            await self._flush()
            error = RetryLater(f"{type(exc).__name__}: {exc}")
            error.connected = connected  # type: ignore[attr-defined]
            return error

    async def _read(self, connection) -> None:
        flusher = asyncio.ensure_future(self._flush_every(self.host.flush_s))
        stats_pusher = asyncio.ensure_future(self._stats_every(settings.LIVEFEED_STATS_S))
        received = metrics.live_messages.labels(self.platform, "received")
        lag = metrics.live_lag_seconds.labels(self.platform)
        try:
            async for batch in connection:
                newest = None
                for item in batch:
                    if isinstance(item, Malformed):
                        self._count_malformed(item)
                        continue
                    self.buffer.append(item)
                    newest = item
                    if item.type == kinds.CONTROL and item.extra.get("status") == kinds.ENDED:
                        self.session_ended = True
                if newest is not None:
                    received.inc(len(batch))
                    lag.observe(max(0, newest.received_ms - newest.ts_ms) / 1000)
                if self.session_ended:
                    break
                if len(self.buffer) >= self.host.buffer_max:
                    await self._wait_for_room()
        finally:
            for task in (flusher, stats_pusher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._flush()
            if self.session_ended:
                await self._close_session("ended")

    async def _wait_for_room(self) -> None:
        """Backpressure: stop reading the socket while the buffer is full (see the module's
        docstring); the periodic flush keeps storing, or trying to."""
        metrics.live_paused.labels(self.platform).inc()
        self.pauses += 1
        started = asyncio.get_running_loop().time()
        logged = self._now_and_then("paused")
        if logged:
            logger.warning("live messages come in faster than they are stored: reading the room paused",
                           extra={"channel_id": self.channel_id, "pending": len(self.buffer), "pauses": self.pauses})
        while len(self.buffer) >= self.host.buffer_max:  # a lost lease cancels this task
            self.has_room.clear()
            await self.has_room.wait()
        if logged:
            logger.warning("reading the room resumed", extra={
                "channel_id": self.channel_id, "pending": len(self.buffer),
                "paused_s": round(asyncio.get_running_loop().time() - started, 3)})

    def _now_and_then(self, what: str, period_s: float = LOG_EVERY_S) -> bool:
        """Whether to log `what` now: at most once every `period_s` per follower, so that a
        database away for an hour or a room always ahead of it logs a line a minute, not
        four a second (the metrics count every one)."""
        now = asyncio.get_running_loop().time()
        if now - self.logged_at.get(what, -period_s) < period_s:
            return False
        self.logged_at[what] = now
        return True

    async def _flush_every(self, period_s: float) -> None:
        while True:
            await asyncio.sleep(period_s)
            await self._flush()

    async def _stats_every(self, period_s: float) -> None:
        """live.stats for the watchers every few seconds, while messages come in."""
        while True:
            await asyncio.sleep(period_s)
            if self.stored_since_stats and self.session_id is not None:
                try:
                    if await self.host.db(_push_stats)(channel_id=self.channel_id, session_id=self.session_id):
                        self.stored_since_stats = 0
                except Exception:
                    logger.warning("live stats not pushed", exc_info=True, extra={"channel_id": self.channel_id})

    async def _flush(self) -> None:
        """Store what was received since the last flush, then push what was new: at most
        FLUSH_MAX messages a storage call (and so a `live.messages` frame), oldest first, until
        the buffer is empty. A worker that fell behind (a slow database) catches up in
        frames a browser parses quickly and transactions that hold the session briefly."""
        while not self.lost_lease and self.session_id is not None and (self.buffer or self.malformed):
            # Taken off the buffer only once stored: while the call runs, the reader still sees
            # them as pending and does not read past the bound, and a failure has nothing to put back.
            batch = list(itertools.islice(self.buffer, FLUSH_MAX))
            malformed, self.malformed = self.malformed, {}
            try:
                stored = await self.host.db(_store_and_push)(channel_id=self.channel_id, session_id=self.session_id,
                                                             messages=batch, malformed=malformed,
                                                             platform=self.platform)
                for _ in batch:
                    self.buffer.popleft()
                self.stored_since_stats += stored
                if len(self.buffer) < self.host.buffer_max:
                    self.has_room.set()
                if self.failed_flushes:
                    logger.warning("live messages stored again", extra={
                        "channel_id": self.channel_id, "failed_flushes": self.failed_flushes,
                        "pending": len(self.buffer)})
                    self.failed_flushes = 0
                    self.logged_at.pop("not stored", None)
            except Exception:
                # The database is away: the messages stay in the buffer for the next flush.
                for kind, count in malformed.items():
                    self.malformed[kind] = self.malformed.get(kind, 0) + count
                self.failed_flushes += 1
                if self._now_and_then("not stored"):
                    logger.exception("live messages not stored yet; kept for the next flush",
                                     extra={"channel_id": self.channel_id, "pending": len(self.buffer),
                                            "failed_flushes": self.failed_flushes})
                return

    def _count_malformed(self, item: Malformed) -> None:
        metrics.live_messages.labels(self.platform, "malformed").inc()
        self.malformed[item.kind] = self.malformed.get(item.kind, 0) + 1
        if item.kind not in self.logged_kinds:
            self.logged_kinds.add(item.kind)
            logger.warning("malformed live frame", extra={"channel_id": self.channel_id, "kind": item.kind,
                                                          "detail": item.detail[:200], "sample": item.sample[:64].hex()})

    async def _open_session(self, info) -> None:
        if self.session_id is not None and not self.session_ended:
            return
        self.session_ended = False
        session, created = await self.host.db(services.session_open)(channel_id=self.channel_id, title=info.title)
        self.session_id = session.pk
        if created:
            # A new session has no gap: failed connects before it (the room not reachable
            # yet) were before anything was followed.
            self.gap_started_ms = None
        elif self.gap_started_ms is None:
            # A take-over (or a restart): nobody listened since the last message stored.
            self.gap_started_ms = await self.host.db(selectors.channel_last_received_ms)(channel_id=self.channel_id)

    async def _close_gap(self) -> None:
        if self.gap_started_ms is not None and self.session_id is not None:
            await self.host.db(services.session_gap_add)(session_id=self.session_id, start_ms=self.gap_started_ms,
                                                         end_ms=kinds.now_ms())
        self.gap_started_ms = None

    async def _close_session(self, reason: str) -> None:
        if self.session_id is not None:
            await self.host.db(services.session_close)(session_id=self.session_id, reason=reason)
        self.session_id = None
        self.gap_started_ms = None

    async def _wait_offline(self, channel, *, reason: str) -> None:
        """Auto-follow: waiting until the next check (or a stop)."""
        await self._close_session("ended")
        next_check_s = max(1, channel.check_interval_s)
        await self.host.db(services.channel_transition)(
            channel_id=self.channel_id, to="waiting", reason=reason,
            next_check_at=timezone.now() + timedelta(seconds=next_check_s))
        await self._sleep(next_check_s)

    async def _settle(self, to: str, reason: str) -> None:
        """The follower ends for good: the user's wish becomes "stop" (or the next scan would
        start it again), then the final state with its reason."""
        await self.host.db(services.channel_settle)(channel_id=self.channel_id, to=to, reason=reason)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_requested.wait(), timeout=seconds)


def _store_and_push(*, channel_id: int, session_id: int, messages: list[Message], malformed: dict[str, int],
                    platform: str) -> int:
    """Store, count, push; the number of new rows."""
    result = storage.messages_store(channel_id=channel_id, session_id=session_id, messages=messages)
    metrics.live_messages.labels(platform, "stored").inc(len(result.stored))
    metrics.live_messages.labels(platform, "duplicate").inc(result.duplicates)
    if malformed:
        services.channel_count_malformed(channel_id=channel_id, kinds=malformed)
    if result.stored or result.updated:
        live.messages_push(channel_id=channel_id, rows=result.stored + result.updated)
    return len(result.stored) + len(result.updated)


def _push_stats(*, channel_id: int, session_id: int) -> bool:
    """live.stats to the channel's watchers; nothing (False) when no server process has a
    socket on the channel: the statistics (several queries) are then not computed at all, and
    the next period tries again. Most followed rooms are watched by nobody most of the time."""
    topic = services.live_group(channel_id)
    watched = realtime.sync_redis().pubsub_numsub(realtime.channel_prefix() + topic)
    if not watched or not watched[0][1]:
        return False
    event = {"type": "live.stats", "channel_id": channel_id, **stats.session_stats(session_id=session_id)}
    realtime.publish(topic, event)
    return True


def _reason(exc: BaseException) -> str:
    return str(exc)[:480] or type(exc).__name__


class Host:
    """All the followers of one worker process, on one event loop."""

    def __init__(self, *, owner: str | None = None, scan_s: float | None = None, flush_s: float | None = None,
                 lease_s: float | None = None, buffer_max: int | None = None):
        self.owner = owner or owner_name()
        self.scan_s = scan_s if scan_s is not None else settings.LIVEFEED_SCAN_S
        self.lease_s = lease_s if lease_s is not None else settings.LIVEFEED_LEASE_S
        self.flush_s = flush_s if flush_s is not None else settings.LIVEFEED_FLUSH_S
        self.buffer_max = buffer_max if buffer_max is not None else settings.LIVEFEED_BUFFER_MAX
        self.followers: dict[int, Follower] = {}
        self.db = _in_db_thread
        self._stopping: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Follow until `stop` is set; then stop every follower (flushing) and release its lease."""
        self._stopping = stop or asyncio.Event()
        heartbeat = asyncio.ensure_future(self._heartbeat())
        try:
            while not self._stopping.is_set():
                try:
                    await self.scan()
                except Exception:
                    logger.exception("live fetcher scan failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.scan_s)
        finally:
            heartbeat.cancel()
            await self.shutdown()

    async def scan(self) -> None:
        """Take the channels that want following and that nobody holds; let go of those whose
        user asked to stop (their follower flushes and goes idle)."""
        todo = await self.db(selectors.channels_to_follow)(held=list(self.followers))
        for channel_id in todo.take:
            if channel_id in self.followers:
                continue
            token = await self.db(services.lease_take)(channel_id=channel_id, owner=self.owner, ttl_s=self.lease_s)
            if token:
                self._start(channel_id, token)
        for channel_id in todo.stop:
            follower = self.followers.get(channel_id)
            if follower:
                follower.request_stop()
        for channel_id, follower in list(self.followers.items()):
            if follower.task is not None and follower.task.done():
                self.followers.pop(channel_id, None)

    def _start(self, channel_id: int, token: str) -> None:
        follower = Follower(host=self, channel_id=channel_id, lease_token=token)
        follower.task = asyncio.ensure_future(follower.run())
        follower.task.add_done_callback(lambda _task: metrics.live_fetchers.dec())
        metrics.live_fetchers.inc()
        self.followers[channel_id] = follower
        logger.info("live channel taken", extra={"channel_id": channel_id, "owner": self.owner})

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            for channel_id, follower in list(self.followers.items()):
                try:
                    kept = await self.db(services.lease_renew)(channel_id=channel_id, token=follower.lease_token,
                                                               ttl_s=self.lease_s)
                except Exception:
                    logger.exception("live lease renewal failed", extra={"channel_id": channel_id})
                    continue
                if not kept:  # someone else holds it now: stop without touching its state
                    logger.warning("live lease lost", extra={"channel_id": channel_id})
                    follower.lost_lease = True
                    if follower.task:
                        follower.task.cancel()
                    self.followers.pop(channel_id, None)

    async def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop every follower: each flushes what it received; their sessions stay open (the
        next fetcher continues them) and their leases are released for a fast take-over."""
        followers = list(self.followers.values())
        for follower in followers:
            if follower.task:
                follower.task.cancel()
        tasks = [f.task for f in followers if f.task]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        self.followers.clear()
