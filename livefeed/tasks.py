"""Live feed jobs run by the beat. Thin: the work is in livefeed/storage.py.

Retention (LIVEFEED_RETENTION_DAYS, empty = keep for ever): messages received longer ago
are deleted in batches of ids, each DELETE a short statement of its own, so a busy room's
months of messages go without a long lock; a run that has more to delete than its budget
hands over to a new run of itself. Sessions keep their totals and statistics.
"""

import logging
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)

# Batches per run (5,000 messages each): then the run queues the next one, so other
# tasks of the queue get their turn.
RETENTION_BATCHES_PER_RUN = 200


@shared_task(ignore_result=True)
def retention_sweep() -> None:
    from livefeed import storage

    days = settings.LIVEFEED_RETENTION_DAYS
    if not days:
        return
    cutoff = timezone.now() - timedelta(days=days)
    started = time.monotonic()
    deleted, done = storage.messages_delete_older_than(cutoff_ms=int(cutoff.timestamp() * 1000),
                                                       max_batches=RETENTION_BATCHES_PER_RUN)
    words = storage.word_minutes_delete(ended_before=cutoff) if done else 0
    logger.info("live retention", extra={"deleted": deleted, "word_minutes": words, "done": done,
                                         "seconds": round(time.monotonic() - started, 1)})
    if not done:
        retention_sweep.delay()
