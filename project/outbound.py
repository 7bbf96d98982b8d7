"""Outgoing HTTP to addresses a user chose: never to this machine or its private networks.

A user can type any URL into a form (a ListenBrainz-compatible server, and later a live-feed
or catalog source), and the server then calls it. Without a guard that makes the server a
probe of everything it can reach: 127.0.0.1, the LAN, a cloud metadata endpoint. Every client
for a user-chosen URL therefore takes its httpx client from here:

    with outbound.http_client(timeout_s=10) as http:
        http.get(url)        # raises outbound.AddressRefused for a refused address

The check happens when a socket is opened, on the address actually connected to: the network
backend under httpx resolves the host itself, drops every refused address and connects to an
allowed one by number (TLS still verifies and sends SNI for the host name). So a name that
resolves to a public address when the form is checked and to 127.0.0.1 a second later (DNS
rebinding), or a redirect to a private address, is refused all the same. Proxies from the
environment are ignored (a proxy would resolve the name itself).

Refused: loopback, private (RFC 1918, unique-local), link-local, multicast, reserved,
unspecified and other non-global addresses, IPv4 and IPv6, IPv4-mapped IPv6 and NAT64 forms
judged by the IPv4 address inside. `OUTBOUND_ALLOW_PRIVATE` lists networks that are allowed
anyway (a Maloja on the LAN: `192.168.1.0/24`).

`check_url(url)` validates a URL early (scheme, host, port, and the addresses the host
resolves to now) so a form can name the problem; the connection checks again.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import ssl
import typing
from urllib.parse import urlsplit

import anyio
import certifi
import httpcore
import httpx
from django.conf import settings

logger = logging.getLogger(__name__)

SETTING = "OUTBOUND_ALLOW_PRIVATE"
SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
URL_MAX_CHARS = 2000
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class URLRefused(ValueError):
    """A user-chosen URL that will not be called: malformed, not http(s), or pointing at a
    refused address. str() is a sentence for the user."""


class AddressRefused(httpx.ConnectError):
    """Raised when a connection would go to a refused address. A ConnectError, so a client
    that only knows httpx errors treats it as a failed connection; clients for user-chosen
    URLs catch it first and tell the user (it does not go away by retrying)."""

    def __init__(self, message: str, *, host: str = "", address: str = ""):
        super().__init__(message)
        self.host = host
        self.address = address


# --- which addresses ---------------------------------------------------------------------


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=16)
def _networks(allowed: tuple[Network | str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in allowed)


def allowed_networks() -> tuple[Network, ...]:
    """OUTBOUND_ALLOW_PRIVATE: networks (or their text, as tests may set them)."""
    return _networks(tuple(getattr(settings, SETTING, None) or ()))


def _embedded_v4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (::ffff:a.b.c.d, 64:ff9b::a.b.c.d)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: Address | str) -> str:
    """Why connecting to this address is refused ("" when it is allowed): "loopback",
    "private", "link-local", "multicast", "reserved", "unspecified" or "non-public"."""
    address = ipaddress.ip_address(address) if isinstance(address, str) else address
    candidates = [address]
    inner = _embedded_v4(address)
    if inner is not None:
        candidates.append(inner)
    networks = allowed_networks()
    if any(candidate in network for candidate in candidates for network in networks
           if candidate.version == network.version):
        return ""
    judged = inner or address
    for kind, refused in (("unspecified", judged.is_unspecified), ("loopback", judged.is_loopback),
                          ("link-local", judged.is_link_local), ("multicast", judged.is_multicast),
                          ("reserved", judged.is_reserved), ("private", judged.is_private),
                          ("non-public", not judged.is_global)):
        if refused:
            return kind
    return ""


def refusal_message(host: str, address: str, kind: str) -> str:
    shown = host if host == address else f"{host} resolves to {address}, which"
    return (f"{shown} is a private address ({kind}): this server does not connect to such addresses "
            f"unless {SETTING} allows it (e.g. {SETTING}=192.168.1.0/24 for a server on the LAN).")


def _check(host: str, infos: list[tuple]) -> list[tuple]:
    """The getaddrinfo results that may be connected to; AddressRefused if none."""
    allowed, refused = [], None
    for info in infos:
        address = info[4][0].split("%", 1)[0]  # an IPv6 scope id is not part of the address
        kind = refusal(address)
        if kind:
            refused = refused or (address, kind)
        else:
            allowed.append(info)
    if not allowed and refused is not None:
        logger.warning("outbound connection refused",
                       extra={"host": host[:200], "address": refused[0], "kind": refused[1]})
        raise AddressRefused(refusal_message(host, *refused), host=host, address=refused[0])
    return allowed


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


# --- URLs ----------------------------------------------------------------------------------


def check_url(url: str, *, resolve: bool = True) -> str:
    """The URL, stripped, if it may be called: http or https, a host, a valid port, and (with
    `resolve`) a host that does not resolve to refused addresses only. URLRefused otherwise.
    A host that does not resolve at all passes: the connection will say it cannot be reached."""
    url = (url or "").strip()
    if not url:
        raise URLRefused("The address is empty.")
    if len(url) > URL_MAX_CHARS:
        raise URLRefused(f"The address is longer than {URL_MAX_CHARS} characters.")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise URLRefused("The address contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname or ""
    except ValueError as exc:
        raise URLRefused(f"{url[:100]} is not a valid address ({exc}).") from None
    if parts.scheme.lower() not in SCHEMES:
        raise URLRefused("The address must start with http:// or https://.")
    if not host:
        raise URLRefused(f"{url[:100]} names no host.")
    try:
        httpx.URL(url)
        host.encode("idna")
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise URLRefused(f"{url[:100]} is not a valid address ({exc}).") from None
    if resolve:
        try:
            infos = socket.getaddrinfo(host, port or (443 if parts.scheme.lower() == "https" else 80),
                                       type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return url
        try:
            _check(host, infos)
        except AddressRefused as exc:
            raise URLRefused(str(exc)) from None
    return url


# --- the network backends under httpx -----------------------------------------------------


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, connecting only to allowed addresses of the host."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.NetworkStream:
        host = _bare(host)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"{host}: {exc}") from exc
        error: Exception | None = None
        for info in _check(host, infos):
            try:
                return self._backend.connect_tcp(info[4][0], port, timeout=timeout, local_address=local_address,
                                                 socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error or httpcore.ConnectError(f"{host}: no address to connect to")

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.NetworkStream:
        raise AddressRefused("Unix sockets are not connected to for user-chosen addresses.")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class AsyncGuardedBackend(httpcore.AsyncNetworkBackend):
    """The same for httpx.AsyncClient (asyncio or trio, through anyio)."""

    def __init__(self) -> None:
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 - httpcore's
                          local_address: str | None = None,
                          socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.AsyncNetworkStream:
        host = _bare(host)
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"{host}: {exc}") from exc
        error: Exception | None = None
        for info in _check(host, infos):
            try:
                return await self._backend.connect_tcp(info[4][0], port, timeout=timeout,
                                                       local_address=local_address, socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error or httpcore.ConnectError(f"{host}: no address to connect to")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: typing.Iterable[typing.Any] | None = None):
        raise AddressRefused("Unix sockets are not connected to for user-chosen addresses.")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context (certifi's CA bundle) that every outside client of this
    process shares, httpx clients and wss sockets alike: making one loads the bundle, about
    1 MB and 10 to 20 ms each time, which every client used to do for itself (a followed live
    room held 1 MB for it; docs/benchmarks.md, "worker RSS"). A context is safe to share
    between connections and threads."""
    return ssl.create_default_context(cafile=certifi.where())


def wss_context(url: str) -> ssl.SSLContext | None:
    """The `ssl` argument of a websockets connect to `url`: the shared context for wss://,
    None for ws:// (websockets refuses a context there)."""
    return tls_context() if url.lower().startswith("wss://") else None


def _context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify:
        return tls_context()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _pool_kwargs(*, verify: ssl.SSLContext | bool = True, limits: httpx.Limits | None = None,
                 retries: int = 0) -> dict:
    context = _context(verify)
    limits = limits or httpx.Limits(max_connections=10, max_keepalive_connections=5)
    return {"ssl_context": context, "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry, "retries": retries}


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport, over a connection pool whose every socket goes through
    GuardedBackend (httpx has no public way to pass a network backend, so the pool it made
    is replaced by one built the same way)."""

    def __init__(self, **kwargs) -> None:
        kwargs["verify"] = _context(kwargs.get("verify", True))
        super().__init__(trust_env=False, **kwargs)
        self._pool = httpcore.ConnectionPool(network_backend=GuardedBackend(), **_pool_kwargs(**kwargs))


class AsyncGuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, **kwargs) -> None:
        kwargs["verify"] = _context(kwargs.get("verify", True))
        super().__init__(trust_env=False, **kwargs)
        self._pool = httpcore.AsyncConnectionPool(network_backend=AsyncGuardedBackend(), **_pool_kwargs(**kwargs))


def http_client(*, timeout_s: float, verify: ssl.SSLContext | bool = True, **kwargs) -> httpx.Client:
    """An httpx.Client for user-chosen URLs: guarded sockets, no proxies from the
    environment, redirects followed (each new connection is checked too)."""
    return httpx.Client(transport=GuardedTransport(verify=verify), timeout=timeout_s, trust_env=False,
                        follow_redirects=True, max_redirects=MAX_REDIRECTS, **kwargs)


def async_http_client(*, timeout_s: float, verify: ssl.SSLContext | bool = True, **kwargs) -> httpx.AsyncClient:
    """http_client for asyncio code."""
    return httpx.AsyncClient(transport=AsyncGuardedTransport(verify=verify), timeout=timeout_s, trust_env=False,
                             follow_redirects=True, max_redirects=MAX_REDIRECTS, **kwargs)
