"""Scrobbling over HTTP: now playing, scrobbles (one or a list), history and links."""

from __future__ import annotations

from django.http import Http404
from ninja import Field, Query, Router, Schema, Status

from catalog import selectors as catalog
from project import inputs, schemas
from scrobbling import nowplaying, recording, selectors
from scrobbling.inputs import MAX_PLAYS_PER_REQUEST, ItemError, ScrobbleError, parse_played_at
from scrobbling.links import link_remove, link_token
from scrobbling.models import Play

router = Router(tags=["scrobbling"])


class ErrorOut(schemas.ErrorOut):
    rejected: list[dict] | None = None


ERRORS = {400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 413: ErrorOut}


class NowPlayingIn(Schema):
    track_id: int = Field(ge=1, le=inputs.MAX_SAFE_INTEGER)
    position_s: float = Field(0.0, allow_inf_nan=False)  # the range is the service's
    paused: bool = False


def _error(exc: ScrobbleError):
    return Status(exc.http_status, exc.as_dict())


def play_out(play: Play) -> dict:
    return {
        "id": play.pk, "track_id": play.track_id, "artist": play.artist_name, "title": play.track_title,
        "album": play.album_title, "played_at": play.played_at.isoformat(), "played_s": play.played_s,
        "source": play.source, "room_id": play.room_id, "matched": play.is_matched,
    }


@router.post("/now-playing", response={200: dict, **ERRORS}, summary="Say what you are playing now")
def now_playing(request, payload: NowPlayingIn):
    track = catalog.track_get(track_id=payload.track_id)
    if track is None:
        raise Http404(f"No track with id {payload.track_id}.")
    try:
        entry = nowplaying.now_playing_set(user=request.auth, track=track, position_s=payload.position_s,
                                           paused=payload.paused, source=_source(request))
    except ScrobbleError as exc:
        return _error(exc)
    return entry


@router.delete("/now-playing", response={204: None}, summary="Stop showing what you were playing")
def now_playing_stop(request):
    nowplaying.now_playing_clear(user_id=request.auth.pk)
    return Status(204, None)


@router.get("/now-playing", response=list[dict], summary="Who is listening to what right now")
def now_playing_list(request):
    return selectors.listening_now()


class PlayIn(Schema):
    track_id: int
    played_at: str | int
    played_s: float | None = None


SCROBBLES_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "oneOf": [PlayIn.model_json_schema(),
                      {"type": "array", "maxItems": MAX_PLAYS_PER_REQUEST,
                       "items": PlayIn.model_json_schema()}],
        }}},
    },
}


@router.post("/scrobbles", response={201: dict, 200: dict, **ERRORS}, openapi_extra=SCROBBLES_DOC,
             summary="Record plays: one object, or a list of up to 1000 (offline plays)")
def scrobbles_submit(request):
    try:
        body = inputs.json_loads(request.body or b"null")
    except inputs.InputError as exc:
        return _error(ScrobbleError("invalid", exc.message, field=exc.field or "body"))
    try:
        result = recording.scrobbles_submit(user=request.auth, items=body, source=_source(request))
    except ScrobbleError as exc:
        return _error(exc)
    status = 201 if result.created else 200
    return Status(status, {"accepted": len(result.created), "duplicates": result.duplicates,
                           "plays": [play_out(p) for p in result.created]})


class HistoryFilter(Schema):
    limit: int = 50
    before: str | None = None


@router.get("/scrobbles", response={200: dict, **ERRORS}, summary="Your plays, newest first")
def scrobbles_list(request, filters: Query[HistoryFilter]):
    if not 1 <= filters.limit <= 500:
        return _error(ScrobbleError("invalid", "limit is from 1 to 500."))
    try:
        before = parse_played_at(filters.before, field="before") if filters.before else None
    except ItemError as exc:
        return _error(ScrobbleError("invalid", exc.message, field="before"))
    plays = selectors.history(user=request.auth, limit=filters.limit, before=before)
    return {"plays": [play_out(p) for p in plays],
            "next_before": plays[-1].played_at.isoformat() if len(plays) == filters.limit else None}


@router.get("/links", response=list[dict], summary="Your linked services and their delivery status")
def links(request):
    return selectors.link_statuses(user=request.auth)


class TokenLinkIn(Schema):
    token: str
    api_root: str = ""


@router.post("/links/{service}", response={201: dict, **ERRORS, 502: ErrorOut},
             summary="Link a service taking a token (ListenBrainz, or a compatible server); the token is checked "
                     "first")
def link(request, service: str, payload: TokenLinkIn):
    try:
        linked = link_token(user=request.auth, service=service, token=payload.token, api_root=payload.api_root)
    except ScrobbleError as exc:
        return _error(exc)
    return Status(201, _link_status(request.auth, linked.service))


@router.delete("/links/{service}", response={200: dict, **ERRORS},
               summary="Unlink a service; plays waiting for it are kept for a later link")
def unlink(request, service: str):
    try:
        link_remove(user=request.auth, service=service)
    except ScrobbleError as exc:
        return _error(exc)
    return _link_status(request.auth, service)


def _link_status(user, service: str) -> dict:
    return next(s for s in selectors.link_statuses(user=user) if s["service"] == service)


def _source(request) -> str:
    """Plays from the web player (session) are the library's; from a token, the API's."""
    return Play.Source.LIBRARY if request.user.is_authenticated and "Authorization" not in request.headers \
        else Play.Source.API
