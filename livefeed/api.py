"""Live feed over HTTP (/api/live/): the same services and rules as the pages."""

from __future__ import annotations

import asyncio
import functools

from ninja import Query, Router, Schema, Status

from livefeed import messages as kinds
from livefeed import selectors, services, stats
from livefeed.clients import registry
from livefeed.models import LiveChannel, LiveSession
from livefeed.services import LiveError
from project.outside import OutsideError

router = Router(tags=["live"])
ROOM_INFO_TIMEOUT_S = 15


class ErrorOut(Schema):
    error: str
    message: str
    field: str | None = None


class ChannelIn(Schema):
    url: str
    auto_follow: bool = False


class MessagesQuery(Schema):
    type: str | None = None
    user: str | None = None
    after_id: int | None = None
    limit: int = 100


ERRORS = {400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 502: ErrorOut}


def _error(exc: LiveError):
    body = {"error": exc.code, "message": exc.message}
    if exc.field is not None:
        body["field"] = exc.field
    return Status(exc.http_status, body)


def _refusals_answered(view):
    """A LiveError raised by the view (or a service it calls) becomes its JSON answer."""

    @functools.wraps(view)
    def answer(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except LiveError as exc:
            return _error(exc)

    return answer


def _channel(channel_id: int) -> LiveChannel:
    channel = LiveChannel.objects.select_related("current_session").filter(pk=channel_id).first()
    if channel is None:
        raise LiveError("not_found", f"No live channel {channel_id}.")
    return channel


def _session(session_id: int) -> LiveSession:
    session = LiveSession.objects.filter(pk=session_id).first()
    if session is None:
        raise LiveError("not_found", f"No live session {session_id}.")
    return session


def _channel_out(channel: LiveChannel) -> dict:
    return {
        "id": channel.pk, "platform": channel.platform, "ref": channel.ref, "url": channel.room_url,
        "title": channel.title, "streamer_name": channel.streamer_name, "streamer_id": channel.streamer_id,
        "avatar_url": channel.avatar_url, "auto_follow": channel.auto_follow,
        "check_interval_s": channel.check_interval_s, "added_by": channel.added_by.get_username() if channel.added_by else None,
        "websocket": f"/ws/live/{channel.pk}/", "status": services.status_event(channel),
    }


def _session_out(session: LiveSession) -> dict:
    return {
        "id": session.pk, "channel_id": session.channel_id, "started_at": session.started_at.isoformat(),
        "ended_at": session.ended_at.isoformat() if session.ended_at else None, "end_reason": session.end_reason or None,
        "title_at_start": session.title_at_start, "peak_viewers": session.peak_viewers,
        "messages_total": session.messages_total, "totals": session.totals, "distinct_users": session.distinct_users,
        "gift_value": session.gift_value, "gift_value_unit": session.gift_value_unit or None, "gaps": session.gaps,
    }


@router.get("/channels", response={200: list[dict]}, summary="Every channel, those being followed first")
@_refusals_answered
def list_channels(request):
    return [_channel_out(channel) for channel in selectors.channel_list()]


@router.post("/channels", response={200: dict, 201: dict, **ERRORS},
             summary="Add a channel by its room URL (201; 200 with the existing one if it was added before)")
@_refusals_answered
def add_channel(request, payload: ChannelIn):
    channel, created = services.channel_add(user=request.user, url=payload.url, auto_follow=payload.auto_follow)
    return Status(201 if created else 200, _channel_out(_channel(channel.pk)))


@router.get("/channels/{channel_id}", response={200: dict, **ERRORS}, summary="A channel with its status")
@_refusals_answered
def get_channel(request, channel_id: int):
    return _channel_out(_channel(channel_id))


@router.delete("/channels/{channel_id}", response={204: None, **ERRORS},
               summary="Remove a channel with its sessions and messages (who added it, or staff)")
@_refusals_answered
def delete_channel(request, channel_id: int):
    services.channel_remove(channel_id=channel_id, actor=request.user)
    return Status(204, None)


@router.post("/channels/{channel_id}/start", response={202: dict, **ERRORS},
             summary="Follow the channel (202 at once; idempotent)")
@_refusals_answered
def start_channel(request, channel_id: int):
    channel = services.channel_follow(channel_id=channel_id, actor=request.user)
    return Status(202, services.status_event(channel))


@router.post("/channels/{channel_id}/stop", response={202: dict, **ERRORS},
             summary="Stop following (202 at once; idempotent; what was received is kept)")
@_refusals_answered
def stop_channel(request, channel_id: int):
    channel = services.channel_unfollow(channel_id=channel_id, actor=request.user)
    return Status(202, services.status_event(channel))


@router.get("/channels/{channel_id}/status", response={200: dict, **ERRORS},
            summary="State, session, last error, reconnects and counters (from the database)")
@_refusals_answered
def channel_status(request, channel_id: int):
    return services.status_event(_channel(channel_id))


@router.get("/channels/{channel_id}/room", response={200: dict, **ERRORS},
            summary="The room as the platform shows it now: title, streamer, live or not, viewers")
@_refusals_answered
def channel_room(request, channel_id: int):
    channel = _channel(channel_id)

    async def fetch():
        client = registry.get(channel.platform)()
        try:
            return await asyncio.wait_for(client.room_info(channel.ref), ROOM_INFO_TIMEOUT_S)
        finally:
            await client.aclose()

    try:
        info = asyncio.run(fetch())
    except (OutsideError, TimeoutError) as exc:
        return Status(502, {"error": "platform", "message": f"{channel.get_platform_display()}: {exc or 'no answer'}"})
    return {"ref": info.ref, "live": info.live, "title": info.title, "streamer_name": info.streamer_name,
            "streamer_id": info.streamer_id, "avatar_url": info.avatar_url, "viewers": info.viewers,
            "stream_urls": info.stream_urls}


@router.get("/channels/{channel_id}/sessions", response={200: list[dict], **ERRORS}, summary="The channel's sessions, newest first")
@_refusals_answered
def channel_sessions(request, channel_id: int):
    channel = _channel(channel_id)
    return [_session_out(session) for session in selectors.channel_sessions(channel=channel)[:500]]


@router.get("/sessions/{session_id}", response={200: dict, **ERRORS}, summary="A session: totals, gaps, end reason")
@_refusals_answered
def get_session(request, session_id: int):
    return _session_out(_session(session_id))


@router.get("/sessions/{session_id}/messages", response={200: dict, **ERRORS},
            summary="Messages oldest first after `after_id` (limit up to 1000): for polling and export")
@_refusals_answered
def session_messages(request, session_id: int, filters: Query[MessagesQuery]):
    session = _session(session_id)
    if filters.type is not None and filters.type not in kinds.TYPES:
        raise LiveError("invalid", f"type: one of {', '.join(kinds.TYPES)}.", field="type")
    if not 1 <= filters.limit <= selectors.MESSAGES_LIMIT_MAX:
        raise LiveError("invalid", f"limit: from 1 to {selectors.MESSAGES_LIMIT_MAX}.", field="limit")
    if filters.after_id is not None and filters.after_id < 0:
        raise LiveError("invalid", "after_id: 0 or more.", field="after_id")
    rows, next_after = selectors.session_messages(session=session, type=filters.type, user=filters.user,
                                                  after_id=filters.after_id, limit=filters.limit)
    return {"items": [row.as_json() for row in rows], "next_after_id": next_after}


@router.get("/sessions/{session_id}/stats", response={200: dict, **ERRORS},
            summary="Top users and gifters, hot words, per-minute counts")
@_refusals_answered
def session_stats(request, session_id: int):
    session = _session(session_id)
    return stats.session_stats(session_id=session.pk)
