"""Rooms over HTTP: the same services and rules as the websocket."""

from __future__ import annotations

from ninja import Router, Schema, Status

from project import schemas
from rooms import events, selectors, services
from rooms.models import Room
from rooms.services import RoomError

router = Router(tags=["rooms"])


class ErrorOut(schemas.ErrorOut):
    state: dict | None = None


class RoomIn(Schema):
    name: str
    visibility: str = Room.Visibility.PUBLIC
    control_policy: str = Room.ControlPolicy.DJS


class JoinIn(Schema):
    invite_code: str | None = None


class QueueIn(Schema):
    track_id: int
    play_next: bool = False


class ControlIn(Schema):
    action: str
    position_s: float | None = None
    entry_id: int | None = None
    volume: float | None = None
    version: int | None = None
    request_id: str | None = None


def _error(exc: RoomError):
    body = {"error": exc.code, "message": exc.message}
    if exc.field is not None:
        body["field"] = exc.field
    if exc.state is not None:
        body["state"] = events.current_state_event(exc.state.room_id, reason="change")
    return Status(exc.http_status, body)


def _room_out(room: Room) -> dict:
    return {
        "slug": room.slug,
        "name": room.name,
        "visibility": room.visibility,
        "control_policy": room.control_policy,
        "owner": room.owner.get_username(),
        "websocket": f"/ws/rooms/{room.slug}/",
        "radio_url": f"/rooms/{room.slug}/radio",
        "state": events.state_event(services.playback_current(room_id=room.pk), reason="join",
                                    server_ms=services.now_ms()),
        "queue": events.queue_event(room),
        "members": events.members_payload(room),
    }


ERRORS = {400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 429: ErrorOut}


@router.post("", response={201: dict, **ERRORS}, summary="Create a room (you become its host)")
def create_room(request, payload: RoomIn):
    try:
        room = services.room_create(owner=request.user, name=payload.name, visibility=payload.visibility,
                                    control_policy=payload.control_policy)
    except RoomError as exc:
        return _error(exc)
    return Status(201, _room_out(room))


@router.get("/{slug}", response={200: dict, **ERRORS}, summary="A room: state, queue and members")
def get_room(request, slug: str):
    try:
        room, _ = selectors.room_visible(slug=slug, user=request.user)
    except RoomError as exc:
        return _error(exc)
    return _room_out(room)


@router.post("/{slug}/join", response={200: dict, **ERRORS}, summary="Join (a private room needs its invite code)")
def join_room(request, slug: str, payload: JoinIn):
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        return _error(RoomError("not_found", f"No room called {slug!r}."))
    try:
        membership = services.room_join(room=room, user=request.user, invite_code=payload.invite_code)
    except RoomError as exc:
        return _error(exc)
    return {"room": room.slug, "role": membership.role}


@router.post("/{slug}/queue", response={201: dict, **ERRORS}, summary="Add a track to the queue")
def add_to_queue(request, slug: str, payload: QueueIn):
    try:
        room, _ = selectors.room_visible(slug=slug, user=request.user)
        entry = services.queue_add(room=room, actor=request.user, track_id=payload.track_id, play_next=payload.play_next)
    except RoomError as exc:
        return _error(exc)
    return Status(201, {"entry_id": entry.pk, "queue": events.queue_event(room)})


@router.post("/{slug}/control", response={200: dict, **ERRORS}, summary="Play, pause, seek… (same JSON as the websocket)")
def control_room(request, slug: str, payload: ControlIn):
    try:
        room, _ = selectors.room_visible(slug=slug, user=request.user)
        control = services.parse_control(payload.model_dump(exclude_none=True))
        state = services.playback_control(room=room, actor=request.user, control=control)
    except RoomError as exc:
        return _error(exc)
    return events.state_event(state, reason="change", server_ms=services.now_ms())


@router.delete("/{slug}/members/{user_id}", response={204: None, **ERRORS},
               summary="Remove a member (host only), or leave the room (your own id)")
def remove_member(request, slug: str, user_id: int):
    try:
        room, _ = selectors.room_visible(slug=slug, user=request.user)
        services.member_remove(room=room, actor=request.user, user_id=user_id)
    except RoomError as exc:
        return _error(exc)
    return Status(204, None)
