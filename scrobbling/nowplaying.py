"""Now playing: who is listening to what right now, kept in Redis.

One hash (user id -> the entry as JSON) and a sorted set of when each entry runs out (the
time left of the track + 5 s; 30 min while paused; 10 min for an outside player's track of
unknown length). Reading (now_playing_list) never writes: an entry whose time ran out is
left out, and the beat's sweep (now_playing_expire, every minute) deletes it. At the start
of a track the entry is sent on to the user's linked services once (a task).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from django.utils import timezone

from project.realtime import sync_redis
from scrobbling import tasks
from scrobbling.inputs import MAX_DURATION_S, PlayInput, ScrobbleError
from scrobbling.models import Play, ScrobblerLink

if TYPE_CHECKING:
    from catalog.models import Track

NOW_PLAYING_PAUSED_TTL_S = 30 * 60
UNKNOWN_LENGTH_NOW_PLAYING_TTL_S = 10 * 60
NOW_PLAYING_KEY = "chorus:nowplaying"


def now_playing_set(*, user, track: Track, position_s: float = 0.0, rate: float = 1.0, paused: bool = False,
                    source: str = Play.Source.API, room: dict | None = None) -> dict:
    """Remember what `user` is playing (TTL: the time left, + 5 s; 30 min while paused) and,
    at the start of a track, send it on to the user's services once. `room`: the room it
    plays in, as the listing shows it ({"id", "name", "slug", "private"})."""
    if isinstance(position_s, bool) or not isinstance(position_s, (int, float)) \
            or not 0 <= position_s <= MAX_DURATION_S:
        raise ScrobbleError("invalid", "position_s must be a number of seconds from 0.", field="position_s")
    return now_playing_set_many(users=[user], track=track, position_s=float(position_s), rate=rate, paused=paused,
                                source=source, room=room)[0]


def now_playing_set_many(*, users: list, track: Track, position_s: float, rate: float = 1.0, paused: bool = False,
                         source: str, room: dict | None = None) -> list[dict]:
    """now_playing_set for several people at once (a room's members): one Redis round trip
    to read, one to write."""
    if not users:
        return []
    position_s = min(position_s, track.duration_s)
    now_ms = int(timezone.now().timestamp() * 1000)
    ttl_s = NOW_PLAYING_PAUSED_TTL_S if paused else (track.duration_s - position_s) / max(rate, 0.01) + 5
    base = {
        "track_id": track.pk, "title": track.title, "artist": track.artist.name,
        "album": track.album.title if track.album else "", "duration_s": track.duration_s, "position_s": position_s,
        "at_ms": now_ms, "paused": paused, "source": source,
        "room": {key: room[key] for key in ("id", "name", "slug", "private")} if room else None,
    }
    entries = [dict(base, user_id=user.pk, username=user.get_username()) for user in users]
    previous = _store(entries, expires_ms=now_ms + int(ttl_s * 1000))
    sendable = PlayInput.of_track(track, played_at=timezone.now(), source=source).sendable
    starters = [e["user_id"] for e, before in zip(entries, previous, strict=True) if _is_new_start(before, e)]
    if not paused and sendable and starters:
        linked = set(ScrobblerLink.objects.filter(user_id__in=starters, status=ScrobblerLink.Status.ACTIVE)
                     .values_list("user_id", flat=True))
        for user_id in sorted(linked):
            tasks.send_now_playing.delay_on_commit(user_id, track.pk)
    return entries


def now_playing_listen(*, user, play: PlayInput) -> dict:
    """Now playing from an outside player for a track that is not in the library: shown
    like the others (without a link to a track) for its duration, or 10 minutes when the
    player did not say, and sent on to the user's services at its start."""
    now_ms = int(timezone.now().timestamp() * 1000)
    entry = {"track_id": None, "title": play.track_title, "artist": play.artist_name, "album": play.album_title,
             "duration_s": play.duration_s, "position_s": 0.0, "at_ms": now_ms, "paused": False,
             "source": Play.Source.EXTERNAL, "room": None, "user_id": user.pk, "username": user.get_username()}
    ttl_s = (play.duration_s or UNKNOWN_LENGTH_NOW_PLAYING_TTL_S) + 5
    [previous] = _store([entry], expires_ms=now_ms + int(ttl_s * 1000))
    if play.sendable and _is_new_start(previous, entry) and ScrobblerLink.objects.filter(
        user=user, status=ScrobblerLink.Status.ACTIVE
    ).exists():
        listen = {"artist": play.artist_name, "title": play.track_title, "album": play.album_title,
                  "duration_s": play.duration_s, "mbid": play.recording_mbid}
        tasks.send_now_playing.delay_on_commit(user.pk, None, listen)
    return entry


def _store(entries: list[dict], *, expires_ms: int) -> list[bytes | None]:
    """Write these entries (running out at `expires_ms`); what each user showed before.
    One Redis round trip to read, one to write."""
    redis = sync_redis()
    previous = redis.hmget(NOW_PLAYING_KEY, [str(e["user_id"]) for e in entries])
    pipe = redis.pipeline(transaction=False)
    pipe.hset(NOW_PLAYING_KEY, mapping={str(e["user_id"]): json.dumps(e) for e in entries})
    pipe.zadd(NOW_PLAYING_KEY + ":expires", dict.fromkeys((str(e["user_id"]) for e in entries), expires_ms))
    pipe.execute()
    return previous


def _is_new_start(previous: bytes | None, entry: dict) -> bool:
    if previous is None:
        return True
    before = json.loads(previous)
    if (before["track_id"], before.get("title"), before.get("artist")) != (entry["track_id"], entry["title"],
                                                                           entry["artist"]):
        return True
    elapsed_s = 0 if before["paused"] else (entry["at_ms"] - before["at_ms"]) / 1000
    expected_s = before["position_s"] + elapsed_s
    # The same track again from (near) its start: a new play of it.
    return entry["position_s"] < 5 and expected_s > entry["position_s"] + 10


def now_playing_clear(*, user_id: int) -> None:
    _drop(sync_redis(), [str(user_id)])


def now_playing_clear_many(*, user_ids: set[int], room_id: int | None = None) -> int:
    """Clear these people's now playing; with `room_id`, only where it is still that room's
    (not if they have moved on to something else meanwhile). Returns how many were cleared."""
    if not user_ids:
        return 0
    redis = sync_redis()
    keys = [str(user_id) for user_id in sorted(user_ids)]
    gone = [key for key, value in zip(keys, redis.hmget(NOW_PLAYING_KEY, keys), strict=True)
            if value is not None and (room_id is None or (json.loads(value).get("room") or {}).get("id") == room_id)]
    _drop(redis, gone)
    return len(gone)


def now_playing_by_room() -> dict[int, set[int]]:
    """Who shows a room as their now playing: {room id: user ids}."""
    rooms: dict[int, set[int]] = {}
    for user_id, value in sync_redis().hgetall(NOW_PLAYING_KEY).items():
        room = json.loads(value).get("room")
        if room:
            rooms.setdefault(room["id"], set()).add(int(user_id))
    return rooms


def _drop(redis, keys: list) -> None:
    """Delete these users' entries (the hash and the expiry set alike)."""
    if keys:
        pipe = redis.pipeline(transaction=False)
        pipe.hdel(NOW_PLAYING_KEY, *keys)
        pipe.zrem(NOW_PLAYING_KEY + ":expires", *keys)
        pipe.execute()


def now_playing_expire() -> int:
    """Drop the entries whose time ran out (the beat's sweep, every minute); how many."""
    redis = sync_redis()
    now_ms = int(timezone.now().timestamp() * 1000)
    expired = redis.zrangebyscore(NOW_PLAYING_KEY + ":expires", "-inf", now_ms)
    _drop(redis, expired)
    return len(expired)


def now_playing_list() -> list[dict]:
    """Who is listening to what right now. A pure read: entries whose time ran out are left
    out here and deleted by now_playing_expire."""
    redis = sync_redis()
    now_ms = int(timezone.now().timestamp() * 1000)
    pipe = redis.pipeline(transaction=False)
    pipe.zrangebyscore(NOW_PLAYING_KEY + ":expires", "-inf", now_ms)
    pipe.hgetall(NOW_PLAYING_KEY)
    expired, current = pipe.execute()
    expired = set(expired)
    entries = [json.loads(value) for user_id, value in current.items() if user_id not in expired]
    for entry in entries:
        if not entry["paused"]:
            position_s = entry["position_s"] + (now_ms - entry["at_ms"]) / 1000
            entry["position_s"] = min(entry["duration_s"], position_s) if entry["duration_s"] else position_s
    return sorted(entries, key=lambda e: (e["paused"], e["username"]))

