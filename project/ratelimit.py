"""Politeness towards outside sites: at most one request per interval per key (a host), across
every process and worker that shares REDIS_URL.

    wait_turn("movie.douban.com", min_interval_s=2, timeout_s=60)   # blocks until our turn
    ... send the request ...

Each key holds, in Redis, the time of the next free turn. One Lua script (atomic: Redis runs
it alone) reads the server clock, takes the later of "now" and that next free turn as this
caller's turn, and moves the next free turn one interval further; the caller then sleeps until
its turn. Turns are handed out on Redis's clock, so callers on other machines, or with a skewed
clock, are spaced the same. A turn that would be further away than `timeout_s` is not taken
(nothing is reserved) and the caller gets RetryLater with the wait, so a queue of workers never
holds a task for longer than it allowed.

The key expires one interval after its last turn: a Redis restart (or a flush) loses at most
the spacing of the turns being handed out at that moment, never blocks anyone. While Redis is
unreachable, wait_turn raises RetryLater: no request goes out unspaced.
"""

from __future__ import annotations

import time
import uuid

import redis

from project import realtime
from project.outside import RetryLater

KEY_PREFIX = "chorus:ratelimit:"

# KEYS[1]: the key; ARGV[1]: interval (µs); ARGV[2]: longest wait the caller accepts (µs).
# Returns the wait before this caller's turn (µs, >= 0), or -(wait) - 1 when that is too long.
_TAKE_TURN = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local longest = tonumber(ARGV[2])
local next_free = tonumber(redis.call('GET', KEYS[1]) or '0')
local turn = math.max(now, next_free)
local wait = turn - now
if wait > longest then
  return -wait - 1
end
redis.call('SET', KEYS[1], turn + interval, 'PX', math.floor((wait + interval) / 1000) + 1000)
return wait
"""


def wait_turn(key: str, *, min_interval_s: float, timeout_s: float) -> None:
    """Block until this caller may send to `key`; RetryLater when that is more than `timeout_s`
    away (retry_after_s: the wait) or Redis cannot be reached."""
    if min_interval_s <= 0:
        return
    interval_us = round(min_interval_s * 1_000_000)
    longest_us = max(0, round(timeout_s * 1_000_000))
    try:
        wait_us = int(realtime.sync_redis().eval(_TAKE_TURN, 1, KEY_PREFIX + key, interval_us, longest_us))
    except (redis.RedisError, OSError) as exc:
        raise RetryLater(f"Rate limiter for {key}: Redis is unreachable ({type(exc).__name__}).") from exc
    if wait_us < 0:
        wait_s = (-wait_us - 1) / 1_000_000
        raise RetryLater(f"Rate limiter for {key}: the next turn is {wait_s:.1f}s away, more than {timeout_s}s.",
                         retry_after_s=wait_s)
    if wait_us:
        time.sleep(wait_us / 1_000_000)


# --- a budget of actions per user: at most N in any window -----------------------------------
# KEYS[1]: the key; ARGV[1]: window (µs); ARGV[2]: the most actions in a window; ARGV[3]: a
# unique member. A sorted set of the actions' times (Redis's clock): the ones older than the
# window are dropped, and the action is counted only if fewer than the limit remain. Returns 0
# when it is allowed, else the µs until the oldest counted action leaves the window.
_TAKE_SLOT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.floor(window / 1000) + 1000)
return 0
"""


class TooMany(Exception):
    """More than the limit within the window; `retry_after_s` is when the next one is allowed."""

    def __init__(self, message: str, *, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


def take_slot(key: str, *, limit: int, window_s: float) -> None:
    """Count one action under `key`, or raise TooMany when `limit` were counted in the last
    `window_s` (a sliding window, shared by every process on REDIS_URL). Unlike `wait_turn`
    this never waits: it is for what users do (posting), who are told to slow down."""
    result = int(realtime.sync_redis().eval(_TAKE_SLOT, 1, KEY_PREFIX + key, round(window_s * 1_000_000), limit,
                                            uuid.uuid4().hex))
    if result:
        raise TooMany(f"At most {limit} in {window_s:g} s.", retry_after_s=result / 1_000_000)
