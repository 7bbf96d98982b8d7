"""WebSocket /ws/live/<channel_id>/: watch a followed live channel. Thin: the same auth as
rooms (session or bearer token, origin checked by project/asgi.py), anyone logged in may
watch; frames come from the realtime hub (livefeed/live.py publishes them)."""

from __future__ import annotations

import logging

import redis
from channels.db import database_sync_to_async

from livefeed import live, selectors, services
from project.realtime import encode
from project.topic_socket import CLOSE_NOT_FOUND, TopicSocket

logger = logging.getLogger(__name__)


class LiveConsumer(TopicSocket):
    async def connect(self):
        if not await self.accept_authenticated():
            return
        channel_id = self.scope["url_route"]["kwargs"]["channel_id"]
        first = await database_sync_to_async(self._first_frames)(channel_id)
        if first is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        # Subscribed before the history is read: nothing published in between is missed (a
        # message may come twice; clients drop ids they have).
        await self.watch(services.live_group(channel_id))
        status, recent = first
        await self.send(text_data=encode(status))
        await self.send(text_data=encode({"type": "live.messages", "channel_id": channel_id, "messages": recent,
                                          "history": True}))

    @staticmethod
    def _first_frames(channel_id: int):
        status = selectors.channel_status_event(channel_id=channel_id)
        if status is None:
            return None
        try:
            recent = live.recent_messages(channel_id=channel_id)
        except redis.RedisError:  # Redis away: the socket still gets the live frames once it is back
            logger.warning("live history unavailable", extra={"channel_id": channel_id})
            recent = []
        return status, recent

    async def receive(self, text_data=None, bytes_data=None):
        """Watchers only listen; `{"type": "ping"}` is answered, anything else is an error
        that names what was wrong, and the socket stays open."""
        await self.listen_only(text_data, bytes_data)
