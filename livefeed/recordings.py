"""What a recording means outside the recorder: the hooks the recorder (livefeed/recorder.py)
calls after commit when a segment is ready and when a recording ends, and what they do.

Watching back is the catalog's: a recording becomes a `recording` title (one per recording,
known by its id) whose parts are its segments and whose danmaku are its chat, gifts and super
chats, through catalog.film_services' public functions; the recorder knows nothing of the
catalog and livefeed writes none of its tables. A segment joins the title as soon as it is
ready (time-shift: a broadcast still being recorded can be watched from its start); when the
recording ends every part is brought up to date once more. The segment still being written
joins when a viewer asks to watch (`recording_watch_sync(with_current=True)`), with the
comments so far. An FLV or TS part is played from its mp4 remux (livefeed/playback.py). A hook never raises into the
recorder: a catalog failure is logged and the next hook (or `recording_watch_sync`) repairs it.
"""

from __future__ import annotations

import logging

from django.urls import reverse

from livefeed import containers, exports
from livefeed.models import Recording, Segment

logger = logging.getLogger(__name__)

# A segment in these states has its file (post-processed or not) and can be watched.
WATCHABLE = (Segment.State.DONE, Segment.State.FAILED)


def browser_playable(file_path: str) -> bool:
    """A browser plays the file as it is (mp4, webm) or from its mp4 remux (flv, ts)."""
    return containers.playable(file_path)


COMMENT_STYLE = {exports.STYLE_CHAT: ("#ffffff", "scroll"), exports.STYLE_GIFT: ("#ffd700", "bottom"),
                 exports.STYLE_SUPER_CHAT: ("#ff6f61", "top")}


# --- watching back ------------------------------------------------------------------------------


def _part(segment: Segment):
    from catalog import film_services

    comments = tuple(
        film_services.RecordingComment(offset_ms=c.offset_ms, text=c.text, mode=COMMENT_STYLE[c.style][1],
                                       color=f"#{c.color:06x}" if c.color is not None else COMMENT_STYLE[c.style][0])
        for c in exports.segment_comments(segment))
    stream_url = reverse("livefeed:segment-playable", args=[segment.pk]) \
        if containers.needs_remux(segment.file_path) else ""
    writing = segment.state == Segment.State.RECORDING
    return film_services.RecordingPart(
        number=segment.index, name=f"Part {segment.index} · from {segment.offset_s / 60:.0f} min"
        + (" · recording now" if writing else ""),
        file_path=segment.file_path, duration_s=None if writing else segment.duration_s or None, width=segment.width,
        height=segment.height, size_bytes=segment.size_bytes, comments=comments, stream_url=stream_url)


def recording_watch_sync(*, recording_id: int, segment_ids: list[int] | None = None,
                         with_current: bool = False) -> int | None:
    """Bring the recording's catalog title up to date with its watchable segments (all, or
    those in `segment_ids`; `with_current`: also the one being written, as far as it is on
    disk, for time-shift); the title's id, or None when nothing is watchable yet."""
    from catalog import film_services

    recording = Recording.objects.select_related("channel").filter(pk=recording_id).first()
    if recording is None:
        return None
    states = (*WATCHABLE, Segment.State.RECORDING) if with_current else WATCHABLE
    segments = recording.segments.filter(state__in=states).select_related("recording").order_by("index")
    if segment_ids is not None:
        segments = segments.filter(pk__in=segment_ids)
    parts = [_part(segment) for segment in segments]
    if not parts:  # nothing (new) to watch: no title made for it
        return watch_titles([recording_id]).get(recording_id)
    channel = recording.channel
    who = channel.streamer_name or channel.title or channel.ref
    started = recording.started_at
    synopsis = (f"Recorded live from {channel.get_platform_display()} room {channel.ref}"
                f"{f' ({channel.title})' if channel.title else ''} on {started:%Y-%m-%d %H:%M} UTC; "
                "the comments are the room's chat, gifts and super chats at the moment they were sent.")
    title = film_services.recording_title_save(
        source_id=str(recording.pk), title=f"{who} · {started:%Y-%m-%d %H:%M}", original_title=recording.title,
        synopsis=synopsis, release_date=started.date(), parts=parts)
    return title.pk


def recording_segment_ready(*, segment_id: int) -> None:
    """A segment was closed and post-processed (state done or failed, its file kept): the
    recording so far can be watched (time-shift)."""
    recording_id = Segment.objects.filter(pk=segment_id).values_list("recording_id", flat=True).first()
    if recording_id is None:
        return
    try:
        recording_watch_sync(recording_id=recording_id, segment_ids=[segment_id])
    except Exception:
        logger.exception("recording not added to the catalog", extra={"segment_id": segment_id})


def recording_finish(*, recording_id: int) -> None:
    """The recording ended (ended_at set, every segment closed): its title gets every part,
    each saved again with its comments (a message stored after its segment's hook ran, from a
    fetcher's late flush, is in it now)."""
    try:
        recording_watch_sync(recording_id=recording_id)
    except Exception:
        logger.exception("recording not added to the catalog", extra={"recording_id": recording_id})


def watch_titles(recording_ids) -> dict[int, int]:
    """{recording id: catalog title id} of those that can be watched."""
    from catalog import film_services

    found = film_services.recording_titles(source_ids=[str(pk) for pk in recording_ids])
    return {int(key): value for key, value in found.items()}
