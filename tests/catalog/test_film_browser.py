"""The title page in a real browser: the video plays from where the user stopped, progress is
saved while it plays, and a danmaku posted on one page appears over the picture and in the
list of another page within a second. Also: the catalog pages fit a 375 px phone without
sideways scrolling (screenshots of each are kept in CHORUS_SCREENSHOTS when it is set)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from catalog import film_services as services
from catalog.models import Danmaku, Video, WatchProgress
from tests.catalog.film_support import make_video, small_catalog
from tests.live import log_in

pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 740}


@pytest.fixture(scope="session")
def webm(tmp_path_factory) -> Path:
    """Twelve seconds of ffmpeg's test pattern as VP8 WebM (any chromium plays it): long enough
    that the video is still playing when the test pauses it."""
    return make_video(tmp_path_factory.mktemp("film-clips") / "clip.webm", 12, size="320x180")


@pytest.fixture
def media(tmp_path) -> Path:
    """MEDIA_ROOT with a cover for two titles, drawn by ffmpeg."""
    root = tmp_path / "media"
    (root / "covers").mkdir(parents=True)
    for name, pattern in (("hero.png", "testsrc2"), ("show.png", "smptebars")):
        subprocess.run([settings.FFMPEG_BINARY, "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"{pattern}=size=200x300:duration=1", "-frames:v", "1", str(root / "covers" / name)],
                       check=True, timeout=30)
    return root


@pytest.fixture
def server(asgi_server_factory, media):
    return asgi_server_factory(1, env={"MEDIA_ROOT": str(media)})[0]


@pytest.fixture
def film(db, webm, alice):
    catalog = small_catalog()
    hero = catalog["hero"]
    hero.cover = "covers/hero.png"
    hero.save()
    catalog["show"].cover = "covers/show.png"
    catalog["show"].save()
    Video.objects.create(title=hero, file_path=str(webm), mime_type="video/webm", duration_s=12.0,
                         size_bytes=webm.stat().st_size)
    services.progress_save(user=alice, title=hero, position=1.5)
    Danmaku.objects.bulk_create(Danmaku(title=hero, offset_ms=300 * n, text=f"弹幕{n}") for n in range(40))
    return catalog


FOLLOWS_JS = """() => {
  const list = document.querySelector('.fp-list'), now = document.querySelector('#fp-video').currentTime * 1000;
  const rows = [...list.querySelectorAll('li[data-offset]')], current = list.querySelector('li.current');
  if (rows.length < 42 || !current) return false;
  const next = rows[rows.indexOf(current) + 1];
  return +current.dataset.offset <= now && (!next || +next.dataset.offset > now) && list.scrollTop > 0
    && current.offsetTop >= list.scrollTop && current.offsetTop + current.offsetHeight <= list.scrollTop + list.clientHeight + 1;
}"""


def playing_past(page, seconds: float, timeout_ms: int = 6000) -> None:
    page.wait_for_function(
        "(s) => { const v = document.querySelector('#fp-video'); return v && !v.paused && v.currentTime > s; }",
        arg=seconds, timeout=timeout_ms)


def test_the_title_page_plays_resumes_saves_and_shows_danmaku_live(server, page_factory, film, alice, bob, js_errors):
    hero = film["hero"]
    watcher = page_factory(base_url=server.url)
    poster = page_factory(base_url=server.url)
    log_in(watcher, username=bob.username)
    log_in(poster, username=alice.username)
    # bob comes from the catalog grid (an htmx-boosted link: the player must start all the same).
    watcher.goto("/catalog/")
    watcher.locator(f'.film-grid a[href="{hero.get_absolute_url()}"]').first.click()
    expect(watcher).to_have_url(re.compile(rf"{hero.get_absolute_url()}$"))
    poster.goto(hero.get_absolute_url())
    # Resumed where alice stopped (1.5 s of 12), not from the start.
    poster.wait_for_function("() => document.querySelector('#film-player').dataset.state === 'ready'")
    assert poster.evaluate("document.querySelector('#fp-video').currentTime") == pytest.approx(1.5, abs=0.05)
    for page in (watcher, poster):
        page.wait_for_function("() => document.querySelector('#film-player').dataset.socket === 'open'")
        page.evaluate("document.querySelector('#fp-video').play()")
    playing_past(poster, 1.6)
    playing_past(watcher, 0.2)

    poster.fill("#fp-text", "前方高能")
    poster.locator("#fp-color, .fp-post input[type=color]").evaluate("el => el.value = '#ffcc00'")
    started = time.monotonic()
    poster.get_by_role("button", name="Send").click()
    shown = watcher.locator(".fp-overlay .fp-dm", has_text="前方高能")
    expect(shown).to_be_visible(timeout=1000)
    seen_after_s = time.monotonic() - started
    expect(watcher.locator(".fp-list li", has_text="前方高能")).to_be_visible(timeout=1000)
    assert shown.evaluate("el => getComputedStyle(el).color") == "rgb(255, 204, 0)"
    expect(poster.locator(".fp-overlay .fp-dm", has_text="前方高能")).to_be_attached()
    assert seen_after_s < 1.0
    if os.environ.get("CHORUS_SCREENSHOTS"):
        watcher.locator("#film-player").screenshot(path=str(Path(os.environ["CHORUS_SCREENSHOTS"]) / "player.png"))

    # With the overlay off, a new danmaku still lands in the list but is not drawn.
    watcher.get_by_label("Danmaku", exact=True).uncheck()
    poster.fill("#fp-text", "顶部见")
    poster.locator(".fp-post select[name=mode]").select_option("top")
    poster.get_by_role("button", name="Send").click()
    expect(poster.locator(".fp-overlay .fp-dm.top", has_text="顶部见")).to_be_attached()
    expect(watcher.locator(".fp-list li", has_text="顶部见")).to_be_visible(timeout=1000)
    assert watcher.locator(".fp-overlay .fp-dm").count() == 0

    # Pausing saves where alice is (the PUT happens on pause, not only every 5 s).
    with poster.expect_request(lambda r: r.method == "PUT" and r.url.endswith(f"/titles/{hero.pk}/progress")):
        poster.evaluate("document.querySelector('#fp-video').pause()")
    position = poster.evaluate("document.querySelector('#fp-video').currentTime")
    # The list holds what the API gave for this minute and follows the playhead: the row of the
    # last danmaku before it is marked and scrolled into the list's view.
    poster.wait_for_function(FOLLOWS_JS, timeout=2000)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        saved = WatchProgress.objects.get(user=alice, title=hero, episode=None).position_s
        if saved == pytest.approx(position, abs=0.15):
            break
        time.sleep(0.05)
    assert saved == pytest.approx(position, abs=0.15)
    assert saved > 1.6
    assert js_errors == []


def _fits(page) -> None:
    overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow} px at {PHONE['width']} px"


def _shot(page, name: str, folder: Path) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_the_catalog_pages_fit_a_phone_and_a_desktop(server, page_factory, film, alice, tmp_path, js_errors):
    folder = Path(os.environ.get("CHORUS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    services.favorite_add(user=alice, title=film["show"])
    desktop = page_factory(base_url=server.url)
    phone = page_factory(base_url=server.url, viewport=PHONE, is_mobile=True, has_touch=True)
    zhang = film["hero"].credits.get(role="director").person
    for page, device in ((desktop, "desktop"), (phone, "phone")):
        log_in(page, username=alice.username)
        for name, url in (("catalog", "/catalog/"), ("title", film["hero"].get_absolute_url()),
                          ("tv", film["show"].get_absolute_url()), ("person", zhang.get_absolute_url())):
            page.goto(url)
            page.wait_for_load_state("networkidle")
            if name in ("catalog", "title"):
                expect(page.locator("img.poster").first).to_be_visible()
                shapes = page.evaluate("() => [...document.querySelectorAll('.poster')].map(p => "
                                       "p.getBoundingClientRect().height / p.getBoundingClientRect().width)")
                assert all(1.45 < shape < 1.55 for shape in shapes), f"{url} ({device}): covers not 2:3: {shapes}"
            if device == "phone":
                _fits(page)
            _shot(page, f"{name}-{device}", folder)
    broken = desktop.evaluate("() => [...document.images].filter(i => i.complete && !i.naturalWidth).map(i => i.src)")
    assert broken == []
    assert js_errors == []


def test_the_empty_catalog_on_a_phone_offers_staff_sync_now(asgi_server, page_factory, staff, tmp_path, js_errors):
    folder = Path(os.environ.get("CHORUS_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    phone = page_factory(base_url=asgi_server.url, viewport=PHONE, is_mobile=True, has_touch=True)
    log_in(phone, username=staff.username)
    phone.goto("/catalog/")
    expect(phone.get_by_role("heading", name="The catalog is empty")).to_be_visible()
    expect(phone.get_by_role("button", name="Sync now from Douban")).to_be_visible()
    _fits(phone)
    _shot(phone, "catalog-empty-staff-phone", folder)
    assert js_errors == []
