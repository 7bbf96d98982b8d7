"""The JSON API under /api/ (OpenAPI docs at /api/docs)."""

from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError

from catalog.api import router as catalog_router
from project.accounts.api import router as accounts_router
from project.accounts.auth import api_auth
from rooms.api import router as rooms_router
from scrobbling.api import router as scrobbling_router

api = NinjaAPI(
    title="Chorus API",
    version="1",
    description="Listen together, scrobble everything. Authenticate with `Authorization: Bearer <token>` "
    "(create one on your settings page or with `manage.py create_api_token USERNAME`).",
    auth=api_auth,
    docs_url="/docs",
    urls_namespace="api",
)


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
    return api.create_response(
        request, {"error": "invalid", "message": "The request is not valid.", "detail": exc.errors}, status=422
    )


api.add_router("/", accounts_router)
api.add_router("/library", catalog_router)
api.add_router("/rooms", rooms_router)
api.add_router("/scrobbling", scrobbling_router)
