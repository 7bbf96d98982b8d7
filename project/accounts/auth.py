"""Authenticating HTTP requests by session or bearer token."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from ninja.security import HttpBearer, django_auth

from project.accounts.services import bearer_from_header, token_authenticate


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>` for the JSON API."""

    def authenticate(self, request, token):
        user = token_authenticate(token)
        if user is not None:
            request.user = user
        return user


# The API accepts a bearer token, or the browser session (with CSRF) for the web UI.
api_auth = [BearerToken(), django_auth]


async def arequest_user(request):
    """The session user, else the bearer token's user, else None (async views)."""
    user = await request.auser()
    if user.is_authenticated:
        return user
    raw = bearer_from_header(request.headers.get("Authorization"))
    if raw is None:
        return None
    return await sync_to_async(token_authenticate)(raw)
