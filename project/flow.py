"""Back-pressure for HTTP response bodies under Daphne.

Daphne's `send` hands each body chunk straight to Twisted, which queues without limit, so an
async body is read as fast as the disk (or ffmpeg) allows whatever the client takes: a paused
<audio> element would make the server read the rest of a 200 MB file into memory. This
middleware registers a push producer on Daphne's Twisted request; Twisted pauses it when the
socket's write buffer is full and resumes it once drained, and `send` for a body chunk waits
while paused. Under any other ASGI server it does nothing.
"""

from __future__ import annotations

import asyncio

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class _Writable:
    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.event.set()

    def pauseProducing(self) -> None:
        self.event.clear()

    def resumeProducing(self) -> None:
        self.event.set()

    def stopProducing(self) -> None:  # connection lost: never leave a sender waiting
        self.event.set()


def flow_control(app):
    async def application(scope, receive, send):
        # Daphne passes send=partial(server.handle_reply, protocol): the protocol is the
        # Twisted request. Anything else (tests, other servers) goes straight through.
        request = getattr(send, "args", (None,))[0]
        if scope["type"] != "http" or not hasattr(request, "registerProducer"):
            return await app(scope, receive, send)
        writable = _Writable()

        async def flow_send(message):
            if message["type"] == "http.response.start" and request.producer is None and not request.finished:
                request.registerProducer(writable, True)
            await send(message)
            if message["type"] == "http.response.body" and message.get("more_body"):
                await writable.event.wait()

        return await app(scope, receive, flow_send)

    return application
