"""Live pages: the channel list (add by URL, start, stop), a channel's live page, and past
sessions with search and export. Thin: forms parse, services act, selectors read."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator

import redis
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from livefeed import messages as kinds
from livefeed import record_services, recordings, selectors, services, stats
from livefeed import record_settings as record_settings_service
from livefeed.forms import ChannelAddForm, RecordSettingsForm
from livefeed.models import LiveChannel, LiveSession, Recording, RecordingState
from livefeed.services import LiveError

logger = logging.getLogger(__name__)

EXPORT_CHUNK = 2000


@login_required
@require_http_methods(["GET", "POST"])
def index(request):
    form = ChannelAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            channel, created = services.channel_add(user=request.user, url=form.cleaned_data["url"],
                                                    auto_follow=form.cleaned_data["auto_follow"])
        except LiveError as exc:
            form.add_error("url" if exc.field == "url" else None, exc.message.removeprefix("url: "))
        else:
            messages.success(request, "Channel added: start it to follow its messages." if created
                             else "That room was already here.")
            return redirect("livefeed:channel", channel_id=channel.pk)
    channels = list(selectors.channel_list())
    for channel in channels:
        channel.manageable = services.can_manage(channel, request.user)
    return render(request, "livefeed/index.html", {"form": form, "channels": channels},
                  status=400 if form.errors else 200)


@login_required
@require_safe
def channel(request, channel_id: int):
    live_channel = get_object_or_404(LiveChannel.objects.select_related("current_session", "added_by"), pk=channel_id)
    return render(request, "livefeed/channel.html", _channel_context(request, live_channel))


def _channel_context(request, live_channel: LiveChannel, *, record_form: RecordSettingsForm | None = None) -> dict:
    session = live_channel.current_session
    config = {
        "websocket": f"/ws/live/{live_channel.pk}/",
        "types": list(kinds.TYPES),
        "maxRows": 300,
        "stateNames": dict(LiveChannel.State.choices),
        "initialStats": stats.session_stats(session_id=session.pk) if session else None,
        "sessionTotal": session.messages_total if session else 0,
    }
    recordings_list = selectors.channel_recordings(channel=live_channel, limit=20)
    titles = recordings.watch_titles([row.pk for row in recordings_list])
    for row in recordings_list:
        row.watch_title_id = titles.get(row.pk)
        # Browsers play mp4/webm; flv and ts are played from their mp4 remux (livefeed/playback.py);
        # the segment being written can be watched so far (time-shift).
        row.playable = any(recordings.browser_playable(segment.file_path) for segment in row.segments.all()
                           if segment.state in recordings.WATCHABLE
                           or (segment.state == segment.State.RECORDING and row.ended_at is None))
    current = next((row for row in recordings_list if row.ended_at is None), None)
    current_segments = list(current.segments.all()) if current else []
    return {
        "channel": live_channel,
        "status": services.status_event(live_channel),
        "manageable": services.can_manage(live_channel, request.user),
        "sessions": selectors.channel_sessions(channel=live_channel)[:20],
        "regulars": stats.channel_regulars(channel_id=live_channel.pk, limit=10),
        "live_config": config,
        "types": kinds.TYPES,
        "hidden_by_default": {kinds.LIKE, kinds.MEMBER, kinds.VIEWERS, kinds.ROOM_STATS, kinds.RANK},
        "recent_limit": settings.LIVEFEED_RECENT,
        "recordings": recordings_list,
        "current_recording": current,
        "current_segment": _writing(current_segments[-1]) if current_segments else None,
        "record_form": record_form or RecordSettingsForm.for_channel(live_channel, user=request.user),
        "record_config": {"stateNames": dict(RecordingState.choices), "recentLog": _recent_log(live_channel.pk),
                          "segmentIndex": current_segments[-1].index if current_segments else None},
    }


def _writing(segment):
    """The segment with its size and length so far while ffmpeg writes it (the row has them
    only once it closes)."""
    if segment.state == segment.State.RECORDING:
        segment.size_bytes = record_services.file_size(segment.file_path)
        if segment.started_at_ms:
            segment.duration_s = max(0.0, (kinds.now_ms() - segment.started_at_ms) / 1000)
    return segment


def _recent_log(channel_id: int) -> list[dict]:
    """The last lines ffmpeg logged for the channel (kept in Redis by the recorder)."""
    from livefeed.recorder import record_log_recent

    try:
        return record_log_recent(channel_id=channel_id)
    except (redis.RedisError, ValueError):
        logger.warning("recording log unavailable", extra={"channel_id": channel_id})
        return []


@login_required
@require_POST
def record_settings(request, channel_id: int):
    """The recording settings form; on a refusal the page comes back with what was typed and
    the reason on its field (400)."""
    live_channel = get_object_or_404(LiveChannel.objects.select_related("current_session", "added_by"), pk=channel_id)
    form = RecordSettingsForm.for_channel(live_channel, user=request.user, data=request.POST)
    if form.is_valid():
        try:
            record_settings_service.channel_record_settings(channel_id=channel_id, actor=request.user,
                                                            changes=form.cleaned_data)
        except LiveError as exc:
            field = exc.field if exc.field in form.fields else None
            form.add_error(field, exc.message.removeprefix(f"{exc.field}: ") if field else exc.message)
        else:
            messages.success(request, "Recording settings saved.")
            return redirect("livefeed:channel", channel_id=channel_id)
    context = _channel_context(request, live_channel, record_form=form)
    return render(request, "livefeed/channel.html", context, status=403 if not context["manageable"] else 400)


@login_required
@require_safe
def recording_watch(request, recording_id: int):
    """Watch a recording in the catalog's player: its title brought up to date first, with the
    segment still being recorded as far as it is now (time-shift) and the comments so far."""
    recording = Recording.objects.filter(pk=recording_id).only("pk", "ended_at", "channel_id").first()
    if recording is None:
        raise Http404(f"No recording {recording_id}.")
    title_id = recordings.recording_watch_sync(recording_id=recording.pk, with_current=recording.ended_at is None)
    if title_id is None:
        messages.error(request, "Nothing of this recording can be watched yet: its first segment has no video.")
        return redirect("livefeed:channel", channel_id=recording.channel_id)
    return redirect("catalog:title", title_id)


@login_required
@require_POST
def recording_delete(request, recording_id: int):
    channel_id = Recording.objects.filter(pk=recording_id).values_list("channel_id", flat=True).first()
    if channel_id is None:
        raise Http404(f"No recording {recording_id}.")
    try:
        record_settings_service.recording_delete(recording_id=recording_id, actor=request.user)
    except LiveError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Recording deleted with its files.")
    return redirect("livefeed:channel", channel_id=channel_id)


def _channel_action(request, channel_id: int, act, done: str):
    try:
        act(channel_id=channel_id, actor=request.user)
    except LiveError as exc:
        messages.error(request, exc.message)
        if exc.code == "not_found":
            return redirect("livefeed:index")
    else:
        messages.success(request, done)
    return redirect("livefeed:channel", channel_id=channel_id)


@login_required
@require_POST
def start(request, channel_id: int):
    return _channel_action(request, channel_id, services.channel_follow, "Following: messages appear within seconds.")


@login_required
@require_POST
def stop(request, channel_id: int):
    return _channel_action(request, channel_id, services.channel_unfollow, "Stopping: what was received is kept.")


@login_required
@require_POST
def remove(request, channel_id: int):
    try:
        services.channel_remove(channel_id=channel_id, actor=request.user)
    except LiveError as exc:
        messages.error(request, exc.message)
        return redirect("livefeed:channel", channel_id=channel_id) if exc.code != "not_found" else redirect("livefeed:index")
    messages.success(request, "Channel removed with its sessions and messages.")
    return redirect("livefeed:index")


def _session_filters(request) -> dict:
    kind = request.GET.get("type", "")
    return {"type": kind if kind in kinds.TYPES else None, "user": request.GET.get("user", "").strip()[:64] or None,
            "query": request.GET.get("q", "").strip()[:200]}


@login_required
@require_safe
def session(request, session_id: int):
    live_session = get_object_or_404(LiveSession.objects.select_related("channel"), pk=session_id)
    filters = _session_filters(request)
    rows = selectors.session_search(session=live_session, type=filters["type"], user=filters["user"],
                                    query=filters["query"], limit=200)
    context = {"session": live_session, "channel": live_session.channel, "rows": rows, "filters": filters,
               "types": kinds.TYPES, "stats": stats.session_stats(session_id=live_session.pk)}
    return render(request, "livefeed/session.html", context)


EXPORT_FIELDS = ("id", "type", "ts_ms", "received_ms", "user_id", "user_name", "content", "extra")


@login_required
@require_safe
def session_export(request, session_id: int, fmt: str):
    live_session = get_object_or_404(LiveSession, pk=session_id)
    if fmt not in ("csv", "json"):
        raise Http404("Export as csv or json.")
    filters = _session_filters(request)

    def messages_iter() -> Iterator[dict]:
        after = 0
        while True:
            page, after = selectors.session_messages(session=live_session, type=filters["type"], user=filters["user"],
                                                     after_id=after, limit=EXPORT_CHUNK)
            yield from (row.as_json() for row in page)
            if after is None:
                return

    name = f"live-session-{live_session.pk}.{fmt}"
    if fmt == "json":
        body = _json_lines(messages_iter())
        response = StreamingHttpResponse(body, content_type="application/json; charset=utf-8")
    else:
        body = _csv_rows(messages_iter())
        response = StreamingHttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _json_lines(rows: Iterator[dict]) -> Iterator[str]:
    """A JSON array, written as it is read (a long session has millions of messages)."""
    yield "["
    first = True
    for row in rows:
        yield ("" if first else ",\n") + json.dumps(row, ensure_ascii=False)
        first = False
    yield "]\n"


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(rows: Iterator[dict]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(EXPORT_FIELDS)  # the BOM: spreadsheets then read UTF-8
    for row in rows:
        user = row.get("user") or {}
        yield writer.writerow([row["id"], row["type"], row["ts_ms"], row["received_ms"], user.get("id", ""),
                               user.get("name", ""), row["content"], json.dumps(row["extra"], ensure_ascii=False)])
