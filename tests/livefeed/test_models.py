"""The live-feed tables hold their invariants in the database: one row per platform message,
one per combo, one open session per channel, one channel per room; and the page queries
have indexes made for them."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from livefeed.models import LiveChannel, LiveMessage, LiveSession
from tests.livefeed.conftest import BASE_MS, chat, gift

pytestmark = pytest.mark.django_db


def row(session, **fields) -> LiveMessage:
    values = {"channel_id": session.channel_id, "session": session, "type": "chat", "platform_msg_id": "p1",
              "ts_ms": BASE_MS, "received_ms": BASE_MS, **fields}
    return LiveMessage.objects.create(**values)


def refused(make) -> bool:
    try:
        with transaction.atomic():
            make()
    except IntegrityError:
        return True
    return False


def test_a_platform_message_is_one_row_per_channel(session, bob):
    row(session, platform_msg_id="same")
    assert refused(lambda: row(session, platform_msg_id="same"))
    other = LiveChannel.objects.create(platform="bilibili", ref="1", added_by=bob)
    other_session = LiveSession.objects.create(channel=other, started_at=timezone.now())
    row(other_session, platform_msg_id="same")  # another channel may have the same id


def test_a_combo_is_one_row_per_channel_but_single_gifts_are_many(session):
    row(session, platform_msg_id="a", type="gift", combo_id="combo-1")
    assert refused(lambda: row(session, platform_msg_id="b", type="gift", combo_id="combo-1"))
    row(session, platform_msg_id="c", type="gift", combo_id=None)
    row(session, platform_msg_id="d", type="gift", combo_id=None)
    assert LiveMessage.objects.filter(combo_id__isnull=True).count() == 2


def test_one_channel_per_room_and_one_open_session_per_channel(channel, session):
    assert refused(lambda: LiveChannel.objects.create(platform=channel.platform, ref=channel.ref))
    assert refused(lambda: LiveSession.objects.create(channel=channel, started_at=timezone.now()))
    LiveSession.objects.filter(pk=session.pk).update(ended_at=timezone.now())
    LiveSession.objects.create(channel=channel, started_at=timezone.now())


def test_a_stored_row_gives_back_the_message_json(session):
    for message in (chat("你好", by=3), gift(combo="x", count=2)):
        stored = row(session, type=message.type, platform_msg_id=message.platform_msg_id, ts_ms=message.ts_ms,
                     received_ms=message.received_ms, user_id=message.user.id, user_name=message.user.name,
                     user={"display_id": message.user.display_id, "level": message.user.level},
                     content=message.content, extra=message.extra)
        assert stored.as_json() == message.as_json(id=stored.pk, session_id=session.pk)
    anonymous = row(session, platform_msg_id="v", type="viewers", extra={"current": 5})
    assert anonymous.as_json()["user"] is None


@pytest.mark.postgres_only(reason="reads PostgreSQL's query plans")
@pytest.mark.parametrize(("query", "index"), [
    ("SELECT id FROM livefeed_livemessage WHERE session_id = %s AND type = 'gift' ORDER BY id DESC LIMIT 50",
     "livemessage_session_type_idx"),
    ("SELECT id FROM livefeed_livemessage WHERE session_id = %s ORDER BY id DESC LIMIT 50",
     "livemessage_session_id_idx"),
    ("SELECT id FROM livefeed_livemessage WHERE channel_id = %s AND user_id = 'u1' ORDER BY id DESC LIMIT 50",
     "livemessage_channel_user_idx"),
])
def test_the_page_queries_are_answered_from_their_index_without_sorting(session, query, index):
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("EXPLAIN " + query, [session.pk if "session_id" in query else session.channel_id])
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert index in plan
    assert "Sort" not in plan
