"""A person watching a live channel in a real browser: messages appear as they are stored,
filters hide a type, pause holds new rows back and counts them, the statistics draw, and the
page keeps at most a few hundred rows however many arrive.

Set SCREENSHOT_DIR to keep screenshots of the page (desktop and phone)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from livefeed import live, services, storage
from livefeed.models import LiveChannel
from tests.live import log_in
from tests.livefeed.conftest import chat, gift, viewers

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_redis")]


def _store(channel, session, messages) -> None:
    result = storage.messages_store(channel_id=channel.pk, session_id=session.pk, messages=messages)
    live.messages_push(channel_id=channel.pk, rows=result.stored + result.updated)


def _shot(page, name: str) -> None:
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_messages_appear_live_with_filters_and_pause(asgi_server, page_factory, alice, js_errors):
    channel = LiveChannel.objects.create(platform="douyin", ref="123456789", added_by=alice, title="晚间唱歌",
                                         streamer_name="小红", state="running", desired="follow")
    session, _ = services.session_open(channel_id=channel.pk, title="晚间唱歌")
    _store(channel, session, [chat("开播啦", by=1)])
    page = page_factory(base_url=asgi_server.url)
    log_in(page, username=alice.username)
    page.goto(f"/live/{channel.pk}/")
    rows = page.locator("#live-messages li.msg")
    expect(rows).to_have_count(1)  # the recent history on connect
    expect(rows.first).to_contain_text("开播啦")
    expect(page.locator("#live-chart-messages rect")).to_have_count(1)  # a bar for the minute that had messages
    expect(page.locator("#live-total")).to_have_text("1")

    _store(channel, session, [chat("主播好美", by=2), gift(combo="c1", count=5, by=3), viewers(1234)])
    expect(page.locator("#live-messages li.type-chat")).to_have_count(2)
    expect(page.locator("#live-messages li.type-gift")).to_contain_text("×5")
    expect(page.locator("#live-messages li.type-viewers")).to_have_count(0)  # hidden by default
    expect(page.locator("#live-total")).to_have_text("4")  # counted, shown or not

    page.get_by_text("Types shown").click()
    page.get_by_label("chat", exact=True).uncheck()
    expect(page.locator("#live-messages li.type-chat").first).to_be_hidden()
    page.get_by_label("chat", exact=True).check()

    page.get_by_role("button", name="Pause").click()
    _store(channel, session, [chat(f"暂停中{n}", by=4) for n in range(3)])
    expect(page.get_by_role("button", name="Resume (3 new)")).to_be_visible()
    expect(page.locator("#live-messages li.type-chat")).to_have_count(2)
    page.get_by_role("button", name="Resume (3 new)").click()

    _store(channel, session, [chat(f"快{n}", by=n % 50) for n in range(600)])
    expect(page.locator("#live-messages li.msg").last).to_contain_text("快599")
    assert page.locator("#live-messages li").count() <= 300
    _shot(page, "live-channel.png")
    assert js_errors == []


def test_the_status_changes_on_the_page_without_a_reload(asgi_server, page_factory, alice, js_errors):
    channel = LiveChannel.objects.create(platform="douyin", ref="55555", added_by=alice, title="Room")
    page = page_factory(base_url=asgi_server.url, viewport={"width": 390, "height": 844})
    log_in(page, username=alice.username)
    page.goto(f"/live/{channel.pk}/")
    expect(page.locator("#live-state")).to_have_text("Idle")
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    services.channel_transition(channel_id=channel.pk, to="reconnecting", reason="Douyin closed the socket")
    expect(page.locator("#live-state")).to_have_text("Reconnecting")
    expect(page.locator("#live-error")).to_have_text("Douyin closed the socket")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    _shot(page, "live-channel-phone.png")
    assert js_errors == []
