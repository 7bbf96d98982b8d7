"""Film catalog pages: the catalog home (grid, search, filters, favourites, continue
watching), a title's page with its player and danmaku, a person's page; and the files they
show: covers (stored under MEDIA_ROOT) and videos (Range requests, as the music library).
Thin: forms parse, selectors read, services act."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from catalog import film_selectors as selectors
from catalog import film_services as services
from catalog import streaming, sync
from catalog.film_forms import TitleFilterForm
from catalog.models import Danmaku, Title, Video
from catalog.views import _error, _not_authenticated  # the same answers as the music streams
from project.accounts.auth import astream_user

logger = logging.getLogger(__name__)

PAGE_SIZE = 24


def _sync_buttons(user) -> list[dict]:
    """For staff: one "Sync now" per enabled source (TMDB only with its key)."""
    if not user.is_staff:
        return []
    return [{"name": source.name, "label": source.label, "url": reverse("catalog:sync-start", args=[source.name])}
            for source in sync.enabled_sources()]


@login_required
@require_safe
def films(request):
    form = TitleFilterForm(request.GET)
    filters = form.filters()
    page = Paginator(selectors.title_search(filters=filters), PAGE_SIZE).get_page(request.GET.get("page"))
    query = {key: value for key, value in request.GET.items() if key != "page" and value}
    empty_catalog = not page.object_list and not filters.active and not Title.objects.exists()
    context = {
        "form": form, "filters": filters, "page": page, "query_string": urlencode(query),
        "empty_catalog": empty_catalog, "sync_buttons": _sync_buttons(request.user),
        "choices": selectors.filter_choices() if not empty_catalog else {},
        "favorites": [] if filters.active else list(selectors.user_favorites(user=request.user)[:12]),
        "continue_watching": [] if filters.active else selectors.continue_watching(user=request.user),
    }
    return render(request, "catalog/films/home.html", context)


def _player_config(request, title: Title, progress: dict) -> dict:
    """What the player (film_player.js) needs: the videos, where the user is, the API and
    the socket. One entry per playable item (the film, or each episode with a video)."""
    items = []
    for video in title.own_videos[:1]:
        items.append(_item(title, video, None, progress.get(None)))
    for season in title.seasons.all():
        for episode in season.episodes.all():
            video = next(iter(episode.videos.all()), None)
            if video is not None:
                items.append(_item(title, video, episode, progress.get(episode.pk)))
    # Start with what the user watched last and has not finished (the next episode of a series).
    watched = [(progress[item["episodeId"]].updated_at, index) for index, item in enumerate(items)
               if item["episodeId"] in progress and not progress[item["episodeId"]].finished]
    start = max(watched)[1] if watched else 0
    base = f"/api/catalog/titles/{title.pk}"
    return {"titleId": title.pk, "items": items, "start": start, "progressUrl": f"{base}/progress",
            "danmakuUrl": f"{base}/danmaku", "websocket": f"/ws/catalog/titles/{title.pk}/", "saveEveryS": 5,
            "maxLength": Danmaku.MAX_LENGTH,
            "user": request.user.get_username(), "csrfToken": get_token(request)}


def _item(title, video: Video, episode, progress) -> dict:
    label = title.title if episode is None else f"S{episode.season.number:02d}E{episode.number:02d}" + (
        f" · {episode.name}" if episode.name else "")
    return {"videoId": video.pk, "src": video.get_stream_url(), "type": video.mime_type,
            "episodeId": episode.pk if episode else None, "label": label, "durationS": video.duration_s,
            "positionS": progress.position_s if progress and not progress.finished else 0}


@login_required
@require_safe
def title_detail(request, title_id: int):
    title = selectors.title_detail(title_id=title_id)
    if title is None:
        raise Http404(f"No title {title_id}.")
    progress = selectors.progress_for(user=request.user, title=title)
    seasons = []
    for season in title.seasons.all():
        episodes = []
        for episode in season.episodes.all():
            video = next(iter(episode.videos.all()), None)
            row = progress.get(episode.pk)
            length_s = (video.duration_s if video and video.duration_s
                        else 60 * (episode.runtime_min or title.episode_runtime_min or 0))
            percent = min(100, round(100 * row.position_s / length_s)) if row and length_s else 0
            episodes.append({"episode": episode, "progress": row, "video": video, "percent": percent})
        seasons.append({"season": season, "episodes": episodes})
    player = _player_config(request, title, progress)
    context = {
        "title": title, "credits": selectors.credits_by_role(title), "seasons": seasons,
        "is_favorite": selectors.is_favorite(user=request.user, title=title),
        "progress": progress.get(None), "player": player if player["items"] else None,
        "external": {x.source: x.value for x in title.external_ids.all()},
        "recent_danmaku": [] if player["items"] else _static_danmaku(title),
    }
    return render(request, "catalog/films/title.html", context)


def _static_danmaku(title: Title) -> list:
    """A title without a video still shows what was said (the first 200, in time order)."""
    rows = selectors.danmaku_window(title=title, episode=None, from_ms=0, to_ms=services.LONGEST_S * 1000, limit=200)
    for row in rows:
        row.offset_s = row.offset_ms / 1000
    return rows


@login_required
@require_POST
def favorite(request, title_id: int):
    """The favourite button without JavaScript (with it, the page uses the API)."""
    title = Title.objects.filter(pk=title_id).first()
    if title is None:
        raise Http404(f"No title {title_id}.")
    if request.POST.get("action") == "remove":
        services.favorite_remove(user=request.user, title=title)
        messages.success(request, f"“{title.title}” is no longer a favourite.")
    else:
        services.favorite_add(user=request.user, title=title)
        messages.success(request, f"“{title.title}” is one of your favourites.")
    return redirect(title)


@login_required
@require_safe
def person_detail(request, person_id: int):
    person = selectors.person_detail(person_id=person_id)
    if person is None:
        raise Http404(f"No person {person_id}.")
    roles: dict[str, list] = {}
    for credit in person.credits.all():
        roles.setdefault(credit.get_role_display(), []).append(credit)
    return render(request, "catalog/films/person.html", {"person": person, "roles": roles})


# --- files ----------------------------------------------------------------------------------


@require_safe
async def video_stream(request, video_id: int):
    """A video file with Range support (the browser seeks with byte ranges)."""
    if await astream_user(request) is None:
        return _not_authenticated()
    video = await Video.objects.filter(pk=video_id).afirst()
    if video is None:
        return _error(404, "not_found", f"No video with id {video_id}.")
    if video.stream_url:  # the file is not what a browser plays (an FLV recording): its mp4 is there
        return HttpResponseRedirect(video.stream_url)
    path = Path(video.file_path)
    try:
        stat = await asyncio.to_thread(path.stat)
    except OSError:
        logger.warning("video file missing", extra={"video_id": video.pk})
        return _error(410, "gone", "The video file is missing on the server; import it again.")
    return streaming.file_response(request, path, stat, mime_type=video.mime_type, checksum=f"v{video.pk}")


def media_root() -> Path:
    return Path(settings.MEDIA_ROOT or Path(settings.BASE_DIR) / "var" / "media")


COVER_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
               ".gif": "image/gif", ".svg": "image/svg+xml"}


@require_safe
async def cover(request, path: str):
    """A stored cover, from MEDIA_ROOT only: `..`, absolute paths and links out are refused."""
    if await astream_user(request) is None:
        return _not_authenticated()
    root = await asyncio.to_thread(lambda: media_root().resolve())
    try:
        file = await asyncio.to_thread(lambda: (root / path).resolve())
    except (OSError, ValueError):
        return _error(404, "not_found", "No such cover.")
    mime_type = COVER_TYPES.get(file.suffix.lower())
    if root not in file.parents or mime_type is None or "\x00" in path:
        return _error(404, "not_found", "No such cover.")
    try:
        stat = await asyncio.to_thread(file.stat)
    except OSError:
        return _error(404, "not_found", "No such cover.")
    response = streaming.file_response(request, file, stat, mime_type=mime_type, checksum="cover")
    if mime_type == "image/svg+xml":
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    return response
