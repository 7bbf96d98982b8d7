"""One websocket frame, prepared once, written to many sockets (under Daphne).

A room's change reaches every local socket as the same text (project/realtime.py). Through
Channels, each socket's copy costs a chain of Python calls: the consumer's `send`, the
session middleware's, Daphne's `handle_reply`, then Autobahn's `sendMessage`, `sendFrame`
and `sendData`, which encode the text to UTF-8, build a header and join it to a copy of the
payload, for every socket. At 1,000 sockets that chain was most of a fan-out's time, and for
a 50 KB member list a reconnect storm copied it a thousand times.

A server's text frame (not masked, not compressed, not fragmented) is the same bytes for
every socket: `Frame.wire` builds them once, and the writer of a socket hands them to its
Twisted transport, the call Autobahn's `sendData` ends with (so frames sent either way go out
in the order they were sent). When that transport is plain TCP with nothing waiting in its
buffer, the writer tries the socket's `send` at once, as asyncio's own transports do, and
buffers only what the kernel did not take: otherwise Twisted registers every socket with the
event loop's selector and writes it on the next turn, which costs more than the frame. Whenever that would not be the same as Autobahn's own frame
(the socket is not open or is closing, per-message compression was negotiated, Autobahn is
in the middle of a fragmented message or has frames queued, frames over Daphne's size limit),
or under another ASGI server (tests' communicators), the writer declines and the caller
sends through the consumer as before.

`direct_writes(app)` wraps the websocket application: under Daphne it puts the socket's
writer in `scope[WRITER]`, as project/flow.py finds Daphne's request for HTTP.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

WRITER = "chorus.frame_writer"  # scope key: the socket's Writer, only under Daphne


class Frame:
    """The text of one event and, built at most once, its websocket frame bytes."""

    __slots__ = ("_wire", "text")

    def __init__(self, text: str):
        self.text = text
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            payload = self.text.encode()
            size = len(payload)
            if size <= 125:
                header = struct.pack("!BB", 0x81, size)  # FIN + text; unmasked, 7-bit length
            elif size <= 0xFFFF:
                header = struct.pack("!BBH", 0x81, 126, size)
            else:
                header = struct.pack("!BBQ", 0x81, 127, size)
            self._wire = header + payload
        return self._wire


Writer = Callable[[Frame], bool]  # True: written; False: not by this path (send it as usual)


def direct_writes(app):
    """ASGI middleware for websockets: the socket's Writer in scope[WRITER] under Daphne."""

    async def application(scope, receive, send):
        writer = daphne_writer(send) if scope["type"] == "websocket" else None
        if writer is not None:
            scope = dict(scope, **{WRITER: writer})
        return await app(scope, receive, send)

    return application


def daphne_writer(send) -> Writer | None:
    """A Writer for the socket behind Daphne's `send` (partial(server.handle_reply,
    protocol)); None for any other server."""
    handle_reply = getattr(send, "func", None)
    server = getattr(handle_reply, "__self__", None)
    args = getattr(send, "args", ())
    protocol = args[0] if args else None
    if (getattr(handle_reply, "__name__", "") != "handle_reply" or not hasattr(server, "connections")
            or not hasattr(protocol, "sendMessage") or not hasattr(protocol, "send_queue")):
        return None
    # Imported here, in Daphne's process (which has it loaded), not with the module: the
    # workers import project.realtime too, and Twisted would cost each about 17 MB.
    from twisted.internet.tcp import Server as TcpServer

    plain: list[bool] = []  # decided once the socket is open: its options are settled then

    def write(frame: Frame) -> bool:
        if protocol.state != protocol.STATE_OPEN or protocol.send_state != protocol.SEND_STATE_GROUND \
                or protocol.send_queue:
            return False
        if not plain:
            plain.append(protocol._perMessageCompress is None and not protocol.maskServerFrames
                         and not protocol.autoFragmentSize and not protocol.logFrames and not protocol.trackedTimings)
        wire = frame.wire
        if not plain[0] or 0 < protocol.maxMessagePayloadSize < len(wire):
            return False
        connection = server.connections.get(protocol)
        if connection is None or connection.get("disconnected"):
            return False  # Daphne's own send drops it silently; so will the usual path
        transport = protocol.transport
        if not _send_now(transport, wire, TcpServer):
            transport.write(wire)
        return True

    return write


def _send_now(transport, wire: bytes, tcp_server: type) -> bool:
    """Hand `wire` to the kernel now if nothing is queued before it; what the kernel does
    not take goes to the transport's buffer. False: not done (the caller writes it).
    `tcp_server`: Twisted's plain TCP transport class."""
    if (type(transport) is not tcp_server or transport.TLS or not transport.connected or transport.disconnecting
            or transport._writeDisconnected or transport._tempDataBuffer
            or len(transport.dataBuffer) > transport.offset):
        return False
    try:
        sent = transport.socket.send(wire)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        return False  # the connection broke: Twisted's own write finds out and closes it
    if sent < len(wire):
        transport.write(wire[sent:])
    return True
