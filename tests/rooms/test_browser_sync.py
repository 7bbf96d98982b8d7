"""Two browsers in one room: play in one starts the other, and they play in step."""

from __future__ import annotations

import statistics
import time

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from catalog import services as catalog_services
from rooms import services
from tests.conftest import make_audio
from tests.live import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SAMPLE_JS = "() => window.chorusRoom && window.chorusRoom.sample()"


@pytest.fixture
def long_track(library_dir):
    path = make_audio(library_dir / "long.mp3", 30, ["-c:a", "libmp3lame", "-b:a", "128k"],
                      {"title": "Long Tone", "artist": "Sync Test"})
    return catalog_services.track_import_file(path=path).track


def position_at(sample: dict, server_ms: float) -> float:
    """Where this page's player is at `server_ms`, from a sample taken while playing."""
    return sample["position_s"] + (server_ms - sample["server_ms"]) / 1000


def test_play_in_one_browser_starts_the_other_in_sync(asgi_server, page_factory, people, long_track, js_errors):
    room = services.room_create(owner=people["hana"], name="Sync Room")
    services.queue_add(room=room, actor=people["hana"], track_id=long_track.pk)
    services.room_join(room=room, user=people["lis"])

    pages = {}
    for name in ("hana", "lis"):
        page = page_factory(base_url=asgi_server.url)
        log_in(page, username=name)
        if name == "lis":  # through the nav and the room list, as a person would
            page.get_by_role("link", name="Rooms").click()
            page.get_by_role("link", name="Sync Room").click()
        else:
            page.goto(f"/rooms/{room.slug}/")
        expect(page.locator("#connection")).to_have_attribute("data-status", "connected")
        expect(page.locator("#queue-list")).to_contain_text("Long Tone")
        pages[name] = page
    expect(pages["lis"].locator("#member-list")).to_contain_text("hana")

    pages["hana"].get_by_role("button", name="Play", exact=True).click()
    for page in pages.values():
        try:
            expect(page.locator("#room")).to_have_attribute("data-status", "playing", timeout=15_000)
        except AssertionError:
            debug = page.evaluate("() => ({state: window.chorusRoom.state, error: document.querySelector('#room-error').textContent})")
            raise AssertionError(f"room did not start playing: {debug}") from None
        expect(page.locator("#now-title")).to_have_text("Long Tone")
        page.wait_for_function("() => { const s = window.chorusRoom.sample(); return s.position_s !== null && s.position_s > 1; }",
                               timeout=15_000)

    differences = []
    for _ in range(10):
        host, listener = pages["hana"].evaluate(SAMPLE_JS), pages["lis"].evaluate(SAMPLE_JS)
        assert host["position_s"] is not None
        assert listener["position_s"] is not None
        at = max(host["server_ms"], listener["server_ms"])
        differences.append(abs(position_at(host, at) - position_at(listener, at)) * 1000)
        time.sleep(0.3)
    assert statistics.median(differences) < 100, differences
    assert max(differences) < 150, differences

    pages["lis"].wait_for_timeout(500)
    pages["hana"].get_by_role("button", name="Pause", exact=True).click()
    expect(pages["lis"].locator("#room")).to_have_attribute("data-status", "paused")
    assert pages["lis"].evaluate(SAMPLE_JS)["position_s"] is None  # the listener's player stopped too
    assert js_errors == []


def _session_of(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def test_a_member_whose_browser_blocked_sound_is_shown_as_such_until_they_click(
    asgi_server, browser, page_factory, people, long_track, js_errors
):
    from tests.live import CHROMIUM, CHROMIUM_ARGS, PAGE_TIMEOUT_MS

    room = services.room_create(owner=people["hana"], name="Autoplay Room")
    services.queue_add(room=room, actor=people["hana"], track_id=long_track.pk)
    services.room_join(room=room, user=people["lis"])
    host = page_factory(base_url=asgi_server.url)
    log_in(host, username="hana")
    host.goto(f"/rooms/{room.slug}/")
    expect(host.locator("#connection")).to_have_attribute("data-status", "connected")

    # lis's browser plays sound only after a click on the page, as most browsers do by default.
    strict_args = [arg for arg in CHROMIUM_ARGS if not arg.startswith("--autoplay-policy")]
    strict = browser.browser_type.launch(
        executable_path=CHROMIUM, args=[*strict_args, "--autoplay-policy=document-user-activation-required"]
    )
    try:
        context = strict.new_context(base_url=asgi_server.url, viewport={"width": 1280, "height": 800})
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        # Logged in without a click on the site (a click on the login form would count as
        # the user's interaction with it, and the browser would allow sound from then on).
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": _session_of(people["lis"]),
                              "url": asgi_server.url}])
        listener = context.new_page()
        listener.on("pageerror", lambda error: js_errors.append(str(error)))
        # Nothing on this page is inspected before the click below: Playwright runs its
        # checks as if the user had acted on the page, which would let the sound play.
        listener.goto(f"/rooms/{room.slug}/")
        host.get_by_role("button", name="Play", exact=True).click()
        expect(host.locator("#room")).to_have_attribute("data-status", "playing", timeout=15_000)

        lis_on_host = host.locator("#member-list li", has_text="lis")
        expect(lis_on_host.locator(".sync")).to_have_text("sound blocked: click to listen", timeout=10_000)
        expect(lis_on_host.locator(".sync")).to_have_class("sync blocked")
        unlock = listener.get_by_role("button", name="Click to hear the room (your browser blocked sound)")
        expect(unlock).to_be_visible()

        unlock.click()

        expect(lis_on_host.locator(".sync")).to_contain_text("drift", timeout=10_000)
        expect(unlock).to_be_hidden()
        listener.wait_for_function(
            "() => { const s = window.chorusRoom.sample(); return s.position_s !== null && s.position_s > 0.5; }",
            timeout=15_000,
        )
    finally:
        strict.close()
    assert js_errors == []
