"""Live feed over HTTP (/api/live/): the same services and rules as the pages."""

from __future__ import annotations

import asyncio
import functools

from django.urls import reverse
from ninja import Field, Query, Router, Schema, Status

from livefeed import messages as kinds
from livefeed import record_settings, recordings, selectors, services, stats
from livefeed.clients import registry
from livefeed.models import LiveChannel, LiveSession, Recording, Segment
from livefeed.services import LiveError
from project.outside import OutsideError
from project.schemas import ErrorOut

router = Router(tags=["live"])
ROOM_INFO_TIMEOUT_S = 15


class ChannelIn(Schema):
    url: str
    auto_follow: bool = False


class RecordSettingsIn(Schema):
    """Only the fields sent change."""

    record: bool | None = Field(None, strict=True, description="Record whenever the room is live.")
    segment_s: int | None = Field(None, strict=True, description="Close a segment after this many seconds.")
    segment_mb: int | None = Field(None, strict=True, description="... or this many MB, whichever comes first.")
    quality: str | None = Field(None, description="The platform's quality name; empty: the best.")
    container: str | None = Field(None, description="flv or ts (the stream's bytes), or mp4 (remuxed after each segment).")
    output_dir: str | None = Field(None, description="Absolute folder; empty: LIVEFEED_RECORDINGS_DIR. Outside it: staff.")
    filename_template: str | None = Field(None, description="Relative; fields {channel}, {title}, {date:%Y-%m-%d}, {index}.")
    postprocess: list | None = Field(None, description='Staff: [{"step": "remux"}, {"step": "move", "to": dir}, ...].')


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
        "recording": _record_settings_out(channel),
    }


def _record_settings_out(channel: LiveChannel) -> dict:
    return {
        "record": channel.record, "segment_s": channel.segment_s, "segment_mb": channel.segment_mb,
        "quality": channel.quality, "container": channel.container, "output_dir": channel.output_dir,
        "filename_template": channel.filename_template, "postprocess": channel.postprocess,
        "state": channel.record_state, "error": channel.record_error or None,
    }


def segment_out(segment: Segment) -> dict:
    """A segment with the URLs of its file and its comments (ASS, XML)."""
    return {
        "id": segment.pk, "index": segment.index, "state": segment.state, "start_ms": segment.started_at_ms,
        "end_ms": segment.ended_at_ms, "offset_s": segment.offset_s, "duration_s": segment.duration_s,
        "size_bytes": segment.size_bytes, "video_codec": segment.video_codec or None,
        "audio_codec": segment.audio_codec or None, "width": segment.width, "height": segment.height,
        "error": segment.error or None, "file_name": segment.file_path.rsplit("/", 1)[-1],
        "video_url": reverse("livefeed:segment-video", args=[segment.pk]),
        "ass_url": reverse("livefeed:segment-comments", args=[segment.pk, "ass"]),
        "xml_url": reverse("livefeed:segment-comments", args=[segment.pk, "xml"]),
    }


def recording_out(recording: Recording, *, watch_title_id: int | None) -> dict:
    return {
        "id": recording.pk, "channel_id": recording.channel_id, "session_id": recording.session_id,
        "state": recording.state, "title": recording.title, "started_at": recording.started_at.isoformat(),
        "ended_at": recording.ended_at.isoformat() if recording.ended_at else None,
        "size_bytes": recording.size_bytes, "duration_s": recording.duration_s,
        "segments_total": recording.segments_total, "last_error": recording.last_error or None,
        "watch_url": reverse("catalog:title", args=[watch_title_id]) if watch_title_id else None,
        "segments": [segment_out(segment) for segment in recording.segments.all()],
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


# --- recording ------------------------------------------------------------------------------


@router.patch("/channels/{channel_id}", response={200: dict, **ERRORS},
              summary="Change the recording settings (only the fields sent; who added the channel, or staff)")
@_refusals_answered
def update_channel(request, channel_id: int, payload: RecordSettingsIn):
    record_settings.channel_record_settings(channel_id=channel_id, actor=request.user,
                                            changes=payload.dict(exclude_unset=True))
    return _channel_out(_channel(channel_id))


@router.get("/channels/{channel_id}/recordings", response={200: list[dict], **ERRORS},
            summary="The channel's recordings, newest first, with their segments and download URLs")
@_refusals_answered
def channel_recordings(request, channel_id: int):
    rows = selectors.channel_recordings(channel=_channel(channel_id))
    titles = recordings.watch_titles([row.pk for row in rows])
    return [recording_out(row, watch_title_id=titles.get(row.pk)) for row in rows]


def _recording(recording_id: int) -> Recording:
    recording = selectors.recording_detail(recording_id=recording_id)
    if recording is None:
        raise LiveError("not_found", f"No recording {recording_id}.")
    return recording


@router.get("/recordings/{recording_id}", response={200: dict, **ERRORS},
            summary="A recording: state, totals, segments (start_ms, end_ms, offset_s, ..., video_url, ass_url, xml_url)")
@_refusals_answered
def get_recording(request, recording_id: int):
    recording = _recording(recording_id)
    return recording_out(recording, watch_title_id=recordings.watch_titles([recording.pk]).get(recording.pk))


@router.delete("/recordings/{recording_id}", response={204: None, **ERRORS},
               summary="Delete an ended recording with its files and its catalog title (who added the channel, or staff)")
@_refusals_answered
def delete_recording(request, recording_id: int):
    record_settings.recording_delete(recording_id=recording_id, actor=request.user)
    return Status(204, None)
