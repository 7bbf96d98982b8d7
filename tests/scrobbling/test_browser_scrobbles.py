"""Scrobbling in a real browser: the library player reports now playing and scrobbles each play
once; the Scrobbles and services pages render and refresh themselves.

Set SCREENSHOT_DIR to keep screenshots of the pages (e.g. SCREENSHOT_DIR=/tmp/shots).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from rooms import services as room_services
from scrobbling import inputs, links, nowplaying, recording
from scrobbling.models import Play, ScrobblerLink
from tests.conftest import make_audio
from tests.factories import make_track
from tests.live import log_in

pytestmark = pytest.mark.browser

LONG_TRACK_S = 62


@pytest.fixture(scope="session")
def long_mp3(tmp_path_factory) -> Path:
    """A real 62 s mp3 (low bitrate: small and quick to make): long enough to be scrobbled."""
    folder = tmp_path_factory.mktemp("long-audio")
    return make_audio(folder / "long.mp3", LONG_TRACK_S, ["-c:a", "libmp3lame", "-b:a", "32k"], {})


@pytest.fixture
def long_track(transactional_db, long_mp3):
    track = make_track("Long Song", "The Band", "Long Album", duration_s=float(LONG_TRACK_S))
    track.file_path = str(long_mp3)
    track.size_bytes = long_mp3.stat().st_size
    track.save(update_fields=["file_path", "size_bytes"])
    return track


def wait_for(predicate, *, timeout_s: float = 10.0, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def play_fast(page, track, *, rate: float = 16.0) -> None:
    """Press play on the track page, then play at `rate` (31 s of audio heard in about 2 s)."""
    page.goto(track.get_absolute_url())
    page.locator(f'[data-play="{track.pk}"]').click()
    page.wait_for_function("() => { const a = document.querySelector('#player-audio');"
                           " return !!a && !a.paused && a.currentTime > 0; }")
    page.evaluate("(rate) => { document.querySelector('#player-audio').playbackRate = rate; }", rate)


def shoot(page, name: str) -> None:
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        # The sticky player bar would cover the middle of a full-page picture.
        page.screenshot(path=str(Path(folder) / name), full_page=True, style="#player { position: static; }")


def test_library_player_scrobbles_a_play_once_and_says_now_playing(alice, long_track, page, js_errors):
    log_in(page, username=alice.username)
    with page.expect_request(lambda r: r.url.endswith("/api/scrobbling/now-playing") and r.method == "POST") as np:
        play_fast(page, long_track)
    assert np.value.post_data_json["track_id"] == long_track.pk
    assert np.value.response().status == 200
    listening = nowplaying.now_playing_list()
    assert [(e["username"], e["track_id"], e["source"]) for e in listening] == [("alice", long_track.pk, "library")]

    play = wait_for(lambda: Play.objects.filter(user=alice).first(), what="the scrobble")
    assert (play.track_id, play.source) == (long_track.pk, "library")
    assert play.played_s >= LONG_TRACK_S / 2
    assert timezone.now() - timedelta(seconds=30) < play.played_at < timezone.now()

    # It plays on to the end (about 2 s more): still one play, and nobody listening any more.
    page.wait_for_function("() => document.querySelector('#player-audio').ended")
    expect(page.locator("#player")).to_have_attribute("data-state", "ended")
    wait_for(lambda: not nowplaying.now_playing_list(), what="now playing to be cleared after the last track")
    assert Play.objects.filter(user=alice).count() == 1
    assert page.evaluate("localStorage.getItem('chorus.pendingScrobbles')") is None
    assert js_errors == []


def test_seeking_is_not_listening(alice, long_track, page, js_errors):
    log_in(page, username=alice.username)
    sent = []
    page.on("request", lambda request: sent.append((request.method, request.url)))
    page.goto(long_track.get_absolute_url())
    page.locator(f'[data-play="{long_track.pk}"]').click()
    page.wait_for_function("() => { const a = document.querySelector('#player-audio'); return a.currentTime > 0.3; }")
    # At the end of the last track the player clears now playing; it would have sent a
    # scrobble before that (the play is counted on each time update, the end comes after).
    with page.expect_response(lambda r: r.url.endswith("/api/scrobbling/now-playing")
                              and r.request.method == "DELETE", timeout=15_000) as cleared:
        page.evaluate("() => { document.querySelector('#player-audio').currentTime = 58; }")
    assert cleared.value.ok
    assert any(method == "POST" and url.endswith("/api/scrobbling/now-playing") for method, url in sent)
    assert [url for method, url in sent if url.endswith("/api/scrobbling/scrobbles")] == []
    assert not Play.objects.filter(user=alice).exists()
    assert js_errors == []


def test_a_scrobble_the_server_missed_is_sent_on_the_next_page_load(alice, long_track, page, js_errors):
    log_in(page, username=alice.username)
    page.route("**/api/scrobbling/scrobbles", lambda route: route.fulfill(status=503, body="down"))
    play_fast(page, long_track)
    pending = wait_for(lambda: page.evaluate("localStorage.getItem('chorus.pendingScrobbles')"),
                       what="the scrobble kept in localStorage")
    assert f'"track_id":{long_track.pk}' in pending
    assert not Play.objects.filter(user=alice).exists()

    page.unroute("**/api/scrobbling/scrobbles")
    page.reload()
    play = wait_for(lambda: Play.objects.filter(user=alice).first(), what="the kept scrobble to arrive")
    assert play.source == "library"
    wait_for(lambda: page.evaluate("localStorage.getItem('chorus.pendingScrobbles')") is None,
             what="localStorage to be emptied")
    assert Play.objects.filter(user=alice).count() == 1
    assert js_errors == []


def test_scrobbles_page_renders_and_refreshes_its_recent_plays(alice, page, js_errors):
    song = make_track("Windowlicker", "Aphex Twin", "Windowlicker", duration_s=366.0)
    other = make_track("Jóga", "Björk", "Homogenic", duration_s=305.0)
    third = make_track("Teardrop", "Massive Attack", "Mezzanine", duration_s=330.0)
    room = room_services.room_create(owner=alice, name="Friday Mix")
    now = timezone.now()
    plays = []
    for days in range(0, 80, 3):
        for n in range(days % 7 + 1):
            track = (song, other, third)[(days + n) % 3]
            plays.append(inputs.PlayInput.of_track(track, played_at=now - timedelta(days=days, minutes=10 + n * 7),
                                                      source=Play.Source.LIBRARY))
    plays.append(inputs.PlayInput.of_track(other, played_at=now - timedelta(minutes=3), source=Play.Source.ROOM,
                                             room_id=room.pk, played_s=305.0))
    plays.append(inputs.PlayInput(played_at=now - timedelta(minutes=6), artist_name="Boards of Canada",
                                    track_title="Roygbiv", source=Play.Source.EXTERNAL, client="Pano Scrobbler"))
    recording.plays_record(user=alice, plays=plays)
    ScrobblerLink.objects.create(user=alice, service="lastfm", account_name="alice_fm", secret="sk",
                                 last_sent_at=now - timedelta(minutes=2))

    log_in(page, username=alice.username)
    page.goto("/scrobbles/")
    chart = page.get_by_role("img", name="Plays per day over the last 90 days")
    expect(chart).to_be_visible()
    assert page.locator(".day-chart rect.bar").count() == 90
    expect(page.locator("#recent")).to_contain_text("Roygbiv")
    expect(page.locator("#recent")).to_contain_text("Friday Mix")
    expect(page.locator("#recent .badge", has_text="unmatched")).to_have_count(1)
    shoot(page, "scrobbles.png")

    # A new play shows up without reloading (the list polls every 10 s).
    recording.plays_record(user=alice, plays=[inputs.PlayInput.of_track(
        third, played_at=timezone.now() - timedelta(seconds=5), source=Play.Source.API)])
    expect(page.locator("#recent tbody tr").first).to_contain_text("Teardrop", timeout=15_000)
    page.set_viewport_size({"width": 390, "height": 844})
    shoot(page, "scrobbles-phone.png")
    assert js_errors == []


def test_services_page_renders_and_follows_the_link_state(alice, page, js_errors):
    link = ScrobblerLink.objects.create(user=alice, service="lastfm", account_name="alice_fm", secret="sk",
                                        last_sent_at=timezone.now() - timedelta(minutes=2))
    log_in(page, username=alice.username)
    page.goto("/scrobbles/services/")
    lastfm = page.locator("#service-lastfm")
    expect(lastfm).to_contain_text("Linked as alice_fm")
    page.get_by_label("User token").fill("typed but not sent")

    links.link_pause(link=link, reason="Invalid session key - Please re-authenticate")
    page.locator("body").click(position={"x": 5, "y": 300})  # the form loses focus: polling resumes
    expect(lastfm).to_contain_text("Paused: Invalid session key", timeout=8_000)
    expect(lastfm.get_by_role("link", name="Reconnect")).to_be_visible()
    # The poll kept what was typed in the ListenBrainz form.
    expect(page.get_by_label("User token")).to_have_value("typed but not sent")
    shoot(page, "services.png")
    page.goto("/")
    expect(page.locator(".banner")).to_contain_text("Last.fm stopped accepting your plays")
    shoot(page, "home-banner.png")
    assert js_errors == []


def test_home_shows_who_is_listening(alice, bob, page, js_errors):
    song = make_track("Windowlicker", "Aphex Twin", "Windowlicker", duration_s=366.0)
    log_in(page, username=alice.username)
    expect(page.locator("#listening-now")).to_contain_text("Nobody is listening right now")
    nowplaying.now_playing_set(user=bob, track=song, position_s=120.0)
    expect(page.locator("#listening-now")).to_contain_text("Windowlicker", timeout=15_000)
    expect(page.locator("#listening-now")).to_contain_text("bob")
    shoot(page, "home-listening.png")
    assert js_errors == []


def test_linking_listenbrainz_in_the_browser(alice, fake_listenbrainz, asgi_server_factory, page_factory, js_errors):
    (server,) = asgi_server_factory(1, env={"LISTENBRAINZ_API_ROOT": fake_listenbrainz.url})
    page = page_factory(base_url=server.url, color_scheme="dark")
    log_in(page, username=alice.username)
    page.goto("/scrobbles/services/")
    token = page.get_by_label("User token")
    token.fill("not-a-token")
    page.get_by_role("button", name="Link ListenBrainz").click()
    card = page.locator("#service-listenbrainz")
    expect(card).to_contain_text("ListenBrainz says this token is not valid.")
    expect(token).to_have_value("not-a-token")
    shoot(page, "services-error-dark.png")

    token.fill(fake_listenbrainz.add_user("lb_alice"))
    page.get_by_role("button", name="Link ListenBrainz").click()
    expect(page.locator(".messages")).to_contain_text("ListenBrainz linked as lb_alice.")
    expect(card).to_contain_text("Linked as lb_alice")
    assert ScrobblerLink.objects.get(user=alice, service="listenbrainz").account_name == "lb_alice"
    assert js_errors == []
