"""Session statistics: hot words (segmented once, when stored), per-minute counts, viewers,
top chatters and gifters, the channel's regulars."""

from __future__ import annotations

import pytest

from livefeed import messages as kinds
from livefeed import services, stats
from livefeed.models import LiveSession
from livefeed.storage import messages_store
from tests.livefeed.conftest import BASE_MS, chat, gift, like, viewers

pytestmark = pytest.mark.django_db
MINUTE = 60_000


def store(session, messages):
    return messages_store(channel_id=session.channel_id, session_id=session.pk, messages=messages)


def words(rows) -> dict[str, int]:
    return {row["word"]: row["count"] for row in rows}


def test_tokens_keep_chinese_words_and_emoji_and_drop_stop_words_numbers_and_punctuation():
    assert stats.tokens("主播唱一首周杰伦的歌吧！！") == ("主播", "一首", "周杰伦")
    assert stats.tokens("[比心][比心]主播好漂亮啊") == ("[比心]", "主播", "漂亮")
    assert stats.tokens("666666 。。。 ???") == ()
    assert stats.tokens("我们 就是 这个 the and") == ()
    assert stats.tokens("Hello EVERYONE hello") == ("hello", "everyone")


def test_every_stop_word_is_left_out():
    for word in sorted(stats.stopwords()):
        assert word not in stats.tokens(f"{word} 周杰伦"), word


def test_hot_words_over_windows_and_the_whole_session(session):
    now = BASE_MS + 90 * MINUTE + 20_000
    store(session, [chat("周杰伦的歌好听", by=n, at_ms=BASE_MS) for n in range(5)])  # 90 minutes ago
    store(session, [chat("[比心] 主播加油", by=n, at_ms=now - 3 * MINUTE, kind=kinds.EMOJI_CHAT) for n in range(3)])
    store(session, [chat("主播 晚上好", by=n, at_ms=now - 50_000) for n in range(2)])
    last_1 = words(stats.hot_words(session_id=session.pk, minutes=1, now_ms=now))
    last_5 = words(stats.hot_words(session_id=session.pk, minutes=5, now_ms=now))
    last_60 = words(stats.hot_words(session_id=session.pk, minutes=60, now_ms=now))
    whole = words(stats.hot_words(session_id=session.pk))
    assert last_1 == {"主播": 2, "晚上": 2}
    assert last_5 == {"主播": 5, "[比心]": 3, "加油": 3, "晚上": 2}
    assert last_60 == last_5
    assert whole == {"主播": 5, "周杰伦": 5, "好听": 5, "[比心]": 3, "加油": 3, "晚上": 2}
    assert [row["word"] for row in stats.hot_words(session_id=session.pk)][:3] == ["主播", "周杰伦", "好听"]


def test_a_word_counts_once_per_message_and_resent_chats_are_not_counted_again(session):
    spam = chat("主播主播主播 主播", by=1)
    store(session, [spam])
    store(session, [spam])
    assert words(stats.hot_words(session_id=session.pk)) == {"主播": 1}


def test_an_ended_session_windows_end_at_its_end(session):
    store(session, [chat("晚安 晚安", at_ms=BASE_MS)])
    services.session_close(session_id=session.pk, reason="ended")
    LiveSession.objects.filter(pk=session.pk).update(
        ended_at=LiveSession.objects.get(pk=session.pk).started_at.fromtimestamp((BASE_MS + 30_000) / 1000,
                                                                                  tz=session.started_at.tzinfo))
    assert words(stats.hot_words(session_id=session.pk, minutes=1)) == {"晚安": 1}


def test_session_stats_shape_and_figures(session):
    store(session, [
        chat("主播好", by=1, at_ms=BASE_MS), chat("主播唱歌", by=1, at_ms=BASE_MS + 1000),
        chat("好听", by=2, at_ms=BASE_MS + MINUTE), viewers(700, at_ms=BASE_MS), viewers(900, at_ms=BASE_MS + MINUTE),
        like(12, by=3, at_ms=BASE_MS), gift(combo="c", count=3, unit_value=10, by=4, at_ms=BASE_MS + MINUTE),
        gift(combo=None, count=1, unit_value=100, by=2, at_ms=BASE_MS + MINUTE),
    ])
    result = stats.session_stats(session_id=session.pk, now_ms=BASE_MS + 2 * MINUTE + 10_000)
    assert result["session_id"] == session.pk
    assert result["totals"] == {"messages": 8, "by_type": {"chat": 3, "viewers": 2, "like": 1, "gift": 2},
                                "distinct_users": 4, "likes": 12, "gift_value": 130, "gift_value_unit": "diamond",
                                "peak_viewers": 900}
    assert [(m["minute_ms"], m["messages"], m["viewers"]) for m in result["per_minute"]] == [
        (BASE_MS, 4, 700), (BASE_MS + MINUTE, 4, 900)]
    assert [(u["user_id"], u["chats"]) for u in result["top_chatters"]] == [("u1", 2), ("u2", 1)]
    assert [(u["user_id"], u["gift_value"]) for u in result["top_gifters"]] == [("u2", 100), ("u4", 30)]
    assert set(result["hot_words"]) == {"1m", "5m", "60m", "session"}
    assert words(result["hot_words"]["session"]) == {"主播": 2, "唱歌": 1, "好听": 1}
    assert words(result["hot_words"]["1m"]) == {"好听": 1}
    assert result["gaps"] == []
    assert result["ended_at"] is None


def test_regulars_are_users_seen_in_the_most_sessions(channel):
    first, _ = services.session_open(channel_id=channel.pk)
    store(first, [chat("hi", by=1), chat("hey", by=2), chat("yo", by=2)])
    services.session_close(session_id=first.pk, reason="ended")
    second, _ = services.session_open(channel_id=channel.pk)
    store(second, [chat("back", by=1), chat("new", by=3)])
    regulars = stats.channel_regulars(channel_id=channel.pk)
    assert [(r["user_id"], r["sessions"], r["messages"]) for r in regulars] == [
        ("u1", 2, 2), ("u2", 1, 2), ("u3", 1, 1)]
