"""A websocket that relays one realtime topic to its browser: `TopicSocket`.

The live feed's channel socket and the film catalog's title and sync-run sockets are the same
thing underneath: authenticate (RevocableConsumer: session or bearer token, closed on
revocation), subscribe to one topic of the realtime hub (project/realtime.py), forward every
frame published there, leave it on disconnect, and read what the browser sends as JSON objects,
answering anything else with an `error` event that names what was wrong (the socket stays
open). Subclasses write `connect` (what to check, which topic, the first frames) and
`receive` (what messages they take beyond `ping`).
"""

from __future__ import annotations

import itertools

from channels.generic.websocket import AsyncWebsocketConsumer

from project import inputs
from project.accounts.ws import RevocableConsumer
from project.realtime import encode, get_hub

MAX_MESSAGE_BYTES = 4096
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
_keys = itertools.count(1)


class TopicSocket(RevocableConsumer, AsyncWebsocketConsumer):
    topic: str | None = None
    key = 0

    async def watch(self, topic: str) -> None:
        """Relay `topic` from now on (subscribe before reading any state to send first, so
        nothing published in between is missed)."""
        self.topic = topic
        self.key = next(_keys)
        await get_hub().subscribe(topic, self.key, self._send_frame)

    async def _send_frame(self, frame: str) -> None:
        await self.send(text_data=frame)

    async def disconnect(self, code):
        if self.topic is not None:
            await get_hub().unsubscribe(self.topic, self.key)
            self.topic = None

    async def on_revoked(self, code: int) -> None:
        await self.disconnect(code)

    async def frame(self, text_data, bytes_data) -> dict | None:
        """The client's frame as a JSON object; None (after answering an `error`) for
        anything else, or when the socket watches nothing."""
        if self.topic is None:
            return None
        if bytes_data is not None or text_data is None:
            await self.error("invalid", "Send JSON text frames.")
            return None
        if inputs.is_larger_than(text_data, MAX_MESSAGE_BYTES):
            await self.error("invalid", f"Frames are at most {MAX_MESSAGE_BYTES} bytes.")
            return None
        try:
            message = inputs.json_loads(text_data)
        except inputs.InputError as exc:
            await self.error("invalid", exc.message, field=exc.field)
            return None
        if not isinstance(message, dict):
            await self.error("invalid", "Send a JSON object with a type.")
            return None
        return message

    async def listen_only(self, text_data, bytes_data) -> None:
        """`receive` for a socket whose watchers only listen: `ping` is answered with
        `pong`, anything else is an `error`."""
        message = await self.frame(text_data, bytes_data)
        if message is None:
            return
        if message.get("type") == "ping":
            await self.send(text_data=encode({"type": "pong"}))
            return
        await self.error("invalid", "type must be ping (watchers only listen).", field="type")

    async def error(self, code: str, message: str, *, field: str | None = None) -> None:
        event = {"type": "error", "code": code, "message": message}
        if field:
            event["field"] = field
        await self.send(text_data=encode(event))
