"""What a room tells scrobbling: its members' now playing and the plays they heard.

Rooms reads its own PlaybackState here and calls scrobbling's public API
(scrobbling.services) with plain values: user ids, the track, where it is, when the play
started, how long it was heard, and the room's source reference ("room:<id>"). Scrobbling
never reads a room; rooms/services.py calls these after its own changes.
"""

from __future__ import annotations

from django.utils import timezone

from rooms.models import PlaybackState, Room
from scrobbling import services as scrobbling


def _now_ms() -> int:
    return int(timezone.now().timestamp() * 1000)


def playback_changed(*, state: PlaybackState, online_user_ids: set[int]) -> None:
    """A room's playback changed: its members online see it as their now playing (nothing,
    once it stopped)."""
    if not online_user_ids:
        return
    if state.entry is None or state.status == PlaybackState.Status.STOPPED:
        scrobbling.now_playing_end(user_ids=online_user_ids)
        return
    room = state.room
    scrobbling.now_playing_show(
        user_ids=online_user_ids, track=state.entry.track, position_s=state.position_at(_now_ms()), rate=state.rate,
        paused=state.status != PlaybackState.Status.PLAYING, source_ref=scrobbling.source_ref(room_id=room.pk),
        name=room.name, slug=room.slug, private=room.visibility == Room.Visibility.PRIVATE,
    )


def play_heard(*, state: PlaybackState, online_user_ids: set[int]) -> int:
    """Scrobble the room's current play for every member online now, once it has been heard
    long enough (scrobbling decides). The play's start time makes it unique, so however many
    processes ask, each member gets one scrobble per play. Returns how many were recorded."""
    if state.status != PlaybackState.Status.PLAYING or state.entry is None or state.started_at is None \
            or not online_user_ids:
        return 0
    return scrobbling.plays_heard(user_ids=online_user_ids, track=state.entry.track, started_at=state.started_at,
                                  heard_s=state.heard_at(_now_ms()), source_ref=scrobbling.source_ref(room_id=state.room_id))


def listeners_left(*, room_id: int, user_ids: set[int]) -> int:
    """These people left the room: their now playing is cleared where it is still this
    room's. Returns how many were cleared."""
    return scrobbling.now_playing_end(user_ids=user_ids, source_ref=scrobbling.source_ref(room_id=room_id))


def listeners_by_room() -> dict[int, set[int]]:
    """Who shows a room as their now playing: {room id: user ids}."""
    return {int(ref.removeprefix("room:")): user_ids for ref, user_ids in scrobbling.now_playing_sources().items()
            if ref.startswith("room:")}
