"""Room presence and sync reports in Redis, shared by every server process.

Each open socket is a member of a sorted set scored by when it expires; sockets refresh
their entry every tick, so a socket whose process died drops out within PRESENCE_TTL_MS.

Nothing here must outlive Redis: a restart may lose every key. Each process then writes its
sockets back as soon as it hears Redis again (rooms.runtime's resync, then every tick); what
is lost for good is only transient: sync reports (sent again every few seconds), "ready" for
the track being waited for (the wait ends at its timeout) and stall counts.
"""

from __future__ import annotations

import json
import time

from django.conf import settings

from project.realtime import sync_redis


def now_ms() -> int:
    return int(time.time() * 1000)


def _key(room_id: int, name: str) -> str:
    return f"chorus:room:{room_id}:{name}"


def touch(room_id: int, connections: list[tuple[int, str]]) -> None:
    """Mark these (user_id, connection id) sockets alive for another PRESENCE_TTL_MS."""
    if not connections:
        return
    expires = now_ms() + settings.ROOMS_PRESENCE_TTL_MS
    pipe = sync_redis().pipeline(transaction=False)
    pipe.zadd(_key(room_id, "presence"), {f"{user_id}:{conn}": expires for user_id, conn in connections})
    pipe.expire(_key(room_id, "presence"), 3600)
    pipe.execute()


def leave(room_id: int, user_id: int, conn: str) -> None:
    sync_redis().zrem(_key(room_id, "presence"), f"{user_id}:{conn}")


def online_user_ids(room_id: int) -> set[int]:
    key = _key(room_id, "presence")
    pipe = sync_redis().pipeline(transaction=False)
    pipe.zremrangebyscore(key, "-inf", now_ms())
    pipe.zrange(key, 0, -1)
    _, members = pipe.execute()
    return {int(member.decode().split(":", 1)[0]) for member in members}


def save_report(room_id: int, user_id: int, *, offset_ms: float, rtt_ms: float, drift_ms: float,
                sound_blocked: bool = False) -> dict | None:
    """Keep a member's latest sync report; returns the one it replaces (None: the first)."""
    report = {"offset_ms": offset_ms, "rtt_ms": rtt_ms, "drift_ms": drift_ms, "sound_blocked": sound_blocked,
              "at_ms": now_ms()}
    pipe = sync_redis().pipeline(transaction=False)
    pipe.hget(_key(room_id, "reports"), str(user_id))
    pipe.hset(_key(room_id, "reports"), str(user_id), json.dumps(report))
    pipe.expire(_key(room_id, "reports"), 3600)
    before, _, _ = pipe.execute()
    return json.loads(before) if before else None


def reports(room_id: int) -> dict[int, dict]:
    raw = sync_redis().hgetall(_key(room_id, "reports"))
    # A NaN or Infinity kept by an older version (reports were not checked then) reads as
    # "no figure": it must not reach lead_ms or a room.members frame.
    return {int(user_id): json.loads(value, parse_constant=lambda _: None) for user_id, value in raw.items()}


def mark_ready(room_id: int, entry_id: int, user_id: int) -> None:
    key = _key(room_id, f"ready:{entry_id}")
    pipe = sync_redis().pipeline(transaction=False)
    pipe.sadd(key, user_id)
    pipe.expire(key, 3600)
    pipe.execute()


def ready_user_ids(room_id: int, entry_id: int) -> set[int]:
    return {int(value) for value in sync_redis().smembers(_key(room_id, f"ready:{entry_id}"))}


def clear_ready(room_id: int, entry_id: int) -> None:
    sync_redis().delete(_key(room_id, f"ready:{entry_id}"))


def count_stall(room_id: int, user_id: int) -> int:
    """Count one stall of this member; returns how many in the last minute."""
    key = _key(room_id, f"stalls:{user_id}")
    pipe = sync_redis().pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, 60, nx=True)
    count, _ = pipe.execute()
    return int(count)


def stalled_too_often(room_id: int, user_id: int) -> bool:
    value = sync_redis().get(_key(room_id, f"stalls:{user_id}"))
    return value is not None and int(value) > settings.ROOMS_MAX_STALLS_PER_MINUTE


def swap_announced_members(room_id: int, signatures: dict[str, str]) -> dict[str, str] | None:
    """Store what the member list looks like now (member_signatures) and return what was
    stored before, atomically (SET ... GET): of several processes announcing the same change
    only the first sees a difference. None: nothing was stored (first announcement, or Redis
    lost it)."""
    previous = sync_redis().set(_key(room_id, "members_sig"), json.dumps(signatures), ex=3600, get=True)
    if previous is None:
        return None
    try:
        value = json.loads(previous)
    except ValueError:  # written by an older version (one signature for the whole list)
        return None
    return value if isinstance(value, dict) else None


def forget_announced_members(room_id: int) -> None:
    """The next announcement sends the whole list, not a delta: for sockets that may have
    missed announcements (their process was not subscribed while Redis was away)."""
    sync_redis().delete(_key(room_id, "members_sig"))


def mark_members_dirty(room_id: int) -> None:
    """Someone joined or left: the next runtime check announces what changed (coalesced,
    so a thousand people joining cost a few small deltas, not a thousand full lists)."""
    sync_redis().set(_key(room_id, "members_dirty"), 1, ex=600)


def take_members_dirty(room_id: int) -> bool:
    """True for exactly one caller after a change (GETDEL), whichever process asks first."""
    return sync_redis().getdel(_key(room_id, "members_dirty")) is not None
