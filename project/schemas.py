"""What every JSON API router answers with when it refuses a request (project/refusals.py's
`Refusal`, project/api.py's handlers): `ErrorOut`. Routers whose refusals carry more (a room's
state, a list's rejected items, when to try again) subclass it."""

from __future__ import annotations

from ninja import Schema


class ErrorOut(Schema):
    error: str
    message: str
    field: str | None = None
