"""Clients for the scrobbling services, one module per protocol, and the types they share.

Every failure is one of four classes: `RetryLater` (try the same thing again later),
`AuthExpired` (the user must connect the account again), `NotAllowed` (the server address
the user gave is one this server does not call: project/outbound.py) and `GiveUp` (the
request itself is wrong; retrying cannot help). `answer` holds the service's raw answer for the dead-letter
table; messages and answers never contain the API secret, a session key or a token.
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass
from datetime import datetime

import httpx

from project import outbound

ANSWER_MAX_CHARS = 2000


class ClientError(Exception):
    """Base class of every error a scrobbling client raises."""


class RetryLater(ClientError):
    """Network error, timeout, HTTP 5xx or 429, or a service that says "try again later"."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, status: int | None = None, answer: str = ""):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.status = status
        self.answer = answer


class AuthExpired(ClientError):
    """The session key or token is no longer valid; the user has to connect again."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None, answer: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code
        self.answer = answer


class NotAllowed(ClientError):
    """The address the user chose resolves to one this server does not connect to
    (loopback, private, ...; see OUTBOUND_ALLOW_PRIVATE). Nothing was sent."""


class GiveUp(ClientError):
    """The service refused the request for good (bad parameters, unknown error, malformed answer)."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None, answer: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code
        self.answer = answer


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
            http = outbound.http_client(timeout_s=timeout_s) if user_chosen else httpx.Client(timeout=timeout_s)
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


def answer_text(response: httpx.Response) -> str:
    """The answer body, cut to ANSWER_MAX_CHARS, for error reports."""
    try:
        return response.text[:ANSWER_MAX_CHARS]
    except (UnicodeDecodeError, LookupError):
        return response.content[:ANSWER_MAX_CHARS].decode("utf-8", "replace")


def retry_after_s(response: httpx.Response) -> float | None:
    """Seconds to wait according to `Retry-After` (seconds or HTTP date) or `X-RateLimit-Reset-In`.

    When both are present the longer wait wins.
    """
    waits = [_retry_after_header(response.headers.get("Retry-After", "")),
             _seconds(response.headers.get("X-RateLimit-Reset-In", ""))]
    known = [wait for wait in waits if wait is not None]
    return max(known) if known else None


def _retry_after_header(value: str) -> float | None:
    value = value.strip()
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - time.time())


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
