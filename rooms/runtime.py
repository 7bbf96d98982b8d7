"""A room's clock inside one server process.

For every room with local sockets (or radio listeners) the process keeps the last
`room.state` it relayed and runs a small loop that
- sends `room.state` ticks to its local sockets every ROOMS_TICK_S (no database hop),
- keeps the presence of its local sockets alive in Redis and announces member changes,
- asks the services to auto-advance at the end of a track or to stop waiting after the
  timeout; both are compare-and-set on the state version, so when several processes ask
  at once exactly one change happens.

When Redis goes away the clock keeps going: ticks still reach the local sockets, and each
step that needs Redis fails alone and is tried again at its next turn. Once the hub has
subscribed again (`resync`), the runtime reads the room from the database and sends every
local socket its state, queue and settings (whatever was published meanwhile never came),
and puts its members back in the presence set (a restarted Redis may have lost it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

import redis
from channels.db import database_sync_to_async
from django.conf import settings

from project.batching import Coalescer
from project.realtime import encode, get_hub, write_all
from project.wsframes import Frame, Writer
from rooms import events, presence, services
from rooms.models import Room
from scrobbling.services import heard_enough

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.2
# Joins and leaves are announced at most this often (coalesced across processes), as a
# delta: its size grows with the changes, not with the room.
MEMBERS_INTERVAL_S = 0.5


class Member:
    """What the runtime needs of a local socket (user_id None: a radio station, which
    follows the room without being one of its members).

    A socket that is `joining` keeps the frames it is sent until `start` has sent its join
    frames: a member delta published while the join was being read must come after the
    full list it builds on, not before it (the list would then undo it).

    `write` (project/wsframes.py, under Daphne) writes a frame prepared once for all the
    sockets straight to this one; frames it declines, and all of a socket without it, go
    through `send`."""

    def __init__(self, user_id: int | None, conn_id: str, send: Callable[[str], Awaitable[None]], *,
                 write: Writer | None = None, joining: bool = False):
        self.user_id = user_id
        self.conn_id = conn_id
        self._send = send
        self._write = write
        self._held: list[str] | None = [] if joining else None

    async def send(self, frame: str) -> None:
        if self._held is not None:
            self._held.append(frame)
        else:
            await self._send(frame)

    def write(self, frame: Frame) -> bool:
        """Write a prepared frame now; False if this socket holds its frames (joining) or
        cannot take it that way: then `send` its text."""
        return self._held is None and self._write is not None and self._write(frame)

    async def start(self, frames: list[Frame]) -> None:
        """Send the join frames, then what was held meanwhile, in order."""
        for frame in frames:
            if self._write is None or not self._write(frame):
                await self._send(frame.text)
        while self._held:
            await self._send(self._held.pop(0))
        self._held = None


class RoomRuntime:
    def __init__(self, room_id: int):
        self.room_id = room_id
        self.topic = services.topic(room_id)
        self.members: dict[str, Member] = {}
        self.extra_listeners: set[Callable[[dict], None]] = set()
        self.state: dict | None = None
        # The room as last published, so that a join needs no database: the queue and
        # settings events, and the member list ({user_id: entry}, deltas applied).
        self.queue: dict | None = None
        self.room_settings: dict | None = None
        self.member_list: dict[int, dict] | None = None
        self._task: asyncio.Task | None = None
        self._last_tick = 0.0
        self._last_members_check = 0.0
        self._asked_version: int | None = None
        self._scrobble_version: int | None = None
        self._redis_away = False
        self._joins = Coalescer(self._join_batch, name=f"room-{room_id}-joins")

    # -- state cache -----------------------------------------------------------------
    def on_frame(self, topic: str, frame: str) -> None:
        head = frame[:40]
        if '"type":"room.state"' in head:
            self.remember(json.loads(frame))
        elif '"type":"room.members' in head:
            if self.member_list is not None:
                events.apply_members_delta(self.member_list, json.loads(frame))
            elif head.startswith('{"type":"room.members"'):
                self.member_list = {}
                events.apply_members_delta(self.member_list, json.loads(frame))
        elif '"type":"room.queue"' in head:
            self.queue = json.loads(frame)
        elif '"type":"room.settings"' in head:
            self.room_settings = json.loads(frame)

    def joined(self, first: list[dict]) -> None:
        """What a join read from the database fills the caches that are still empty, and
        the members the list lacks (a published frame, newer, always replaces them)."""
        state, queue, members, room_settings = first
        self.remember(state)
        if self.queue is None:
            self.queue = queue
        if self.room_settings is None:
            self.room_settings = room_settings
        if self.member_list is None:
            self.member_list = {}
        for member in members["members"]:
            self.member_list.setdefault(member["user_id"], member)

    async def join(self, member: Member, room: Room) -> None:
        """Mark an attached (joining) socket online and send it the room: state, queue,
        members, settings. The sockets joining at once are served together: one presence
        write, and the room read once (from the caches when they hold it, no database),
        its frames encoded once for all of them."""
        await self._joins.ask((member, room))

    async def _join_batch(self, joins: list[tuple[Member, Room]]) -> list[Exception | None]:
        members = [member for member, _ in joins]
        user_ids = {member.user_id for member in members}
        read = None in (self.state, self.queue, self.room_settings, self.member_list) or not (
            user_ids <= self.member_list.keys())
        first = await database_sync_to_async(self._join_read)(joins[0][1], [(m.user_id, m.conn_id) for m in members],
                                                              read=read)
        if first is not None:
            self.joined(first)
        for user_id in user_ids & self.member_list.keys():  # online now: their presence is written
            self.member_list[user_id] = events.with_online(self.member_list[user_id], True)
        frames = [Frame(encode(event)) for event in (
            dict(self.state, reason="join", server_ms=presence.now_ms()), self.queue,
            events.members_event(joins[0][1], events.sorted_members(self.member_list.values())), self.room_settings)]
        outcomes: list[Exception | None] = []
        for member in members:
            try:
                await member.start(frames)
                outcomes.append(None)
            except Exception as exc:  # that socket closed meanwhile: the others go on
                outcomes.append(exc)
        return outcomes

    def _join_read(self, room: Room, connections: list[tuple[int, str]], *, read: bool) -> list[dict] | None:
        """Online, and announce it (coalesced, as a delta to the others); with `read`, the
        room from the database."""
        presence.touch(self.room_id, connections)
        presence.mark_members_dirty(self.room_id)
        if not read:
            return None
        return [events.state_event(services.playback_current(room_id=self.room_id), reason="join",
                                   server_ms=presence.now_ms()),
                events.queue_event(room), events.members_event(room), events.room_event(room)]

    def remember(self, state: dict) -> None:
        if self.state is None or state["version"] >= self.state["version"]:
            self.state = state
            for listener in list(self.extra_listeners):
                listener(state)

    # -- loop -------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"room-{self.room_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            await self._step(self._check_clock)
            # Big rooms announce less often: the list itself grows with the room.
            members_interval_s = MEMBERS_INTERVAL_S + len(self.members) / 1000
            if time.monotonic() - self._last_members_check >= members_interval_s:
                self._last_members_check = time.monotonic()
                await self._step(database_sync_to_async(self._announce_if_dirty))
            if time.monotonic() - self._last_tick >= settings.ROOMS_TICK_S:
                self._last_tick = time.monotonic()
                await self._step(self.tick)

    async def _step(self, step: Callable[[], Awaitable[object]]) -> None:
        """Run one step of the clock; a failure ends that step only, never the loop."""
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except (redis.RedisError, OSError) as exc:
            if not self._redis_away:  # once per outage, not five times a second
                self._redis_away = True
                logger.warning("room clock without Redis (%s); ticks go on", exc, extra={"room_id": self.room_id})
        except Exception:
            logger.exception("room runtime step failed", extra={"room_id": self.room_id})
            await asyncio.sleep(1)

    async def _check_clock(self) -> None:
        state = self.state
        if state is None or state["version"] == self._asked_version:
            return
        now = presence.now_ms()
        if state["status"] == "playing" and state["track"] is not None:
            position_s = events.position_at(state, now)
            duration_s = state["track"]["duration_s"]
            heard_s = events.heard_at(state, now)
            if state["version"] != self._scrobble_version and heard_enough(duration_s=duration_s, heard_s=heard_s):
                self._scrobble_version = state["version"]
                try:  # idempotent (the play's start time): a failed attempt is made again
                    await database_sync_to_async(services.scrobble_if_due)(room_id=self.room_id)
                except Exception:
                    self._scrobble_version = None
                    raise
            if position_s >= duration_s:
                await self._ask(services.advance_if_ended, state, version=state["version"])
        elif state["status"] == "waiting" and now - state["anchor_ms"] >= settings.ROOMS_WAIT_TIMEOUT_S * 1000:
            await self._ask(services.start_if_ready, state)

    async def _ask(self, service: Callable, state: dict, **kwargs) -> None:
        """Ask once per state version; a compare-and-set that failed is asked again."""
        self._asked_version = state["version"]
        try:
            await database_sync_to_async(service)(room_id=self.room_id, **kwargs)
        except Exception:
            self._asked_version = None
            raise

    async def tick(self) -> None:
        """Send every local socket a tick, then refresh presence and announce member changes
        (the tick first: it needs no Redis, so it goes out while Redis is away)."""
        if self.state is not None and self.members:
            frame = Frame(encode(dict(self.state, reason="tick", server_ms=presence.now_ms())))
            await write_all([(m.send, m.write) for m in self.members.values() if m.user_id is not None], frame)
        await database_sync_to_async(self._refresh_members)(self._connections())
        self._redis_away = False  # presence was written: Redis answers

    def _connections(self) -> list[tuple[int, str]]:
        return [(m.user_id, m.conn_id) for m in self.members.values() if m.user_id is not None]

    async def resync(self, topic: str) -> None:
        """The hub subscribed again after losing Redis: send every local socket the room as
        the database has it now (reason "resync"), and put the members back online."""
        state, queue, room_settings = await database_sync_to_async(self._current_events)()
        self.remember(state)  # unless a newer change arrived first
        self.queue, self.room_settings = queue, room_settings
        frames = [encode(dict(self.state, reason="resync", server_ms=presence.now_ms())), encode(queue),
                  encode(room_settings)]
        for member in list(self.members.values()):
            for frame in frames:
                try:
                    await member.send(frame)
                except Exception:
                    logger.debug("resync to a closing socket failed", exc_info=True)
                    break
        self._last_tick = time.monotonic()
        await self._step(database_sync_to_async(self._rejoin_presence))

    def _current_events(self) -> tuple[dict, dict, dict]:
        room = Room.objects.get(pk=self.room_id)
        return (events.current_state_event(self.room_id, reason="resync"), events.queue_event(room),
                events.room_event(room))

    def _rejoin_presence(self) -> None:
        presence.touch(self.room_id, self._connections())
        # The next check announces the whole list: a delta could build on a list that this
        # process's sockets never got (it was published while this hub was not subscribed).
        presence.forget_announced_members(self.room_id)
        presence.mark_members_dirty(self.room_id)

    def _announce_if_dirty(self) -> None:
        if presence.take_members_dirty(self.room_id):
            room = Room.objects.filter(pk=self.room_id).first()
            if room is not None:
                services.announce_members(room=room)

    def _refresh_members(self, connections: list[tuple[int, str]]) -> None:
        presence.touch(self.room_id, connections)
        room = Room.objects.filter(pk=self.room_id).first()
        if room is not None:
            services.announce_members(room=room)


_runtimes: dict[tuple[int, int], RoomRuntime] = {}


def _key(room_id: int) -> tuple[int, int]:
    return (id(asyncio.get_running_loop()), room_id)


async def attach(room_id: int, member: Member) -> RoomRuntime:
    """Register a local socket; its frames arrive through `member.send`."""
    runtime = _runtimes.get(_key(room_id))
    if runtime is None:
        runtime = _runtimes[_key(room_id)] = RoomRuntime(room_id)
        get_hub().add_listener(runtime.topic, runtime.on_frame)
        get_hub().add_resubscribe_hook(runtime.topic, runtime.resync)
    runtime.members[member.conn_id] = member
    await get_hub().subscribe(runtime.topic, hash(member.conn_id), member.send, write=member.write)
    runtime.start()
    return runtime


async def detach(room_id: int, member: Member) -> None:
    runtime = _runtimes.get(_key(room_id))
    if runtime is not None:  # first, before any await: the tick must not touch it again
        runtime.members.pop(member.conn_id, None)
    await get_hub().unsubscribe(services.topic(room_id), hash(member.conn_id))
    if runtime is None:
        return
    if not runtime.members and not runtime.extra_listeners:
        _runtimes.pop(_key(room_id), None)
        get_hub().remove_listener(runtime.topic, runtime.on_frame)
        get_hub().remove_resubscribe_hook(runtime.topic, runtime.resync)
        await runtime.stop()
