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
