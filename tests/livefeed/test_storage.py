"""Storing live messages: once each, combos merged, totals in step (PostgreSQL and SQLite)."""

from __future__ import annotations

import pytest

from livefeed import messages as kinds
from livefeed.models import LiveChannel, LiveMessage, LiveMinute, LiveSession, LiveUserStat
from livefeed.storage import messages_store
from tests.livefeed.conftest import BASE_MS, chat, gift, like, viewers

pytestmark = pytest.mark.django_db


def store(session, messages):
    return messages_store(channel_id=session.channel_id, session_id=session.pk, messages=messages)


def totals(session) -> dict:
    session = LiveSession.objects.get(pk=session.pk)
    return {"messages": session.messages_total, "by_type": session.totals, "users": session.distinct_users,
            "gift_value": session.gift_value, "likes": session.likes_total, "peak": session.peak_viewers}


def test_new_messages_are_stored_with_ids_in_the_order_received(session):
    batch = [chat("主播好"), like(5), chat("[比心][比心]", kind=kinds.EMOJI_CHAT, by=4), viewers(1200)]
    result = store(session, batch)
    assert [item["platform_msg_id"] for item in result.stored] == [m.platform_msg_id for m in batch]
    assert result.duplicates == 0
    rows = {row.pk: row for row in LiveMessage.objects.filter(session=session)}
    assert {item["id"] for item in result.stored} == set(rows)
    for item in result.stored:
        assert item == rows[item["id"]].as_json()
    first = result.stored[0]
    assert first["session_id"] == session.pk
    assert first["user"] == {"id": "u1", "name": "viewer 1", "display_id": "d1", "level": 1}
    assert first["content"] == "主播好"


def test_row_json_is_the_message_shape(session):
    message = chat("hello", by=7)
    result = store(session, [message])
    row = LiveMessage.objects.get(pk=result.stored[0]["id"])
    assert row.as_json() == message.as_json(id=row.pk, session_id=session.pk)


def test_duplicates_in_a_batch_and_across_batches_give_one_row(session):
    a, b = chat("one", msg_id="dup-a"), chat("two", msg_id="dup-b")
    first = store(session, [a, a, b])
    assert len(first.stored) == 2
    assert first.duplicates == 1
    before = totals(session)
    # The platform sends recent messages again after a reconnect, mixed with a new one.
    again = store(session, [b, a, chat("three", msg_id="dup-c")])
    assert [item["platform_msg_id"] for item in again.stored] == ["dup-c"]
    assert again.duplicates == 2
    assert LiveMessage.objects.filter(session=session).count() == 3
    after = totals(session)
    assert after["messages"] == before["messages"] + 1
    assert after["by_type"] == {"chat": 3}


def test_storing_the_same_list_twice_changes_nothing(session):
    batch = [chat("主播唱首歌吧", by=1), chat("好听", by=2), gift(combo="c1", count=3, by=5), like(10),
             viewers(900), gift(combo=None, count=1, by=6, unit_value=99)]
    store(session, batch)
    before = totals(session)
    stats_before = list(LiveUserStat.objects.filter(session=session).order_by("user_id").values())
    minutes_before = list(LiveMinute.objects.filter(session=session).values())
    result = store(session, batch)
    assert result.stored == []
    assert result.updated == []
    assert result.duplicates == len(batch)
    assert totals(session) == before
    assert list(LiveUserStat.objects.filter(session=session).order_by("user_id").values()) == stats_before
    assert list(LiveMinute.objects.filter(session=session).values()) == minutes_before
    assert LiveChannel.objects.get(pk=session.channel_id).messages_total == len(batch)


def test_a_combo_is_one_row_with_its_highest_count_and_its_value_counted_once(session):
    steps = [gift(combo="combo-9", count=n, unit_value=10, msg_id=f"step-{n}") for n in range(1, 6)]
    first = store(session, steps[:2])
    assert len(first.stored) == 1
    assert first.duplicates == 1
    assert first.stored[0]["platform_msg_id"] == "step-1"
    assert first.stored[0]["extra"]["count"] == 2
    grown = store(session, steps[2:4])
    assert grown.stored == []
    assert [item["extra"]["count"] for item in grown.updated] == [4]
    assert grown.updated[0]["id"] == first.stored[0]["id"]
    # Out of order and re-sent: an older step never lowers the count.
    store(session, [steps[1], steps[0]])
    final = store(session, [gift(combo="combo-9", count=5, unit_value=10, msg_id="step-5", end=True), steps[3]])
    row = LiveMessage.objects.get(session=session, type="gift")
    assert row.platform_msg_id == "step-1"
    assert row.gift_count == 5
    assert row.gift_value == 50
    assert row.extra["count"] == 5
    assert row.extra["combo_end"] is True
    assert final.updated[0]["extra"]["combo_end"] is True
    assert totals(session)["gift_value"] == 50
    assert totals(session)["by_type"] == {"gift": 1}
    assert LiveUserStat.objects.get(session=session, user_id="u2").gift_value == 50
    # The end re-sent later with a lower step after it: nothing moves.
    again = store(session, [steps[2], steps[4]])
    assert again.updated == []
    assert again.stored == []
    assert LiveMessage.objects.get(pk=row.pk).extra["combo_end"] is True
    assert totals(session)["gift_value"] == 50


def test_totals_users_minutes_and_peak_viewers(session):
    store(session, [
        chat("a", by=1, at_ms=BASE_MS), chat("b", by=1, at_ms=BASE_MS + 1000), chat("c", by=2, at_ms=BASE_MS + 61_000),
        like(7, by=3, at_ms=BASE_MS + 2000), viewers(800, at_ms=BASE_MS), viewers(1500, at_ms=BASE_MS + 62_000),
        gift(combo=None, count=2, unit_value=30, by=2, at_ms=BASE_MS + 63_000),
    ])
    store(session, [viewers(1200, at_ms=BASE_MS + 64_000), chat("d", by=4, at_ms=BASE_MS + 65_000)])
    assert totals(session) == {"messages": 9, "by_type": {"chat": 4, "like": 1, "viewers": 3, "gift": 1},
                               "users": 4, "gift_value": 60, "likes": 7, "peak": 1500}
    minute = BASE_MS // 60_000
    rows = {row.minute: row for row in LiveMinute.objects.filter(session=session)}
    assert rows[minute].messages == 4
    assert rows[minute].chats == 2
    assert rows[minute].likes == 7
    assert rows[minute].viewers == 800
    assert rows[minute + 1].messages == 5
    assert rows[minute + 1].viewers == 1500
    assert rows[minute + 1].gift_value == 60
    one = LiveUserStat.objects.get(session=session, user_id="u1")
    assert (one.messages, one.chats, one.first_seen_ms, one.last_seen_ms) == (2, 2, BASE_MS, BASE_MS + 1000)


def test_a_session_of_another_channel_is_refused(session, bob):
    other = LiveChannel.objects.create(platform="bilibili", ref="42", added_by=bob)
    with pytest.raises(LiveSession.DoesNotExist):
        messages_store(channel_id=other.pk, session_id=session.pk, messages=[chat("x")])
    assert not LiveMessage.objects.exists()


def test_over_long_ids_and_names_still_store(session):
    message = chat("long", msg_id="x" * 300)
    message.user.name = "n" * 500
    result = store(session, [message])
    assert len(result.stored) == 1
    assert store(session, [message]).duplicates == 1


def test_text_with_quotes_backslashes_newlines_emoji_and_nul_is_stored(session):
    text = 'a "quote" \\ back\\slash\nnew line 🎉 [比心] \x00 end'
    message = chat(text, msg_id='id "with" \\ odd')
    message.extra = {"nested": {"text": text, "list": [1, None, "x"]}}
    result = store(session, [message])
    row = LiveMessage.objects.get(pk=result.stored[0]["id"])
    assert row.content == text.replace("\x00", "")
    assert row.platform_msg_id == 'id "with" \\ odd'
    assert row.extra["nested"]["list"] == [1, None, "x"]
    assert row.extra["nested"]["text"].startswith('a "quote" \\ back')
    assert store(session, [message]).duplicates == 1


def test_a_malformed_message_from_a_client_costs_one_odd_row_never_the_batch(session):
    from livefeed.messages import LiveUser, Message

    odd = [
        Message(type="chat", platform_msg_id="", ts_ms=BASE_MS, user=LiveUser(id="u1"), content="no id"),
        Message(type="chat", platform_msg_id="nan", ts_ms=BASE_MS, content="x",
                extra={"ratio": float("nan"), "raw": b"\x01\x02", "when": BASE_MS, "inf": float("inf")}),
        Message(type="gift", platform_msg_id="none-ts", ts_ms=None, extra=["not", "a", "dict"]),  # type: ignore[arg-type]
        Message(type="chat", platform_msg_id="odd-user", ts_ms=BASE_MS * 1.0,  # type: ignore[arg-type]
                user=LiveUser(id=42, name=None, level=object())),  # type: ignore[arg-type]
    ]
    result = store(session, [*odd, chat("fine")])
    assert len(result.stored) == 5
    rows = {row.platform_msg_id: row for row in LiveMessage.objects.filter(session=session)}
    assert rows["nan"].extra == {"ratio": None, "raw": "0102", "when": BASE_MS, "inf": None}
    assert rows["none-ts"].extra == {"value": ["not", "a", "dict"]}
    assert rows["none-ts"].ts_ms == rows["none-ts"].received_ms
    assert rows["odd-user"].user_id == "42"
    assert rows["odd-user"].ts_ms == BASE_MS
    # The message without an id is one row, sent again or not.
    again = store(session, [Message(type="chat", platform_msg_id="", ts_ms=BASE_MS, user=LiveUser(id="u1"),
                                    content="no id", received_ms=BASE_MS + 9999)])
    assert again.stored == []
    assert again.duplicates == 1


def test_a_combo_whose_first_id_is_taken_is_still_stored_once(session):
    store(session, [chat("hello", msg_id="reused-7")])
    first = store(session, [gift(combo="k1", count=1, unit_value=3, msg_id="reused-7")])
    assert len(first.stored) == 1
    assert first.stored[0]["platform_msg_id"] == "reused-7#k1"
    again = store(session, [gift(combo="k1", count=4, unit_value=3, msg_id="reused-8")])
    assert [item["extra"]["count"] for item in again.updated] == [4]
    assert LiveMessage.objects.filter(session=session, type="gift").count() == 1
    assert totals(session)["gift_value"] == 12


def test_a_batch_of_duplicates_writes_nothing_but_its_attempt(session):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    batch = [chat("一", by=1), chat("二", by=2), gift(combo="c7", count=2), like(3)]
    store(session, batch)
    with CaptureQueriesContext(connection) as queries:
        result = store(session, batch)
    assert result.duplicates == len(batch)
    writes = [q["sql"] for q in queries.captured_queries
              if q["sql"].lstrip().upper().startswith(("UPDATE", "DELETE")) or "DO UPDATE" in q["sql"]]
    assert writes == []


def test_a_backlog_larger_than_one_statement_is_stored_whole(session, monkeypatch):
    from django.db import connection

    from livefeed import storage

    monkeypatch.setitem(storage.CHUNK, connection.vendor, 7)
    result = store(session, [chat(f"第{n}条", by=n) for n in range(30)])
    assert len(result.stored) == 30
    assert totals(session)["users"] == 30
    assert LiveMessage.objects.filter(session=session).count() == 30
