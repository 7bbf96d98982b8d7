"""Libre.fm: a second service of the Last.fm kind, found through the registry alone (its
own API root, keys and web-auth page), against the fake Last.fm server standing for it."""

from __future__ import annotations

import io
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import call_command
from django.utils import timezone

from project.accounts.services import token_create
from scrobbling import delivery, inputs, recording
from scrobbling.clients import registry
from scrobbling.models import BufferEntry, DeadLetter, Play, ScrobblerLink
from tests.factories import make_track


@pytest.fixture
def song(db):
    return make_track("Jóga", "Björk", "Homogenic", duration_s=305.0)


def body(response) -> str:
    return response.content.decode()


def test_librefm_is_a_registered_service_with_its_own_settings(settings, fake_librefm):
    kind = registry.get("librefm")
    assert (kind.label, kind.auth, kind.batch_size()) == ("Libre.fm", "web", 50)
    assert "librefm" in dict(ScrobblerLink._meta.get_field("service").choices)
    client = kind.build()
    try:
        assert (client.api_root, client.api_key) == (fake_librefm.url, "librefm-key")
    finally:
        client.close()
    settings.LIBREFM_API_SECRET = ""
    assert not kind.configured()
    assert kind.not_configured_message() == ("Libre.fm is not set up on this server (LIBREFM_API_KEY and "
                                             "LIBREFM_API_SECRET).")


def test_librefm_links_in_the_browser_and_gets_a_batch(alice_client, alice, song, fake_librefm, fake_lastfm):
    page = body(alice_client.get("/scrobbles/services/"))
    assert 'href="/scrobbling/librefm/connect" hx-boost="false">Connect Libre.fm</a>' in page

    response = alice_client.get("/scrobbling/librefm/connect")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == fake_librefm.auth_url
    query = {key: values[0] for key, values in parse_qs(location.query).items()}
    assert query["api_key"] == "librefm-key"
    callback = urlsplit(query["cb"])
    assert callback.path == "/scrobbling/librefm/callback"
    state = parse_qs(callback.query)["state"][0]

    token = fake_librefm.authorize_token("rj_libre")
    response = alice_client.get("/scrobbling/librefm/callback", {"token": token, "state": state}, follow=True)
    assert "Libre.fm linked as rj_libre." in body(response)
    link = ScrobblerLink.objects.get(user=alice, service="librefm")
    assert fake_librefm.sessions[link.secret] == "rj_libre"

    start = (timezone.now() - timedelta(days=1)).replace(microsecond=0)
    times = [start + timedelta(minutes=i) for i in range(3)]
    plays = [inputs.PlayInput.of_track(song, played_at=t, source=Play.Source.API) for t in times]
    recording.plays_record(user=alice, plays=plays)
    assert BufferEntry.objects.filter(user=alice, service="librefm").count() == 3

    result = delivery.drain(user_id=alice.pk, service="librefm")
    assert (result.sent, result.requests) == (3, 1)
    with fake_librefm.lock:
        assert [s["timestamp"] for s in fake_librefm.scrobbles["rj_libre"]] == [int(t.timestamp()) for t in times]
    assert not fake_lastfm.requests  # Last.fm's own server is not called for Libre.fm
    assert not BufferEntry.objects.exists()
    assert not DeadLetter.objects.exists()


def test_link_scrobbler_links_librefm_with_a_session_key(alice, fake_librefm):
    out = io.StringIO()
    call_command("link_scrobbler", alice.username, "librefm", "--session-key", fake_librefm.add_session("rj"),
                 stdout=out)
    assert "is linked to Libre.fm as rj" in out.getvalue()
    assert ScrobblerLink.objects.get(user=alice).service == "librefm"


def test_librefm_not_set_up_says_which_settings(alice_client, settings):
    settings.LIBREFM_API_KEY = ""
    page = body(alice_client.get("/scrobbles/services/"))
    librefm = page.split('id="service-librefm"')[1].split("</section>")[0]
    assert "Libre.fm is not configured on this server" in librefm
    assert "<code>LIBREFM_API_KEY</code> and <code>LIBREFM_API_SECRET</code>" in librefm
    response = alice_client.get("/scrobbling/librefm/connect", follow=True)
    assert "Libre.fm is not set up on this server" in body(response)


def test_a_token_service_has_no_browser_link_and_an_unknown_one_is_a_404(alice_client):
    response = alice_client.get("/scrobbling/listenbrainz/connect", follow=True)
    assert "ListenBrainz is linked with a token, not in the browser." in body(response)
    assert alice_client.get("/scrobbling/nosuch/connect").status_code == 404


def test_the_api_lists_librefm_and_sends_its_linking_to_the_browser(client, alice, fake_librefm):
    _, raw = token_create(user=alice, name="links")
    headers = {"Authorization": f"Bearer {raw}"}
    statuses = {s["service"]: s for s in client.get("/api/scrobbling/links", headers=headers).json()}
    assert list(statuses) == ["lastfm", "librefm", "listenbrainz"]
    assert (statuses["librefm"]["label"], statuses["librefm"]["auth"], statuses["librefm"]["linked"]) == \
        ("Libre.fm", "web", False)
    response = client.post("/api/scrobbling/links/librefm", data={"token": "t"}, content_type="application/json",
                           headers=headers)
    assert response.status_code == 400
    assert "Libre.fm is linked in the browser (/scrobbling/librefm/connect)" in response.json()["message"]
    assert not fake_librefm.requests
