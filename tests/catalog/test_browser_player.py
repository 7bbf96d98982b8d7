"""The library player in a real browser: a track really plays, and keeps playing across pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from tests.live import log_in

pytestmark = pytest.mark.browser

AUDIO_STATE_JS = """() => {
  const audio = document.querySelector('#player-audio');
  if (!audio) return null;
  return {
    src: audio.currentSrc, paused: audio.paused, currentTime: audio.currentTime,
    readyState: audio.readyState, networkState: audio.networkState,
    error: audio.error && audio.error.code, isOriginal: audio === window.__originalAudio,
    playerState: document.querySelector('#player').dataset.state,
    playerError: document.querySelector('#player .player-error').textContent,
  };
}"""


def wait_until_playing_past(page, seconds: float, *, what: str) -> dict:
    """Wait until #player-audio plays beyond `seconds`; fail with the element's state if it does not."""
    try:
        page.wait_for_function(
            "(seconds) => { const a = document.querySelector('#player-audio');"
            " return !!a && !a.paused && !a.error && a.currentTime > seconds; }",
            arg=seconds,
            timeout=8_000,
        )
    except PlaywrightTimeoutError:
        pytest.fail(f"{what}: the audio did not play past {seconds:.2f} s; state: {page.evaluate(AUDIO_STATE_JS)}")
    return page.evaluate(AUDIO_STATE_JS)


def test_track_plays_and_keeps_playing_across_boosted_navigation(alice, track, page, js_errors):
    log_in(page, username=alice.username)
    page.goto("/library/tracks/")
    play = page.locator(f'[data-play="{track.pk}"]')
    expect(play).to_have_accessible_name(f"Play {track.title}")

    with page.expect_response(lambda response: response.url.endswith(track.get_stream_url())) as stream:
        play.click()
    assert stream.value.status in {200, 206}, f"stream answered {stream.value.status}: {stream.value.text()}"

    state = wait_until_playing_past(page, 0.5, what="after pressing play")
    player = page.locator("#player")
    expect(player).to_have_attribute("data-state", "playing")
    expect(player.locator(".player-title")).to_have_text(track.title)
    expect(player.locator(".player-error")).to_be_hidden()
    expect(page.locator(f'[data-track-row="{track.pk}"]')).to_have_class(re.compile(r"\bplaying\b"))

    # An htmx-boosted link swaps the page body but must keep the very same <audio> element.
    page.evaluate("window.__originalAudio = document.querySelector('#player-audio')")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Rooms").click()
    expect(page).to_have_url(re.compile(r"/rooms/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Rooms")

    after = wait_until_playing_past(page, state["currentTime"] + 0.25, what="after navigating to Rooms")
    assert after["isOriginal"], "the boosted navigation replaced the audio element (a full page load?)"
    assert after["src"] == state["src"]
    expect(player.locator(".player-title")).to_have_text(track.title)
    expect(player.locator(".player-error")).to_be_hidden()
    assert js_errors == []


def test_player_explains_a_track_whose_file_is_gone(alice, track, page, js_errors):
    Path(track.file_path).unlink()
    log_in(page, username=alice.username)
    page.goto(track.get_absolute_url())

    page.locator(f'[data-play="{track.pk}"]').click()

    player = page.locator("#player")
    expect(player.locator(".player-error")).to_have_text(re.compile(r"missing on the server"))
    expect(player).to_have_attribute("data-state", "error")
    assert page.evaluate(AUDIO_STATE_JS)["paused"] is True
    assert js_errors == []
