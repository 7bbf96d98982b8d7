"""The server -> client events of a room (docs/protocol.md), built from committed data."""

from __future__ import annotations

import json

from rooms import presence
from rooms.models import Membership, PlaybackState, QueueEntry, Room, clock_at


def track_payload(track) -> dict:
    return {
        "id": track.pk,
        "title": track.title,
        "artist": track.artist.name,
        "album": track.album.title if track.album_id else "",
        "duration_s": track.duration_s,
        "stream_url": track.get_stream_url(),
    }


def position_at(state: dict, server_ms: int) -> float:
    """Where a `room.state` event says playback is at `server_ms` (PlaybackState.position_at
    for the event form: before a scheduled start, the start position)."""
    return clock_at(base_s=state["position_s"], playing=state["status"] == PlaybackState.Status.PLAYING,
                    anchor_ms=state["anchor_ms"], rate=state["rate"], server_ms=server_ms)


def heard_at(state: dict, server_ms: int) -> float:
    """PlaybackState.heard_at for the event form."""
    return clock_at(base_s=state["heard_s"], playing=state["status"] == PlaybackState.Status.PLAYING,
                    anchor_ms=state["anchor_ms"], rate=state["rate"], server_ms=server_ms)


def state_event(state: PlaybackState, *, reason: str, server_ms: int) -> dict:
    entry = state.entry
    return {
        "type": "room.state",
        "reason": reason,
        "version": state.version,
        "status": state.status,
        "entry_id": entry.pk if entry is not None else None,
        "track": track_payload(entry.track) if entry is not None else None,
        "position_s": round(state.position_s, 4),
        "anchor_ms": state.anchor_ms,
        "rate": state.rate,
        "volume": state.volume,
        "heard_s": round(state.heard_s, 3),
        "server_ms": server_ms,
    }


def current_state_event(room_id: int, *, reason: str) -> dict:
    state = PlaybackState.objects.select_related("entry__track__artist", "entry__track__album").get(room_id=room_id)
    return state_event(state, reason=reason, server_ms=presence.now_ms())


def queue_event(room: Room) -> dict:
    entries = QueueEntry.objects.filter(room=room).select_related("track__artist", "track__album", "added_by")
    return {
        "type": "room.queue",
        "entries": [
            {
                "id": entry.pk,
                "position": index,
                "added_by": entry.added_by.get_username() if entry.added_by_id else None,
                "track": track_payload(entry.track),
            }
            for index, entry in enumerate(entries.order_by("position", "id"))
        ],
        "repeat": room.repeat,
        "shuffle": room.shuffle,
    }


# What a member entry leaves out when it holds the default (docs/protocol.md): most entries
# of a big room are listeners without sync figures, and every socket that joins parses the
# whole list (1,000 entries at 1,000 members), so each entry carries only what is not implied.
MEMBER_DEFAULTS = {"role": Membership.Role.LISTENER.value, "online": False, "offset_ms": None, "rtt_ms": None,
                   "drift_ms": None, "sound_blocked": False}


def member_entry(**fields) -> dict:
    """A member's entry for the wire: `user` and `user_id`, and the other fields only where
    they differ from MEMBER_DEFAULTS (0 ms is a figure and stays; None and False go)."""
    return {key: value for key, value in fields.items()
            if key not in MEMBER_DEFAULTS or not _is_default(value, MEMBER_DEFAULTS[key])}


def _is_default(value, default) -> bool:
    return value is default or (isinstance(default, str) and value == default)


def member_value(member: dict, key: str):
    """A field of a member entry, its default when the entry leaves it out."""
    return member.get(key, MEMBER_DEFAULTS[key])


def with_online(member: dict, online: bool) -> dict:
    """A copy of the entry, shown online or offline (offline: the field left out)."""
    entry = dict(member)
    entry.pop("online", None)
    if online:
        entry["online"] = True
    return entry


def members_payload(room: Room) -> list[dict]:
    online = presence.online_user_ids(room.pk)
    reports = presence.reports(room.pk)
    members = []
    rows = Membership.objects.filter(room=room).values_list("user_id", "user__username", "role")
    for user_id, username, role in rows:
        is_online = user_id in online
        report = reports.get(user_id, {}) if is_online else {}
        # A player whose browser blocked its sound plays nothing: it has no drift to show.
        sound_blocked = bool(report.get("sound_blocked"))
        members.append(member_entry(
            user=username,
            user_id=user_id,
            role=role,
            online=is_online,
            offset_ms=report.get("offset_ms"),
            rtt_ms=report.get("rtt_ms"),
            drift_ms=None if sound_blocked else report.get("drift_ms"),
            sound_blocked=sound_blocked,
        ))
    return sorted_members(members)


def members_event(room: Room, members: list[dict] | None = None) -> dict:
    return {"type": "room.members", "members": members if members is not None else members_payload(room)}


def room_event(room: Room) -> dict:
    """Room settings changed (policy, visibility, repeat, shuffle)."""
    return {
        "type": "room.settings",
        "name": room.name,
        "visibility": room.visibility,
        "control_policy": room.control_policy,
        "repeat": room.repeat,
        "shuffle": room.shuffle,
    }


def members_delta_event(*, changed: list[dict], removed: list[int], online: list[int] = (),
                        offline: list[int] = ()) -> dict:
    """What changed in the member list since the last announcement: whole entries of the
    members whose entry changed, the user ids of those no longer members, and the user ids
    of those who only came online or went offline (the rest of their entry is as before).
    A client keeps the full list it got on join (or in the last room.members) and applies
    these to it."""
    return {"type": "room.members_delta", "changed": changed, "removed": removed, "online": list(online),
            "offline": list(offline)}


def apply_members_delta(members: dict[int, dict], event: dict) -> None:
    """Fold a room.members / room.members_delta event into a {user_id: entry} view."""
    if event["type"] == "room.members":
        members.clear()
    for member in event.get("members") or event.get("changed") or []:
        members[member["user_id"]] = member
    for user_id in event.get("removed", []):
        members.pop(user_id, None)
    for key, online in (("online", True), ("offline", False)):
        for user_id in event.get(key, []):
            if user_id in members:
                members[user_id] = with_online(members[user_id], online)


def sorted_members(members) -> list[dict]:
    return sorted(members, key=lambda m: (not member_value(m, "online"), member_value(m, "role") != "host",
                                          m["user"].lower()))


def member_signatures(members: list[dict]) -> dict[str, str]:
    """What makes a member's entry different enough to announce (sync figures to the ms),
    by user id."""

    def rounded(value):
        return None if value is None else round(value)

    def signature(m: dict) -> list:
        role, online, offset_ms, drift_ms, sound_blocked = (
            member_value(m, key) for key in ("role", "online", "offset_ms", "drift_ms", "sound_blocked"))
        return [m["user"], role, online, rounded(offset_ms), rounded(drift_ms), sound_blocked]

    return {str(m["user_id"]): json.dumps(signature(m)) for m in members}


ONLINE_AT = 2  # where member_signatures keeps `online`


def only_presence_differs(before: str | None, now: str) -> bool:
    """Whether two signatures of one member differ in `online` alone."""
    if before is None:
        return False
    old, new = json.loads(before), json.loads(now)
    return len(old) == len(new) and old[ONLINE_AT] != new[ONLINE_AT] and (
        old[:ONLINE_AT] + old[ONLINE_AT + 1:] == new[:ONLINE_AT] + new[ONLINE_AT + 1:])
