"""WebSocket /ws/live/<channel_id>/: watch a followed live channel. Thin: the same auth as
rooms (session or bearer token, origin checked by project/asgi.py), anyone logged in may
watch; frames come from the realtime hub (livefeed/live.py publishes them)."""

from __future__ import annotations

import itertools
import logging

import redis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from livefeed import live, selectors, services
from project import inputs
from project.accounts.ws import RevocableConsumer
from project.realtime import encode, get_hub

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4096
CLOSE_NOT_FOUND = 4404
_keys = itertools.count(1)


class LiveConsumer(RevocableConsumer, AsyncWebsocketConsumer):
    topic: str | None = None
    key = 0

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
        self.topic = services.live_group(channel_id)
        self.key = next(_keys)
        await get_hub().subscribe(self.topic, self.key, self._send_frame)
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

    async def _send_frame(self, frame: str) -> None:
        await self.send(text_data=frame)

    async def disconnect(self, code):
        if self.topic is not None:
            await get_hub().unsubscribe(self.topic, self.key)
            self.topic = None

    async def on_revoked(self, code: int) -> None:
        await self.disconnect(code)

    async def receive(self, text_data=None, bytes_data=None):
        """Watchers only listen; `{"type": "ping"}` is answered, anything else is an error
        that names what was wrong, and the socket stays open."""
        if bytes_data is not None or text_data is None:
            await self._error("Send JSON text frames.")
            return
        if inputs.is_larger_than(text_data, MAX_MESSAGE_BYTES):
            await self._error(f"Frames are at most {MAX_MESSAGE_BYTES} bytes.")
            return
        try:
            message = inputs.json_loads(text_data)
        except inputs.InputError as exc:
            await self._error(exc.message, field=exc.field)
            return
        if isinstance(message, dict) and message.get("type") == "ping":
            await self.send(text_data=encode({"type": "pong"}))
            return
        await self._error("type must be ping (watchers only listen).", field="type")

    async def _error(self, message: str, *, field: str | None = None) -> None:
        event = {"type": "error", "code": "invalid", "message": message}
        if field:
            event["field"] = field
        await self.send(text_data=encode(event))
