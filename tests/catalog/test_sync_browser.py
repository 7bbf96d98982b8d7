"""The sync run page in a real browser (Daphne on the test database, Chromium): a run started
with the page open fills the page as it goes (state, counts, progress bar, errors), without a
reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from catalog import sync
from tests.catalog.sync_support import douban_fixture, full_subject, sync_settings_fixture  # noqa: F401 - fixtures
from tests.live import log_in

pytestmark = pytest.mark.browser


def test_the_run_page_follows_the_run_live(staff, page, js_errors, sync_settings, douban):
    for number in range(1, 6):
        douban.add(full_subject(number, douban.url))
    douban.fail_next(3, status=503, after=2)  # the first title's page, every try: one failure
    run, _ = sync.sync_start(source="douban", trigger="manual", enqueue=False)
    log_in(page, username=staff.username)
    page.goto(f"/catalog/sync/{run.pk}/")
    expect(page.locator("#sync-state")).to_have_attribute("data-state", "queued")
    page.wait_for_function("() => window.chorusSync && window.chorusSync.state.frames >= 1")  # the socket's first frame

    sync.sync_execute(run_id=run.pk)

    expect(page.locator("#sync-state")).to_have_attribute("data-state", "done")
    expect(page.locator('[data-count="new"]')).to_have_text("4")
    expect(page.locator('[data-count="failed"]')).to_have_text("1")
    expect(page.locator('[data-count="listed"]')).to_have_text("5")
    expect(page.locator("#sync-bar")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#sync-errors tbody tr")).to_have_count(1)
    expect(page.locator("#sync-errors")).to_contain_text("HTTP 503")
    assert js_errors == []
