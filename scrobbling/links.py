"""Links to the scrobbling services: linking (the credentials are checked with the service
first), unlinking, pausing, and the client of a service a user names.

The services themselves are the registry's (scrobbling/clients); nothing here names one.
Linking is the one write in scrobbling that waits for an outside service.
"""

from __future__ import annotations

import contextlib
import re

from django.db import transaction
from django.utils import timezone

from project import outbound
from project.outside import UnknownService
from scrobbling import kicks
from scrobbling.clients import AuthExpired, ClientError, NotAllowed, ScrobblingClient, registry
from scrobbling.inputs import ScrobbleError
from scrobbling.models import BufferEntry, ScrobblerLink


def scrobbler(service: str) -> type[ScrobblingClient]:
    """The registered client class of a service name a user gave (404 when there is none)."""
    try:
        return registry.get(service)
    except UnknownService:
        raise ScrobbleError("not_found", f"No scrobbling service called {str(service)[:50]!r}.") from None


def _client_of(kind: type[ScrobblingClient], *, api_root: str = "") -> ScrobblingClient:
    if not kind.configured():
        raise ScrobbleError("not_linked", kind.not_configured_message())
    return kind.build(api_root=api_root)


def connect_url(*, service: str, callback_url: str) -> str:
    """Where to send the user to allow this server, for a service linked in the browser."""
    kind = scrobbler(service)
    if kind.auth != "web":
        raise ScrobbleError("invalid", f"{kind.label} is linked with a token, not in the browser.")
    _client_of(kind).close()  # raises when the service is not configured
    return kind.connect_url(callback_url=callback_url)


def link_web(*, user, service: str, token: str | None = None, session_key: str | None = None) -> ScrobblerLink:
    """Link a service of the Last.fm kind from an authorised web-auth token (exchanged for a
    session key) or from a session key obtained elsewhere (checked with the service)."""
    kind = scrobbler(service)
    if kind.auth != "web":
        raise ScrobbleError("invalid", f"{kind.label} is linked with a token.")
    if not (token or session_key):
        raise ScrobbleError("invalid", f"Give the token {kind.label} sent back or a session key.")
    with _checking(_client_of(kind), refused=f"{kind.label} did not accept that authorisation; try connecting "
                                             "again.") as client:
        name, session_key = client.link_token(token) if token else (client.check(session_key), session_key)
    return _link_save(user=user, service=kind.name, account_name=name, secret=session_key)


TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII: what fits in an Authorization header
TOKEN_MAX_CHARS = 200
API_ROOT_MAX_CHARS = 300  # ScrobblerLink.api_root


def link_token(*, user, service: str, token: str, api_root: str = "") -> ScrobblerLink:
    """Link a service the user pastes a token for (ListenBrainz, or a compatible server of
    theirs at `api_root`); the token is checked with the service first."""
    kind = scrobbler(service)
    if kind.auth != "token":
        raise ScrobbleError("invalid", f"{kind.label} is linked in the browser (/scrobbling/{kind.name}/connect) or "
                                       "with manage.py link_scrobbler.")
    token = (token or "").strip()
    api_root = (api_root or "").strip().rstrip("/")
    if not token:
        raise ScrobbleError("invalid", "Paste your ListenBrainz user token (listenbrainz.org/settings).", field="token")
    if len(token) > TOKEN_MAX_CHARS or not TOKEN_CHARS.fullmatch(token):
        raise ScrobbleError("invalid", "That is not a user token: a token is letters, digits and punctuation "
                                       f"(no spaces or accented letters), at most {TOKEN_MAX_CHARS} characters.",
                            field="token")
    if api_root:
        if len(api_root) > API_ROOT_MAX_CHARS:
            raise ScrobbleError("invalid", f"The server address is longer than {API_ROOT_MAX_CHARS} characters.",
                                field="api_root")
        try:
            outbound.check_url(api_root)
        except outbound.URLRefused as exc:
            raise ScrobbleError("invalid", str(exc), field="api_root") from None
    with _checking(_client_of(kind, api_root=api_root), refused=f"{kind.label} says this token is not valid.") \
            as client:
        name = client.check(token)
    return _link_save(user=user, service=kind.name, account_name=name, secret=token, api_root=api_root)


@contextlib.contextmanager
def _checking(client: ScrobblingClient, *, refused: str):
    """Use `client` to check credentials: a refusal or an unreachable service becomes a
    ScrobbleError the user can read; the client is closed in any case."""
    service = client.label
    try:
        yield client
    except AuthExpired:
        raise ScrobbleError("forbidden", refused, field="token") from None
    except NotAllowed as exc:
        raise ScrobbleError("invalid", str(exc), field="api_root") from None
    except ClientError as exc:
        raise ScrobbleError("service", f"{service} could not be reached to check the link ({exc}); try again.") \
            from None
    finally:
        client.close()


def _link_save(*, user, service: str, account_name: str, secret: str, api_root: str = "") -> ScrobblerLink:
    with transaction.atomic():
        link, _ = ScrobblerLink.objects.update_or_create(
            user=user, service=service,
            defaults={"account_name": account_name[:100], "secret": secret, "api_root": api_root,
                      "status": ScrobblerLink.Status.ACTIVE, "paused_reason": "", "paused_at": None,
                      "failures": 0, "retry_at": None, "last_error": ""},
        )
        kicks.kick_on_commit(user_id=user.pk, service=service)  # plays kept while paused go out now
    return link


def link_remove(*, user, service: str) -> int:
    """Unlink a service. Plays still waiting for it stay and go out if it is linked again
    (or are discarded with buffer_discard); returns how many wait."""
    deleted, _ = ScrobblerLink.objects.filter(user=user, service=service).delete()
    if not deleted:
        raise ScrobbleError("not_linked", f"{scrobbler(service).label} is not linked.")
    return BufferEntry.objects.filter(user=user, service=service).count()


def buffer_discard(*, user, service: str) -> int:
    """Drop the plays waiting for an unlinked service (the history keeps them)."""
    if ScrobblerLink.objects.filter(user=user, service=service).exists():
        raise ScrobbleError("invalid", "Plays for a linked service are being sent; unlink it first.")
    deleted, _ = BufferEntry.objects.filter(user=user, service=service).delete()
    return deleted


def link_pause(*, link: ScrobblerLink, reason: str) -> None:
    ScrobblerLink.objects.filter(pk=link.pk).update(
        status=ScrobblerLink.Status.PAUSED, paused_reason=reason[:300], paused_at=timezone.now()
    )

