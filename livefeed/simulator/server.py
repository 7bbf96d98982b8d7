"""The simulator's server: HTTP and the push socket on one port (the `websockets` library
answers plain HTTP requests from `process_request` and upgrades the rest).

- `GET /` sets the `ttwid` cookie.
- `GET /<live_id>` the room page (needs the cookie; the room id is in its embedded JSON as
  `\\"roomId\\":\\"...\\"`, as on Douyin).
- `GET /webcast/room/web/enter/?web_rid=<live_id>` the room's JSON (title, streamer,
  `room_status` 0 live / 2 ended, viewers, pull URLs).
- `GET /webcast/im/push/v2/?room_id=...` (websocket) the push socket: gzip'd PushFrames of
  Responses that ask for acks, at the room's rate; it counts the acks and heartbeats it gets.
- The room's stream (livefeed/simulator/stream.py): `GET /stream/<room_id>_<quality>.flv` on
  the port `stream_port`, a real FLV made by ffmpeg in real time.
- `GET /_sim/` every room's status; `GET /_sim/<live_id>` one room's status and counters;
  `POST /_sim/<live_id>/<command>` changes it (docs/protocol.md lists the commands).

Any digits-only live id is a room, made on first use, live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import websockets
from google.protobuf.message import DecodeError
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from livefeed.proto import douyin_pb2 as pb
from livefeed.simulator.room import MALFORMED_KINDS, SimRoom, live_id_for
from livefeed.simulator.stream import StreamServer

PUSH_PATH = "/webcast/im/push/v2/"
ENTER_PATH = "/webcast/room/web/enter/"
TICK_S = 0.05  # at most 20 frames a second per room; more messages per frame at higher rates
VIEWERS_EVERY_S = 2.0  # a viewer count this often while the room sends anything, whatever the rate
COMMANDS = ("drop", "resend", "malformed", "end", "start", "rate", "stall", "resume", "page", "signature", "a_bogus",
            "send", "stream_drop", "stream_stall", "stream_resume", "stream_refuse", "expire")


# The websockets library logs every HTTP request at INFO: the simulator's own log is warnings only.
log = logging.getLogger("livefeed.simulator.server")
log.setLevel(logging.WARNING)


class CommandError(ValueError):
    pass


class Simulator:
    """The local Douyin. `await start()` then use `root`, `webcast_url`; `await stop()`."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, rate: float = 20.0, seed: int | None = None,
                 resend_count: int = 0, record_ids: bool = False, stream_port: int = 0, stream_shared: bool = False,
                 stream_kbps: int | None = None):
        self.host = host
        self.port = port
        self.rate = rate
        self.seed = seed
        self.resend_count = resend_count
        self.record_ids = record_ids
        self.rooms: dict[str, SimRoom] = {}
        self._server = None
        self._producers: dict[str, asyncio.Task] = {}
        self._pending: dict[ServerConnection, dict[int, str]] = {}
        self._tasks: set[asyncio.Task] = set()
        self.streams = StreamServer(self, host=host, port=stream_port, shared=stream_shared, kbps=stream_kbps)

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def webcast_url(self) -> str:
        return f"ws://{self.host}:{self.port}{PUSH_PATH}"

    def room_url(self, live_id: str) -> str:
        return f"{self.root}/{live_id}"

    async def start(self) -> Simulator:
        self._server = await serve(self._socket, self.host, self.port, process_request=self._http,
                                   max_size=2**20, ping_interval=None, compression=None, close_timeout=1,
                                   logger=log)
        self.port = self._server.sockets[0].getsockname()[1]
        await self.streams.start()
        return self

    async def stop(self) -> None:
        for task in self._producers.values():
            task.cancel()
        for task in list(self._producers.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._producers.clear()
        await self.streams.stop()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.stop()

    def room(self, live_id: str) -> SimRoom:
        if live_id not in self.rooms:
            self.rooms[live_id] = SimRoom(live_id, rate=self.rate, seed=self.seed, resend_count=self.resend_count,
                                          record_ids=self.record_ids)
        return self.rooms[live_id]

    def _room_by_id(self, room_id: str) -> SimRoom | None:
        live_id = live_id_for(room_id)
        return self.room(live_id) if live_id is not None else None

    # ---- HTTP -----------------------------------------------------------------------------

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        path = parts.path
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if path == PUSH_PATH:
            return self._push_handshake(connection, request, query)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return _text(connection, HTTPStatus.NOT_FOUND, "no socket here")
        try:
            if path.startswith("/_sim"):
                return await self._control(connection, request, path, query)
            if path == "/":
                response = _html(connection, "<!doctype html><title>抖音直播</title><p>simulator</p>")
                ttwid = "1%7C" + secrets.token_urlsafe(32)
                response.headers["Set-Cookie"] = f"ttwid={ttwid}; Path=/; Max-Age=31536000; HttpOnly"
                return response
            if path == ENTER_PATH:
                return self._enter(connection, request, query)
            live_id = path.strip("/")
            if live_id.isdigit():
                return self._page(connection, request, live_id)
        except CommandError as exc:
            return _json(connection, {"error": str(exc)}, status=HTTPStatus.BAD_REQUEST)
        return _text(connection, HTTPStatus.NOT_FOUND, "not found")

    def _page(self, connection: ServerConnection, request: Request, live_id: str) -> Response:
        room = self.room(live_id)
        if room.page == "antibot" or "ttwid=" not in request.headers.get("Cookie", ""):
            return _html(connection, "<!doctype html><title>验证码中间页</title>"
                                     "<script>window.byted_acrawler&&byted_acrawler.init({})</script>")
        state = {"roomId": room.room_id, "web_rid": live_id, "status": 2 if room.live else 4, "title": room.title}
        if room.page == "missing":
            state = {"web_rid": live_id, "status": 0}
        # The page embeds its state as a JSON string inside a script, so every quote is escaped.
        compact = {"ensure_ascii": False, "separators": (",", ":")}
        embedded = json.dumps(json.dumps({"state": {"roomStore": {"roomInfo": state}}}, **compact), **compact)
        return _html(connection, f"<!doctype html><title>{room.title}</title>"
                                 f"<script>self.__pace_f.push([1,{embedded}])</script>")

    def _enter(self, connection: ServerConnection, request: Request, query: dict[str, str]) -> Response:
        live_id = query.get("web_rid", "")
        if not live_id.isdigit() or "ttwid=" not in request.headers.get("Cookie", ""):
            return _json(connection, {"status_code": 10011, "data": {"prompts": "参数错误"}})
        room = self.room(live_id)
        room.counters.last_enter_query = query
        if room.page == "antibot":
            return _html(connection, "<!doctype html><title>验证码中间页</title>")
        if room.require_a_bogus and not query.get("a_bogus"):
            return _with_type(connection.respond(HTTPStatus.OK, ""), b"", "application/json; charset=utf-8")
        if room.page == "missing":
            return _json(connection, {"status_code": 0, "data": {"data": [], "room_status": None}})
        return _json(connection, room.enter_json(f"{self.host}:{self.port}", self.streams.netloc))

    async def _control(self, connection: ServerConnection, request: Request, path: str,
                       query: dict[str, str]) -> Response:
        parts = [part for part in path.split("/") if part][1:]
        if not parts:
            return _json(connection, {"rooms": [room.status() for room in self.rooms.values()]})
        room = self.room(parts[0])
        if len(parts) == 1:
            return _json(connection, room.status())
        if request.method != "POST":
            return _json(connection, {"error": "commands are POSTed"}, status=HTTPStatus.METHOD_NOT_ALLOWED)
        await self.command(parts[0], parts[1], **query)
        return _json(connection, room.status())

    # ---- commands -------------------------------------------------------------------------

    async def command(self, live_id: str, name: str, **args: str) -> dict[str, Any]:
        """Change a room: the same commands as `POST /_sim/<live_id>/<name>?args`."""
        room = self.room(live_id)
        if name == "drop":
            for ws in list(room.sockets):
                ws.transport.abort()  # no close frame: as a network drop looks
        elif name == "resend":
            room.resend_count = _int(args.get("count", "50"), "count")
        elif name == "malformed":
            kinds = MALFORMED_KINDS if args.get("kind", "all") == "all" else (args["kind"],)
            for kind in kinds:
                if kind not in MALFORMED_KINDS:
                    raise CommandError(f"kind must be one of all, {', '.join(MALFORMED_KINDS)}")
                await self._broadcast(room, room.malformed(kind))
        elif name == "end":
            room.live = False
            frame, log_id, ext = room.frame([room.end_message()])
            await self._broadcast(room, frame, log_id=log_id, ext=ext)
            asyncio.get_running_loop().call_later(0.5, self._close_all, room)
            asyncio.get_running_loop().call_later(0.5, self.streams.cut, live_id)
        elif name == "stream_drop":
            self.streams.cut(live_id)
        elif name == "stream_stall":
            self.streams.pause(live_id, True)
        elif name == "stream_resume":
            self.streams.pause(live_id, False)
        elif name == "stream_refuse":
            status = args.get("status", "404")
            if status not in ("0", "403", "404", "500"):
                raise CommandError("status must be 403, 404, 500 or 0 (serve again)")
            room.stream_refuse = {"0": "", "403": "403 Forbidden", "404": "404 Not Found",
                                  "500": "500 Internal Server Error"}[status]
        elif name == "expire":
            room.stream_sign = secrets.token_hex(8)
            self.streams.cut(live_id)
        elif name == "start":
            room.live = True
        elif name == "rate":
            room.rate = _float(args.get("value", ""), "value")
        elif name == "stall":
            room.stalled = True
        elif name == "resume":
            room.stalled = False
        elif name == "page":
            mode = args.get("mode", "ok")
            if mode not in ("ok", "antibot", "missing"):
                raise CommandError("mode must be ok, antibot or missing")
            room.page = mode
        elif name == "signature":
            room.require_signature = args.get("required", "1") not in ("0", "false", "no")
        elif name == "a_bogus":
            room.require_a_bogus = args.get("required", "1") not in ("0", "false", "no")
        elif name == "send":
            kind = args.get("kind", "chat")
            if kind not in room._makers:
                raise CommandError(f"kind must be one of {', '.join(room._makers)}")
            count = _int(args.get("count", "1"), "count")
            messages = [room.one(kind) for _ in range(count)]
            frame, log_id, ext = room.frame(messages)
            await self._broadcast(room, frame, log_id=log_id, ext=ext, messages=messages)
        else:
            raise CommandError(f"unknown command {name!r}; one of {', '.join(COMMANDS)}")
        return room.status()

    def _close_all(self, room: SimRoom) -> None:
        for ws in list(room.sockets):
            self._spawn(ws.close(1000, "live ended"))

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _broadcast(self, room: SimRoom, frame: bytes | str, *, log_id: int | None = None, ext: str = "",
                         messages: list[pb.Message] | None = None) -> None:
        for ws in list(room.sockets):
            if log_id is not None:
                self._pending.setdefault(ws, {})[log_id] = ext
                room.counters.acks_expected += 1
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(frame)
                room.counters.frames_sent += 1
        if messages and room.sockets:
            room.counters.messages_sent += len(messages)
            if room.sent_ids is not None:
                room.sent_ids.extend(message.msgId for message in messages)

    # ---- the push socket ------------------------------------------------------------------

    def _push_handshake(self, connection: ServerConnection, request: Request, query: dict[str, str]) -> Response | None:
        room = self._room_by_id(query.get("room_id", ""))
        if room is None:
            return _text(connection, HTTPStatus.NOT_FOUND, "no such room_id")
        room.counters.last_query = query
        if "ttwid=" not in request.headers.get("Cookie", ""):
            room.counters.refused += 1
            return _text(connection, HTTPStatus.FORBIDDEN, "no ttwid cookie")
        if room.require_signature and not query.get("signature"):
            room.counters.refused += 1
            return _text(connection, HTTPStatus.FORBIDDEN, "signature required")
        return None

    async def _socket(self, ws: ServerConnection) -> None:
        room = self._room_by_id(dict(parse_qsl(urlsplit(ws.request.path).query)).get("room_id", ""))
        if room is None:  # pragma: no cover - the handshake refused it
            return
        room.counters.connections += 1
        self._pending[ws] = {}
        if room.resend_count and room.counters.connections > 1 and room.history:
            recent = list(room.history)[-room.resend_count:]
            frame, log_id, ext = room.frame(recent)
            self._pending[ws][log_id] = ext
            room.counters.acks_expected += 1
            room.counters.resent += len(recent)
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(frame)
        room.sockets.add(ws)
        self._ensure_producer(room)
        try:
            async for data in ws:
                self._from_client(room, ws, data)
        except websockets.ConnectionClosed:
            pass
        finally:
            room.sockets.discard(ws)
            self._pending.pop(ws, None)

    def _from_client(self, room: SimRoom, ws: ServerConnection, data: bytes | str) -> None:
        try:
            frame = pb.PushFrame.FromString(data if isinstance(data, bytes) else data.encode())
        except DecodeError:
            room.counters.client_garbage += 1
            return
        if frame.payloadType == "hb":
            room.counters.heartbeats += 1
            if not room.stalled:
                self._spawn(_send_quietly(ws, pb.PushFrame(payloadType="hb").SerializeToString()))
        elif frame.payloadType == "ack":
            expected = self._pending.get(ws, {}).pop(frame.logId, None)
            if expected is not None and frame.payload.decode("utf-8", "replace") == expected:
                room.counters.acks_ok += 1
            else:
                room.counters.acks_bad += 1
        else:
            room.counters.client_garbage += 1

    def _ensure_producer(self, room: SimRoom) -> None:
        task = self._producers.get(room.live_id)
        if task is None or task.done():
            self._producers[room.live_id] = asyncio.create_task(self._produce(room), name=f"sim-{room.live_id}")

    async def _produce(self, room: SimRoom) -> None:
        carry = 0.0
        last = last_viewers = time.monotonic()
        while room.sockets:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            elapsed, last = now - last, now
            if room.stalled or not room.live or room.rate <= 0:
                continue
            carry += room.rate * elapsed
            count = int(carry)
            carry -= count
            messages = room.next_messages(count) if count > 0 else []
            if now - last_viewers >= VIEWERS_EVERY_S:  # viewer counts come on a clock, as on Douyin
                last_viewers = now
                messages.append(room.one("viewers"))
            if not messages:
                continue
            frame, log_id, ext = room.frame(messages)
            await self._broadcast(room, frame, log_id=log_id, ext=ext, messages=messages)


async def _send_quietly(ws: ServerConnection, frame: bytes) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        await ws.send(frame)


def _int(value: str, name: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise CommandError(f"{name} must be a whole number, not {value[:20]!r}") from None
    if number < 0:
        raise CommandError(f"{name} must be at least 0")
    return number


def _float(value: str, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise CommandError(f"{name} must be a number, not {value[:20]!r}") from None
    if not 0 <= number <= 1_000_000:
        raise CommandError(f"{name} must be between 0 and 1000000")
    return number


def _with_type(response: Response, body: bytes, content_type: str) -> Response:
    response.body = body
    del response.headers["Content-Length"]  # Headers keeps every value set: replace, not add
    del response.headers["Content-Type"]
    response.headers["Content-Length"] = str(len(body))
    response.headers["Content-Type"] = content_type
    return response


def _text(connection: ServerConnection, status: HTTPStatus, text: str) -> Response:
    return connection.respond(status, text + "\n")


def _html(connection: ServerConnection, page: str) -> Response:
    return _with_type(connection.respond(HTTPStatus.OK, ""), page.encode(), "text/html; charset=utf-8")


def _json(connection: ServerConnection, value: Any, *, status: HTTPStatus = HTTPStatus.OK) -> Response:
    body = json.dumps(value, ensure_ascii=False).encode()
    return _with_type(connection.respond(status, ""), body, "application/json; charset=utf-8")


class SimulatorThread:
    """The simulator on its own event loop in a thread, for code under test that runs its own
    loop or none (the fetcher in a worker): `with SimulatorThread(rate=50) as sim: ...`.
    `command()` is thread-safe."""

    def __init__(self, **kwargs: Any):
        self.simulator = Simulator(**kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def root(self) -> str:
        return self.simulator.root

    @property
    def webcast_url(self) -> str:
        return self.simulator.webcast_url

    def room(self, live_id: str) -> SimRoom:
        return self.simulator.room(live_id)

    def start(self) -> SimulatorThread:
        self._thread = threading.Thread(target=self._run, name="douyin-simulator", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the simulator did not start within 10 s")
        if self._error is not None:
            raise RuntimeError(f"the simulator did not start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                await self.simulator.start()
            except BaseException as exc:
                self._error = exc
                self._started.set()
                return
            self._started.set()
            try:
                await self._stop.wait()
            finally:
                await self.simulator.stop()

        asyncio.run(main())

    def command(self, live_id: str, name: str, **args: str) -> dict[str, Any]:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self.simulator.command(live_id, name, **args), self._loop)
        return future.result(10)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


@contextlib.contextmanager
def running_simulator(**kwargs: Any) -> Iterator[SimulatorThread]:
    with SimulatorThread(**kwargs) as sim:
        yield sim
