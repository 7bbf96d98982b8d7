"""How many transcodes may run at once: TRANSCODE_MAX_PER_USER per user and TRANSCODE_MAX in
all web processes together.

Each running transcode holds a slot: a member of two Redis sorted sets (one for the user, one
for the server) whose score is the time its lease ends. Taking a slot is one Lua script
(drop expired leases, count, add), so two processes never both take the last one. The
holder renews its lease every third of TRANSCODE_LEASE_S while the stream runs and removes
it when the stream ends; a process killed with its streams leaves leases that simply expire.
Times are Redis' own clock, so web servers on several machines agree.

When Redis cannot be reached, each process counts its own slots against the same limits (a
warning is logged): streaming goes on, the server-wide limit then holds per process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field

import redis
from django.conf import settings

from project.realtime import sync_redis

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 10
SERVER_KEY = "chorus:transcodes:all"

_ACQUIRE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lease_ms = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 2 end
redis.call('ZADD', KEYS[1], now_ms + lease_ms, ARGV[1])
redis.call('ZADD', KEYS[2], now_ms + lease_ms, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease_ms * 2)
redis.call('PEXPIRE', KEYS[2], lease_ms * 2)
return 0
"""

_RENEW = """
local now = redis.call('TIME')
local until_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2])
local kept = 0
for _, key in ipairs(KEYS) do
  kept = kept + redis.call('ZADD', key, 'XX', 'CH', until_ms, ARGV[1])
  redis.call('PEXPIRE', key, tonumber(ARGV[2]) * 2)
end
return kept
"""


def user_key(user_id: int) -> str:
    return f"chorus:transcodes:user:{user_id}"


class TranscodeBusy(Exception):
    """No slot: `status` is 429 (this user's limit) or 503 (the server's); str(exc) is the message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.retry_after_s = RETRY_AFTER_S


@dataclass
class _LocalCounts:
    """The fallback while Redis is down: this process's own slots."""

    total: int = 0
    per_user: dict[int, int] = field(default_factory=dict)


_local = _LocalCounts()


def _busy(code: int) -> TranscodeBusy:
    if code == 1:
        return TranscodeBusy(
            429,
            f"You already have {settings.TRANSCODE_MAX_PER_USER} converted streams playing; "
            "stop one, or play the original file (no ?format=).",
        )
    return TranscodeBusy(503, "The server is converting as many streams as it can; try again shortly, or play the original file.")


class Slot:
    """One running transcode's place in the limits. `release()` is idempotent."""

    def __init__(self, user_id: int, lease_id: str | None):
        self.user_id = user_id
        self._lease_id = lease_id  # None: counted locally
        self._renewer: asyncio.Task | None = None
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def start_renewing(self) -> None:
        if self._lease_id is not None:
            self._renewer = asyncio.create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        keys = [SERVER_KEY, user_key(self.user_id)]
        lease_ms = int(settings.TRANSCODE_LEASE_S * 1000)
        while True:
            await asyncio.sleep(settings.TRANSCODE_LEASE_S / 3)
            try:
                await asyncio.to_thread(sync_redis().eval, _RENEW, len(keys), *keys, self._lease_id, lease_ms)
            except (redis.RedisError, OSError):
                logger.warning("transcode slot lease not renewed", exc_info=True)

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._renewer is not None:
            self._renewer.cancel()
        if self._lease_id is None:
            _local.total -= 1
            _local.per_user[self.user_id] -= 1
            if not _local.per_user[self.user_id]:
                del _local.per_user[self.user_id]
            return
        lease_id = self._lease_id

        def remove() -> None:
            pipe = sync_redis().pipeline()
            pipe.zrem(SERVER_KEY, lease_id)
            pipe.zrem(user_key(self.user_id), lease_id)
            pipe.execute()

        try:
            await asyncio.to_thread(remove)
        except (redis.RedisError, OSError):  # the lease expires on its own
            logger.warning("transcode slot not released; its lease will expire", exc_info=True)


async def acquire(*, user_id: int) -> Slot:
    """A slot for one more transcode by `user_id`, or TranscodeBusy."""
    lease_id = secrets.token_hex(8)
    keys = [SERVER_KEY, user_key(user_id)]
    try:
        code = await asyncio.to_thread(
            sync_redis().eval, _ACQUIRE, len(keys), *keys, lease_id, int(settings.TRANSCODE_LEASE_S * 1000),
            settings.TRANSCODE_MAX, settings.TRANSCODE_MAX_PER_USER,
        )
    except (redis.RedisError, OSError):
        logger.warning("transcode limits counted in this process only: Redis is unreachable", exc_info=True)
        return _acquire_locally(user_id)
    if code:
        raise _busy(int(code))
    slot = Slot(user_id, lease_id)
    slot.start_renewing()
    return slot


def _acquire_locally(user_id: int) -> Slot:
    if _local.per_user.get(user_id, 0) >= settings.TRANSCODE_MAX_PER_USER:
        raise _busy(1)
    if _local.total >= settings.TRANSCODE_MAX:
        raise _busy(2)
    _local.total += 1
    _local.per_user[user_id] = _local.per_user.get(user_id, 0) + 1
    return Slot(user_id, None)


_pending: set[asyncio.Task] = set()


def release_soon(slot: Slot | None) -> None:
    """Release `slot` from synchronous code running on the event loop."""
    if slot is not None and not slot.released:
        task = asyncio.ensure_future(slot.release())
        _pending.add(task)
        task.add_done_callback(_pending.discard)
