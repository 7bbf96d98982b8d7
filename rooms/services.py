"""Every write to rooms. Web page, websocket and HTTP API all come through here.

Playback changes are a compare-and-set on PlaybackState.version: the change applies
only to the version it was computed from, so two controllers (or two server processes)
acting at once never double-advance or lose an update; the loser gets `conflict`.
Events go out through `broadcast_on_commit`, after the transaction commits.
"""

from __future__ import annotations

import copy
import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import ExpressionWrapper, F, FloatField, Max
from django.utils import timezone
from django.utils.text import slugify

from catalog import selectors as catalog_selectors
from project import inputs
from project.accounts import revocation
from project.realtime import broadcast_on_commit
from project.refusals import Refusal
from rooms import events, presence, scrobbles
from rooms.models import Membership, PlaybackState, QueueEntry, Room, new_invite_code
from rooms.presence import now_ms

logger = logging.getLogger(__name__)

ACTIONS = {"play", "pause", "stop", "seek", "next", "previous", "select", "volume"}
# "previous" within this many seconds of a track's start goes to the previous track;
# later, it restarts the current one (as every player does).
PREVIOUS_RESTART_S = 3.0
# Bounds of the numbers members send (every one finite: see project/inputs.py).
MAX_POSITION_S = 7 * 24 * 3600.0  # a seek beyond any track; the track's length is checked after
MAX_REPORT_MS = 3_600_000  # clock offset, round trip and drift in a sync report
MAX_ID = 2**63 - 1  # ids and versions are bigints


class RoomError(Refusal):
    """A request the room refuses; `code` is the websocket error code; `state`, when set, is
    the room's current state (sent with the error so the client catches up)."""

    def __init__(self, code: str, message: str, *, state: PlaybackState | None = None, field: str | None = None):
        super().__init__(code, message, field=field)
        self.state = state


def topic(room_id: int) -> str:
    return f"room.{room_id}"


def _number(value, *, field: str, minimum: float | None = None, maximum: float | None = None) -> float:
    try:
        return inputs.number(value, field=field, minimum=minimum, maximum=maximum)
    except inputs.InputError as exc:
        raise RoomError.from_input(exc) from None


def _whole(value, *, field: str, minimum: int = 1, maximum: int = MAX_ID) -> int:
    try:
        return inputs.whole_number(value, field=field, minimum=minimum, maximum=maximum)
    except inputs.InputError as exc:
        raise RoomError.from_input(exc) from None


# --- rooms and members --------------------------------------------------------------


def room_create(*, owner, name: str, visibility: str = Room.Visibility.PUBLIC,
                control_policy: str = Room.ControlPolicy.DJS) -> Room:
    name = (name or "").strip()
    if not name:
        raise RoomError("invalid", "Give the room a name.")
    if len(name) > 100:
        raise RoomError("invalid", "A room name has at most 100 characters.")
    if visibility not in Room.Visibility.values:
        raise RoomError("invalid", f"visibility must be one of {', '.join(Room.Visibility.values)}.")
    if control_policy not in Room.ControlPolicy.values:
        raise RoomError("invalid", f"control_policy must be one of {', '.join(Room.ControlPolicy.values)}.")
    base = slugify(name)[:50] or "room"
    for attempt in range(20):
        slug = base if attempt == 0 else f"{base}-{random.randint(2, 9999)}"  # noqa: S311 - not security
        try:
            with transaction.atomic():
                room = Room.objects.create(
                    name=name, slug=slug, owner=owner, visibility=visibility, control_policy=control_policy
                )
                PlaybackState.objects.create(room=room)
                Membership.objects.create(room=room, user=owner, role=Membership.Role.HOST)
                return room
        except IntegrityError:
            continue
    raise RoomError("conflict", "Could not find a free address for that name; try another name.")


def room_join(*, room: Room, user, invite_code: str | None = None) -> Membership:
    """Become a member: anyone may join a public room; a private one needs its invite code."""
    membership = Membership.objects.filter(room=room, user=user).first()
    if membership is not None:
        return membership
    if room.visibility == Room.Visibility.PRIVATE and invite_code != room.invite_code:
        raise RoomError("forbidden", "This room is private: you need an invite link from its host.")
    membership, _ = Membership.objects.get_or_create(room=room, user=user, defaults={"role": Membership.Role.LISTENER})
    transaction.on_commit(lambda: presence.mark_members_dirty(room.pk))
    return membership


def room_enter(*, slug: str, user) -> Room:
    """A socket enters a room: members always; anyone else only a public room, and then they
    join it as a listener (a write, so a service). RoomError not_found / forbidden otherwise."""
    outcome = rooms_enter(entries=[(slug, user)])[0]
    if isinstance(outcome, RoomError):
        raise outcome
    return outcome


def rooms_enter(*, entries: list[tuple[str, object]]) -> list[Room | RoomError]:
    """room_enter for many (slug, user) at once, as sockets reconnecting together ask: two
    queries for all the members among them. The room, or the RoomError, of each in order."""
    rooms = {room.slug: room for room in Room.objects.filter(slug__in={slug for slug, _ in entries})}
    members = set(
        Membership.objects.filter(room__in=list(rooms.values()), user_id__in={user.pk for _, user in entries})
        .values_list("room_id", "user_id")
    ) if rooms else set()
    outcomes = []
    for slug, user in entries:
        room = rooms.get(slug)
        if room is None:
            outcomes.append(RoomError("not_found", f"No room called {slug!r}."))
        elif (room.pk, user.pk) in members:
            outcomes.append(copy.copy(room))  # each socket its own, as one query each gave
        elif room.visibility != Room.Visibility.PUBLIC:
            outcomes.append(RoomError("forbidden", "This room is private: open its invite link first."))
        else:
            room_join(room=room, user=user)
            outcomes.append(copy.copy(room))
    return outcomes


def membership_for(*, room: Room, user) -> Membership:
    membership = Membership.objects.filter(room=room, user=user).first()
    if membership is None:
        raise RoomError("forbidden", "Join the room first.")
    return membership


def can_control(room: Room, membership: Membership) -> bool:
    if membership.role == Membership.Role.HOST:
        return True
    if room.control_policy == Room.ControlPolicy.EVERYONE:
        return True
    return room.control_policy == Room.ControlPolicy.DJS and membership.role == Membership.Role.DJ


def _require_control(room: Room, user) -> Membership:
    membership = membership_for(room=room, user=user)
    if not can_control(room, membership):
        who = {"host_only": "only the host", "djs": "only the host and DJs"}[room.control_policy]
        raise RoomError("forbidden", f"In this room {who} can change what plays.")
    return membership


def _require_host(room: Room, user) -> Membership:
    membership = membership_for(room=room, user=user)
    if membership.role != Membership.Role.HOST:
        raise RoomError("forbidden", "Only the host can change the room's settings.")
    return membership


def room_update(*, room: Room, actor, name: str | None = None, visibility: str | None = None,
                control_policy: str | None = None, repeat: str | None = None, shuffle: bool | None = None) -> Room:
    """Room settings. Policy and visibility are the host's; repeat and shuffle whoever controls."""
    if name is not None or visibility is not None or control_policy is not None:
        _require_host(room, actor)
    else:
        _require_control(room, actor)
    changes = {}
    if name is not None:
        if not name.strip() or len(name.strip()) > 100:
            raise RoomError("invalid", "A room name has 1 to 100 characters.")
        changes["name"] = name.strip()
    for field, value, choices in (
        ("visibility", visibility, Room.Visibility.values),
        ("control_policy", control_policy, Room.ControlPolicy.values),
        ("repeat", repeat, Room.Repeat.values),
    ):
        if value is not None:
            if value not in choices:
                raise RoomError("invalid", f"{field} must be one of {', '.join(choices)}.")
            changes[field] = value
    if shuffle is not None:
        changes["shuffle"] = bool(shuffle)
    if changes:
        Room.objects.filter(pk=room.pk).update(**changes)
        for key, value in changes.items():
            setattr(room, key, value)
        broadcast_on_commit(topic(room.pk), lambda: events.room_event(room))
    return room


def member_set_role(*, room: Room, actor, user_id: int, role: str) -> Membership:
    _require_host(room, actor)
    if role not in (Membership.Role.DJ, Membership.Role.LISTENER, Membership.Role.HOST):
        raise RoomError("invalid", "role must be host, dj or listener.", field="role")
    user_id = _whole(user_id, field="user_id")
    membership = Membership.objects.filter(room=room, user_id=user_id).first()
    if membership is None:
        raise RoomError("not_found", "That person is not a member of this room.")
    if membership.user_id == actor.pk and role != Membership.Role.HOST and not (
        Membership.objects.filter(room=room, role=Membership.Role.HOST).exclude(pk=membership.pk).exists()
    ):
        raise RoomError("invalid", "Make someone else host before stepping down: a room needs a host.")
    membership.role = role
    membership.save(update_fields=["role"])
    broadcast_on_commit(topic(room.pk), lambda: events.members_event(room))
    return membership


def member_remove(*, room: Room, actor, user_id) -> None:
    """The host removes a member (or a member leaves). Their open sockets and radio streams
    of this room close (4403) once this commits. In a private room the invite link changes
    too, so the old link cannot bring them back; a public room they may join again."""
    if isinstance(user_id, bool) or not isinstance(user_id, int) or not 1 <= user_id < 2**63:
        raise RoomError("invalid", "user_id must be the id of a member.", field="user_id")
    if user_id != actor.pk:
        _require_host(room, actor)
    membership = Membership.objects.filter(room=room, user_id=user_id).first()
    if membership is None:
        raise RoomError("not_found", "That person is not a member of this room.", field="user_id")
    if membership.role == Membership.Role.HOST and not (
        Membership.objects.filter(room=room, role=Membership.Role.HOST).exclude(pk=membership.pk).exists()
    ):
        raise RoomError("invalid", "Make someone else host first: a room needs a host.", field="user_id")
    with transaction.atomic():
        membership.delete()
        if room.visibility == Room.Visibility.PRIVATE:
            room.invite_code = new_invite_code()
            Room.objects.filter(pk=room.pk).update(invite_code=room.invite_code)
    revocation.revoke_on_commit(user_id=user_id, reason=revocation.REASON_ROOM, room_id=room.pk)
    transaction.on_commit(lambda: presence.mark_members_dirty(room.pk))
    broadcast_on_commit(topic(room.pk), lambda: events.members_event(room))


# --- queue ---------------------------------------------------------------------------


def queue_add(*, room: Room, actor, track_id, play_next: bool = False) -> QueueEntry:
    _require_control(room, actor)
    track_id = _whole(track_id, field="track_id")
    track = catalog_selectors.track_get(track_id=track_id)
    if track is None:
        raise RoomError("not_found", f"No track with id {track_id}.")
    with transaction.atomic():
        # Lock the room row: concurrent adds get distinct positions.
        Room.objects.select_for_update().filter(pk=room.pk).first()
        state = PlaybackState.objects.select_related("entry").get(room=room)
        if play_next and state.entry is not None:
            position = state.entry.position + 1
            QueueEntry.objects.filter(room=room, position__gte=position).update(position=F("position") + 1)
        else:
            position = (QueueEntry.objects.filter(room=room).aggregate(last=Max("position"))["last"] or 0) + 1
        entry = QueueEntry.objects.create(room=room, track=track, added_by=actor, position=position)
    broadcast_on_commit(topic(room.pk), lambda: events.queue_event(room))
    return entry


def queue_remove(*, room: Room, actor, entry_id) -> None:
    _require_control(room, actor)
    with transaction.atomic():
        entry = _entry_of_room(room, entry_id)
        state = PlaybackState.objects.get(room=room)
        if state.entry_id == entry.pk:
            # Removing what plays moves on to the next entry (or stops at the end).
            _apply(state, _advance_changes(room, state, now_ms(), forward=True, skip_current=True))
        entry.delete()
    broadcast_on_commit(topic(room.pk), lambda: events.queue_event(room))


def queue_move(*, room: Room, actor, entry_id, to_index) -> None:
    """Move an entry to `to_index` (0-based) in the queue."""
    _require_control(room, actor)
    to_index = _whole(to_index, field="to_index", minimum=0)
    with transaction.atomic():
        Room.objects.select_for_update().filter(pk=room.pk).first()
        entry = _entry_of_room(room, entry_id)
        entries = [e for e in QueueEntry.objects.filter(room=room).order_by("position", "id") if e.pk != entry.pk]
        entries.insert(min(to_index, len(entries)), entry)
        for index, item in enumerate(entries, start=1):
            if item.position != index:
                QueueEntry.objects.filter(pk=item.pk).update(position=index)
    broadcast_on_commit(topic(room.pk), lambda: events.queue_event(room))


def _entry_of_room(room: Room, entry_id) -> QueueEntry:
    entry_id = _whole(entry_id, field="entry_id")
    entry = QueueEntry.objects.filter(pk=entry_id).select_related("track").first()
    if entry is None or entry.room_id != room.pk:
        raise RoomError("not_found", f"Entry {entry_id} is not in this room's queue.")
    return entry


# --- playback ------------------------------------------------------------------------


@dataclass(frozen=True)
class Control:
    action: str
    position_s: float | None = None
    entry_id: int | None = None
    volume: float | None = None
    version: int | None = None


def parse_control(data: dict) -> Control:
    """Validate a control message (websocket or HTTP) or raise RoomError('invalid')."""
    action = data.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise RoomError("invalid", f"action must be one of {', '.join(sorted(ACTIONS))}.", field="action")
    # Every number finite and bounded: NaN passes every comparison below unnoticed.
    values = {}
    for field, maximum in (("position_s", MAX_POSITION_S), ("volume", None)):
        value = data.get(field)
        values[field] = None if value is None else _number(value, field=field, minimum=0.0, maximum=maximum)
    for field in ("entry_id", "version"):
        value = data.get(field)
        values[field] = None if value is None else _whole(value, field=field, minimum=0)
    if action == "seek" and values["position_s"] is None:
        raise RoomError("invalid", "seek needs position_s.", field="position_s")
    if action == "select" and values["entry_id"] is None:
        raise RoomError("invalid", "select needs entry_id.", field="entry_id")
    if values["volume"] is not None and values["volume"] > 1:
        raise RoomError("invalid", "volume must be between 0 and 1.", field="volume")
    if action == "volume" and values["volume"] is None:
        raise RoomError("invalid", "volume needs volume (0 to 1).", field="volume")
    return Control(action=action, **values)


def lead_ms(room_id: int) -> int:
    """How far ahead a start is scheduled: twice the slowest online member's round trip."""
    online = presence.online_user_ids(room_id)
    rtts = [r["rtt_ms"] for user_id, r in presence.reports(room_id).items() if user_id in online and r.get("rtt_ms")]
    wanted = 2 * max(rtts, default=0)
    return int(min(max(wanted, settings.ROOMS_LEAD_MIN_MS), settings.ROOMS_LEAD_MAX_MS))


def playback_control(*, room: Room, actor, control: Control) -> PlaybackState:
    _require_control(room, actor)
    # Where the room is now: a track that ended with no clock to move the room on (nobody
    # connected) has moved on first, so a control never applies to a play that is over.
    state = playback_current(room_id=room.pk)
    with transaction.atomic():
        if control.version is not None and control.version != state.version:
            raise RoomError("conflict", "The room changed since you last saw it; here is where it is now.", state=state)
        now = now_ms()
        changes = _control_changes(room, state, control, now)
        if changes is None:
            return state  # nothing to change (e.g. play while playing)
        state = _apply(state, changes)
    if state.status == PlaybackState.Status.WAITING:
        # Nobody online to wait for (an HTTP client, an empty room): start right away.
        return start_if_ready(room_id=room.pk) or state
    return state


def _control_changes(room: Room, state: PlaybackState, control: Control, now: int) -> dict | None:
    playing = PlaybackState.Status
    action = control.action
    if action == "play":
        if state.status == playing.PLAYING:
            return None
        if state.entry is None:
            first = QueueEntry.objects.filter(room=room).order_by("position", "id").first()
            if first is None:
                raise RoomError("invalid", "The queue is empty: add a track first.")
            return _wait_for(first, now)
        if state.status == playing.WAITING:
            return None
        start = state.position_s if state.status == playing.PAUSED else 0.0
        anchor = now + lead_ms(room.pk)
        return {"status": playing.PLAYING, "position_s": start, "anchor_ms": anchor, "waiting_since_ms": None,
                **_play_start(state, anchor)}
    if action == "pause":
        if state.status not in (playing.PLAYING, playing.WAITING):
            return None
        return {"status": playing.PAUSED, "position_s": state.position_at(now), "anchor_ms": now, "waiting_since_ms": None}
    if action == "stop":
        if state.status == playing.STOPPED and state.position_s == 0:
            return None
        return {"status": playing.STOPPED, "position_s": 0.0, "anchor_ms": now, "waiting_since_ms": None,
                "started_at": None}
    if action == "seek":
        if state.entry is None:
            raise RoomError("invalid", "Nothing is selected to seek in.")
        duration = state.entry.track.duration_s
        if control.position_s < 0 or control.position_s >= duration:
            raise RoomError("invalid", f"position_s must be from 0 to below the track's {duration:.1f} s.")
        if state.status == playing.PLAYING:
            return {"position_s": control.position_s, "anchor_ms": now + lead_ms(room.pk)}
        status = playing.PAUSED if state.status == playing.STOPPED else state.status
        return {"status": status, "position_s": control.position_s, "anchor_ms": now}
    if action == "volume":
        return {"volume": control.volume}
    if action == "select":
        return _wait_for(_entry_of_room(room, control.entry_id), now)
    if action == "previous" and state.entry is not None and state.position_at(now) > PREVIOUS_RESTART_S:
        return _wait_for(state.entry, now)
    return _advance_changes(room, state, now, forward=action == "next")


def _wait_for(entry: QueueEntry, now: int) -> dict:
    """Load `entry` from its start: members buffer, then the room starts together."""
    presence.clear_ready(entry.room_id, entry.pk)
    return {"entry": entry, "status": PlaybackState.Status.WAITING, "position_s": 0.0, "anchor_ms": now,
            "waiting_since_ms": now, "started_at": None}


def _play_start(state: PlaybackState, anchor_ms: int) -> dict:
    """Going to `playing`: a play that had not begun begins at `anchor_ms` (its played_at)."""
    if state.started_at is not None:
        return {}
    return {"started_at": datetime.fromtimestamp(anchor_ms / 1000, tz=UTC)}


def _advance_changes(room: Room, state: PlaybackState, now: int, *, forward: bool, skip_current: bool = False,
                     automatic: bool = False) -> dict:
    entries = list(QueueEntry.objects.filter(room=room).order_by("position", "id"))
    if automatic and room.repeat == Room.Repeat.ONE and state.entry is not None:
        return _wait_for(state.entry, now)
    current = next((i for i, e in enumerate(entries) if e.pk == state.entry_id), None)
    candidates = [e for e in entries if e.pk != state.entry_id] if skip_current else entries
    target = None
    if room.shuffle and forward and len(entries) > 1:
        target = random.choice([e for e in entries if e.pk != state.entry_id])  # noqa: S311 - not security
    elif current is None:
        target = candidates[0] if candidates else None
    else:
        index = current + (1 if forward else -1)
        if 0 <= index < len(entries):
            target = entries[index]
        elif room.repeat == Room.Repeat.ALL and entries:
            target = entries[index % len(entries)]
        elif not forward:
            target = entries[current]  # previous at the first entry restarts it
    if target is None or (skip_current and target.pk == state.entry_id):
        return {"entry": None, "status": PlaybackState.Status.STOPPED, "position_s": 0.0, "anchor_ms": now,
                "waiting_since_ms": None, "started_at": None}
    return _wait_for(target, now)


def _apply(state: PlaybackState, changes: dict) -> PlaybackState:
    """Compare-and-set: write `changes` only if the state is still at the version read."""
    fields = dict(changes)
    if fields.get("started_at", ...) is None:
        fields["heard_s"] = 0.0  # a new play (or none): nothing heard of it yet
    elif "anchor_ms" in fields and state.status == PlaybackState.Status.PLAYING:
        # The stretch played since the last anchor ends now (pause, seek, stall).
        fields["heard_s"] = state.heard_at(now_ms())
    if "entry" in fields:
        entry = fields.pop("entry")
        fields["entry_id"] = entry.pk if entry is not None else None
    updated = PlaybackState.objects.filter(room_id=state.room_id, version=state.version).update(
        version=F("version") + 1, updated_at=timezone.now(), **fields
    )
    if not updated:
        current = PlaybackState.objects.select_related("entry__track__artist", "entry__track__album").get(room_id=state.room_id)
        raise RoomError("conflict", "Someone else changed the room at the same moment; here is where it is now.",
                        state=current)
    fresh = PlaybackState.objects.select_related("entry__track__artist", "entry__track__album", "room").get(
        room_id=state.room_id
    )
    server_ms = now_ms()
    broadcast_on_commit(topic(state.room_id), lambda: events.state_event(fresh, reason="change", server_ms=server_ms))
    if set(changes) - {"volume"}:  # what plays (or where) changed: members' now playing too
        transaction.on_commit(lambda: _now_playing_changed(fresh))
    return fresh


def _now_playing_changed(state: PlaybackState) -> None:
    """The members listening now show the room's track as their now playing."""
    try:
        scrobbles.playback_changed(state=state, online_user_ids=presence.online_user_ids(state.room_id))
    except Exception:  # a side effect: it must never undo or fail a room change
        logger.exception("room now playing not updated", extra={"room_id": state.room_id})


def scrobble_if_due(*, room_id: int) -> int:
    """Once the current play has been played long enough, scrobble it for every member
    online now (the play's start time dedupes calls from several processes)."""
    state = PlaybackState.objects.select_related("entry__track__artist", "entry__track__album").filter(
        room_id=room_id
    ).first()
    if state is None:
        return 0
    return scrobbles.play_heard(state=state, online_user_ids=presence.online_user_ids(room_id))


# --- driven by the members' players and the room's clock ---------------------------


def member_ready(*, room: Room, user, entry_id) -> PlaybackState | None:
    """A member has `entry_id` loaded at the waiting position; start when everyone has."""
    membership_for(room=room, user=user)
    if entry_id is None:
        raise RoomError("invalid", "ready needs entry_id.", field="entry_id")
    entry_id = _whole(entry_id, field="entry_id")
    presence.mark_ready(room.pk, entry_id, user.pk)
    return start_if_ready(room_id=room.pk)


def member_buffering(*, room: Room, user) -> PlaybackState | None:
    """A member's player stalled: hold the room for it, unless it stalls too often."""
    membership_for(room=room, user=user)
    if presence.count_stall(room.pk, user.pk) > settings.ROOMS_MAX_STALLS_PER_MINUTE:
        # Skipped: the room no longer waits for this member, so it may be able to start.
        return start_if_ready(room_id=room.pk)
    with transaction.atomic():
        state = PlaybackState.objects.get(room=room)
        if state.status != PlaybackState.Status.PLAYING or state.entry_id is None:
            return None
        now = now_ms()
        presence.clear_ready(room.pk, state.entry_id)
        try:
            return _apply(state, {"status": PlaybackState.Status.WAITING, "position_s": state.position_at(now),
                                  "anchor_ms": now, "waiting_since_ms": now})
        except RoomError:
            return None


def start_if_ready(*, room_id: int, force: bool = False) -> PlaybackState | None:
    """Leave `waiting` once every online member that is waited for is ready (or on timeout)."""
    with transaction.atomic():
        state = PlaybackState.objects.filter(room_id=room_id).first()
        if state is None or state.status != PlaybackState.Status.WAITING or state.entry_id is None:
            return None
        now = now_ms()
        timed_out = now - (state.waiting_since_ms or now) >= settings.ROOMS_WAIT_TIMEOUT_S * 1000
        if not (force or timed_out):
            waited_for = {
                user_id for user_id in presence.online_user_ids(room_id)
                if not presence.stalled_too_often(room_id, user_id)
            }
            if not waited_for <= presence.ready_user_ids(room_id, state.entry_id):
                return None
        anchor = now + lead_ms(room_id)
        try:
            return _apply(state, {"status": PlaybackState.Status.PLAYING, "anchor_ms": anchor,
                                  "waiting_since_ms": None, **_play_start(state, anchor)})
        except RoomError:
            return None  # another process started it first


def advance_if_ended(*, room_id: int, version: int) -> PlaybackState | None:
    """Auto-advance at the end of a track, once per room whatever the number of processes:
    only the state at `version` advances, and only when its track has really ended."""
    with transaction.atomic():
        state = PlaybackState.objects.select_related("entry__track", "room").filter(room_id=room_id).first()
        if state is None or state.version != version or state.status != PlaybackState.Status.PLAYING:
            return None
        if state.entry is None or state.position_at(now_ms()) < state.entry.track.duration_s:
            return None
        try:
            state = _apply(state, _advance_changes(state.room, state, now_ms(), forward=True, automatic=True))
        except RoomError:
            return None
    if state.status == PlaybackState.Status.WAITING:
        return start_if_ready(room_id=room_id) or state  # nobody online to wait for: go on
    return state


def playback_current(*, room_id: int) -> PlaybackState:
    """The room's state as it is now, whoever asks (an HTTP client, a radio listener, a
    socket joining an idle room): a track that has ended has moved on and a wait that has
    timed out has started. The room's clock normally does this (each process with sockets,
    and the beat's `rooms_catch_up`); here it is applied on read, through the same
    compare-and-set, so it still happens exactly once."""
    state = _state_of(room_id)
    now = now_ms()
    if _has_ended(state, now):
        advance_if_ended(room_id=room_id, version=state.version)
    elif _wait_timed_out(state, now):
        start_if_ready(room_id=room_id)
    else:
        return state
    return _state_of(room_id)


def rooms_catch_up() -> int:
    """Every room whose track has ended moves on and every wait that timed out starts,
    whether or not anyone is connected (run by the beat every few seconds). Returns how
    many rooms changed."""
    now = now_ms()
    end_ms = ExpressionWrapper(
        F("anchor_ms") + (F("entry__track__duration_s") - F("position_s")) * 1000.0 / F("rate"),
        output_field=FloatField(),
    )
    ended = (
        PlaybackState.objects.filter(status=PlaybackState.Status.PLAYING, entry__isnull=False, rate__gt=0)
        .annotate(end_ms=end_ms).filter(end_ms__lte=now).values_list("room_id", "version")
    )
    timed_out = PlaybackState.objects.filter(
        status=PlaybackState.Status.WAITING, waiting_since_ms__lte=now - settings.ROOMS_WAIT_TIMEOUT_S * 1000
    ).values_list("room_id", flat=True)
    changed = sum(advance_if_ended(room_id=room_id, version=version) is not None for room_id, version in ended)
    changed += sum(start_if_ready(room_id=room_id) is not None for room_id in timed_out)
    return changed


def _state_of(room_id: int) -> PlaybackState:
    return PlaybackState.objects.select_related("entry__track__artist", "entry__track__album", "room").get(
        room_id=room_id
    )


def _has_ended(state: PlaybackState, now: int) -> bool:
    return (state.status == PlaybackState.Status.PLAYING and state.entry is not None
            and state.position_at(now) >= state.entry.track.duration_s)


def _wait_timed_out(state: PlaybackState, now: int) -> bool:
    return (state.status == PlaybackState.Status.WAITING and state.waiting_since_ms is not None
            and now - state.waiting_since_ms >= settings.ROOMS_WAIT_TIMEOUT_S * 1000)


def save_report(*, room: Room, user, offset_ms, rtt_ms, drift_ms, sound_blocked=False) -> None:
    """A member's sync figures, shown to the others; the round trips also set how far ahead
    a start is scheduled (lead_ms), so each is checked finite and in range before it is kept."""
    figures = {}
    for name, value, minimum in (("offset_ms", offset_ms, -MAX_REPORT_MS), ("rtt_ms", rtt_ms, 0),
                                 ("drift_ms", drift_ms, -MAX_REPORT_MS)):
        if value is None:
            raise RoomError("invalid", f"report needs {name} as a number of milliseconds.", field=name)
        figures[name] = _number(value, field=name, minimum=minimum, maximum=MAX_REPORT_MS)
    if not isinstance(sound_blocked, bool):
        raise RoomError("invalid", "sound_blocked must be true or false.", field="sound_blocked")
    before = presence.save_report(room.pk, user.pk, sound_blocked=sound_blocked, **figures)
    if sound_blocked != bool((before or {}).get("sound_blocked")):
        presence.mark_members_dirty(room.pk)  # everyone sees it within a moment, not at the next tick


def member_disconnected(*, room: Room, user) -> None:
    """Keep the member's last sync report and when they were last seen; a member with no
    socket left in the room is no longer listening to it."""
    report = presence.reports(room.pk).get(user.pk, {})
    Membership.objects.filter(room=room, user=user).update(
        last_seen=timezone.now(),
        offset_ms=report.get("offset_ms"), rtt_ms=report.get("rtt_ms"), drift_ms=report.get("drift_ms"),
    )
    if user.pk not in presence.online_user_ids(room.pk):
        scrobbles.listeners_left(room_id=room.pk, user_ids={user.pk})


def listeners_sweep() -> int:
    """Members whose sockets are gone (their tab closed, their server process died) stop
    showing a room as their now playing, once their presence has expired (run by the beat).
    Returns how many were cleared."""
    cleared = 0
    for room_id, user_ids in scrobbles.listeners_by_room().items():
        gone = user_ids - presence.online_user_ids(room_id)
        if gone:
            cleared += scrobbles.listeners_left(room_id=room_id, user_ids=gone)
    return cleared


def announce_members(*, room: Room, members: list[dict] | None = None) -> None:
    """Announce what changed in the member list since any process last announced it (after
    commit): a room.members_delta with the changed entries, nothing if nothing changed, the
    full room.members if nothing was announced before. Sockets got the full list on join, so
    a thousand joins cost each socket a few deltas, not a thousand lists of a thousand."""
    members = members if members is not None else events.members_payload(room)
    signatures = events.member_signatures(members)
    previous = presence.swap_announced_members(room.pk, signatures)
    if previous is None:
        broadcast_on_commit(topic(room.pk), events.members_event(room, members))
        return
    changed, came, went = [], [], []
    for member in members:
        before, now = previous.get(str(member["user_id"])), signatures[str(member["user_id"])]
        if before == now:
            continue
        if events.only_presence_differs(before, now):  # a thousand joins: ids, not entries
            (came if events.member_value(member, "online") else went).append(member["user_id"])
        else:
            changed.append(member)
    removed = [int(user_id) for user_id in previous if user_id not in signatures]
    if changed or removed or came or went:
        broadcast_on_commit(topic(room.pk), events.members_delta_event(changed=changed, removed=removed,
                                                                       online=came, offline=went))
