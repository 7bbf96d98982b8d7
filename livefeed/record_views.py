"""Recording downloads: a segment's video file (Range requests, so players seek and downloads
resume: catalog/streaming.py's file response) and its comments as ASS or XML, and a whole
session's comments. Logged-in users, or a player with a token (`?token=`, basic auth), as
the music streams. Files are only ever those a Segment row names (never a path from the
request), and only regular files."""

from __future__ import annotations

import asyncio
import itertools
import logging
import stat as stat_module
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from asgiref.sync import sync_to_async
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_safe

from catalog import streaming
from livefeed import containers, exports, playback, selectors
from livefeed.models import LiveSession, Segment
from project.accounts.auth import STREAM_AUTH_CHALLENGE, STREAM_AUTH_HELP, astream_user, stream_user

logger = logging.getLogger(__name__)

VIDEO_TYPES = {".flv": "video/x-flv", ".ts": "video/mp2t", ".mp4": "video/mp4", ".m4v": "video/mp4",
               ".mkv": "video/x-matroska", ".webm": "video/webm"}


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


def _not_authenticated() -> JsonResponse:
    response = _error(401, "not_authenticated", STREAM_AUTH_HELP)
    response["WWW-Authenticate"] = STREAM_AUTH_CHALLENGE
    return response


def _regular_file(path: Path):
    """os.stat of `path` if it is a regular file (a link is followed to one), else None."""
    try:
        info = path.stat()
    except (OSError, ValueError):
        return None
    return info if stat_module.S_ISREG(info.st_mode) else None


@require_safe
async def segment_video(request, segment_id: int):
    """The segment's file as it is now (after post-processing: remuxed, moved)."""
    if await astream_user(request) is None:
        return _not_authenticated()
    segment = await Segment.objects.filter(pk=segment_id).afirst()
    if segment is None or segment.state == Segment.State.DISCARDED:
        return _error(404, "not_found", f"No recorded segment {segment_id}.")
    path = Path(segment.file_path)
    info = await asyncio.to_thread(_regular_file, path)
    if info is None:
        logger.warning("segment file missing", extra={"segment_id": segment.pk})
        return _error(410, "gone", "The segment's file is not on the server any more.")
    response = streaming.file_response(request, path, info, mime_type=VIDEO_TYPES.get(path.suffix.lower(),
                                       "application/octet-stream"), checksum=segment.checksum or f"s{segment.pk}")
    if response.status_code in (200, 206):
        response["Content-Disposition"] = content_disposition_header(
            as_attachment="download" in request.GET, filename=path.name)
    return response


@require_safe
async def segment_playable(request, segment_id: int):
    """The segment as an mp4 a browser plays: the file itself when it is one, else its
    codec-copy remux from the playback cache (livefeed/playback.py), made on the first request
    (and again when the file changed; for the segment being recorded, what is on disk so far)."""
    if await astream_user(request) is None:
        return _not_authenticated()
    segment = await Segment.objects.filter(pk=segment_id).afirst()
    if segment is None or segment.state == Segment.State.DISCARDED:
        return _error(404, "not_found", f"No recorded segment {segment_id}.")
    if not containers.needs_remux(segment.file_path):
        return await segment_video(request, segment_id)
    try:
        path = await asyncio.to_thread(playback.playable_file, segment=segment)
    except playback.PlaybackError as exc:
        logger.warning("segment not playable", extra={"segment_id": segment.pk, "reason": exc.code})
        return _error(exc.status, exc.code, exc.message)
    info = await asyncio.to_thread(_regular_file, path)
    if info is None:  # evicted between the remux and now: rare, and the next request makes it again
        return _error(503, "evicted", "The playable copy was just removed to make room; try again.")
    # The validators include the copy's size and mtime: a new remux is a new ETag.
    return streaming.file_response(request, path, info, mime_type="video/mp4", checksum=f"p{segment.pk}")


BATCH_CHUNKS = 2000


async def _sent_as_read(chunks: Iterator[str]) -> AsyncIterator[str]:
    """The file a batch of lines at a time, each batch read from the database in the request's
    thread: under ASGI a sync iterator would be read whole into memory before the first byte
    (Django lists it), and a session can hold millions of messages."""
    def take() -> str:
        return "".join(itertools.islice(chunks, BATCH_CHUNKS))

    while batch := await sync_to_async(take, thread_sensitive=True)():
        yield batch


def _comments_response(chunks, *, fmt: str, name: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_sent_as_read(chunks), content_type=exports.MIME_TYPES[fmt])
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=f"{name}.{fmt}")
    return response


def _format(fmt: str) -> str:
    if fmt not in exports.FORMATS:
        raise Http404("Comments are exported as .ass or .xml.")
    return fmt


@require_safe
def segment_comments(request, segment_id: int, fmt: str):
    """The segment's comments, timed from its real start, as ASS subtitles or Bilibili XML."""
    if stream_user(request) is None:
        return _not_authenticated()
    fmt = _format(fmt)
    segment = selectors.segment_detail(segment_id=segment_id)
    if segment is None:
        return _error(404, "not_found", f"No recorded segment {segment_id}.")
    name = Path(segment.file_path).stem or f"segment-{segment.pk}"
    return _comments_response(exports.segment_file(segment=segment, fmt=fmt), fmt=fmt, name=name)


@require_safe
def session_comments(request, session_id: int, fmt: str):
    """A whole session's comments, timed from the session's start."""
    if stream_user(request) is None:
        return _not_authenticated()
    fmt = _format(fmt)
    session = LiveSession.objects.select_related("channel").filter(pk=session_id).first()
    if session is None:
        return _error(404, "not_found", f"No live session {session_id}.")
    return _comments_response(exports.session_file(session=session, fmt=fmt), fmt=fmt,
                              name=f"live-session-{session.pk}")
