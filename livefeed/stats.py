"""Live session statistics: hot words, messages per minute, viewers over time, top users.

Everything here reads counters that storage (livefeed/storage.py) keeps up to date in the
same transaction as the messages it stores, so a stats request never scans or segments
messages:

- hot words: each new chat is segmented once, when it is stored (`tokens`: jieba's
  segmentation as rjieba (jieba-rs) does it, about 1 µs a line, with a cache: live chat
  repeats itself a lot); its words go to a per-minute table
  (`LiveWordMinute`: session, minute, word, count) and a whole-session one (`LiveSessionWord`).
  The last 1, 5 and 60 minutes are a GROUP BY over at most that many minutes' rows; the
  whole session is an index scan of the session's top words. The database, not Redis,
  holds them: they are written in the transaction that decides a message is new, so a
  message re-sent after a reconnect is never counted twice, and they survive restarts.
- words: platform emoji tokens (`[比心]`, `[doge]`) count as words as they are; the rest is
  segmented; punctuation, numbers, single characters and the stop words in
  livefeed/stopwords.txt are left out; a word counts once per message (a message repeating
  a word ten times is one vote, not ten); ASCII words are lower-cased.
- messages per minute and viewers: `LiveMinute` (session, minute of platform time).
- top chatters and gifters: `LiveUserStat` rows per (session, user), indexed for both orders;
  the channel's regulars are a roll-up of those rows over its sessions.

The JSON shape of `session_stats` is in docs/protocol.md ("Live feed").
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import importlib.machinery
import importlib.util
import os
import re
import tempfile
import time
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count, Max, Sum

from livefeed.models import LiveMinute, LiveSession, LiveSessionWord, LiveUserStat, LiveWordMinute

WINDOWS_MIN = (1, 5, 60)
TOP_LIMIT = 10
HOT_WORDS_LIMIT = 20
MAX_WORD_LENGTH = 50  # LiveWordMinute.word
JIEBA_WORDS = 30_000

STOPWORDS_FILE = Path(__file__).with_name("stopwords.txt")
EMOJI_RE = re.compile(r"\[[^\[\]\s]{1,12}\]")
# A token worth counting has a letter or a CJK character; a number ("666", "3.5") is left out.
WORDLIKE_RE = re.compile(r"[^\W\d_]", re.UNICODE)
NUMBER_RE = re.compile(r"[\d.,:%+\-]+")


@functools.cache
def stopwords() -> frozenset[str]:
    lines = STOPWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def _dictionary() -> Path:
    """jieba's dictionary cut to its JIEBA_WORDS most frequent words, made once per machine
    (next to the temporary files) from the jieba package's dict.txt, which is read, never
    imported: the full one (349,000 words) costs every process that stores messages 20 to 60
    MB, this one about 3 MB, and it segments chat the same (rarer words are what the HMM finds
    anyway)."""
    spec = importlib.util.find_spec("jieba")
    if spec is None or not spec.submodule_search_locations:
        raise ImproperlyConfigured("livefeed: the jieba package (its dictionary) is not installed")
    source = Path(spec.submodule_search_locations[0]) / "dict.txt"
    target = Path(tempfile.gettempdir()) / f"chorus-jieba-{JIEBA_WORDS}-{source.stat().st_size}.txt"
    if not target.exists():
        with source.open(encoding="utf-8") as lines:
            top = heapq.nlargest(JIEBA_WORDS, lines, key=lambda line: int(line.split(" ", 2)[1]))
        partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        partial.write_text("".join(top), encoding="utf-8")
        os.replace(partial, target)
    return target


def _segmenter_class():
    """rjieba's Jieba class (jieba-rs: jieba's algorithm, dictionary format and HMM in Rust,
    about 1 µs a chat line against jieba's 20 µs, the same words). Its module is loaded
    without the package's __init__, which builds a default tokenizer on the full dictionary
    (33 MB) that Chorus never uses; if rjieba's layout ever changes, the package is imported
    and that default tokenizer emptied."""
    spec = importlib.util.find_spec("rjieba")
    if spec is None or not spec.submodule_search_locations:
        raise ImproperlyConfigured("livefeed: the rjieba package is not installed (requirements/base.txt)")
    for path in sorted(Path(spec.submodule_search_locations[0]).glob("rjieba.*.so")):
        loader = importlib.machinery.ExtensionFileLoader("rjieba.rjieba", str(path))
        module_spec = importlib.util.spec_from_file_location("rjieba.rjieba", path, loader=loader)
        if module_spec is not None:
            with contextlib.suppress(ImportError):
                module = importlib.util.module_from_spec(module_spec)
                loader.exec_module(module)
                return module.Jieba
    import rjieba

    rjieba.clear()
    return rjieba.Jieba


@functools.cache
def _segmenter():
    """A tokenizer on the cut dictionary (_dictionary), built on first use (about 40 ms), so
    that only a process that stores chat ever holds one."""
    segmenter = _segmenter_class().empty()
    with _dictionary().open(encoding="utf-8") as lines:
        for line in lines:
            word, frequency, *tag = line.split()
            segmenter.add_word(word, int(frequency), tag[0] if tag else None)
    return segmenter


@functools.lru_cache(maxsize=20_000)
def _word(raw: str) -> str | None:
    """A segment as the word it counts as, or None when it does not count (the same few
    thousand segments come back all the time: each is judged once)."""
    word = raw.strip().lower()
    if (len(word) < 2 or len(word) > MAX_WORD_LENGTH or word in stopwords() or NUMBER_RE.fullmatch(word)
            or not WORDLIKE_RE.search(word)):
        return None
    return word


@functools.lru_cache(maxsize=5_000)  # live chat repeats itself: the same few hundred lines, over and over
def tokens(text: str) -> tuple[str, ...]:
    """The distinct words of one chat message, in order of first appearance."""
    if not text:
        return ()
    seen: dict[str, None] = {}
    for emoji in EMOJI_RE.findall(text):
        if len(emoji) <= MAX_WORD_LENGTH:
            seen.setdefault(emoji, None)
    rest = EMOJI_RE.sub(" ", text)
    if rest.strip():
        for raw in _segmenter().cut(rest):
            word = _word(raw)
            if word is not None:
                seen.setdefault(word, None)
    return tuple(seen)


def minute_of(ts_ms: int) -> int:
    return ts_ms // 60_000


def _reference_ms(session: LiveSession, now_ms: int | None) -> int:
    """"The last N minutes" of a live session end now; of an ended one, at its end."""
    if session.ended_at is not None:
        return int(session.ended_at.timestamp() * 1000)
    return now_ms if now_ms is not None else time.time_ns() // 1_000_000


def hot_words(*, session_id: int, minutes: int | None = None, limit: int = HOT_WORDS_LIMIT,
              now_ms: int | None = None) -> list[dict]:
    """[{"word", "count"}] most said first: over the last `minutes` minutes, or the whole
    session when `minutes` is None. Counts are per minute, so a window is rounded out to
    whole minutes: the last minute is the minute that was 60 s ago and the current one."""
    if minutes is None:
        rows = (LiveSessionWord.objects.filter(session_id=session_id).order_by("-count", "word")
                .values_list("word", "count")[:limit])
        return [{"word": word, "count": count} for word, count in rows]
    session = LiveSession.objects.only("ended_at").get(pk=session_id)
    end_ms = _reference_ms(session, now_ms)
    rows = (LiveWordMinute.objects.filter(session_id=session_id, minute__gte=minute_of(end_ms - minutes * 60_000),
                                          minute__lte=minute_of(end_ms))
            .values("word").annotate(total=Sum("count")).order_by("-total", "word").values_list("word", "total")[:limit])
    return [{"word": word, "count": total} for word, total in rows]


def per_minute(*, session_id: int) -> list[dict]:
    """One entry per minute that had messages, oldest first (`minute_ms`: its start)."""
    rows = LiveMinute.objects.filter(session_id=session_id).order_by("minute").values_list(
        "minute", "messages", "chats", "gifts", "likes", "members", "gift_value", "viewers")
    return [{"minute_ms": minute * 60_000, "messages": messages, "chats": chats, "gifts": gifts, "likes": likes,
             "members": members, "gift_value": gift_value, "viewers": viewers}
            for minute, messages, chats, gifts, likes, members, gift_value, viewers in rows]


def _user_row(stat: LiveUserStat) -> dict:
    return {"user_id": stat.user_id, "user_name": stat.user_name, "messages": stat.messages, "chats": stat.chats,
            "gift_value": stat.gift_value, "likes": stat.likes, "first_seen_ms": stat.first_seen_ms,
            "last_seen_ms": stat.last_seen_ms}


def top_chatters(*, session_id: int, limit: int = TOP_LIMIT) -> list[dict]:
    rows = LiveUserStat.objects.filter(session_id=session_id, chats__gt=0).order_by("-chats", "first_seen_ms")[:limit]
    return [_user_row(stat) for stat in rows]


def top_gifters(*, session_id: int, limit: int = TOP_LIMIT) -> list[dict]:
    rows = (LiveUserStat.objects.filter(session_id=session_id, gift_value__gt=0)
            .order_by("-gift_value", "first_seen_ms")[:limit])
    return [_user_row(stat) for stat in rows]


def channel_regulars(*, channel_id: int, limit: int = 20) -> list[dict]:
    """The channel's regulars: users seen in the most sessions, then by messages."""
    rows = (LiveUserStat.objects.filter(channel_id=channel_id).values("user_id")
            .annotate(sessions=Count("session_id"), messages=Sum("messages"), chats=Sum("chats"),
                      gift_value=Sum("gift_value"), last_seen_ms=Max("last_seen_ms"), user_name=Max("user_name"))
            .order_by("-sessions", "-messages", "user_id")[:limit])
    return [dict(row) for row in rows]


def session_stats(*, session_id: int, now_ms: int | None = None) -> dict:
    """Everything the session page and GET /api/live/sessions/{id}/stats show."""
    session = LiveSession.objects.get(pk=session_id)
    return {
        "session_id": session.pk,
        "channel_id": session.channel_id,
        "started_at": session.started_at.isoformat(),
        "ended_at": session.ended_at.isoformat() if session.ended_at else None,
        "end_reason": session.end_reason or None,
        "totals": {
            "messages": session.messages_total,
            "by_type": dict(session.totals),
            "distinct_users": session.distinct_users,
            "likes": session.likes_total,
            "gift_value": session.gift_value,
            "gift_value_unit": session.gift_value_unit or None,
            "peak_viewers": session.peak_viewers,
        },
        "gaps": session.gaps,
        "per_minute": per_minute(session_id=session_id),
        "top_chatters": top_chatters(session_id=session_id),
        "top_gifters": top_gifters(session_id=session_id),
        "hot_words": {
            **{f"{minutes}m": hot_words(session_id=session_id, minutes=minutes, now_ms=now_ms) for minutes in WINDOWS_MIN},
            "session": hot_words(session_id=session_id),
        },
    }
