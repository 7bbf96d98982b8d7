"""What browsers watching a live channel receive, and the short history a new socket starts
from: frames go out through project/realtime.py (one Redis message per frame, relayed by each
server process to its own sockets); the last LIVEFEED_RECENT messages of each channel are kept
in a capped Redis list, so a socket that connects gets them without touching the database.

Frames (docs/protocol.md, "Live feed websocket"):
    live.messages  {"channel_id", "messages": [message JSON, ...]}  (oldest first, by id)
    live.status    {"channel_id", "state", "session_id", "last_error", "reconnects", ...}
    live.stats     {"channel_id", "session_id", ...session statistics}
"""

from __future__ import annotations

import json
import logging

import redis
from django.conf import settings

from livefeed.services import live_group
from project import realtime
from project.realtime import encode

logger = logging.getLogger(__name__)

RECENT_TTL_S = 24 * 3600


def _recent_key(channel_id: int) -> str:
    return f"chorus:live:{channel_id}:recent"


def messages_push(*, channel_id: int, rows: list[dict]) -> None:
    """Send newly stored messages (their JSON, with ids) to the watchers as one frame, and
    keep them in the channel's recent list. Redis being away loses only the push: the
    messages are stored, and a socket that reconnects reads them back."""
    if not rows:
        return
    client = realtime.sync_redis()
    try:
        pipe = client.pipeline(transaction=False)
        key = _recent_key(channel_id)
        pipe.rpush(key, *(encode(row) for row in rows[-settings.LIVEFEED_RECENT:]))
        pipe.ltrim(key, -settings.LIVEFEED_RECENT, -1)
        pipe.expire(key, RECENT_TTL_S)
        pipe.execute()
        realtime.publish(live_group(channel_id), {"type": "live.messages", "channel_id": channel_id, "messages": rows})
    except redis.RedisError:
        logger.warning("live push failed (Redis)", extra={"channel_id": channel_id})


def recent_messages(*, channel_id: int) -> list[dict]:
    """The last LIVEFEED_RECENT messages pushed for the channel, oldest first ([] if Redis has none)."""
    raw = realtime.sync_redis().lrange(_recent_key(channel_id), 0, -1)
    return [json.loads(item) for item in raw]


def recent_forget(*, channel_id: int) -> None:
    realtime.sync_redis().delete(_recent_key(channel_id))
