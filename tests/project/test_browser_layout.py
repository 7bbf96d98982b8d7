"""Every page fits a phone: nothing scrolls sideways at 360 px, whatever the names.

The pages are found by walking the URL configuration, not listed by hand, so a new page is
checked as soon as it exists: every route that answers a GET with a full HTML page (for
staff, for a member and for a visitor) is opened in Chromium at 360 px wide, with demo-ish
data whose names are long and unbroken (a 500-character title, a 100-character room name, a
150-character user name), and `document.documentElement.scrollWidth` must stay within the
viewport. The admin, the JSON API and the ListenBrainz-compatible API are not pages of the
site and are left out.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from playwright.sync_api import expect

from catalog import services as catalog_services
from catalog.models import Album, ImportJob, Track
from livefeed import services as live_services
from livefeed import storage as live_storage
from livefeed.messages import LiveUser, Message
from livefeed.models import LiveChannel
from project.accounts.services import invite_create, token_create
from rooms import services as rooms
from rooms.models import PlaybackState
from scrobbling import inputs, links, nowplaying, recording
from scrobbling.models import Play, ScrobblerLink
from tests.factories import UserFactory, make_track
from tests.live import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 360, "height": 740}
WORD = "Supercalifragilisticexpialidocious"
LONG_TITLE = (WORD * 15)[:500]  # one unbroken word of 500 characters
LONG_NAME = (WORD * 9)[:300]
LONG_ROOM = (WORD * 3)[:100]
LONG_USER = ("listener" + WORD * 5)[:150]
# Not pages: other APIs, the admin, machine endpoints.
NOT_PAGES = ("admin/", "api/", "apis/", "1/", "healthz", "metrics", "favicon.ico")
STREAMS = {"radio", "track-stream"}  # endless or audio answers
# Pages that must be among those found (a walk that silently finds nothing would pass).
EXPECTED = {
    "/", "/library/", "/library/tracks/", "/library/artists/", "/library/albums/", "/library/import/",
    "/rooms/", "/rooms/new", "/scrobbles/", "/scrobbles/services/", "/accounts/settings/",
    "/accounts/password/", "/accounts/invites/", "/live/",
}


def _routes(resolver: URLResolver | None = None, prefix: str = "") -> list[tuple[str, URLPattern]]:
    """(route, pattern) of every URL pattern, includes flattened."""
    resolver = resolver or get_resolver()
    found = []
    for item in resolver.url_patterns:
        route = prefix + str(item.pattern)
        if isinstance(item, URLResolver):
            found += _routes(item, route)
        else:
            found.append((route, item))
    return found


def _fill(route: str, values: dict[str, str]) -> str | None:
    """`route` with each <converter:name> replaced from `values`; None for a route with a
    parameter the demo data has no value for."""
    import re

    missing = []

    def value(match: re.Match) -> str:
        name = match.group(1).split(":")[-1]
        if name not in values:
            missing.append(name)
            return ""
        return values[name]

    url = "/" + re.sub(r"<([^>]+)>", value, route).lstrip("^").rstrip("$")
    return None if missing else url


@pytest.fixture
def demo(library_dir, settings):
    """A library, a room with a long queue, scrobbles, an import: names long and unbroken."""
    staff = UserFactory(username="sam", is_staff=True, is_superuser=True)
    member = UserFactory(username=LONG_USER)
    job = catalog_services.import_job_create(path=str(library_dir), enqueue=False)
    catalog_services.import_job_run(job_id=job.pk)
    tracks = [make_track(LONG_TITLE if i % 3 == 0 else f"Song {i}", LONG_NAME if i % 2 else "Short Artist",
                         LONG_NAME if i % 4 == 0 else "An Album", duration_s=200 + i) for i in range(12)]
    tracks += list(Track.objects.filter(file_path__startswith=str(library_dir)))
    room = rooms.room_create(owner=staff, name=LONG_ROOM)
    rooms.room_join(room=room, user=member)
    entries = [rooms.queue_add(room=room, actor=staff, track_id=track.pk) for track in tracks * 2]
    # Paused on the track with the longest title, so the room page shows it as what plays.
    PlaybackState.objects.filter(room=room).update(entry=entries[0], status="paused", position_s=12.0)
    start = timezone.now() - timedelta(hours=3)
    plays = [inputs.PlayInput.of_track(track, played_at=start + timedelta(minutes=5 * i), played_s=track.duration_s,
                                           source=Play.Source.LIBRARY)
             for i, track in enumerate(tracks[:12])]
    for user in (staff, member):
        recording.plays_record(user=user, plays=plays)
    nowplaying.now_playing_set(user=member, track=tracks[0], position_s=10)
    # Settings and services with long names: an API token, a paused ListenBrainz link, an invite.
    for user in (staff, member):
        token_create(user=user, name=LONG_ROOM)
        link = ScrobblerLink.objects.create(user=user, service="listenbrainz", account_name=LONG_ROOM, secret="x",
                                            api_root="https://" + "long" * 40 + ".example.org/")
        links.link_pause(link=link, reason=LONG_TITLE[:300])
    invite_create(created_by=staff, max_uses=5, note=LONG_ROOM)
    # A live channel with a long title and a session with long messages.
    channel = LiveChannel.objects.create(platform="douyin", ref="7" * 19, added_by=staff, title=LONG_TITLE[:300],
                                         streamer_name=LONG_NAME[:200], state="running", desired="follow")
    session, _ = live_services.session_open(channel_id=channel.pk, title=LONG_TITLE[:300])
    live_storage.messages_store(channel_id=channel.pk, session_id=session.pk, messages=[
        Message(type="chat", platform_msg_id=f"long{n}", ts_ms=1_764_590_400_000 + n,
                user=LiveUser(id=f"u{n}", name=LONG_USER[:60]), content=WORD * 4) for n in range(5)])
    return {
        "staff": staff, "member": member, "room": room,
        "values": {
            "slug": room.slug, "code": room.invite_code,
            "track_id": str(tracks[0].pk), "artist_id": str(tracks[1].artist_id),
            "album_id": str(Album.objects.get(title=LONG_NAME).pk),
            "job_id": str(ImportJob.objects.get().pk), "service": "listenbrainz",
            "channel_id": str(channel.pk), "session_id": str(session.pk),
        },
    }


def _pages(user, values: dict[str, str]) -> list[str]:
    """Every route that answers this user's GET with a whole HTML page."""
    client = Client()
    if user is not None:
        client.force_login(user)
    pages = []
    for route, pattern in _routes():
        if route.startswith(NOT_PAGES) or pattern.name in STREAMS:
            continue
        url = _fill(route, values)
        if url is None:
            continue
        response = client.get(url)
        body = response.content[:4000].decode(errors="replace").lower() if not response.streaming else ""
        if (response.status_code == 200 and response["Content-Type"].startswith("text/html")
                and "<!doctype html" in body):
            pages.append(url)
    return sorted(set(pages))


def _scroll_width(page, url: str) -> int:
    page.goto(url)
    if "/rooms/" in url and url.count("/") == 3 and url != "/rooms/new":  # a room: its queue is drawn by script
        expect(page.locator("#queue-list .queue-item").first).to_be_visible()
        expect(page.locator("#member-list li").first).to_be_visible()
        expect(page.locator("#now-title")).to_have_attribute("title", LONG_TITLE)
    return page.evaluate("() => document.documentElement.scrollWidth")


def _check(page, urls: list[str], shots, who: str) -> list[tuple[str, int]]:
    too_wide = []
    for url in urls:
        width = _scroll_width(page, url)
        if width > PHONE["width"]:
            too_wide.append((url, width))
        if width > PHONE["width"] or os.environ.get("LAYOUT_SCREENSHOTS"):
            page.screenshot(path=shots / f"{who}-{url.strip('/').replace('/', '_') or 'home'}.png", full_page=True)
    return too_wide


@pytest.fixture
def pages(demo) -> dict[str, list[str]]:
    """The pages each kind of person can open (found before the browser starts)."""
    return {who: _pages(user, demo["values"]) for who, user in
            (("staff", demo["staff"]), ("member", demo["member"]), ("visitor", None))}


def test_no_page_scrolls_sideways_on_a_phone(pages, demo, asgi_server, page_factory, js_errors, tmp_path):
    # Screenshots of the room page and of every page too wide; with LAYOUT_SCREENSHOTS=<dir>,
    # of every page, kept in that folder.
    shots = Path(os.environ.get("LAYOUT_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    staff_pages, member_pages, visitor_pages = pages["staff"], pages["member"], pages["visitor"]
    assert set(staff_pages) >= EXPECTED, EXPECTED - set(staff_pages)
    room_url = f"/rooms/{demo['room'].slug}/"
    assert room_url in staff_pages
    assert room_url in member_pages
    assert "/accounts/login/" in visitor_pages

    too_wide = []
    visitor = page_factory(base_url=asgi_server.url, viewport=PHONE)
    too_wide += _check(visitor, visitor_pages, shots, "visitor")
    for who, user, urls in (("staff", demo["staff"], staff_pages), ("member", demo["member"], member_pages)):
        page = page_factory(base_url=asgi_server.url, viewport=PHONE, has_touch=True)
        log_in(page, username=user.username)
        too_wide += _check(page, urls, shots, who)
        _scroll_width(page, room_url)
        page.screenshot(path=shots / f"room-as-{who}.png", full_page=True)

    assert too_wide == [], f"pages wider than {PHONE['width']} px (screenshots in {shots}): {too_wide}"
    assert js_errors == []


def test_long_names_wrap_or_carry_the_full_text_on_hover(demo):
    """The full name is always there: as text that wraps, or in a title attribute."""
    client = Client()
    client.force_login(demo["staff"])
    for url in ("/", "/library/", "/library/tracks/", "/library/albums/", f"/library/albums/{demo['values']['album_id']}/",
                "/scrobbles/", f"/library/artists/{demo['values']['artist_id']}/"):
        body = client.get(url).content.decode()
        assert f'title="{LONG_TITLE}"' in body or f'title="{LONG_NAME}"' in body, url


COLUMN_WIDTHS_JS = """(selector) => [...document.querySelector(selector).querySelectorAll('thead th')]
    .map((th) => ({name: th.textContent.trim(), width: th.getBoundingClientRect().width}))"""


def test_a_500_character_title_does_not_squeeze_the_other_columns(demo, asgi_server, page_factory, js_errors):
    page = page_factory(base_url=asgi_server.url)  # a desktop window
    log_in(page, username=demo["staff"].username)
    for url, table in (("/scrobbles/", "#recent table"), ("/library/tracks/", "table.list"), ("/", "table.list")):
        page.goto(url)
        columns = {c["name"]: c["width"] for c in page.evaluate(COLUMN_WIDTHS_JS, table)}
        total = sum(columns.values())
        title = columns.get("Track") or columns["Title"]
        assert title <= 0.6 * total, (url, columns)
        for name in ("Artist", "From", "Album"):
            if name in columns:
                assert columns[name] >= 100, (url, columns)
    assert js_errors == []


def test_pages_fit_a_desktop_window_for_someone_with_a_long_name(pages, demo, asgi_server, page_factory, js_errors):
    page = page_factory(base_url=asgi_server.url)  # 1280 px wide
    log_in(page, username=demo["member"].username)
    too_wide = [(url, width) for url in pages["member"] if (width := _scroll_width(page, url)) > 1280]
    assert too_wide == []
    assert js_errors == []
