"""What every client of an outside service shares: a registry of the services of one kind,
the two ways a call can fail, and the mapping of transport errors, timeouts and busy answers
to them.

A kind of outside service (scrobbling services today; live-feed platforms and catalog
sources next) is one `Registry` of client classes, one module each, keyed by the class's
`name`. Code that has a service name looks the class up (`registry.get(name)`) instead of
comparing names, so a new service is one module plus one line of registration.

Every failure is an `OutsideError`: `RetryLater` (network error, timeout, HTTP 5xx or 429,
or a service that says "try again later"; `retry_after_s` says how long, when the service
did), `GiveUp` (the request itself is wrong; retrying cannot help) or `NotAllowed` (the
address a user chose is one this server does not connect to: project/outbound.py). A kind
may add its own subclasses (scrobbling's AuthExpired). `answer` holds the service's raw
answer for error reports; messages and answers never contain a secret.
"""

from __future__ import annotations

import contextlib
import email.utils
import importlib
import math
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import httpx

from project import outbound

ANSWER_MAX_CHARS = 2000


class OutsideError(Exception):
    """Base class of every error a client of an outside service raises."""


class RetryLater(OutsideError):
    """Network error, timeout, HTTP 5xx or 429, or a service that says "try again later"."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, status: int | None = None,
                 answer: str = ""):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.status = status
        self.answer = answer


class GiveUp(OutsideError):
    """The service refused the request for good (bad parameters, unknown error, malformed answer)."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None, answer: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code
        self.answer = answer


class NotAllowed(OutsideError):
    """The address the user chose resolves to one this server does not connect to
    (loopback, private, ...; see OUTBOUND_ALLOW_PRIVATE), or is no address. Nothing was sent."""


def http_client(*, timeout_s: float, user_chosen: bool = False) -> httpx.Client:
    """An httpx client with a timeout; through the outbound guard when a user chose the address."""
    return outbound.http_client(timeout_s=timeout_s) if user_chosen else httpx.Client(timeout=timeout_s, verify=outbound.tls_context())


def send(http: httpx.Client, method: str, url: str, *, what: str, timeout_s: float, **kwargs: Any) -> httpx.Response:
    """One request; a refused address becomes NotAllowed, a timeout or transport error
    RetryLater (`what` names the call in the message: "Last.fm track.scrobble")."""
    with _mapped(url, what=what, timeout_s=timeout_s):
        return http.request(method, url, timeout=timeout_s, **kwargs)


@contextlib.contextmanager
def _mapped(url: str, *, what: str, timeout_s: float) -> Iterator[None]:
    try:
        yield
    except outbound.AddressRefused as exc:
        raise NotAllowed(str(exc)) from exc
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise NotAllowed(f"The server address {url[:100]} is not valid ({exc}).") from exc
    except httpx.TimeoutException as exc:
        raise RetryLater(f"{what}: no answer within {timeout_s}s") from exc
    except httpx.RequestError as exc:
        raise RetryLater(f"{what}: {type(exc).__name__}: {exc}") from exc


def mapped_errors(url: str, *, what: str, timeout_s: float) -> contextlib.AbstractContextManager[None]:
    """send()'s mapping of refusals, timeouts and transport errors, for a caller that streams
    the answer itself (`with mapped_errors(...), http.stream(...) as response:`)."""
    return _mapped(url, what=what, timeout_s=timeout_s)


async def asend(http: httpx.AsyncClient, method: str, url: str, *, what: str, timeout_s: float,
                **kwargs: Any) -> httpx.Response:
    """send() for an httpx.AsyncClient: the same mapping of refusals, timeouts and transport errors."""
    with _mapped(url, what=what, timeout_s=timeout_s):
        return await http.request(method, url, timeout=timeout_s, **kwargs)


R = TypeVar("R")


def backoff_s(attempt: int, *, first_s: float, max_s: float) -> float:
    """The wait before retry number `attempt` (0 = the first retry): `first_s` doubling up to
    `max_s`, with jitter (between half and all of the step), so clients that failed together
    do not come back together."""
    step = min(max_s, first_s * 2 ** min(attempt, 30))
    return random.uniform(step / 2, step)  # noqa: S311 - jitter, not security


def with_retries(call: Callable[[], R], *, attempts: int, first_s: float = 0.5, max_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> R:
    """`call()`, tried up to `attempts` times in all while it raises RetryLater (network errors,
    timeouts, 429, 5xx): before each retry it waits what the service asked for (`retry_after_s`,
    from Retry-After) or else `backoff_s`. A wait longer than `max_s` is not waited out in the
    caller's thread: that RetryLater goes up at once (a task retries it later; Douban's Blocked
    asks for minutes). GiveUp and NotAllowed are not retried. For synchronous clients (catalog
    sources, in Celery tasks)."""
    for attempt in range(max(1, attempts)):
        try:
            return call()
        except RetryLater as exc:
            wait_s = exc.retry_after_s if exc.retry_after_s is not None else backoff_s(
                attempt, first_s=first_s, max_s=max_s)
            if attempt + 1 >= attempts or wait_s > max_s:
                raise
            sleep(wait_s)
    raise AssertionError("unreachable")


def raise_if_busy(response: httpx.Response, message: str) -> None:
    """RetryLater for an HTTP 429 or 5xx answer, with the wait the service asked for."""
    if response.status_code == 429 or response.status_code >= 500:
        raise RetryLater(message, retry_after_s=retry_after_s(response), status=response.status_code,
                         answer=answer_text(response))


def answer_text(response: httpx.Response) -> str:
    """The answer body, cut to ANSWER_MAX_CHARS, for error reports."""
    try:
        return response.text[:ANSWER_MAX_CHARS]
    except (UnicodeDecodeError, LookupError):
        return response.content[:ANSWER_MAX_CHARS].decode("utf-8", "replace")


def json_or_none(response: httpx.Response) -> Any:
    """The answer's JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


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


T = TypeVar("T")


class UnknownService(LookupError):
    """No service of this kind has that name."""


class Registry(Generic[T]):
    """The services of one kind, by name, in the order of `modules` (each module registers
    its class with `@registry.register` when it is imported; the registry imports them all
    on first use, so no caller has to)."""

    def __init__(self, kind: str, *, modules: tuple[str, ...] = ()):
        self.kind = kind
        self._modules = modules
        self._loaded = False
        self._by_name: dict[str, T] = {}

    def register(self, service: T) -> T:
        name = service.name  # type: ignore[attr-defined]
        if name in self._by_name and self._by_name[name] is not service:
            raise ValueError(f"Two {self.kind}s are called {name!r}.")
        self._by_name[name] = service
        return service

    def _load(self) -> dict[str, T]:
        if not self._loaded:
            for module in self._modules:
                importlib.import_module(module)
            self._loaded = True
        return self._by_name

    def get(self, name: str) -> T:
        try:
            return self._load()[name]
        except (KeyError, TypeError):
            raise UnknownService(f"No {self.kind} called {str(name)[:50]!r}.") from None

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def __iter__(self) -> Iterator[T]:
        by_name = self._load()
        ordered = [by_name[name] for name in self.names()]
        return iter(ordered)

    def names(self) -> list[str]:
        by_name = self._load()
        order = {module: index for index, module in enumerate(self._modules)}
        return sorted(by_name, key=lambda name: order.get(getattr(by_name[name], "__module__", ""), len(order)))

    def choices(self) -> list[tuple[str, str]]:
        """(name, label) of each service: model field choices."""
        return [(service.name, service.label) for service in self]  # type: ignore[attr-defined]
