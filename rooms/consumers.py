"""WebSocket /ws/rooms/<slug>/: thin. Auth and access via selectors, every change via
services, broadcasts via the realtime hub (see rooms.runtime)."""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque

import redis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from project import inputs, wsframes
from project.accounts.ws import RevocableConsumer
from project.batching import Coalescer
from project.realtime import encode
from rooms import events, presence, runtime, services
from rooms.services import RoomError

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024  # UTF-8 bytes of one text frame; larger ones close the socket with 1009
MAX_REQUEST_ID_CHARS = 200
MAX_CLOCK_MS = 1e15  # |t0| of a time.ping: any clock in ms (epoch or performance.now())
CLOSE_CODES = {"forbidden": 4403, "not_found": 4404}

# The sockets entering rooms together (a reconnect storm) are let in by one query.
_enter = Coalescer(database_sync_to_async(lambda entries: services.rooms_enter(entries=entries)), name="room-enter")


class RoomConsumer(RevocableConsumer, AsyncWebsocketConsumer):
    # Room events fan out through the realtime hub (one Redis message per process), not
    # through channel-layer groups. The channel layer (the default alias) carries only
    # revocations: each socket is in its user's group (RevocableConsumer).

    room = None
    member = None

    async def connect(self):
        # In the user's group before the access check: a removal committed after the check
        # reaches this socket (handled once connect() returns).
        if not await self.accept_authenticated():
            return
        user = self.scope["user"]
        slug = self.scope["url_route"]["kwargs"]["slug"]
        try:
            self.room = await _enter.ask((slug, user))
        except RoomError as exc:
            await self.close(code=CLOSE_CODES.get(exc.code, 4403))
            return
        self.revocation_room_id = self.room.pk
        self.user = user
        self.control_times: deque[float] = deque()
        # Subscribed first, holding what it is sent until its join frames are out.
        self.member = runtime.Member(user.pk, uuid.uuid4().hex, self._send_frame,
                                     write=self.scope.get(wsframes.WRITER), joining=True)
        room_runtime = await runtime.attach(self.room.pk, self.member)
        try:
            await room_runtime.join(self.member, self.room)
        except BaseException:
            # The client left during its join (or the join failed): Channels will not call
            # disconnect(), so leave here, or the member would stay "online" for good.
            await self.disconnect(None)
            raise

    async def _send_frame(self, frame: str) -> None:
        await self.send(text_data=frame)

    async def on_revoked(self, code: int) -> None:
        await self.disconnect(code)  # leave the room now: no more frames, controls ignored

    async def disconnect(self, code):
        if self.member is None:
            return
        await runtime.detach(self.room.pk, self.member)
        try:
            await database_sync_to_async(self._leave)()
        except redis.RedisError as exc:
            # Redis is away: the presence entry expires by itself within ROOMS_PRESENCE_TTL_MS.
            logger.warning("room left without Redis (%s)", exc, extra={"room_id": self.room.pk})
        self.member = None

    def _leave(self) -> None:
        presence.leave(self.room.pk, self.user.pk, self.member.conn_id)
        services.member_disconnected(room=self.room, user=self.user)
        presence.mark_members_dirty(self.room.pk)
        services.start_if_ready(room_id=self.room.pk)

    async def receive(self, text_data=None, bytes_data=None):
        received_ms = time.time() * 1000
        if self.member is None:
            return
        if bytes_data is not None or text_data is None:
            await self._error("invalid", "Send JSON text frames.")
            return
        if inputs.is_larger_than(text_data, MAX_MESSAGE_BYTES):
            await self.close(code=1009)
            return
        try:
            message = inputs.json_loads(text_data)
        except inputs.InputError as exc:
            await self._error("invalid", exc.message, field=exc.field)
            return
        if not isinstance(message, dict):
            await self._error("invalid", "Send a JSON object with a type.")
            return
        request_id = message.get("request_id")
        if isinstance(request_id, bool) or not isinstance(request_id, str | int) or (
            isinstance(request_id, str) and len(request_id) > MAX_REQUEST_ID_CHARS
        ):
            request_id = None
        try:
            await self._dispatch(message, received_ms, request_id)
        except RoomError as exc:
            await self._error(exc.code, exc.message, request_id, state=exc.state, field=exc.field)
        except Exception:
            # A bug, not the client's fault: say so and keep the socket (and the room) going.
            logger.exception("room message failed", extra={"room_id": self.room.pk, "type": str(message.get("type"))[:40]})
            await self._error("server_error", "The server could not handle that message; it has been logged.",
                              request_id)

    async def _dispatch(self, message: dict, received_ms: float, request_id) -> None:
        kind = message.get("type")
        if kind == "time.ping":
            t0 = message.get("t0")
            if isinstance(t0, bool) or not isinstance(t0, int | float):
                raise RoomError("invalid", "time.ping needs t0, the client's clock in ms.", field="t0")
            try:
                inputs.number(t0, field="t0", minimum=-MAX_CLOCK_MS, maximum=MAX_CLOCK_MS)
            except inputs.InputError as exc:
                raise RoomError.from_input(exc) from None
            await self.send(text_data=encode(
                {"type": "time.pong", "t0": t0, "t1": received_ms, "t2": time.time() * 1000}
            ))
        elif kind == "control":
            self._rate_limit()
            control = services.parse_control(message)
            state = await database_sync_to_async(services.playback_control)(
                room=self.room, actor=self.user, control=control
            )
            if request_id is not None:
                await self.send(text_data=encode({"type": "ack", "request_id": request_id, "version": state.version}))
        elif kind == "ready":
            await database_sync_to_async(services.member_ready)(
                room=self.room, user=self.user, entry_id=message.get("entry_id")
            )
        elif kind == "buffering":
            await database_sync_to_async(services.member_buffering)(room=self.room, user=self.user)
        elif kind == "report":
            await database_sync_to_async(services.save_report)(
                room=self.room, user=self.user, offset_ms=message.get("offset_ms"),
                rtt_ms=message.get("rtt_ms"), drift_ms=message.get("drift_ms"),
                sound_blocked=message.get("sound_blocked", False),
            )
        else:
            raise RoomError("invalid", "type must be time.ping, control, ready, buffering or report.", field="type")

    def _rate_limit(self) -> None:
        now = time.monotonic()
        while self.control_times and now - self.control_times[0] > 1.0:
            self.control_times.popleft()
        if len(self.control_times) >= settings.ROOMS_CONTROLS_PER_SECOND:
            raise RoomError("rate_limited", f"At most {settings.ROOMS_CONTROLS_PER_SECOND} controls a second; slow down.")
        self.control_times.append(now)

    async def _error(self, code: str, message: str, request_id=None, *, state=None, field=None) -> None:
        event = {"type": "error", "code": code, "message": message}
        if field is not None:
            event["field"] = field
        if request_id is not None:
            event["request_id"] = request_id
        if state is not None:
            event["state"] = await database_sync_to_async(events.current_state_event)(self.room.pk, reason="change")
        await self.send(text_data=encode(event))
