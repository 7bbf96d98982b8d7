"""Clients for the scrobbling services, one module per service, the interface they share
(`ScrobblingClient`) and the registry that lists them (`registry`, see project/outside.py).

A new service is one module here with a `@registry.register` class, plus its line in
`registry`'s modules: delivery, the API, the pages and `link_scrobbler` find it there.

Every failure is one of four classes: `RetryLater` (try the same thing again later),
`AuthExpired` (the user must connect the account again; a kind of `GiveUp`), `NotAllowed`
(the server address the user gave is one this server does not call: project/outbound.py)
and `GiveUp` (the request itself is wrong; retrying cannot help). `answer` holds the service's raw answer for the dead-letter
table; messages and answers never contain the API secret, a session key or a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Self

import httpx
from django.conf import settings

from project import outside
from project.outside import ANSWER_MAX_CHARS, GiveUp, NotAllowed, RetryLater, answer_text, retry_after_s

__all__ = ["ANSWER_MAX_CHARS", "AuthExpired", "ClientError", "GiveUp", "HttpClient", "ItemResult", "Listen",
           "NotAllowed", "RetryLater", "ScrobblingClient", "answer_text", "registry", "retry_after_s",
           "service_choices", "unix_s"]

ClientError = outside.OutsideError  # base class of every error a scrobbling client raises


class AuthExpired(GiveUp):
    """The session key or token is no longer valid: a refusal that retrying cannot mend until
    the user connects again (delivery pauses the link and keeps the plays, where any other
    GiveUp dead-letters them, so it is caught before GiveUp)."""


@dataclass(frozen=True)
class Listen:
    artist: str
    title: str
    played_at: datetime  # aware, start of the play
    album: str = ""
    duration_s: float | None = None
    mbid: str = ""  # MusicBrainz recording id
    track_number: int | None = None


@dataclass(frozen=True)
class ItemResult:
    """Outcome of one listen of a batch."""

    accepted: bool
    code: int | None = None  # Last.fm ignoredMessage code
    message: str = ""
    status: int | None = None  # HTTP status of a refusal
    answer: str = ""  # the service's answer to a refusal, for the dead-letter table
    retry_after_s: float | None = None  # refused for now (a daily limit): send again after this long

    @classmethod
    def refused(cls, exc: GiveUp) -> ItemResult:
        return cls(accepted=False, code=exc.code, message=str(exc), status=exc.status, answer=exc.answer)


ACCEPTED = ItemResult(accepted=True)


class HttpClient:
    """What every client shares: its API root, a timeout on every call, and an httpx client
    (its own, closed by close(), or one passed in and left open). `user_chosen`: the API
    root came from a user, so the client's sockets go through the outbound guard."""

    def __init__(self, *, api_root: str, timeout_s: float = 10.0, http: httpx.Client | None = None,
                 user_chosen: bool = False):
        self.api_root = api_root
        self.timeout_s = timeout_s
        self._owns_http = http is None
        if http is None:
            http = outside.http_client(timeout_s=timeout_s, user_chosen=user_chosen)
        self._http = http

    def __repr__(self) -> str:  # never the secrets a subclass holds
        return f"{type(self).__name__}(api_root={self.api_root!r})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()


def unix_s(moment: datetime) -> int:
    """Whole unix seconds of an aware datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("played_at must be timezone-aware")
    return int(moment.timestamp())


class ScrobblingClient(HttpClient):
    """The interface of every scrobbling service: what delivery, the API, the pages and
    `link_scrobbler` use, so that none of them names a service.

    `auth`: "web" (the user is sent to the service and comes back with a token: `connect_url`
    and `link_token`) or "token" (the user pastes a token, optionally for a server of their
    own: `api_root`). `secret` is what ScrobblerLink.secret holds (a session key, a token).
    """

    name: ClassVar[str]  # ScrobblerLink.service
    label: ClassVar[str]
    auth: ClassVar[str]
    max_batch: ClassVar[int]  # listens per request the protocol takes: the one place of this cap
    batch_setting: ClassVar[str]  # the setting that may lower it (None: not lowered)
    # A refusal of a whole batch (4xx, or a 5xx other than 503) may be about one of its
    # listens: send them again one per request, so only the ones refused are dead-lettered.
    resend_one_by_one: ClassVar[bool] = False

    @classmethod
    def configured(cls) -> bool:
        """The server has what it needs to call this service (keys)."""
        return True

    @classmethod
    def required_settings(cls) -> tuple[str, ...]:
        """The settings an administrator sets for `configured()` to be true."""
        return ()

    @classmethod
    def not_configured_message(cls) -> str:
        return f"{cls.label} is not set up on this server."

    @classmethod
    def batch_size(cls) -> int:
        """Listens per request: the setting, at most the protocol's max_batch."""
        wanted = getattr(settings, cls.batch_setting, None)
        return cls.max_batch if wanted is None else min(wanted, cls.max_batch)

    @classmethod
    def build(cls, *, api_root: str = "") -> Self:
        """A client for the service, or for the user's own server at `api_root`."""
        raise NotImplementedError

    @classmethod
    def from_link(cls, link) -> Self:
        """The client for a ScrobblerLink."""
        return cls.build(api_root=link.api_root)

    def scrobble_batch(self, secret: str, listens: list[Listen]) -> list[ItemResult]:
        """Send 1..batch_size listens; one ItemResult per listen, in order."""
        raise NotImplementedError

    def now_playing(self, secret: str, listen: Listen) -> None:
        raise NotImplementedError

    def check(self, secret: str) -> str:
        """The account name these credentials belong to; AuthExpired when refused."""
        raise NotImplementedError


registry: outside.Registry[type[ScrobblingClient]] = outside.Registry(
    "scrobbling service",
    modules=("scrobbling.clients.lastfm", "scrobbling.clients.librefm", "scrobbling.clients.listenbrainz"),
)


def service_choices() -> list[tuple[str, str]]:
    """ScrobblerLink.service and friends: the registered services (no migration per service)."""
    return registry.choices()
