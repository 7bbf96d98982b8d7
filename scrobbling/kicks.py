"""Starting drains: a play that waits for a service gets a worker to send it.

A flag in Redis per link (cleared by the drain as it starts) makes a burst of plays cost one
task, and a submit a Redis SET instead of a broker publish; the beat's sweep catches anything
a lost task left. Recording and linking call this; the task (scrobbling.tasks.drain_link)
calls scrobbling.delivery.
"""

from __future__ import annotations

from django.db import transaction

from project.realtime import sync_redis
from scrobbling import tasks

KICK_TTL_S = 60


def _kick_key(user_id: int, service: str) -> str:
    return f"chorus:scrobble:kick:{service}:{user_id}"


def kick_on_commit(*, user_id: int, service: str) -> None:
    """Start a drain for this link once the current transaction commits, unless one is
    already queued."""
    kick_many_on_commit([(user_id, service)])


def kick_many_on_commit(links: list[tuple[int, str]]) -> None:
    """kick_on_commit for several links, with one Redis round trip."""
    transaction.on_commit(lambda: kick_many(links))


def kick_many(links: list[tuple[int, str]]) -> None:
    pipe = sync_redis().pipeline(transaction=False)
    for user_id, service in links:
        pipe.set(_kick_key(user_id, service), 1, nx=True, ex=KICK_TTL_S)
    for (user_id, service), first in zip(links, pipe.execute(), strict=True):
        if first:
            tasks.drain_link.delay(user_id, service)


def kicked(*, user_id: int, service: str) -> None:
    """A drain starts: plays committed from now on need a new kick (the flag expires anyway,
    and the beat's sweep catches anything a lost task left)."""
    sync_redis().delete(_kick_key(user_id, service))
