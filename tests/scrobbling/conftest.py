"""Fake Last.fm and ListenBrainz servers, wired into settings, one per test."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from scrobbling import nowplaying
from tests.scrobbling.fakes import FakeLastfm, FakeListenBrainz

LASTFM_API_KEY = "0123456789abcdef0123456789abcdef"
LASTFM_API_SECRET = "fedcba9876543210fedcba9876543210"


def _lastfm_kind(settings, prefix: str, fake: FakeLastfm):
    """Point a service of the Last.fm kind (its `prefix`_* settings) at `fake`, started."""
    fake.start()
    for name, value in (("API_ROOT", fake.url), ("AUTH_URL", fake.auth_url), ("API_KEY", fake.api_key),
                        ("API_SECRET", fake.api_secret)):
        setattr(settings, f"{prefix}_{name}", value)
    yield fake
    fake.stop()


@pytest.fixture
def fake_lastfm(settings):
    """A running FakeLastfm; LASTFM_* settings point at it."""
    yield from _lastfm_kind(settings, "LASTFM", FakeLastfm(LASTFM_API_KEY, LASTFM_API_SECRET))


@pytest.fixture
def fake_librefm(settings):
    """A running FakeLastfm standing for Libre.fm (the same API); LIBREFM_* settings point at it."""
    yield from _lastfm_kind(settings, "LIBREFM", FakeLastfm("librefm-key", "librefm-secret", auth_user="lfm_libre"))


@pytest.fixture
def fake_listenbrainz(settings):
    """A running FakeListenBrainz; LISTENBRAINZ_API_ROOT points at it."""
    fake = FakeListenBrainz().start()
    settings.LISTENBRAINZ_API_ROOT = fake.url
    yield fake
    fake.stop()


@pytest.fixture
def allow_loopback(settings):
    """Users may link servers on this machine (the fakes listen on 127.0.0.1): what an
    operator does with OUTBOUND_ALLOW_PRIVATE for a Maloja next to Chorus."""
    settings.OUTBOUND_ALLOW_PRIVATE = [ipaddress.ip_network("127.0.0.0/8")]


@pytest.fixture(autouse=True)
def no_one_listening(redis_client):
    """Now playing starts and ends empty (it lives in Redis, not the test database)."""
    keys = (nowplaying.NOW_PLAYING_KEY, nowplaying.NOW_PLAYING_KEY + ":expires")
    redis_client.delete(*keys)
    yield
    redis_client.delete(*keys)


@pytest.fixture
def closed_url() -> str:
    """An address on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
