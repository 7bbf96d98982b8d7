"""channels-redis's layer, made to outlive a Redis restart.

The channel layer carries one kind of message: "close this user's connections"
(`project/accounts/revocation.py`). Stock channels-redis has two weaknesses for that job:

- a consumer's `receive()` raises when Redis goes away, and Channels then ends the consumer
  (its socket closes with 1011): a one-second Redis restart would drop every websocket;
- group memberships live only in Redis: after a restart that lost them (no persistence,
  or writes after the last snapshot), or after `group_expiry` (one day), a revocation
  would reach nobody.

This subclass keeps a process-local copy of its group memberships; when Redis fails,
`receive()` waits (one probe per event loop, with back-off) instead of raising, and once
Redis answers again every local membership is written back before anyone receives. The
memberships are also rewritten every `group_expiry / 4`, so a socket open for days stays
reachable. Messages sent while Redis was down are lost; the connection is refused at its
next connect instead (docs/operations.md, Revocation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio
import redis.exceptions
from channels_redis import core

from project.batching import Coalescer

logger = logging.getLogger(__name__)

REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError, OSError)
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 2.0
# A command waits this long for a free pooled connection before it fails as "Redis away".
POOL_WAIT_S = 5.0


def _reraise_if_cancelled() -> None:
    """A cancelled receive (the socket went away, the loop is closing) can surface from
    redis-py as a connection error: it must end the task, not be waited out."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _LoopState:
    """Per event loop: whether Redis answers, and the task that watches it."""

    def __init__(self) -> None:
        self.healthy = asyncio.Event()
        self.healthy.set()
        self.wake = asyncio.Event()
        self.keeper: asyncio.Task | None = None


class RedisChannelLayer(core.RedisChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._local_groups: dict[str, set[str]] = {}
        self._loops: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        # The sockets opening together (a reconnect storm) join their groups in one pipeline.
        self._group_adds = Coalescer(self._group_add_many, name="channel-layer-group-add")

    def create_pool(self, index):
        """A pool that makes a command wait for a free connection. The stock pool (at most
        100 connections) fails at once when all are in use, as a thousand sockets joining
        at once make them: each such group_add counted as Redis being away."""
        host = dict(self.hosts[index])
        if "address" not in host:
            return super().create_pool(index)
        address = host.pop("address")
        return redis.asyncio.BlockingConnectionPool.from_url(address, timeout=POOL_WAIT_S, **host)

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            for old in [known for known in self._loops if known.is_closed()]:
                del self._loops[old]
            state = self._loops[loop] = _LoopState()
        if state.keeper is None or state.keeper.done():
            state.keeper = loop.create_task(self._keep(state), name="channel-layer-keeper")
        return state

    async def group_add(self, group: str, channel: str) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        self._local_groups.setdefault(group, set()).add(channel)
        state = self._state()
        try:
            await self._group_adds.ask((group, channel))
        except REDIS_DOWN:
            # Kept locally: written to Redis once it answers again.
            logger.warning("channel layer: Redis unavailable, group membership kept for later", exc_info=True)
            state.healthy.clear()
            state.wake.set()

    async def _group_add_many(self, pairs: list[tuple[str, str]]) -> list[None]:
        """What core.RedisChannelLayer.group_add writes, for many (group, channel) at once."""
        by_shard: dict[int, list[tuple[str, str]]] = {}
        for group, channel in pairs:  # names checked by group_add, each for its own caller
            by_shard.setdefault(self.consistent_hash(group), []).append((group, channel))
        for index, shard_pairs in by_shard.items():
            pipe = self.connection(index).pipeline(transaction=False)
            for group, channel in shard_pairs:
                key = self._group_key(group)
                pipe.zadd(key, {channel: time.time()})
                pipe.expire(key, self.group_expiry)
            await pipe.execute()
        return [None] * len(pairs)

    async def group_discard(self, group: str, channel: str) -> None:
        channels = self._local_groups.get(group)
        if channels is not None:
            channels.discard(channel)
            if not channels:
                del self._local_groups[group]
        # If Redis is down, the entry expires with group_expiry; a message to it reaches nobody.
        with contextlib.suppress(*REDIS_DOWN):
            await super().group_discard(group, channel)

    async def receive(self, channel: str) -> dict:
        state = self._state()
        while True:
            await state.healthy.wait()
            try:
                return await super().receive(channel)
            except REDIS_DOWN:
                _reraise_if_cancelled()
                if state.healthy.is_set():
                    logger.warning("channel layer: Redis unavailable, waiting for it")
                    state.healthy.clear()
                    state.wake.set()

    async def _keep(self, state: _LoopState) -> None:
        """Probe Redis while it is down, then restore the memberships; refresh them regularly."""
        refresh_s = max(1.0, self.group_expiry / 4)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.wake.wait(), timeout=refresh_s)
            state.wake.clear()
            backoff_s = BACKOFF_MIN_S
            while True:
                try:
                    await self._write_local_groups()
                    break
                except REDIS_DOWN:
                    _reraise_if_cancelled()
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
            if not state.healthy.is_set():
                logger.warning("channel layer: Redis is back, group memberships restored")
                state.healthy.set()

    async def _write_local_groups(self) -> None:
        """Every membership of this process, written back (one ZADD per group); pings if none."""
        connection = self.connection(0)
        await connection.ping()
        now = time.time()
        for group, channels in list(self._local_groups.items()):
            if not channels:
                continue
            connection = self.connection(self.consistent_hash(group))
            key = self._group_key(group)
            await connection.zadd(key, dict.fromkeys(channels, now))
            await connection.expire(key, self.group_expiry)
