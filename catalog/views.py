from __future__ import annotations

import asyncio
from pathlib import Path

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_safe

from catalog import playlists, selectors, services, streaming
from catalog.forms import ImportForm, UploadForm
from catalog.models import Album, Artist, ImportJob, Track
from catalog.transcode_slots import TranscodeBusy
from project.accounts.auth import STREAM_AUTH_CHALLENGE, STREAM_AUTH_HELP, astream_user, stream_user
from project.metrics import stream_requests

PAGE_SIZE = 50


def _page(request, queryset, size: int | None = None):
    return Paginator(queryset, size or PAGE_SIZE).get_page(request.GET.get("page"))


@login_required
@require_safe
def library_home(request):
    context = {
        "stats": selectors.library_stats(),
        "recent": selectors.recent_tracks(limit=10),
    }
    return render(request, "catalog/library_home.html", context)


@login_required
@require_safe
def track_list(request):
    query = request.GET.get("q", "").strip()[:200]
    page = _page(request, selectors.track_search(query=query))
    template = "catalog/_track_rows.html" if request.htmx and request.htmx.target == "track-results" else "catalog/track_list.html"
    return render(request, template, {"page": page, "query": query})


@login_required
@require_safe
def artist_list(request):
    query = request.GET.get("q", "").strip()[:200]
    return render(request, "catalog/artist_list.html", {"page": _page(request, selectors.artist_search(query=query), 60), "query": query})


@login_required
@require_safe
def artist_detail(request, artist_id: int):
    artist = get_object_or_404(Artist, pk=artist_id)
    context = {
        "artist": artist,
        "albums": selectors.artist_albums(artist=artist),
        "tracks": selectors.artist_tracks(artist=artist),
    }
    return render(request, "catalog/artist_detail.html", context)


@login_required
@require_safe
def album_list(request):
    query = request.GET.get("q", "").strip()[:200]
    return render(request, "catalog/album_list.html", {"page": _page(request, selectors.album_search(query=query), 48), "query": query})


@login_required
@require_safe
def album_detail(request, album_id: int):
    album = get_object_or_404(Album.objects.select_related("artist"), pk=album_id)
    return render(request, "catalog/album_detail.html", {"album": album, "tracks": selectors.album_tracks(album=album)})


@login_required
@require_safe
def track_detail(request, track_id: int):
    track = get_object_or_404(Track.objects.select_related("artist", "album"), pk=track_id)
    return render(request, "catalog/track_detail.html", {"track": track})


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


@require_safe
async def track_stream(request, track_id: int):
    """The track's audio: the original file with Range support, or `?format=` transcoded."""
    response = await _track_stream(request, track_id)
    mode = {206: "range", 304: "not_modified"}.get(response.status_code)
    if mode is None:
        mode = "error" if response.status_code >= 400 else ("transcode" if "X-Transcode" in response else "file")
    stream_requests.labels(mode).inc()
    return response


def _not_authenticated() -> JsonResponse:
    response = _error(401, "not_authenticated", STREAM_AUTH_HELP)
    response["WWW-Authenticate"] = STREAM_AUTH_CHALLENGE  # players retry with a URL's user:token@
    return response


async def _track_stream(request, track_id: int):
    user = await astream_user(request)
    if user is None:
        return _not_authenticated()
    try:
        transcode = streaming.parse_transcode(request.GET)
    except streaming.StreamRequestError as exc:
        return _error(400, "invalid", str(exc))
    track = await Track.objects.filter(pk=track_id).afirst()
    if track is None:
        return _error(404, "not_found", f"No track with id {track_id}.")
    path = Path(track.file_path)
    try:
        stat = await asyncio.to_thread(path.stat)
    except OSError:
        await sync_to_async(services.track_mark_missing)(track=track)
        return _error(410, "gone", f"The audio file of “{track.title}” is missing on the server; staff have been told.")
    if transcode is not None:
        fmt, bitrate_kbps = transcode
        try:
            return await streaming.transcode_response(request, path, fmt, bitrate_kbps, user_id=user.pk)
        except TranscodeBusy as exc:
            response = _error(exc.status, "too_many_transcodes" if exc.status == 429 else "busy", str(exc))
            response["Retry-After"] = str(exc.retry_after_s)
            return response
        except streaming.TranscodeFailed:
            return _error(500, "transcode_failed", f"The server could not convert “{track.title}” to {fmt.name}; staff have been told.")
    return streaming.file_response(request, path, stat, mime_type=track.mime_type, checksum=track.checksum)


def _playlist(request, *, tracks, title: str):
    user = stream_user(request)
    if user is None:
        return _not_authenticated()
    try:
        return playlists.playlist_response(request, user=user, tracks=tracks, title=title)
    except streaming.StreamRequestError as exc:
        return _error(400, "invalid", str(exc))


@require_safe
def album_playlist(request, album_id: int):
    """The album's tracks as an M3U playlist for a media player."""
    album = Album.objects.select_related("artist").filter(pk=album_id).first()
    if album is None:
        return _error(404, "not_found", f"No album with id {album_id}.")
    return _playlist(request, tracks=selectors.album_tracks(album=album), title=f"{album.artist.name} - {album.title}")


@require_safe
def track_search_playlist(request):
    """The tracks of a search (`?q=`, every track without one) as an M3U playlist."""
    query = request.GET.get("q", "").strip()[:200]
    tracks = selectors.track_search(query=query)[: playlists.MAX_TRACKS]
    return _playlist(request, tracks=tracks, title=f"Chorus - {query}" if query else "Chorus library")


@staff_member_required
@require_http_methods(["GET", "POST"])
def import_page(request):
    import_form = ImportForm(request.POST if request.POST.get("action") == "import" else None)
    upload_form = UploadForm(
        request.POST if request.POST.get("action") == "upload" else None,
        request.FILES if request.POST.get("action") == "upload" else None,
    )
    if request.method == "POST":
        form = import_form if request.POST.get("action") == "import" else upload_form
        if form.is_valid():
            try:
                if form is import_form:
                    job = services.import_job_create(path=form.cleaned_data["path"], user=request.user)
                else:
                    job = services.upload_save(files=form.cleaned_data["files"], user=request.user)
            except (ValidationError, PermissionDenied) as exc:
                form.add_error(None, exc.messages[0] if isinstance(exc, ValidationError) else str(exc))
            else:
                messages.success(request, f"Import #{job.pk} started.")
                return redirect(job)
    status = 400 if import_form.errors or upload_form.errors else 200
    context = {"import_form": import_form, "upload_form": upload_form, "jobs": selectors.import_jobs_recent()}
    return render(request, "catalog/import.html", context, status=status)


@staff_member_required
@require_safe
def import_detail(request, job_id: int):
    job = get_object_or_404(ImportJob, pk=job_id)
    template = "catalog/_import_progress.html" if request.htmx else "catalog/import_detail.html"
    return render(request, template, {"job": job, "skips": job.skips.all()[:500]})
