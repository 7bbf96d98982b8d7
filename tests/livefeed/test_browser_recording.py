"""Watching a live recording back in a real browser: from the channel page's recordings list
to the catalog's player, the recorded segment plays and the room's comments fly over the
picture at the moment they were said (and the side list follows), gifts in their own style."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from livefeed import recordings, storage
from livefeed.models import LiveChannel, LiveSession, Recording, Segment
from tests.live import log_in
from tests.livefeed.conftest import BASE_MS, chat, gift
from tests.livefeed.test_recording_api import make_clip

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def recorded(alice, tmp_path, request):
    """A broadcast recorded into one 12 s segment (mp4, or as copied from the stream: flv, when
    the test asks for it) that began 0.4 s after the session, with chat at 1.5 s and 3 s into
    the file and a gift at 2.5 s."""
    container = getattr(request, "param", "mp4")
    start = datetime.fromtimestamp(BASE_MS / 1000, UTC)
    channel = LiveChannel.objects.create(platform="douyin", ref="123456789", added_by=alice, title="晚间唱歌",
                                         streamer_name="小红", record=True)
    session = LiveSession.objects.create(channel=channel, started_at=start, ended_at=start + timedelta(seconds=20),
                                         end_reason="ended", title_at_start="晚间唱歌")
    recording = Recording.objects.create(channel=channel, session=session, title="晚间唱歌", started_at=start,
                                         ended_at=start + timedelta(seconds=20), state="idle", segments_total=1,
                                         duration_s=12.0)
    clip = make_clip(tmp_path / "recordings" / f"xiaohong_001.{container}", seconds=12)
    segment_start = BASE_MS + 400
    Segment.objects.create(recording=recording, index=1, file_path=str(clip), started_at_ms=segment_start,
                           ended_at_ms=segment_start + 12_000, offset_s=0.4, duration_s=12.0,
                           size_bytes=clip.stat().st_size, state="done", video_codec="h264", audio_codec="aac",
                           width=160, height=90)
    storage.messages_store(channel_id=channel.pk, session_id=session.pk, messages=[
        chat("开场就来了", at_ms=segment_start + 1_500), gift(combo="g1", count=3, at_ms=segment_start + 2_500, end=True),
        chat("second comment", at_ms=segment_start + 3_000), chat("before the file began", at_ms=BASE_MS + 100)])
    recordings.recording_finish(recording_id=recording.pk)
    return channel, recording


@pytest.mark.parametrize("recorded", ["mp4", "flv"], indirect=True)
def test_a_recording_plays_with_its_comments_over_the_picture(asgi_server_factory, page_factory, alice, recorded,
                                                              js_errors, tmp_path):
    """An mp4 recording plays as it is; an FLV one (the default container) from its mp4 remux."""
    channel, recording = recorded
    [asgi_server] = asgi_server_factory(1, env={"LIVEFEED_PLAYBACK_CACHE_DIR": str(tmp_path / "playback")})
    page = page_factory(base_url=asgi_server.url)
    log_in(page, username=alice.username)
    page.goto(f"/live/{channel.pk}/")
    card = page.locator(f'[data-recording="{recording.pk}"]')
    expect(card.get_by_role("link", name="video")).to_be_visible()
    # The comment files come from the server as players fetch them.
    segment = recording.segments.get()
    xml = page.request.get(f"/live/segments/{segment.pk}/comments.xml")
    assert xml.status == 200, xml.text()
    root = ET.fromstring(xml.body())  # noqa: S314 - the server's own file
    assert [(d.get("p").split(",")[0], d.text) for d in root.findall("d")] == [
        ("1.500", "开场就来了"), ("2.500", "viewer 2 ▸ Rose ×3"), ("3.000", "second comment")]
    card.get_by_role("link", name="▶ Watch with comments").click()
    expect(page.locator("#film-player")).to_have_attribute("data-state", "ready")
    expect(page.locator(".kicker")).to_contain_text("Live recording")

    # The side list has the recorded comments at their times in the file; the one said before
    # the file began is not in it.
    items = page.locator(".fp-list li[data-offset]")
    expect(items).to_have_count(3)
    assert [int(x) for x in items.evaluate_all("els => els.map(el => el.dataset.offset)")] == [1500, 2500, 3000]
    expect(page.locator(".fp-list")).not_to_contain_text("before the file began")

    page.evaluate("document.querySelector('#fp-video').play()")
    first = page.locator(".fp-overlay .fp-dm.scroll", has_text="开场就来了")
    expect(first).to_be_visible(timeout=5000)
    shown_at = page.evaluate("document.querySelector('#fp-video').currentTime")
    assert 1.5 <= shown_at < 2.5, f"drawn at {shown_at:.2f} s of the video, said at 1.5 s"
    gift_line = page.locator(".fp-overlay .fp-dm.bottom", has_text="Rose ×3")
    expect(gift_line).to_be_visible(timeout=3000)
    assert gift_line.evaluate("el => getComputedStyle(el).color") == "rgb(255, 215, 0)"
    expect(page.locator(".fp-overlay .fp-dm", has_text="second comment")).to_be_visible(timeout=3000)
    # The side list follows the playhead.
    expect(page.locator(".fp-list li.current")).to_contain_text("second comment", timeout=3000)
    state = page.evaluate("(() => { const v = document.querySelector('#fp-video');"
                          " return {paused: v.paused, error: v.error && v.error.code, t: v.currentTime}; })()")
    assert state["error"] is None
    assert state["t"] > 3.0
    source = page.evaluate("document.querySelector('#fp-video').currentSrc")
    if segment.file_path.endswith(".flv"):
        assert source.endswith(f"/live/segments/{segment.pk}/playable.mp4")
        assert len(list((tmp_path / "playback").glob("*.mp4"))) == 1
    else:
        assert "/catalog/videos/" in source
    assert js_errors == []


@pytest.mark.usefixtures("clean_redis")
def test_the_channel_page_shows_the_recorder_state_and_ffmpeg_log_live(asgi_server, page_factory, alice, js_errors):
    import json

    from livefeed import services
    from livefeed.recorder import log_key
    from project import realtime

    channel = LiveChannel.objects.create(platform="douyin", ref="123456789", added_by=alice, title="晚间唱歌",
                                         record=True, record_state="checking")
    realtime.sync_redis().rpush(log_key(channel.pk), json.dumps(
        {"at": "12:00:01", "level": "info", "text": "Input #0, flv, from 'http://…'"}))
    page = page_factory(base_url=asgi_server.url)
    log_in(page, username=alice.username)
    page.goto(f"/live/{channel.pk}/")
    expect(page.locator("#record-log")).to_contain_text("Input #0, flv")  # the lines before the page opened
    expect(page.locator("#record-state")).to_have_text("Checking")
    # Following the channel (its history arrived, sent once the server subscribed): frames
    # published from here on reach the page.
    page.wait_for_function("() => window.chorusLive && window.chorusLive.state.following === true")

    group = services.live_group(channel.pk)
    realtime.publish(group, {"type": "live.recording", "channel_id": channel.pk, "record": True, "state": "recording",
                             "error": None, "segment": {"id": 1, "index": 3, "state": "recording",
                                                        "size_bytes": 5 * 1024 * 1024, "duration_s": 61}})
    expect(page.locator("#record-state")).to_have_text("Recording")
    expect(page.locator("#record-segment")).to_have_text("#3 · 5.0 MB · 1:01")
    realtime.publish(group, {"type": "live.record_log", "channel_id": channel.pk, "recording_id": 1, "segment_id": 1,
                             "progress": {"time_s": 62.5, "size_bytes": 5_300_000, "bitrate_kbps": 680.2, "speed": 1.0,
                                          "segment_size_bytes": 5_300_000, "segment_duration_s": 62.5},
                             "lines": [{"at": "12:01:03", "level": "warning", "text": "Non-monotonic DTS <b>x</b>"}]})
    warning = page.locator("#record-log li.log-warning")
    expect(warning).to_contain_text("Non-monotonic DTS <b>x</b>")  # shown as text
    expect(page.locator("#record-progress")).to_contain_text("680.2 kbit/s")
    expect(page.locator("#record-segment")).to_have_text("#3 · 5.1 MB · 1:03")
    # A state frame for the same segment (its row still has no size): the progress stays shown.
    realtime.publish(group, {"type": "live.recording", "channel_id": channel.pk, "record": True, "state": "recording",
                             "error": None, "segment": {"id": 1, "index": 3, "state": "recording", "size_bytes": 0,
                                                        "duration_s": 0}})
    expect(page.locator("#record-segment")).to_have_text("#3 · 5.1 MB · 1:03")
    realtime.publish(group, {"type": "live.recording", "channel_id": channel.pk, "record": True, "state": "error",
                             "error": "The stream URL answered 404", "segment": None})
    expect(page.locator("#record-error")).to_have_text("The stream URL answered 404")
    expect(page.locator("#record-error")).to_be_visible()
    assert js_errors == []


def test_the_recordings_part_of_the_channel_page_fits_a_phone(asgi_server, page_factory, alice, recorded, js_errors):
    channel, recording = recorded
    page = page_factory(base_url=asgi_server.url, viewport={"width": 375, "height": 740})
    log_in(page, username=alice.username)
    page.goto(f"/live/{channel.pk}/")
    expect(page.locator(f'[data-recording="{recording.pk}"]')).to_be_visible()
    page.locator("#record-settings summary").click()
    expect(page.get_by_label("File name template")).to_be_visible()
    overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    wide = page.evaluate("""() => [...document.querySelectorAll('body *')].filter(el => el.getBoundingClientRect().right > 376)
        .slice(0, 8).map(el => el.tagName + '.' + el.className + ' ' + Math.round(el.getBoundingClientRect().right))""")
    assert overflow <= 0, f"the channel page scrolls sideways by {overflow} px at 375 px: {wide}"
    if os.environ.get("SCREENSHOT_DIR"):
        page.screenshot(path=str(Path(os.environ["SCREENSHOT_DIR"]) / "channel-recordings-phone.png"), full_page=True)
    assert js_errors == []
