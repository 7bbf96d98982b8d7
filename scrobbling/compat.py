"""A ListenBrainz-compatible endpoint, so existing scrobbler clients can send plays here.

Point a client's ListenBrainz URL at https://<chorus>/apis/listenbrainz and give it a Chorus
API token as the user token. Answers follow ListenBrainz: `{"status": "ok"}`, errors as
`{"code": N, "error": "..."}`.
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from project import inputs
from project.accounts.services import token_authenticate
from scrobbling import recording
from scrobbling.inputs import ScrobbleError

# What ListenBrainz accepts per submit-listens request (MAX_LISTEN_PAYLOAD_SIZE): a
# 1000-listen import with rich metadata is about 3 MB, over Django's own limit
# (DATA_UPLOAD_MAX_MEMORY_SIZE), so these routes read the body themselves with this one.
MAX_BODY_BYTES = 10_240_000
READ_CHUNK_BYTES = 256 * 1024


def _token(request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in {"token", "bearer"} and value.strip():
        return value.strip()
    return None


def _error(code: int, message: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"code": code, "error": message}, status=code)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _method_not_allowed(allowed: str) -> JsonResponse:
    return _error(405, "The method is not allowed for the requested URL.", Allow=allowed)


def _body(request) -> bytes | None:
    """The request body, or None when it is over MAX_BODY_BYTES (read from the stream,
    never past the limit, instead of through request.body and Django's smaller limit)."""
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    while chunk := request.read(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@csrf_exempt
def validate_token(request):
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed("GET, HEAD")
    raw = _token(request) or request.GET.get("token")
    if not raw:
        return _error(400, "You need to provide an Authorization token.")
    user = token_authenticate(raw)
    if user is None:
        return JsonResponse({"code": 200, "message": "Token invalid.", "valid": False})
    return JsonResponse({"code": 200, "message": "Token valid.", "valid": True, "user_name": user.get_username()})


@csrf_exempt
def submit_listens(request):
    if request.method != "POST":
        return _method_not_allowed("POST")
    raw = _token(request)
    if not raw:
        return _error(401, "You need to provide an Authorization header.")
    user = token_authenticate(raw)
    if user is None:
        return _error(401, "Invalid authorization token.")
    body = _body(request)
    if body is None:
        return _error(413, f"Payload too large: at most {MAX_BODY_BYTES} bytes per request.")
    try:
        data = inputs.json_loads(body)
    except inputs.InputError as exc:
        return _error(400, f"Cannot parse JSON document: {exc.message}")
    if not isinstance(data, dict):
        return _error(400, "Invalid JSON document submitted.")
    try:
        recording.listens_submit(user=user, listen_type=data.get("listen_type"), payload=data.get("payload"))
    except ScrobbleError as exc:
        return _error(400, exc.message)
    return JsonResponse({"status": "ok"})


@csrf_exempt
def unknown_endpoint(request, rest: str = ""):
    """Anything else under the ListenBrainz root: a ListenBrainz-style 404, not an HTML page."""
    return _error(404, f"No ListenBrainz endpoint at {request.path[:200]} (this server has /1/submit-listens "
                       "and /1/validate-token).")
