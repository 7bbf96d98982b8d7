import logging

from django.conf import settings
from django.http import FileResponse, HttpResponse, HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template.loader import get_template
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe
from redis import RedisError

from catalog import selectors as catalog_selectors
from scrobbling import selectors as scrobbling_selectors

logger = logging.getLogger(__name__)


@require_safe
def home(request):
    context = {}
    if request.user.is_authenticated:
        context = {"stats": catalog_selectors.library_stats(), "recent": catalog_selectors.recent_tracks(limit=6),
                   "listening": _listening_now()}
    return render(request, "home.html", context)


@require_safe
def listening_now(request):
    """htmx, every 10 s: the home page's "Listening now" (nothing for a visitor not logged in)."""
    if not request.user.is_authenticated:
        return HttpResponse(status=204)
    return render(request, "includes/listening_now.html", {"listening": _listening_now()})


def _listening_now() -> list[dict] | None:
    """Who plays what, with how far along (None when Redis cannot be asked: the page still works)."""
    try:
        entries = scrobbling_selectors.listening_now()
    except RedisError:
        logger.warning("listening now: Redis is not answering", exc_info=True)
        return None
    for entry in entries:
        duration_s = entry["duration_s"] or 0
        entry["percent"] = round(100 * entry["position_s"] / duration_s, 1) if duration_s else 0
        entry["remaining_s"] = round(max(duration_s - entry["position_s"], 0), 1)
    return entries


@require_safe
@cache_control(max_age=7 * 24 * 3600, public=True)
def favicon(request):
    """/favicon.ico, which browsers, feed readers and bookmarks ask for whatever the page links."""
    path = settings.BASE_DIR / "project" / "static" / "chorus" / "favicon.ico"
    return FileResponse(path.open("rb"), content_type="image/x-icon")


def not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "not_found", "message": f"No API endpoint at {request.path}."}, status=404)
    return render(request, "404.html", {"path": request.path}, status=404)


def server_error(request):
    request_id = getattr(request, "id", "")
    if request.path.startswith("/api/"):  # API clients get JSON, even from outside the API's own handlers
        return JsonResponse({"error": "server_error", "request_id": request_id,
                             "message": f"The server failed to answer; quote request id {request_id} when reporting it."},
                            status=500)
    # No context processors that touch the database: the error may be the database.
    return HttpResponseServerError(get_template("500.html").render({"request_id": getattr(request, "id", "")}))
