"""Two writers storing the same messages at the same moment (a fetcher still flushing while
the worker that took its channel over stores what the platform sent again): every message is
one row and every counter counts it once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from livefeed.models import LiveChannel, LiveMessage, LiveSession, LiveUserStat
from livefeed.storage import messages_store
from tests.livefeed.conftest import chat, gift, like

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_writers_store_and_count_each_message_once(channel, session):
    batches = []
    for writer in range(2):
        batch = [chat(f"第{n}条", by=n % 7, msg_id=f"shared-{n}") for n in range(200)]
        batch += [gift(combo="combo-a", count=n, unit_value=5, msg_id=f"step-{n}") for n in range(1, 30)]
        batch += [like(3, by=9)] if writer == 0 else []
        batch.reverse() if writer else None
        batches.append(batch)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write(batch):
        try:
            start.wait(5)
            for offset in range(0, len(batch), 40):
                messages_store(channel_id=channel.pk, session_id=session.pk, messages=batch[offset:offset + 40])
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert LiveMessage.objects.filter(session=session, type="chat").count() == 200
    combo = LiveMessage.objects.get(session=session, type="gift")
    assert (combo.gift_count, combo.gift_value) == (29, 145)
    stored = LiveSession.objects.get(pk=session.pk)
    assert stored.messages_total == LiveMessage.objects.filter(session=session).count() == 202
    assert stored.totals == {"chat": 200, "gift": 1, "like": 1}
    assert stored.gift_value == 145
    assert stored.distinct_users == LiveUserStat.objects.filter(session=session).count() == 8
    assert sum(LiveUserStat.objects.filter(session=session).values_list("messages", flat=True)) == 202
    assert LiveUserStat.objects.get(session=session, user_id="u2").gift_value == 145
    assert LiveChannel.objects.get(pk=channel.pk).messages_total == 202
