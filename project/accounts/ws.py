"""Websocket handshake auth by `Authorization: Bearer <token>` (session cookies work too)."""

from channels.db import database_sync_to_async

from project.accounts.services import bearer_from_header, token_authenticate


class TokenAuthMiddleware:
    """Sets scope["user"] from a bearer token when the session gave no user."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            headers = dict(scope.get("headers", []))
            raw = bearer_from_header(headers.get(b"authorization", b"").decode("latin-1"))
            if raw:
                token_user = await database_sync_to_async(token_authenticate)(raw)
                if token_user is not None:
                    scope = dict(scope, user=token_user)
        return await self.app(scope, receive, send)
