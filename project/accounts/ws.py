"""Websocket handshakes: origin check, bearer-token auth, and closing on revocation.

- `OriginCheck`: a browser's socket (it always sends Origin, with the site's cookies) must
  come from this site's own origin, scheme, host and port, as Django's CSRF check wants
  for a form: the Origin must equal the origin of the request's Host (itself one of
  ALLOWED_HOSTS), or be listed in CSRF_TRUSTED_ORIGINS. Programs that send no Origin are
  let through without their cookies, so only a bearer token can authenticate them.
- `auth_stack`: the session user, as Channels' AuthMiddlewareStack finds it, except that a
  handshake without a session cookie costs no trip to the database thread.
- `TokenAuthMiddleware`: `Authorization: Bearer <token>` when the session gave no user; the
  token's id goes in scope["auth_token_id"]. The tokens of handshakes arriving together
  are looked up together (project/batching.py): a reconnect storm costs a few queries.
- `RevocableConsumer`: a consumer mix-in that joins the user's group and closes the socket
  when its credential is revoked (project/accounts/revocation.py).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.http.request import is_same_domain, split_domain_port, validate_host

from project.accounts import revocation
from project.accounts.services import bearer_from_header, tokens_authenticate
from project.batching import Coalescer

DEFAULT_PORTS = {"http": 80, "https": 443}
CLOSE_NOT_AUTHENTICATED = 4401  # docs/protocol.md: no logged-in user on the socket

_tokens = Coalescer(database_sync_to_async(tokens_authenticate), name="websocket-token-auth")


class _SessionAuthMiddleware(AuthMiddleware):
    async def resolve_scope(self, scope):
        if scope["session"].session_key is None:  # no session cookie: nobody to look up
            from django.contrib.auth.models import AnonymousUser

            scope["user"]._wrapped = AnonymousUser()
            return
        await super().resolve_scope(scope)


def auth_stack(inner):
    """Channels' AuthMiddlewareStack (cookies, session, the session's user)."""
    return CookieMiddleware(SessionMiddleware(_SessionAuthMiddleware(inner)))


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
                token_user = await _tokens.ask(raw)
                if token_user is not None:
                    scope = dict(scope, user=token_user, auth_token_id=token_user.auth_token_id)
        return await self.app(scope, receive, send)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _origin_tuple(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the default port filled in; None if malformed."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if parts.hostname is None or scheme not in DEFAULT_PORTS:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _allowed_hosts() -> list[str]:
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]
    return list(settings.ALLOWED_HOSTS)


def _request_scheme(scope) -> str:
    """https if the socket came over TLS: to Daphne itself (wss), or through the proxy that
    says so in SECURE_PROXY_SSL_HEADER (X-Forwarded-Proto: https), as Django decides it."""
    if scope.get("scheme") == "wss":
        return "https"
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        name, secure_value = proxy_header
        header = name.removeprefix("HTTP_").lower().replace("_", "-").encode()
        value = _header(scope, header)
        if value is not None and value.split(",")[0].strip() == secure_value:
            return "https"
    return "http"


def origin_allowed(scope) -> bool:
    """Whether the handshake's Origin is this site's own origin (or a trusted one)."""
    origin = _header(scope, b"origin")
    if not origin:
        return False
    try:
        parsed = urlsplit(origin.strip())
    except ValueError:  # e.g. "http://[::1"
        return False
    given = _origin_tuple(parsed.scheme.lower(), parsed.netloc)
    if given is None:
        return False
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        pattern = urlsplit(trusted)
        if pattern.scheme.lower() != given[0]:
            continue
        if "*" in pattern.netloc:  # https://*.example.org, as Django's CSRF check allows
            domain, port = split_domain_port(pattern.netloc.replace("*", "", 1))
            wanted_port = int(port) if port else DEFAULT_PORTS[given[0]]
            if is_same_domain(given[1], domain) and wanted_port == given[2]:
                return True
        elif _origin_tuple(pattern.scheme.lower(), pattern.netloc) == given:
            return True
    host = _header(scope, b"host")
    if not host:
        return False
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return False
    return _origin_tuple(_request_scheme(scope), host) == given


class OriginCheck:
    """Origin check for websockets (cross-site websocket hijacking): see the module doc."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        headers = scope.get("headers", [])
        if not any(name == b"origin" for name, _ in headers):
            scope = dict(scope, headers=[(n, v) for n, v in headers if n != b"cookie"])
            return await self.application(scope, receive, send)
        if not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


class RevocableConsumer:
    """Mix-in for an AsyncWebsocketConsumer (before it in the bases): once the socket is
    authenticated, `await self.follow_revocations(room_id=...)`; a revocation of its token,
    of its user, or of its user's place in that room then closes it with 4401 / 4403.
    Override `on_revoked` to clean up before the close (it is awaited first)."""

    credential: revocation.Credential | None = None
    revocation_room_id: int | None = None

    async def accept_authenticated(self) -> bool:
        """Accept the socket; a socket with no logged-in user (session or token) is closed
        with 4401 (False). Otherwise it follows its revocations from now on (True), so a
        revocation committed during the caller's access check still reaches it."""
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_AUTHENTICATED)
            return False
        await self.follow_revocations()
        return True

    async def follow_revocations(self, *, room_id: int | None = None) -> None:
        user = self.scope["user"]
        self.credential = revocation.Credential(user_id=user.pk, token_id=self.scope.get("auth_token_id"))
        self.revocation_room_id = room_id
        await self.channel_layer.group_add(revocation.user_group(user.pk), self.channel_name)

    async def session_revoke(self, message: dict) -> None:
        if self.credential is None:
            return
        code = revocation.close_code(message, credential=self.credential, room_id=self.revocation_room_id)
        if code is not None:
            await self.on_revoked(code)
            await self.close(code=code)

    async def on_revoked(self, code: int) -> None:
        """Called before the socket closes because of a revocation."""

    async def websocket_disconnect(self, message):
        if self.credential is not None:
            await self.channel_layer.group_discard(revocation.user_group(self.credential.user_id), self.channel_name)
            self.credential = None
        await super().websocket_disconnect(message)
