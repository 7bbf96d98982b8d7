"""Authenticating HTTP requests by session or bearer token (and, for streams, `?token=` or basic auth)."""

from __future__ import annotations

import base64

from asgiref.sync import sync_to_async
from ninja.security import HttpBearer, SessionAuth

from project.accounts.services import bearer_from_header, token_authenticate


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>` for the JSON API."""

    def authenticate(self, request, token):
        user = token_authenticate(token)
        if user is not None:
            request.user = user
        return user


class SessionWithCsrf(SessionAuth):
    """The browser session, whose unsafe requests need the CSRF token. A request without a
    logged-in session is simply not authenticated by it (401), rather than refused as a CSRF
    failure (403): the CSRF check only matters when there is a session to forge."""

    def __call__(self, request):
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)


# The API accepts a bearer token, or the browser session (with CSRF) for the web UI.
api_auth = [BearerToken(), SessionWithCsrf()]


async def arequest_user(request):
    """The session user, else the bearer token's user, else None (async views)."""
    user = await request.auser()
    if user.is_authenticated:
        return user
    raw = bearer_from_header(request.headers.get("Authorization"))
    if raw is None:
        return None
    return await sync_to_async(token_authenticate)(raw)


# --- streams: audio, the room radio and playlists ------------------------------------------
# Media players (mpv, VLC, a smart speaker) cannot log in or set headers, so stream URLs
# also take the token as `?token=` or as the password of HTTP basic auth (any user name), and
# they take the streams-only token of playlists (stream_token_get) as well as API tokens.

STREAM_AUTH_HELP = (
    "Log in, send Authorization: Bearer <token>, add ?token=<token> to the URL, "
    "or use basic auth with the token as password."
)
STREAM_AUTH_CHALLENGE = 'Basic realm="Chorus", charset="UTF-8"'


def stream_credentials(request) -> str | None:
    """The token a stream request carries: bearer header, `?token=`, or basic auth's password."""
    header = request.headers.get("Authorization", "")
    raw = bearer_from_header(header)
    if raw is None:
        raw = request.GET.get("token") or None
    if raw is None:
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                raw = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[2] or None
            except (ValueError, UnicodeDecodeError):
                raw = None
    return raw


def stream_user(request):
    """The session user, else the user of the request's stream credentials, else None."""
    if request.user.is_authenticated:
        return request.user
    raw = stream_credentials(request)
    return token_authenticate(raw, streams=True) if raw else None


async def astream_user(request):
    """stream_user for async views."""
    user = await request.auser()
    if user.is_authenticated:
        return user
    raw = stream_credentials(request)
    return await sync_to_async(token_authenticate)(raw, streams=True) if raw else None
