"""Websocket handshake auth by `Authorization: Bearer <token>` (session cookies work too)."""

from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings

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


class OriginCheck(OriginValidator):
    """Origin check for websockets (cross-site websocket hijacking).

    Browsers always send Origin: it must name one of ALLOWED_HOSTS (channels'
    AllowedHostsOriginValidator rule). Programs that send no Origin are let through
    without their cookies, so only a bearer token can authenticate them."""

    def __init__(self, application):
        self.application = application

    @property
    def allowed_origins(self) -> list[str]:
        if settings.DEBUG and not settings.ALLOWED_HOSTS:
            return [".localhost", "127.0.0.1", "[::1]"]
        return list(settings.ALLOWED_HOSTS)

    async def __call__(self, scope, receive, send):
        headers = scope.get("headers", [])
        if not any(name == b"origin" for name, _ in headers):
            scope = dict(scope, headers=[(n, v) for n, v in headers if n != b"cookie"])
            return await self.application(scope, receive, send)
        return await super().__call__(scope, receive, send)
