from django.http import HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template.loader import get_template
from django.views.decorators.http import require_safe

from catalog import selectors as catalog_selectors


@require_safe
def home(request):
    context = {}
    if request.user.is_authenticated:
        context = {"stats": catalog_selectors.library_stats(), "recent": catalog_selectors.recent_tracks(limit=6)}
    return render(request, "home.html", context)


def not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "not_found", "message": f"No API endpoint at {request.path}."}, status=404)
    return render(request, "404.html", {"path": request.path}, status=404)


def server_error(request):
    # No context processors that touch the database: the error may be the database.
    return HttpResponseServerError(get_template("500.html").render({"request_id": getattr(request, "id", "")}))
