"""What every app's services raise when they refuse a request: `Refusal`.

A refusal is the caller's to act on (a bad value, no permission, nothing by that id, a
conflict with the current state, too many at once), never a fault of the server. `code` says
which, `message` says why and what to do, `field` names the value at fault when there is one.
Views and the API answer `http_status` with `{"error": code, "message": ..., "field": ...}`;
consumers send a websocket `error` event with the same code. Each app subclasses it (RoomError,
ScrobbleError, LiveError, FilmError, SyncRefused) with its own codes in `HTTP_STATUS` and,
where it needs them, fields of its own.
"""

from __future__ import annotations

from typing import ClassVar

from project import inputs


class Refusal(Exception):
    HTTP_STATUS: ClassVar[dict[str, int]] = {
        "invalid": 400, "forbidden": 403, "not_found": 404, "conflict": 409, "rate_limited": 429,
    }

    def __init__(self, code: str, message: str, *, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    @property
    def http_status(self) -> int:
        """The answer's status; 400 for a code the class does not list."""
        return self.HTTP_STATUS.get(self.code, 400)

    @classmethod
    def from_input(cls, exc: inputs.InputError):
        """A value project/inputs.py refused, as this app's `invalid`."""
        return cls("invalid", exc.message, field=exc.field)
