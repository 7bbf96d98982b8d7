"""A ListenBrainz-compatible endpoint, so existing scrobbler clients can send plays here.

Point a client's ListenBrainz URL at https://<chorus>/apis/listenbrainz and give it a Chorus
API token as the user token. Answers follow ListenBrainz: `{"status": "ok"}`, errors as
`{"code": N, "error": "..."}`.
"""

from __future__ import annotations

import json

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from project.accounts.services import token_authenticate
from scrobbling import services

MAX_BODY_BYTES = 10 * 1024 * 1024


def _token(request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in {"token", "bearer"} and value.strip():
        return value.strip()
    return None


def _error(code: int, message: str) -> JsonResponse:
    return JsonResponse({"code": code, "error": message}, status=code)


@csrf_exempt
@require_http_methods(["GET"])
def validate_token(request):
    raw = _token(request) or request.GET.get("token")
    if not raw:
        return _error(400, "You need to provide an Authorization token.")
    user = token_authenticate(raw)
    if user is None:
        return JsonResponse({"code": 200, "message": "Token invalid.", "valid": False})
    return JsonResponse({"code": 200, "message": "Token valid.", "valid": True, "user_name": user.get_username()})


@csrf_exempt
@require_POST
def submit_listens(request):
    raw = _token(request)
    if not raw:
        return _error(401, "You need to provide an Authorization header.")
    user = token_authenticate(raw)
    if user is None:
        return _error(401, "Invalid authorization token.")
    if len(request.body) > MAX_BODY_BYTES:
        return _error(413, "Payload too large.")
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return _error(400, "Cannot parse JSON document.")
    if not isinstance(data, dict):
        return _error(400, "Invalid JSON document submitted.")
    try:
        services.listens_submit(user=user, listen_type=data.get("listen_type"), payload=data.get("payload"))
    except services.ScrobbleError as exc:
        return _error(400, exc.message)
    return JsonResponse({"status": "ok"})
