"""The JSON API under /api/ (OpenAPI docs at /api/docs).

Every answer is JSON, errors included (docs/protocol.md, "Errors"): `{"error", "message"}`,
plus `field` when one value is at fault. Bodies are parsed strictly (project/inputs.py: no
NaN or Infinity, bounded numbers and nesting, no NUL or lone surrogates). An unexpected
exception is logged with its traceback and answered with a JSON 500 that carries the
request id; the traceback never reaches the client.
"""

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from catalog.api import router as catalog_router
from catalog.film_api import router as film_router
from catalog.sync_api import router as sync_router
from livefeed.api import router as livefeed_router
from project import inputs
from project.accounts.api import router as accounts_router
from project.accounts.auth import api_auth
from rooms.api import router as rooms_router
from scrobbling.api import router as scrobbling_router

logger = logging.getLogger(__name__)

ERROR_CODES = {400: "invalid", 401: "not_authenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "too_large", 429: "rate_limited"}


class StrictJsonParser(Parser):
    """Request bodies through project/inputs.py; an InputError becomes a 400 naming the field."""

    def parse_body(self, request):
        return inputs.json_loads(request.body)


api = NinjaAPI(
    title="Chorus API",
    version="1",
    description="Listen together, scrobble everything. Authenticate with `Authorization: Bearer <token>` "
    "(create one on your settings page or with `manage.py create_api_token USERNAME`).",
    auth=api_auth,
    docs_url="/docs",
    urls_namespace="api",
    parser=StrictJsonParser(),
)


def _error(request, status: int, message: str, *, field: str | None = None, **extra):
    body = {"error": ERROR_CODES.get(status, "invalid" if status < 500 else "server_error"), "message": message}
    if field is not None:
        body["field"] = field
    return api.create_response(request, {**body, **extra}, status=status)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return api.create_response(
        request,
        {"error": "not_authenticated", "message": "Send Authorization: Bearer <token>; the token is missing, unknown or revoked."},
        status=401,
    )


@api.exception_handler(Http404)
def _not_found(request, exc):
    return api.create_response(request, {"error": "not_found", "message": str(exc) or "No such object."}, status=404)


@api.exception_handler(ValidationError)
def _invalid(request, exc):
    """422 whose message names every bad value (`body.track_id: Input should be a valid integer`)."""
    problems = []
    for error in exc.errors[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("payload", "filters"))
        problems.append(f"{where}: {error.get('msg', 'not valid')}" if where else str(error.get("msg", "not valid")))
    fields = [str(e["loc"][-1]) for e in exc.errors if e.get("loc")]
    return api.create_response(
        request,
        {"error": "invalid", "message": "The request is not valid: " + "; ".join(problems) + ".",
         "field": fields[0] if fields else None, "detail": exc.errors},
        status=422,
    )


@api.exception_handler(HttpError)
def _http_error(request, exc):
    cause = exc.__cause__
    if isinstance(cause, RequestDataTooBig):  # from reading request.body while parsing it
        return _too_large(request, cause)
    if isinstance(cause, inputs.InputError):  # from StrictJsonParser
        return _error(request, 400, cause.message, field=cause.field)
    return _error(request, exc.status_code, str(exc))


@api.exception_handler(RequestDataTooBig)
def _too_large(request, exc):
    return _error(request, 413, f"The body is larger than the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes accepted.")


@api.exception_handler(SuspiciousOperation)
def _suspicious(request, exc):
    return _error(request, 400, "The request is not acceptable.")


@api.exception_handler(Exception)
def _server_error(request, exc):
    """A bug: the traceback goes to the log (with the request id), the client gets JSON."""
    logger.exception("API request failed", extra={"path": request.path})
    request_id = getattr(request, "id", "")
    return _error(request, 500, f"The server failed to answer; quote request id {request_id} when reporting it.",
                  request_id=request_id)


api.add_router("/", accounts_router)
api.add_router("/library", catalog_router)
api.add_router("/catalog", film_router)
api.add_router("/catalog/sync", sync_router)
api.add_router("/rooms", rooms_router)
api.add_router("/scrobbling", scrobbling_router)
api.add_router("/live", livefeed_router)
