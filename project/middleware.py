"""Middleware of the project itself (request ids and access logs are in project/logs.py)."""

from django.http import HttpResponseBadRequest, JsonResponse


class SyncChain:
    """The innermost middleware, synchronous only. Under ASGI, Django runs a chain of
    sync-capable middleware in one worker thread, but a chain it sees as async calls every
    MiddlewareMixin hook through its own sync_to_async hop, and WhiteNoise (sync only) in
    the middle added two more switches: about 5 ms per request on a small machine
    (docs/benchmarks.md). With this at the bottom, the whole chain is synchronous: one hop
    into the thread for the request, one back."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


class RefuseNulInUrl:
    """A NUL character in the path or query string (`%00`) is refused with 400 before any
    view sees it: no page or endpoint has a use for one, and PostgreSQL text cannot hold it,
    so a lookup by such a slug or search would fail with a 500 instead."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        field = _field_with_nul(request)
        if field is not None:
            message = f"{field or 'The address'} contains a NUL character (%00)."
            if request.path.startswith("/api/"):
                return JsonResponse({"error": "invalid", "message": message, "field": field or None}, status=400)
            return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def _field_with_nul(request) -> str | None:
    """"" for the path, the parameter's name for the query string, None when there is none."""
    if "\x00" in request.path:
        return ""
    for key, values in request.GET.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            return key.replace("\x00", "?")[:50] or "query"
    return None


class ApiErrorsAsJson:
    """Under /api/, an error answer that is not JSON (405 from the router, a 400 from Django
    itself) becomes the API's JSON error, so clients only ever parse one format there."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and request.path.startswith("/api/")
            and not response.streaming
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            code = {400: "invalid", 401: "not_authenticated", 403: "forbidden", 404: "not_found",
                    405: "method_not_allowed", 413: "too_large"}.get(response.status_code, "error")
            message = f"{response.status_code} {response.reason_phrase}"
            if response.status_code == 405:
                message = f"Use {response.get('Allow', 'another method')} here."
            replacement = JsonResponse({"error": code, "message": message}, status=response.status_code)
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    replacement[header] = response[header]
            return replacement
        return response
