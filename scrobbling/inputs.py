"""What a scrobble is, before it is recorded: the plays a client sends, checked.

PlayInput is one play to record, already validated; ScrobbleError refuses a request as a
whole (with the per-item problems of a list), ItemError one item of it. The rule that makes
a play count (play_counts: over 30 s, played for half the track or 4 minutes) is here, and
the parsing of the scrobble API's items and of listens in ListenBrainz's format, matched to
library tracks. Nothing here writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from catalog import selectors as catalog
from catalog.keys import UNKNOWN_ARTIST, fold, match_key
from project.refusals import Refusal
from scrobbling.models import Play

if TYPE_CHECKING:
    from catalog.models import Track

MAX_PLAYS_PER_REQUEST = 1000
MAX_ID = 2**53 - 1  # ids a JSON number carries exactly; a larger one names no row
MIN_TRACK_S = 30.0  # tracks this short or shorter are never scrobbled
PLAYED_ENOUGH_S = 240.0  # or half the track, whichever comes first
EARLIEST_PLAY = datetime(2002, 10, 1, tzinfo=UTC)  # the first scrobble ever
FUTURE_SLACK = timedelta(hours=1)
MAX_DURATION_S = 7 * 24 * 3600  # a longer "track" is a mistake, and is ignored


class ScrobbleError(Refusal):
    """A request refused as a whole; `rejected` lists per-item problems of a list."""

    HTTP_STATUS = {"invalid": 400, "forbidden": 403, "not_found": 404, "duplicate": 409, "not_linked": 404,
                   "too_many": 413, "service": 502}

    def __init__(self, code: str, message: str, *, rejected: list[dict] | None = None, field: str = ""):
        super().__init__(code, message, field=field)  # field: "" when no one request field is at fault
        self.rejected = rejected or []

    def as_dict(self) -> dict:
        body = {"error": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        if self.rejected:
            body["rejected"] = self.rejected
        return body


class ItemError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class PlayInput:
    """One play to record, already validated."""

    played_at: datetime
    artist_name: str
    track_title: str
    source: str
    track: Track | None = None
    album_title: str = ""
    recording_mbid: str = ""
    duration_s: float | None = None
    played_s: float | None = None
    room_id: int | None = None
    client: str = ""

    @classmethod
    def of_track(cls, track: Track, **kwargs) -> PlayInput:
        return cls(track=track, artist_name=track.artist.name, track_title=track.title,
                   album_title=track.album.title if track.album else "", recording_mbid=track.musicbrainz_id,
                   duration_s=track.duration_s, **kwargs)

    def key(self) -> tuple:
        if self.track is not None:
            return ("t", self.track.pk, self.played_at)
        return ("u", fold(self.artist_name), fold(self.track_title), self.played_at)

    @property
    def sendable(self) -> bool:
        """Unknown-artist plays are recorded here but never sent on."""
        artist = self.artist_name.strip()
        return bool(artist and self.track_title.strip()) and artist.casefold() != UNKNOWN_ARTIST.casefold()


def play_counts(*, duration_s: float, played_s: float | None) -> bool:
    """A play counts when the track is over 30 s and was played for half its length or 4 minutes."""
    if duration_s <= MIN_TRACK_S:
        return False
    return played_s is None or played_s >= min(duration_s / 2, PLAYED_ENOUGH_S)


def parse_played_at(value, *, now: datetime | None = None, field: str = "played_at") -> datetime:
    """ISO 8601 with a time zone, or Unix seconds; within the scrobbling era, at most 1 h
    ahead. `field` is the name the client gave the value, for the error message."""
    now = now or timezone.now()
    if isinstance(value, bool) or value is None or value == "":
        raise ItemError("invalid", f"{field} is required: ISO 8601 with a time zone, or Unix seconds.")
    if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
        value = float(value)
    if isinstance(value, (int, float)):
        try:
            played_at = datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ItemError("invalid", f"{field} {str(value)[:30]} is not a valid Unix time.") from None
    elif isinstance(value, str):
        try:
            played_at = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ItemError("invalid", f"{field} {value[:40]!r} is not ISO 8601 (e.g. 2026-11-23T13:05:00Z).") \
                from None
        if played_at.tzinfo is None:
            raise ItemError("invalid", f"{field} {value[:40]!r} needs a time zone (e.g. a trailing Z for UTC).")
    else:
        raise ItemError("invalid", f"{field} must be an ISO 8601 string or Unix seconds.")
    if played_at < EARLIEST_PLAY:
        raise ItemError("invalid", f"{field} is before 2002-10-01, older than scrobbling itself.")
    if played_at > now + FUTURE_SLACK:
        raise ItemError("invalid", f"{field} is more than an hour in the future.")
    return played_at


def validate_items(items: list, *, source: str) -> tuple[list[PlayInput], list[dict]]:
    """The scrobble API's items as plays, and the refused ones (index, error, message);
    a play repeated within the list is refused as a duplicate."""
    ids = {i for i in (item.get("track_id") for item in items if isinstance(item, dict))
           if isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID}
    tracks = catalog.tracks_by_id(ids=ids)
    now = timezone.now()
    plays: list[PlayInput] = []
    rejected: list[dict] = []
    seen: dict[tuple, int] = {}
    for index, item in enumerate(items):
        try:
            play = _validate_item(item, tracks=tracks, source=source, now=now)
            if play.key() in seen:
                raise ItemError("duplicate", f"Same track and played_at as item {seen[play.key()]}.")
            seen[play.key()] = index
            plays.append(play)
        except ItemError as exc:
            rejected.append({"index": index, "error": exc.code, "message": exc.message})
    return plays, rejected


def _validate_item(item, *, tracks: dict[int, Track], source: str, now: datetime) -> PlayInput:
    if not isinstance(item, dict):
        raise ItemError("invalid", "Each play is an object with track_id and played_at.")
    track_id = item.get("track_id")
    if track_id is None:
        raise ItemError("invalid", "track_id is required.")
    if not isinstance(track_id, int) or isinstance(track_id, bool):
        raise ItemError("invalid", "track_id must be a whole number.")
    if not 0 < track_id <= MAX_ID:
        raise ItemError("not_found", f"No track with id {str(track_id)[:30]}.")
    track = tracks.get(track_id)
    if track is None:
        raise ItemError("not_found", f"No track with id {track_id}.")
    played_at = parse_played_at(item.get("played_at"), now=now)
    played_s = item.get("played_s")
    if played_s is not None and (isinstance(played_s, bool) or not isinstance(played_s, (int, float))
                                 or not 0 <= played_s <= MAX_DURATION_S or not math.isfinite(played_s)):
        raise ItemError("invalid", f"played_s must be a number of seconds from 0 to {MAX_DURATION_S}.")
    if track.duration_s <= MIN_TRACK_S:
        raise ItemError("invalid", f"Track {track_id} lasts {track.duration_s:.0f} s: tracks of 30 s or less are not scrobbled.")
    if not play_counts(duration_s=track.duration_s, played_s=played_s):
        needed = min(track.duration_s / 2, PLAYED_ENOUGH_S)
        raise ItemError("invalid", f"Played {played_s:.0f} s of track {track_id}: a play counts from {needed:.0f} s "
                                   "(half the track or 4 minutes).")
    return PlayInput.of_track(track, played_at=played_at, played_s=None if played_s is None else float(played_s),
                              source=source)


# --- listens from outside players (the ListenBrainz-compatible endpoint) ----------

LISTEN_TYPES = {"single", "import", "playing_now"}


def parse_listens(*, listen_type, payload) -> list[PlayInput]:
    """A submit-listens body in ListenBrainz's format as plays, matched to library tracks
    by recording MBID, else by artist and title (case- and accent-insensitive); a listen that
    matches none is kept as it was sent."""
    if not isinstance(listen_type, str) or listen_type not in LISTEN_TYPES:
        raise ScrobbleError("invalid", "listen_type must be one of single, import, playing_now.")
    if not isinstance(payload, list) or not payload:
        raise ScrobbleError("invalid", "payload must be a non-empty list of listens.")
    if len(payload) > MAX_PLAYS_PER_REQUEST:
        raise ScrobbleError("invalid", f"Too many listens: at most {MAX_PLAYS_PER_REQUEST} per request.")
    if listen_type != "import" and len(payload) != 1:
        raise ScrobbleError("invalid", f"A {listen_type} submission has exactly one listen.")
    listens = []
    for index, listen in enumerate(payload):
        try:
            listens.append(_parse_listen(listen, timed=listen_type != "playing_now"))
        except ItemError as exc:
            raise ScrobbleError("invalid", f"Listen {index}: {exc.message}") from None
    _match_tracks(listens)
    return listens


def _parse_listen(listen, *, timed: bool) -> PlayInput:
    if not isinstance(listen, dict) or not isinstance(listen.get("track_metadata"), dict):
        raise ItemError("invalid", "each listen needs track_metadata.")
    meta = listen["track_metadata"]
    artist, title = meta.get("artist_name"), meta.get("track_name")
    if not isinstance(artist, str) or not artist.strip() or not isinstance(title, str) or not title.strip():
        raise ItemError("invalid", "track_metadata needs artist_name and track_name.")
    info = meta.get("additional_info") if isinstance(meta.get("additional_info"), dict) else {}
    played_at = timezone.now()
    if timed:
        listened_at = listen.get("listened_at")
        if listened_at is None:
            raise ItemError("invalid", "listened_at is required: the Unix time (seconds) the listen started.")
        if isinstance(listened_at, bool) or not isinstance(listened_at, (int, float)):
            raise ItemError("invalid", f"listened_at must be a whole number of Unix seconds, not "
                                       f"{_json_type(listened_at)}.")
        played_at = parse_played_at(listened_at, field="listened_at")
    duration_s = _seconds(info.get("duration_ms"), scale=1000)
    if duration_s is None:
        duration_s = _seconds(info.get("duration"))
    release = meta.get("release_name")
    mbid = info.get("recording_mbid")
    client = info.get("submission_client") or info.get("media_player") or ""
    return PlayInput(played_at=played_at, artist_name=artist.strip(), track_title=title.strip(),
                     album_title=release.strip() if isinstance(release, str) else "",
                     recording_mbid=mbid.strip()[:36] if isinstance(mbid, str) else "",
                     duration_s=float(duration_s) if duration_s else None, source=Play.Source.EXTERNAL,
                     client=client if isinstance(client, str) else "")


def _seconds(value, *, scale: float = 1) -> float | None:
    """A positive, finite length in seconds from a JSON number (anything else: unknown)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value) / scale
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) and 0 < seconds <= MAX_DURATION_S else None


def _json_type(value) -> str:
    return {str: "a string", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _match_tracks(plays: list[PlayInput]) -> None:
    """Fill in `track` of each play that is in the library (two queries per batch)."""
    by_mbid = catalog.tracks_by_mbid(mbids={p.recording_mbid for p in plays if p.recording_mbid})
    by_key = catalog.tracks_by_match_key(
        keys={match_key(p.artist_name, p.track_title) for p in plays if p.recording_mbid not in by_mbid})
    for play in plays:
        track = by_mbid.get(play.recording_mbid) or by_key.get(match_key(play.artist_name, play.track_title))
        if track is not None:
            play.track = track
            play.duration_s = play.duration_s or track.duration_s
            play.album_title = play.album_title or (track.album.title if track.album else "")

