"""Every non-trivial read of rooms."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from rooms import presence
from rooms.models import Membership, PlaybackState, QueueEntry, Room
from rooms.services import RoomError


def room_visible(*, slug: str, user) -> tuple[Room, Membership | None]:
    """A room as its page shows it: public rooms to anyone logged in, private ones to members."""
    room = Room.objects.select_related("owner").filter(slug=slug).first()
    if room is None:
        raise RoomError("not_found", f"No room called {slug!r}.")
    membership = Membership.objects.filter(room=room, user=user).first()
    if membership is None and room.visibility != Room.Visibility.PUBLIC:
        raise RoomError("forbidden", "This room is private: ask its host for the invite link.")
    return room, membership


def room_list(*, user) -> list[Room]:
    """Public rooms and the user's own, busiest first, each with `online_count`: one query
    for the rooms, one presence read per room."""
    rooms: QuerySet[Room] = (
        Room.objects.filter(Q(visibility=Room.Visibility.PUBLIC) | Q(memberships__user=user))
        .distinct()
        .select_related("owner", "playback__entry__track__artist")
        .annotate(member_count=Count("memberships", distinct=True))
    )
    result = list(rooms[:200])
    for room in result:
        room.online_count = len(presence.online_user_ids(room.pk))
    result.sort(key=lambda r: (-r.online_count, -r.created_at.timestamp()))
    return result


def room_queue_tracks(*, room: Room) -> list:
    """The tracks of the room's queue in order, from the one playing now (all of them when
    nothing is)."""
    entries = list(QueueEntry.objects.filter(room=room).select_related("track__artist").order_by("position", "id"))
    current_id = PlaybackState.objects.filter(room=room).values_list("entry_id", flat=True).first()
    start = next((index for index, entry in enumerate(entries) if entry.pk == current_id), 0)
    return [entry.track for entry in entries[start:]]
