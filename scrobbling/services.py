"""Scrobbling's public API: what the other apps call, with plain values only.

Rooms (rooms/scrobbles.py) tells scrobbling what its members hear through these functions;
scrobbling never reads another app's rows or imports rooms. A place plays are heard in is a
source reference, "room:<id>" (the only kind so far).

Inside the app the work is split by job, and these functions only translate to it:
- scrobbling.inputs: what a play is before it is recorded (PlayInput, ScrobbleError, the
  rule that makes a play count, the parsing of the API's items and of ListenBrainz listens);
- scrobbling.recording: recording plays (history rows, play counts through
  catalog.services.tracks_played, delivery buffer rows), the scrobble and listen submits;
- scrobbling.nowplaying: now playing, in Redis;
- scrobbling.links: links to services, and the clients built for them;
- scrobbling.kicks: starting drains; scrobbling.delivery: draining the buffer (in tasks).

Imports go one way: the views, API, compat endpoint, selectors and admin on top; this module,
recording, links and delivery below them; nowplaying, kicks and inputs at the bottom. A module
that enqueues a task imports scrobbling.tasks, and a task imports what it calls inside its
body (tests/project/test_import_cycles.py holds every app to this).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model

from scrobbling import inputs, nowplaying, recording
from scrobbling.models import Play

if TYPE_CHECKING:
    from catalog.models import Track

ROOM = "room:"


def heard_enough(*, duration_s: float, heard_s: float | None) -> bool:
    """Whether a play of a track `duration_s` long, heard for `heard_s`, counts as a play:
    the track is over 30 s, and half of it or 4 minutes were heard (None: all of it)."""
    return inputs.play_counts(duration_s=duration_s, played_s=heard_s)


def source_ref(*, room_id: int) -> str:
    """The source reference of a room: "room:<id>"."""
    return f"{ROOM}{room_id}"


def _room_id(ref: str) -> int:
    if not isinstance(ref, str) or not ref.startswith(ROOM) or not ref[len(ROOM):].isdigit():
        raise ValueError(f"a source reference is room:<id>, not {str(ref)[:40]!r}")
    return int(ref[len(ROOM):])


def plays_heard(*, user_ids: Iterable[int], track: Track, started_at: datetime, heard_s: float,
                source_ref: str) -> int:
    """These people heard `track` for `heard_s` from `started_at` at `source_ref`: record it
    for each active one of them if it counts as a play (heard_enough). The start time makes
    the play unique, so however often this is called for it, each gets one. Returns how many
    plays were recorded."""
    if not heard_enough(duration_s=track.duration_s, heard_s=heard_s):
        return 0
    user_ids = list(get_user_model().objects.filter(pk__in=set(user_ids), is_active=True).values_list("pk", flat=True))
    if not user_ids:
        return 0
    play = inputs.PlayInput.of_track(track, played_at=started_at, played_s=heard_s, source=Play.Source.ROOM,
                                     room_id=_room_id(source_ref))
    return len(recording.plays_record_for_users(user_ids=user_ids, play=play).created)


def now_playing_show(*, user_ids: Iterable[int], track: Track, position_s: float, rate: float = 1.0,
                     paused: bool = False, source_ref: str, name: str, slug: str, private: bool) -> list[dict]:
    """These people are listening to `track` at `source_ref` (at `position_s`, at `rate`, or
    paused): it shows as their now playing, under the room's `name` and `slug` (only "a
    private room" when `private`), and a track's start is sent on to their services."""
    users = list(get_user_model().objects.filter(pk__in=set(user_ids)))
    room = {"id": _room_id(source_ref), "name": name, "slug": slug, "private": private}
    return nowplaying.now_playing_set_many(users=users, track=track, position_s=position_s, rate=rate, paused=paused,
                                           source=Play.Source.ROOM, room=room)


def now_playing_end(*, user_ids: Iterable[int], source_ref: str | None = None) -> int:
    """These people stopped listening: clear their now playing (with `source_ref`, only where
    it still shows that source, not what they moved on to). Returns how many were cleared."""
    room_id = None if source_ref is None else _room_id(source_ref)
    return nowplaying.now_playing_clear_many(user_ids=set(user_ids), room_id=room_id)


def now_playing_sources() -> dict[str, set[int]]:
    """Who shows a source as their now playing: {source reference: user ids}."""
    return {source_ref(room_id=room_id): user_ids for room_id, user_ids in nowplaying.now_playing_by_room().items()}
