"""A recording's comments as ASS and Bilibili XML: ffmpeg (libass) reads and draws the ASS, the
XML parses, hostile text cannot break either, and every message lands within a second of
where it belongs in the video (its platform time minus the segment's real start)."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings

from livefeed import exports
from livefeed import messages as kinds
from tests.livefeed.conftest import BASE_MS, chat, gift

HOSTILE = "<script>&amp;\"'</script> {\\pos(0,0)\\c&HFF&} \\N tab\there\x00nul\x07bell\u2028 😀👍🏽 弹幕"


@dataclass
class Row:
    """What exports reads of a stored message."""

    type: str
    ts_ms: int
    content: str = ""
    user_name: str = "viewer"
    user_id: str = "u1"
    extra: dict = field(default_factory=dict)
    gift_count: int | None = None
    pk: int = 0


def ffmpeg(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([settings.FFMPEG_BINARY, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                          capture_output=True, timeout=timeout, check=False)


def parse_xml(data: bytes) -> ET.Element:
    return ET.fromstring(data)  # noqa: S314 - the file these tests just wrote


def write(path: Path, chunks) -> Path:
    path.write_text("".join(chunks), encoding="utf-8")
    return path


SRT_STYLE = re.compile(r"</?font[^>]*>|\{\\an\d\}")  # what ffmpeg writes for the ASS style
SRT_TIME = re.compile(r"(\d+):(\d\d):(\d\d),(\d\d\d) --> (\d+):(\d\d):(\d\d),(\d\d\d)")


def srt_cues(text: str) -> list[tuple[float, str]]:
    """(start_s, text) of each cue of an SRT file."""
    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        times = next((SRT_TIME.search(line) for line in lines if SRT_TIME.search(line)), None)
        assert times, block
        h, m, s, ms = (int(x) for x in times.groups()[:4])
        cues.append((h * 3600 + m * 60 + s + ms / 1000, SRT_STYLE.sub("", " ".join(lines[2:]))))
    return cues


def test_ffmpeg_reads_the_ass_and_every_message_starts_where_it_was_said(tmp_path):
    start = BASE_MS
    rows = [Row(kinds.CHAT, start + 1_000, "first line"),
            Row(kinds.CHAT, start + 2_500, "你好，主播 😀"),
            Row(kinds.GIFT, start + 3_000, "", user_name="gifter", extra={"gift_name": "Rose", "count": 5}),
            Row(kinds.SUPER_CHAT, start + 4_200, "thanks!", user_name="rich", extra={"price_cny": 30}),
            Row(kinds.LIKE, start + 4_500, extra={"count": 3}),  # not shown
            Row(kinds.CHAT, start + 61_730, "a minute later")]
    ass = write(tmp_path / "part.ass", exports.ass_chunks(exports.comments(rows, start_ms=start)))

    converted = ffmpeg("-i", str(ass), "-f", "srt", "-")
    assert converted.returncode == 0, converted.stderr.decode()
    cues = srt_cues(converted.stdout.decode())

    expected = [(1.0, "first line"), (2.5, "你好，主播 😀"), (3.0, "gifter ▸ Rose ×5"), (4.2, "rich ¥30: thanks!"),
                (61.73, "a minute later")]
    assert [text for _, text in cues] == [text for _, text in expected]
    for (got_s, text), (want_s, _) in zip(cues, expected, strict=True):
        assert abs(got_s - want_s) < 1.0, (text, got_s, want_s)
        assert abs(got_s - want_s) <= 0.01  # ASS says centiseconds: it is exact to that


def _frames_lit(ass: Path, *, seconds: float, fps: int = 10) -> list[bool]:
    """Whether anything is drawn, frame by frame, when libass renders `ass` over black."""
    width, height = 480, 270
    out = ffmpeg("-f", "lavfi", "-i", f"color=black:size={width}x{height}:duration={seconds}:rate={fps}",
                 "-vf", f"subtitles={ass}", "-f", "rawvideo", "-pix_fmt", "gray", "-")
    assert out.returncode == 0, out.stderr.decode()
    frame = width * height
    data = out.stdout
    return [max(data[i:i + frame]) > 64 for i in range(0, len(data), frame)]


def test_libass_draws_a_comment_from_its_time_and_not_before(tmp_path):
    start = BASE_MS
    rows = [Row(kinds.CHAT, start + 3_000, "danmaku at three seconds"),
            Row(kinds.SUPER_CHAT, start + 6_000, HOSTILE, extra={"price_cny": 50})]
    ass = write(tmp_path / "draw.ass", exports.ass_chunks(exports.comments(rows, start_ms=start)))

    lit = _frames_lit(ass, seconds=8)
    assert len(lit) == 80
    first = lit.index(True)
    # The line enters from the right edge at 3.0 s: visible within a few frames, never before.
    assert 30 <= first <= 33, first
    assert all(lit[31:40]), lit[30:40]
    # The super chat stands at the top from 6 s (the chat line has left by then? it is drawn too).
    assert all(lit[60:80])


def test_chat_lines_in_one_lane_never_overlap_while_lanes_are_free():
    start = BASE_MS
    rows = [Row(kinds.CHAT, start + i * 350, "x" * (5 + (i * 7) % 40) if i % 3 else "长的弹幕" * (1 + i % 5))
            for i in range(120)]
    events = list(exports.ass_chunks(exports.comments(rows, start_ms=start)))[1:]
    moves = []
    for line in events:
        times = re.match(r"Dialogue: 0,(\d+):(\d\d):(\d\d)\.(\d\d),", line)
        h, m, s, cs = (int(x) for x in times.groups())
        begin = h * 3600 + m * 60 + s + cs / 100
        x1, y, x2, _ = (int(v) for v in re.search(r"\\move\((-?\d+),(-?\d+),(-?\d+),(-?\d+)\)", line).groups())
        moves.append((begin, y, x1, -x2))  # start, lane y, right edge start, width
    assert len({y for _, y, _, _ in moves}) > 1
    for a_index, (a_start, a_y, _, a_w) in enumerate(moves):
        for b_start, b_y, _, b_w in moves[a_index + 1:]:
            if b_y != a_y or b_start > a_start + exports.SCROLL_S:
                continue
            # Sample the time both are on screen: b's head stays behind a's tail.
            for step in range(0, 81):
                t = b_start + step * 0.1
                if t > a_start + exports.SCROLL_S:
                    break
                a_left = exports.PLAY_W - (t - a_start) * (exports.PLAY_W + a_w) / exports.SCROLL_S
                b_left = exports.PLAY_W - (t - b_start) * (exports.PLAY_W + b_w) / exports.SCROLL_S
                assert b_left >= a_left + a_w - 1, (a_start, b_start, t)


def test_the_xml_parses_with_hostile_text_and_keeps_the_times():
    start = BASE_MS
    rows = [Row(kinds.CHAT, start + 500, HOSTILE, user_name="<b>&name</b>", pk=7),
            Row(kinds.CHAT, start + 1_200, "长" * 10_000, pk=8),
            Row(kinds.EMOJI_CHAT, start + 2_000, "[微笑]", pk=9),
            Row(kinds.GIFT, start + 2_500, user_name="g", extra={"gift_name": "小心心", "count": 10}, pk=10),
            Row(kinds.SUPER_CHAT, start + 3_000, "sc <text>", user_name="s", extra={"price_cny": 30}, pk=11),
            Row(kinds.CHAT, start - 10, "before the segment", pk=12),
            Row(kinds.CHAT, start + 10_000, "after the segment", pk=13)]
    body = "".join(exports.xml_chunks(exports.comments(rows, start_ms=start, end_ms=start + 10_000), title="A & B"))

    root = parse_xml(body.encode("utf-8"))
    items = root.findall("d")
    assert [d.get("p").split(",")[-1] for d in items] == ["7", "8", "9", "10", "11"]
    times = [float(d.get("p").split(",")[0]) for d in items]
    assert times == [0.5, 1.2, 2.0, 2.5, 3.0]
    hostile = items[0].text
    assert "<script>&amp;\"'</script>" in hostile
    assert "😀👍🏽 弹幕" in hostile
    assert "\x00" not in hostile
    assert "\x07" not in hostile
    assert "\t" not in hostile
    assert items[0].get("user") == "<b>&name</b>"
    assert len(items[1].text) == exports.MAX_TEXT
    assert items[1].text.endswith("…")
    modes = [d.get("p").split(",")[1] for d in items]
    assert modes == ["1", "1", "1", str(exports.XML_BOTTOM), str(exports.XML_TOP)]
    assert items[3].text == "g ▸ 小心心 ×10"
    assert items[4].text == "s ¥30: sc <text>"
    assert root.find("title").text == "A & B"


def test_hostile_text_cannot_open_an_ass_override_block(tmp_path):
    rows = [Row(kinds.CHAT, BASE_MS + 1_000, HOSTILE), Row(kinds.CHAT, BASE_MS + 2_000, "长" * 10_000)]
    ass = write(tmp_path / "hostile.ass", exports.ass_chunks(exports.comments(rows, start_ms=BASE_MS)))
    text = ass.read_text(encoding="utf-8")
    dialogue = [line for line in text.splitlines() if line.startswith("Dialogue:")]
    assert len(dialogue) == 2  # no newline in the text made a line of its own
    assert "\x00" not in text
    assert "\u2028" not in text

    converted = ffmpeg("-i", str(ass), "-f", "srt", "-")
    assert converted.returncode == 0, converted.stderr.decode()
    cues = srt_cues(converted.stdout.decode())
    assert [round(s, 2) for s, _ in cues] == [1.0, 2.0]
    assert "😀👍🏽 弹幕" in cues[0][1]
    assert "<script>" in cues[0][1]
    assert "\uff5b\\\u200bpos(0,0)" in cues[0][1]  # shown as text (full-width brace), not taken as a tag
    assert len(cues[1][1]) <= exports.MAX_TEXT + 5
    assert _frames_lit(ass, seconds=3)[12:18] == [True] * 6


# --- from stored messages, against a segment's real start ------------------------------------------


@pytest.fixture
def recording(channel, session):
    from livefeed.models import Recording

    return Recording.objects.create(channel=channel, session=session, title="Tonight's show",
                                    started_at=datetime.fromtimestamp(BASE_MS / 1000, UTC))


def _segment(recording, index, start_ms, end_ms):
    from livefeed.models import Segment

    return Segment.objects.create(recording=recording, index=index, file_path=f"/tmp/rec-{recording.pk}-{index}.flv",
                                  started_at_ms=start_ms, ended_at_ms=end_ms,
                                  offset_s=(start_ms - BASE_MS) / 1000, duration_s=(end_ms - start_ms) / 1000)


def test_a_segment_file_holds_its_own_messages_timed_from_its_real_start(db, session, recording):
    from livefeed.storage import messages_store

    # The second segment started 60.4 s into the broadcast (a reconnect took 0.4 s).
    first = _segment(recording, 1, BASE_MS, BASE_MS + 60_000)
    second = _segment(recording, 2, BASE_MS + 60_400, BASE_MS + 120_000)
    said = [chat("opening", at_ms=BASE_MS + 5_000), chat("late in one", at_ms=BASE_MS + 59_999),
            chat("in the gap", at_ms=BASE_MS + 60_200), chat("early in two", at_ms=BASE_MS + 61_000),
            gift(combo="c1", count=3, at_ms=BASE_MS + 90_000, end=True),
            chat(HOSTILE, at_ms=BASE_MS + 100_000)]
    messages_store(channel_id=session.channel_id, session_id=session.pk, messages=said)

    one = parse_xml("".join(exports.segment_file(segment=first, fmt="xml")).encode())
    assert [(float(d.get("p").split(",")[0]), d.text) for d in one.findall("d")] == [(5.0, "opening"),
                                                                                     (59.999, "late in one")]
    two = parse_xml("".join(exports.segment_file(segment=second, fmt="xml")).encode())
    got = [(float(d.get("p").split(",")[0]), d.text) for d in two.findall("d")]
    assert [text for _, text in got][:2] == ["early in two", "viewer 2 ▸ Rose ×3"]
    assert [round(t, 3) for t, _ in got] == [0.6, 29.6, 39.6]
    assert two.find("title").text == "Tonight's show · part 2"


def test_a_whole_session_is_timed_from_the_session_start(db, channel):
    from livefeed.models import LiveSession
    from livefeed.storage import messages_store

    session = LiveSession.objects.create(channel=channel, started_at=datetime.fromtimestamp(BASE_MS / 1000, UTC))
    messages_store(channel_id=channel.pk, session_id=session.pk,
                   messages=[chat("one", at_ms=BASE_MS + 1_500), chat("two", at_ms=BASE_MS + 3_600_250)])
    text = "".join(exports.session_file(session=session, fmt="ass"))
    assert "Dialogue: 0,0:00:01.50,0:00:09.50,Chat," in text
    assert "Dialogue: 0,1:00:00.25,1:00:08.25,Chat," in text


def test_a_colour_the_viewer_chose_is_kept(tmp_path):
    rows = [Row(kinds.CHAT, BASE_MS + 1_000, "orange words", extra={"color": 0xFF8800}),
            Row(kinds.CHAT, BASE_MS + 2_000, "white words", extra={"color": 0xFFFFFF}),
            Row(kinds.CHAT, BASE_MS + 3_000, "bad colour", extra={"color": "red"})]
    items = list(exports.comments(rows, start_ms=BASE_MS))
    assert [c.color for c in items] == [0xFF8800, None, None]
    ass = "".join(exports.ass_chunks(items))
    assert "\\c&H0088FF&}orange words" in ass
    assert "\\c&" not in ass.split("orange words")[1]
    root = parse_xml("".join(exports.xml_chunks(items)).encode())
    assert [d.get("p").split(",")[3] for d in root.findall("d")] == [str(0xFF8800), str(0xFFFFFF), str(0xFFFFFF)]
    # libass draws it orange: red high, blue low, where the line is.
    path = write(tmp_path / "colour.ass", exports.ass_chunks(items[:1]))
    out = ffmpeg("-f", "lavfi", "-i", "color=black:size=480x270:duration=2:rate=10", "-vf", f"subtitles={path}",
                 "-ss", "1.6", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-")
    assert out.returncode == 0, out.stderr.decode()
    pixels = [tuple(out.stdout[i:i + 3]) for i in range(0, len(out.stdout), 3)]
    lit = [p for p in pixels if p[0] > 200]
    assert lit, "nothing drawn"
    assert max(p[2] for p in lit) < 80  # no white (or blue) in it: the orange text, its dark outline

