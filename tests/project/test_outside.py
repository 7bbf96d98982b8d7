"""project/outside.py: the registry of a kind of outside service, and the mapping of
transport errors and busy answers to retry-later / give-up."""

from __future__ import annotations

import socket

import httpx
import pytest

from project import outside


class Alpha:
    name, label = "alpha", "Alpha"


class Beta:
    name, label = "beta", "Beta"


def test_registry_finds_services_by_name_in_module_order():
    registry = outside.Registry("test service", modules=(__name__,))
    registry.register(Beta)
    registry.register(Alpha)
    assert registry.get("alpha") is Alpha
    assert "beta" in registry
    assert "gamma" not in registry
    assert registry.choices() == [("beta", "Beta"), ("alpha", "Alpha")]  # same module: as registered
    with pytest.raises(outside.UnknownService, match="No test service called 'gamma'"):
        registry.get("gamma")


def test_registry_refuses_two_services_with_one_name():
    registry = outside.Registry("test service")
    registry.register(Alpha)
    registry.register(Alpha)  # importing a module twice is harmless
    other = type("Other", (), {"name": "alpha", "label": "Other"})
    with pytest.raises(ValueError, match="Two test services are called 'alpha'"):
        registry.register(other)


def test_registry_imports_its_modules_on_first_use():
    from scrobbling.clients import registry

    assert registry.names() == ["lastfm", "librefm", "listenbrainz"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_is_retry_later():
    with httpx.Client() as http, pytest.raises(outside.RetryLater, match=r"^Svc call: ConnectError"):
        outside.send(http, "GET", f"http://127.0.0.1:{closed_port()}/", what="Svc call", timeout_s=2)


def test_a_bad_address_is_not_allowed():
    with httpx.Client() as http, pytest.raises(outside.NotAllowed, match="is not valid"):
        outside.send(http, "GET", "ftp://example.invalid/", what="Svc call", timeout_s=2)


@pytest.mark.parametrize(("status", "busy"), [(429, True), (500, True), (503, True), (404, False), (200, False)])
def test_busy_answers_are_retry_later_with_the_wait_asked_for(status, busy):
    response = httpx.Response(status, headers={"Retry-After": "7"}, text="slow down")
    if not busy:
        outside.raise_if_busy(response, "Svc call")
        return
    with pytest.raises(outside.RetryLater) as caught:
        outside.raise_if_busy(response, "Svc call")
    assert (caught.value.status, caught.value.retry_after_s, caught.value.answer) == (status, 7.0, "slow down")
