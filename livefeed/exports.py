"""A recording's comments as files players read: ASS subtitles (mpv, VLC, ffplay, anything
with libass) and Bilibili-style XML danmaku, for one segment or a whole session.

Alignment: a message's place in a file is `(ts_ms - start_ms) / 1000` seconds, where `ts_ms`
is the platform's time of the message and `start_ms` the wall-clock time of the file's first
frame (`Segment.started_at_ms`, which the recorder measures against the platform's
timestamps), or the session's start for a whole-session file. Messages before the start or at
or after the end (`Segment.ended_at_ms`) are left out; a segment still being written has no
end yet. Nothing is shifted to make room: a comment starts exactly at its time (to the
centisecond ASS can say), so it lands where it belongs whatever the density.

What is drawn: chat (and emoji chat) scrolls right to left in lanes, a lane taking a new
line only once the last one's tail has entered the picture and the new one cannot catch it
up (so lines never overlap while lanes are free; in a flood with every lane taken, the lane
that frees first is used). Super chats stand at the top on a box, gifts and guard purchases
at the bottom in gold, each in its own fixed lanes. Text is one line: control characters
dropped, whitespace runs folded, and cut to MAX_TEXT characters; ASS override braces and
backslashes are neutralised, XML is escaped by the writer (and characters XML 1.0 cannot hold are
dropped), so nothing a viewer types can change a file's structure.

Everything here is a generator of text chunks over rows read in time order, so a session of
millions of messages is written as it is read (views stream it).
"""

from __future__ import annotations

import math
import re
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from livefeed import messages as kinds

MAX_TEXT = 200
# Which messages a file holds, and how each is drawn.
CHAT_TYPES = (kinds.CHAT, kinds.EMOJI_CHAT)
GIFT_TYPES = (kinds.GIFT, kinds.GUARD)
EXPORT_TYPES = (*CHAT_TYPES, *GIFT_TYPES, kinds.SUPER_CHAT)

# The ASS canvas (libass scales it to the video) and the drawing.
PLAY_W = 1920
PLAY_H = 1080
FONT_SIZE = 54
LINE_H = 64
SCROLL_S = 8.0  # a chat line crosses the picture in this long
FIXED_S = 5.0  # a super chat or gift stays this long
LANE_GAP_PX = 24
SCROLL_AREA = 0.75  # chat scrolls over the top three quarters; gifts keep the bottom
FIXED_LANES = 3

STYLE_CHAT = "Chat"
STYLE_GIFT = "Gift"
STYLE_SUPER_CHAT = "SuperChat"

# Bilibili XML: modes and colours (decimal RGB).
XML_SCROLL, XML_BOTTOM, XML_TOP = 1, 4, 5
XML_FONT_SIZE = 25
COLOR_CHAT = 0xFFFFFF
COLOR_GIFT = 0xFFD700
COLOR_SUPER_CHAT = 0xFF6F61

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Comment:
    """One message as a file shows it: when (ms from the file's start), what, in which style."""

    offset_ms: int
    style: str  # STYLE_CHAT, STYLE_GIFT or STYLE_SUPER_CHAT
    text: str
    user: str = ""
    user_id: str = ""
    ts_ms: int = 0
    id: int = 0
    color: int | None = None  # RGB the sender chose (Bilibili chat); None: the style's


def clean_text(text: str, *, limit: int = MAX_TEXT) -> str:
    """One line of text a file can hold: no control characters (nor lone surrogates, nor
    what XML 1.0 forbids), whitespace folded, at most `limit` characters (… when cut)."""
    text = _SPACES.sub(" ", _CONTROL.sub(" ", str(text or ""))).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _chat_color(extra: dict) -> int | None:
    """The colour a Bilibili viewer gave the chat line (extra.color, decimal RGB), if not white."""
    color = extra.get("color")
    if isinstance(color, int) and not isinstance(color, bool) and 0 <= color < COLOR_CHAT:
        return color
    return None


def _line(row) -> tuple[str, str] | None:
    """(style, text) of a stored message, or None for the kinds a file does not show."""
    extra = row.extra or {}
    name = clean_text(row.user_name, limit=40)
    if row.type in CHAT_TYPES:
        text = row.content or extra.get("emoji_text") or ""
        return (STYLE_CHAT, text) if clean_text(text) else None
    if row.type == kinds.SUPER_CHAT:
        price = extra.get("price_cny")
        head = f"{name} ¥{price:g}" if isinstance(price, (int, float)) else name
        return STYLE_SUPER_CHAT, f"{head}: {row.content}" if head else row.content
    if row.type in GIFT_TYPES:
        gift = extra.get("gift_name") or row.content or "gift"
        count = extra.get("count") or getattr(row, "gift_count", None) or 1
        return STYLE_GIFT, f"{name} ▸ {gift} ×{count}" if name else f"{gift} ×{count}"
    return None


def comments(rows: Iterable, *, start_ms: int, end_ms: int | None = None) -> Iterator[Comment]:
    """The file's comments from message rows (LiveMessage or anything with `type`, `ts_ms`,
    `user_name`, `user_id`, `content`, `extra`) in time order: those in [start_ms, end_ms)."""
    for row in rows:
        if row.ts_ms < start_ms or (end_ms is not None and row.ts_ms >= end_ms):
            continue
        line = _line(row)
        if line is None:
            continue
        style, text = line
        text = clean_text(text)
        if text:
            color = _chat_color(row.extra or {}) if style == STYLE_CHAT else None
            yield Comment(offset_ms=row.ts_ms - start_ms, style=style, text=text, user=clean_text(row.user_name, limit=40),
                          user_id=str(getattr(row, "user_id", "") or ""), ts_ms=row.ts_ms, id=getattr(row, "pk", 0) or 0,
                          color=color)


# --- ASS ----------------------------------------------------------------------------------------


def text_width_px(text: str, font_size: int = FONT_SIZE) -> int:
    """How wide a line is drawn, near enough to keep lanes apart: wide (CJK, emoji) characters
    are a font size across, the others a little over half."""
    units = sum(1.0 if unicodedata.east_asian_width(ch) in "WF" or ord(ch) > 0xFFFF else 0.6 for ch in text)
    return math.ceil(units * font_size)


def ass_time(ms: int) -> str:
    centis = max(0, round(ms / 10))
    hours, rest = divmod(centis, 360000)
    minutes, rest = divmod(rest, 6000)
    seconds, centis = divmod(rest, 100)
    return f"{hours}:{minutes:02d}:{seconds:02d}.{centis:02d}"


def ass_escape(text: str) -> str:
    """Text libass shows as it is: a backslash cannot start an escape (\\N, \\h: a zero-width
    space after it), and a brace cannot open an override block (neither libass nor VSFilter
    has an escape for one, so braces become their full-width forms, which look the same)."""
    return text.replace("\\", "\\\u200b").replace("{", "\uff5b").replace("}", "\uff5d")


def _ass_colour(rgb: int, alpha: int = 0) -> str:
    red, green, blue = (rgb >> 16) & 0xFF, (rgb >> 8) & 0xFF, rgb & 0xFF
    return f"&H{alpha:02X}{blue:02X}{green:02X}{red:02X}"


def _ass_tag_colour(rgb: int) -> str:
    """A colour as an override tag takes it: &HBBGGRR&."""
    return f"&H{rgb & 0xFF:02X}{(rgb >> 8) & 0xFF:02X}{(rgb >> 16) & 0xFF:02X}&"


def ass_header(*, title: str = "") -> str:
    white, black = _ass_colour(COLOR_CHAT), _ass_colour(0, 0x40)
    style = ("Style: {name},Noto Sans CJK SC,{size},{primary},{primary},{outline},{back},0,0,0,0,100,100,0,0,"
             "{border},{width},0,{align},20,20,20,1")
    styles = [
        style.format(name=STYLE_CHAT, size=FONT_SIZE, primary=white, outline=_ass_colour(0), back=black,
                     border=1, width=2, align=7),
        style.format(name=STYLE_GIFT, size=FONT_SIZE, primary=_ass_colour(COLOR_GIFT), outline=_ass_colour(0),
                     back=black, border=1, width=2, align=2),
        style.format(name=STYLE_SUPER_CHAT, size=FONT_SIZE, primary=white, outline=_ass_colour(COLOR_SUPER_CHAT, 0x30),
                     back=black, border=3, width=6, align=8),
    ]
    return "\n".join([
        "[Script Info]",
        f"Title: {clean_text(title, limit=200) or 'Chorus live comments'}",
        "ScriptType: v4.00+",
        f"PlayResX: {PLAY_W}",
        f"PlayResY: {PLAY_H}",
        "WrapStyle: 2",
        "ScaledBorderAndShadow: yes",
        "YCbCr Matrix: None",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
        "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, "
        "MarginR, MarginV, Encoding",
        *styles,
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
        "",
    ])


class _Lanes:
    """Where each comment goes. Scrolling lanes remember their last line (start, width); a
    fixed lane remembers when it frees."""

    def __init__(self) -> None:
        self.scroll_count = max(1, int(PLAY_H * SCROLL_AREA) // LINE_H)
        self.scroll: list[tuple[float, int] | None] = [None] * self.scroll_count
        self.fixed: dict[str, list[float]] = {STYLE_GIFT: [0.0] * FIXED_LANES, STYLE_SUPER_CHAT: [0.0] * FIXED_LANES}

    @staticmethod
    def _scroll_free_at(last: tuple[float, int] | None, width: int) -> float:
        """The earliest time (s) a line `width` wide may enter a lane after `last`."""
        if last is None:
            return 0.0
        start, last_width = last
        last_speed = (PLAY_W + last_width) / SCROLL_S
        speed = (PLAY_W + width) / SCROLL_S
        tail_in = start + (last_width + LANE_GAP_PX) / last_speed  # its tail has entered the picture
        no_catch_up = start + SCROLL_S - PLAY_W / speed  # the new head reaches the left edge after it left
        return max(tail_in, no_catch_up)

    def scroll_lane(self, at_s: float, width: int) -> int:
        free_at = [self._scroll_free_at(last, width) for last in self.scroll]
        lane = next((i for i, t in enumerate(free_at) if t <= at_s), None)
        if lane is None:
            lane = min(range(self.scroll_count), key=free_at.__getitem__)
        self.scroll[lane] = (at_s, width)
        return lane

    def fixed_lane(self, style: str, at_s: float) -> int:
        lanes = self.fixed[style]
        lane = next((i for i, t in enumerate(lanes) if t <= at_s), None)
        if lane is None:
            lane = min(range(len(lanes)), key=lanes.__getitem__)
        lanes[lane] = at_s + FIXED_S
        return lane


def ass_event(comment: Comment, lanes: _Lanes) -> str:
    at_s = comment.offset_ms / 1000
    text = ass_escape(comment.text)
    if comment.style == STYLE_CHAT:
        width = text_width_px(comment.text)
        y = lanes.scroll_lane(at_s, width) * LINE_H
        colour = f"\\c{_ass_tag_colour(comment.color)}" if comment.color is not None else ""
        tags = f"{{\\move({PLAY_W},{y},{-width},{y}){colour}}}"
        end_ms = comment.offset_ms + round(SCROLL_S * 1000)
    else:
        lane = lanes.fixed_lane(comment.style, at_s)
        if comment.style == STYLE_SUPER_CHAT:
            tags = f"{{\\an8\\pos({PLAY_W // 2},{20 + lane * (LINE_H + 16)})}}"
        else:
            tags = f"{{\\an2\\pos({PLAY_W // 2},{PLAY_H - 20 - lane * LINE_H})}}"
        end_ms = comment.offset_ms + round(FIXED_S * 1000)
    name = comment.user.replace(",", " ")
    return f"Dialogue: 0,{ass_time(comment.offset_ms)},{ass_time(end_ms)},{comment.style},{name},0,0,0,,{tags}{text}\n"


def ass_chunks(items: Iterable[Comment], *, title: str = "") -> Iterator[str]:
    """An ASS file of `items` (in time order), a line at a time."""
    yield ass_header(title=title)
    lanes = _Lanes()
    for comment in items:
        yield ass_event(comment, lanes)


# --- Bilibili XML -------------------------------------------------------------------------------


def _xml_colour_mode(style: str) -> tuple[int, int]:
    if style == STYLE_SUPER_CHAT:
        return XML_TOP, COLOR_SUPER_CHAT
    if style == STYLE_GIFT:
        return XML_BOTTOM, COLOR_GIFT
    return XML_SCROLL, COLOR_CHAT


def xml_chunks(items: Iterable[Comment], *, title: str = "") -> Iterator[str]:
    """A Bilibili danmaku file: `<d p="time_s,mode,size,colour,unix_s,pool,user_hash,id">`,
    the form Bilibili serves and danmaku players (and converters) read."""
    yield '<?xml version="1.0" encoding="UTF-8"?>\n<i>\n'
    yield "<chatserver>chat.bilibili.com</chatserver><chatid>0</chatid><mission>0</mission>"
    yield "<maxlimit>0</maxlimit><state>0</state><real_name>0</real_name><source>k-v</source>\n"
    if title:
        yield f"<title>{escape(clean_text(title))}</title>\n"
    for comment in items:
        mode, colour = _xml_colour_mode(comment.style)
        colour = comment.color if comment.color is not None else colour
        user_hash = f"{zlib.crc32(comment.user_id.encode()):08x}" if comment.user_id else "0"
        p = f"{comment.offset_ms / 1000:.3f},{mode},{XML_FONT_SIZE},{colour},{comment.ts_ms // 1000},0,{user_hash},{comment.id}"
        user = f" user={quoteattr(comment.user)}" if comment.user else ""
        yield f"<d p={quoteattr(p)}{user}>{escape(comment.text)}</d>\n"
    yield "</i>\n"


FORMATS = {"ass": ass_chunks, "xml": xml_chunks}
MIME_TYPES = {"ass": "text/x-ssa; charset=utf-8", "xml": "application/xml; charset=utf-8"}


# --- from the database --------------------------------------------------------------------------

_ROW_FIELDS = ("id", "type", "ts_ms", "user_id", "user_name", "content", "extra", "gift_count")


def _rows(*, session_id: int | None, channel_id: int, start_ms: int, end_ms: int | None):
    from livefeed.models import LiveMessage

    rows = LiveMessage.objects.filter(type__in=EXPORT_TYPES, ts_ms__gte=start_ms)
    rows = rows.filter(session_id=session_id) if session_id is not None else rows.filter(channel_id=channel_id)
    if end_ms is not None:
        rows = rows.filter(ts_ms__lt=end_ms)
    return rows.order_by("ts_ms", "id").only(*_ROW_FIELDS).iterator(chunk_size=2000)


def segment_start_ms(segment) -> int:
    """The wall-clock time of the segment's first frame; the recording's start while the
    recorder has not measured it yet."""
    if segment.started_at_ms is not None:
        return segment.started_at_ms
    return int(segment.recording.started_at.timestamp() * 1000)


def segment_comments(segment) -> Iterator[Comment]:
    """The comments of one segment file, relative to its real start."""
    start = segment_start_ms(segment)
    recording = segment.recording
    return comments(_rows(session_id=recording.session_id, channel_id=recording.channel_id, start_ms=start,
                          end_ms=segment.ended_at_ms), start_ms=start, end_ms=segment.ended_at_ms)


def session_comments(session) -> Iterator[Comment]:
    """The comments of a whole session, relative to the session's start."""
    start = int(session.started_at.timestamp() * 1000)
    return comments(_rows(session_id=session.pk, channel_id=session.channel_id, start_ms=start, end_ms=None),
                    start_ms=start)


def segment_file(*, segment, fmt: str) -> Iterator[str]:
    """The segment's ASS or XML file (fmt "ass" / "xml"), chunk by chunk."""
    title = segment.recording.title or str(segment.recording.channel)
    return FORMATS[fmt](segment_comments(segment), title=f"{title} · part {segment.index}")


def session_file(*, session, fmt: str) -> Iterator[str]:
    return FORMATS[fmt](session_comments(session), title=session.title_at_start or str(session.channel))
