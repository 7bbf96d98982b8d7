"""Close codes an application may send on a websocket under Daphne.

The ASGI `websocket.close` event carries any close code, but Daphne hands it to Autobahn's
`sendClose`, which accepts only 1000 and 3000-4999 and raises for the rest; the exception
then ends the application and Daphne closes with 1011 instead. RFC 6455 lets an endpoint
send 1008 (policy violation) and 1009 (message too big) too, and a client can act on them
(docs/protocol.md promises 1009 for a message over 64 KiB), so `allow_rfc_close_codes()`
makes Daphne send those directly; every other code goes the usual way.
"""

from __future__ import annotations

# Codes RFC 6455 (section 7.4.1) lets an endpoint send that Autobahn's sendClose refuses.
RFC_CODES = frozenset({1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})


def allow_rfc_close_codes() -> bool:
    """Patch Daphne's WebSocketProtocol once; False when Daphne is not installed."""
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:
        return False
    original = WebSocketProtocol.serverClose
    if getattr(original, "allows_rfc_codes", False):
        return True

    def server_close(self, code=None):
        if code in RFC_CODES:
            self.sendCloseFrame(code=code)
        else:
            original(self, code=code)

    server_close.allows_rfc_codes = True
    WebSocketProtocol.serverClose = server_close
    return True
