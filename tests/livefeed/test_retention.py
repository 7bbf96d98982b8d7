"""Retention: messages older than LIVEFEED_RETENTION_DAYS go, in short batches; newer ones,
sessions and their statistics stay."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from livefeed import storage, tasks
from livefeed.models import LiveMessage, LiveSession, LiveSessionWord
from livefeed.storage import messages_store
from tests.livefeed.conftest import chat

pytestmark = pytest.mark.django_db
DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def fill(session, *, old: int, new: int, old_age_days: float = 10):
    base = now_ms()
    old_rows = [chat(f"旧消息 {n}", at_ms=base - int(old_age_days * DAY_MS) + n) for n in range(old)]
    new_rows = [chat(f"新消息 {n}", at_ms=base - DAY_MS + n) for n in range(new)]
    messages_store(channel_id=session.channel_id, session_id=session.pk, messages=old_rows)
    messages_store(channel_id=session.channel_id, session_id=session.pk, messages=new_rows)
    return base


def test_only_old_messages_are_deleted_in_batches(session):
    base = fill(session, old=23, new=7)
    with CaptureQueriesContext(connection) as queries:
        deleted, done = storage.messages_delete_older_than(cutoff_ms=base - 7 * DAY_MS, batch=5)
    assert (deleted, done) == (23, True)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("DELETE")]
    assert len(deletes) == 5  # 23 ids, 5 at a time
    left = list(LiveMessage.objects.order_by("id").values_list("content", flat=True))
    assert left == [f"新消息 {n}" for n in range(7)]
    session.refresh_from_db()
    assert session.messages_total == 30  # the session keeps its totals
    assert LiveSessionWord.objects.filter(session=session).exists()


def test_a_budget_stops_early_and_the_next_run_goes_on(session):
    base = fill(session, old=12, new=3)
    assert storage.messages_delete_older_than(cutoff_ms=base - 7 * DAY_MS, batch=5, max_batches=1) == (5, False)
    assert LiveMessage.objects.count() == 10
    assert storage.messages_delete_older_than(cutoff_ms=base - 7 * DAY_MS, batch=5) == (7, True)
    assert LiveMessage.objects.count() == 3
    assert storage.messages_delete_older_than(cutoff_ms=base - 7 * DAY_MS, batch=5) == (0, True)


def test_nothing_old_means_nothing_deleted(session):
    base = fill(session, old=0, new=4)
    assert storage.messages_delete_older_than(cutoff_ms=base - 7 * DAY_MS) == (0, True)
    assert LiveMessage.objects.count() == 4


def test_the_beat_job_keeps_everything_when_retention_is_unset(session, settings):
    fill(session, old=5, new=5, old_age_days=400)
    settings.LIVEFEED_RETENTION_DAYS = None
    tasks.retention_sweep()
    assert LiveMessage.objects.count() == 10


def test_the_beat_job_applies_the_setting(session, settings):
    fill(session, old=6, new=4, old_age_days=31)
    settings.LIVEFEED_RETENTION_DAYS = 30
    tasks.retention_sweep()
    assert LiveMessage.objects.count() == 4
    assert LiveSession.objects.filter(pk=session.pk).exists()


def test_a_run_with_more_than_its_budget_queues_the_next(session, settings, monkeypatch):
    fill(session, old=12, new=0, old_age_days=40)
    settings.LIVEFEED_RETENTION_DAYS = 30
    monkeypatch.setattr(storage, "DELETE_BATCH", 5)
    monkeypatch.setattr(tasks, "RETENTION_BATCHES_PER_RUN", 1)
    queued = []
    monkeypatch.setattr(tasks.retention_sweep, "delay", lambda: queued.append(1))
    tasks.retention_sweep()
    assert queued == [1]
    assert LiveMessage.objects.count() == 7


def test_word_minutes_of_long_ended_sessions_go(session):
    from datetime import timedelta

    from django.utils import timezone

    from livefeed.models import LiveWordMinute

    fill(session, old=3, new=0)
    LiveSession.objects.filter(pk=session.pk).update(ended_at=timezone.now() - timedelta(days=40))
    assert LiveWordMinute.objects.filter(session=session).exists()
    assert storage.word_minutes_delete(ended_before=timezone.now() - timedelta(days=30), batch=2) > 0
    assert not LiveWordMinute.objects.filter(session=session).exists()
    assert LiveSessionWord.objects.filter(session=session).exists()
