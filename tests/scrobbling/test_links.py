"""Linking a ListenBrainz-compatible server the user chose: the outbound guard refuses this
machine and its private networks (unless OUTBOUND_ALLOW_PRIVATE allows them), on the form, in
the API and at delivery, and bad input is a 400 naming the field, never a 500."""

from __future__ import annotations

import ipaddress
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from project.accounts.services import token_create
from scrobbling import delivery, inputs, recording
from scrobbling.models import BufferEntry, DeadLetter, Play, ScrobblerLink
from tests.factories import make_track
from tests.scrobbling.fakes import FakeListenBrainz, FakeMaloja

URL = "/api/scrobbling/links/listenbrainz"


@pytest.fixture
def no_private(settings):
    settings.OUTBOUND_ALLOW_PRIVATE = []


@pytest.fixture
def own_server():
    """The user's own ListenBrainz-compatible server, on this machine (127.0.0.1)."""
    fake = FakeListenBrainz().start()
    yield fake
    fake.stop()


@pytest.fixture
def link_api(client, alice):
    _, raw = token_create(user=alice, name="links")

    def post(body):
        response = client.post(URL, data=json.dumps(body), content_type="application/json",
                               headers={"Authorization": f"Bearer {raw}"})
        return response.status_code, response.json()

    return post


def test_a_server_on_this_machine_is_refused_over_the_api(no_private, link_api, alice, own_server):
    token = own_server.add_user("alice_maloja")

    status, body = link_api({"token": token, "api_root": own_server.url})

    assert status == 400
    assert (body["error"], body["field"]) == ("invalid", "api_root")
    assert "127.0.0.1 is a private address (loopback)" in body["message"]
    assert "OUTBOUND_ALLOW_PRIVATE" in body["message"]
    assert own_server.requests == []  # not even validate-token went out
    assert not ScrobblerLink.objects.filter(user=alice).exists()


def test_a_name_for_this_machine_is_refused_on_the_form(no_private, alice_client, alice, own_server):
    port = own_server.url.rsplit(":", 1)[1]
    token = own_server.add_user("alice_maloja")

    response = alice_client.post("/scrobbles/services/listenbrainz",
                                 {"token": token, "api_root": f"http://localhost:{port}/apis/listenbrainz"})

    assert response.status_code == 400
    errors = response.context["lb_form"].errors
    assert "localhost resolves to 127.0.0.1" in errors["api_root"][0]
    assert "OUTBOUND_ALLOW_PRIVATE" in response.content.decode()
    assert own_server.requests == []
    assert not ScrobblerLink.objects.filter(user=alice).exists()


def test_a_server_that_redirects_to_this_machine_is_refused(settings, link_api, alice, own_server):
    """The server the user gave is allowed (127.0.0.2 stands for a public one) but answers
    with a redirect to an internal one: the redirect is not followed there."""
    settings.OUTBOUND_ALLOW_PRIVATE = [ipaddress.ip_network("127.0.0.2/32")]
    front = FakeListenBrainz(host="127.0.0.2").start()
    try:
        front.redirect_to = own_server.url
        status, body = link_api({"token": own_server.add_user("alice_lb"), "api_root": front.url})
        assert (status, body["field"]) == (400, "api_root")
        assert "127.0.0.1 is a private address (loopback)" in body["message"]
        assert [r.status for r in front.requests] == [307]
        assert own_server.requests == []
        assert not ScrobblerLink.objects.filter(user=alice).exists()
    finally:
        front.stop()


def test_an_allowed_network_links_the_server(settings, link_api, alice, own_server):
    settings.OUTBOUND_ALLOW_PRIVATE = [ipaddress.ip_network("127.0.0.1/32")]
    status, body = link_api({"token": own_server.add_user("alice_maloja"), "api_root": own_server.url})
    assert status == 201, body
    assert (body["account_name"], body["api_root"]) == ("alice_maloja", own_server.url)


@pytest.mark.parametrize(("payload", "field", "needle"), [
    ({"token": "t0ken", "api_root": "http://[::1"}, "api_root", "not a valid address"),
    ({"token": "t0ken", "api_root": "gopher://music.example.org"}, "api_root", "http:// or https://"),
    ({"token": "t0ken", "api_root": "https://" + "m" * 300 + ".example.org"}, "api_root", "longer than 300"),
    ({"token": "tökén-ünïcode"}, "token", "not a user token"),
    ({"token": "two words"}, "token", "not a user token"),
    ({"token": "x" * 201}, "token", "not a user token"),
    ({"token": "  "}, "token", "Paste your ListenBrainz user token"),
])
def test_bad_link_input_is_a_400_naming_the_field(no_private, link_api, alice, payload, field, needle):
    status, body = link_api(payload)
    assert status == 400, body
    assert body["field"] == field
    assert needle in body["message"]
    assert not ScrobblerLink.objects.filter(user=alice).exists()


def test_a_non_ascii_token_on_the_form_names_the_token(alice_client, alice):
    response = alice_client.post("/scrobbles/services/listenbrainz", {"token": "jeton-été", "api_root": ""})
    assert response.status_code == 400
    assert "not a user token" in response.context["lb_form"].errors["token"][0]


# --- delivery to a server whose address is refused now ----------------------------------------


@pytest.fixture
def song(db):
    return make_track("Jóga", "Björk", "Homogenic", duration_s=305.0)


def record(user, track, count: int) -> list[Play]:
    start = (timezone.now() - timedelta(days=1)).replace(microsecond=0)
    plays = [inputs.PlayInput.of_track(track, played_at=start + timedelta(minutes=i), source=Play.Source.API)
             for i in range(count)]
    return recording.plays_record(user=user, plays=plays).created


def test_delivery_to_a_refused_address_pauses_the_link_and_keeps_the_plays(no_private, alice, song, own_server):
    """Linked while OUTBOUND_ALLOW_PRIVATE allowed it, which it no longer does: the link is
    paused with the reason (no retry loop, no dead letters), and relinking sends the plays."""
    token = own_server.add_user("alice_maloja")
    ScrobblerLink.objects.create(user=alice, service="listenbrainz", account_name="alice_maloja", secret=token,
                                 api_root=own_server.url)
    record(alice, song, 3)

    result = delivery.drain(user_id=alice.pk, service="listenbrainz")

    assert (result.sent, result.dead, result.paused, result.retry_in_s) == (0, 0, True, None)
    link = ScrobblerLink.objects.get(user=alice)
    assert link.status == ScrobblerLink.Status.PAUSED
    assert "127.0.0.1 is a private address" in link.paused_reason
    assert link.retry_at is None
    assert BufferEntry.objects.filter(user=alice, lease_token="").count() == 3
    assert not DeadLetter.objects.exists()
    assert own_server.requests == []
    assert delivery.sweep() == []  # a paused link is not drained again by itself


def test_now_playing_to_a_refused_address_pauses_the_link(no_private, alice, song, own_server):
    ScrobblerLink.objects.create(user=alice, service="listenbrainz", account_name="alice_maloja",
                                 secret=own_server.add_user("alice_maloja"), api_root=own_server.url)
    assert delivery.send_now_playing(user_id=alice.pk, track_id=song.pk) == 0
    assert ScrobblerLink.objects.get(user=alice).status == ScrobblerLink.Status.PAUSED
    assert own_server.requests == []


def test_the_default_listenbrainz_root_is_the_operators_and_not_guarded(no_private, alice, song,
                                                                        fake_listenbrainz):
    """LISTENBRAINZ_API_ROOT (here a fake on 127.0.0.1) is set by the operator, not a user."""
    ScrobblerLink.objects.create(user=alice, service="listenbrainz", account_name="alice_lb",
                                 secret=fake_listenbrainz.add_user("alice_lb"))
    record(alice, song, 2)
    assert delivery.drain(user_id=alice.pk, service="listenbrainz").sent == 2


def test_a_maloja_on_the_lan_is_reached_once_its_network_is_allowed(settings, link_api, alice, song):
    """The documented set-up: OUTBOUND_ALLOW_PRIVATE names the LAN Maloja's network."""
    settings.OUTBOUND_ALLOW_PRIVATE = [ipaddress.ip_network("127.0.0.0/8")]
    maloja = FakeMaloja().start()
    try:
        status, body = link_api({"token": maloja.add_user("alice"), "api_root": maloja.url})
        assert status == 201, body
        record(alice, song, 2)
        assert delivery.drain(user_id=alice.pk, service="listenbrainz").sent == 2
        assert [s["length_s"] for s in maloja.listens["alice"]] == [305, 305]  # `duration`, in seconds
    finally:
        maloja.stop()
