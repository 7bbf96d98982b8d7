"""Every write to scrobbling: plays, now playing, and links to services.

A play is recorded once (unique per user, track and start time), in one transaction with
its play counts and one buffer row per linked service; delivery happens later in workers
(scrobbling.delivery). Nothing here waits for an outside service, except linking, which
checks the credentials the user gives.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from catalog.models import UNKNOWN_ARTIST, Album, Artist, Track, fold, match_key
from project import metrics, outbound
from project.outside import UnknownService
from project.realtime import sync_redis
from scrobbling import tasks
from scrobbling.clients import AuthExpired, ClientError, NotAllowed, ScrobblingClient, registry
from scrobbling.models import BufferEntry, Play, ScrobblerLink

logger = logging.getLogger(__name__)

MAX_PLAYS_PER_REQUEST = 1000
MAX_ID = 2**53 - 1  # ids a JSON number carries exactly; a larger one names no row
MIN_TRACK_S = 30.0  # tracks this short or shorter are never scrobbled
PLAYED_ENOUGH_S = 240.0  # or half the track, whichever comes first
EARLIEST_PLAY = datetime(2002, 10, 1, tzinfo=UTC)  # the first scrobble ever
FUTURE_SLACK = timedelta(hours=1)
NOW_PLAYING_PAUSED_TTL_S = 30 * 60
UNKNOWN_LENGTH_NOW_PLAYING_TTL_S = 10 * 60
NOW_PLAYING_KEY = "chorus:nowplaying"


class ScrobbleError(Exception):
    """A request refused as a whole; `rejected` lists per-item problems of a list."""

    HTTP_STATUS = {"invalid": 400, "forbidden": 403, "not_found": 404, "duplicate": 409, "not_linked": 404,
                   "too_many": 413, "service": 502}

    def __init__(self, code: str, message: str, *, rejected: list[dict] | None = None, field: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.rejected = rejected or []
        self.field = field  # the request field at fault, when there is one

    @property
    def http_status(self) -> int:
        return self.HTTP_STATUS.get(self.code, 400)

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


@dataclass
class RecordResult:
    created: list[Play] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)  # indexes of plays already recorded


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


# --- recording ---------------------------------------------------------------------


def scrobbles_submit(*, user, items: list[dict] | dict, source: str = Play.Source.API) -> RecordResult:
    """The scrobble API: one play or a list of up to 1000. Every item is validated first; if
    any is refused, nothing is recorded and the error lists each refused item."""
    single = isinstance(items, dict)
    items = [items] if single else items
    if not isinstance(items, list) or not items:
        raise ScrobbleError("invalid", "Send a play object or a non-empty list of them.")
    if len(items) > MAX_PLAYS_PER_REQUEST:
        raise ScrobbleError("too_many", f"At most {MAX_PLAYS_PER_REQUEST} plays per request; got {len(items)}.")
    plays, rejected = _validate_items(items, source=source)
    if rejected:
        if single:
            raise ScrobbleError(rejected[0]["error"], rejected[0]["message"])
        raise ScrobbleError("invalid", f"{len(rejected)} of {len(items)} plays were refused; nothing was recorded.",
                            rejected=rejected)
    result = plays_record(user=user, plays=plays)
    if single and result.duplicates:
        raise ScrobbleError("duplicate", "This play is already recorded (same track and played_at).")
    return result


def _validate_items(items: list, *, source: str) -> tuple[list[PlayInput], list[dict]]:
    ids = {i for i in (item.get("track_id") for item in items if isinstance(item, dict))
           if isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID}
    tracks = Track.objects.select_related("artist", "album").in_bulk(ids) if ids else {}
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


def plays_record(*, user, plays: list[PlayInput]) -> RecordResult:
    """Record validated plays: history rows, play counts, one buffer row per linked service,
    all in one transaction; plays already recorded are left alone and reported."""
    return _record_retrying([(user.pk, play) for play in plays])


def plays_record_for_users(*, user_ids: list[int], play: PlayInput) -> RecordResult:
    """The same play for several people at once (a room): a handful of queries whatever
    their number."""
    return _record_retrying([(user_id, play) for user_id in sorted(user_ids)])


# On PostgreSQL a recording is one SQL statement (see _record_in_one_statement); False
# forces the portable ORM path everywhere (the tests run both).
ONE_STATEMENT = True
DEADLOCK_RETRIES = 3


def _record_retrying(pairs: list[tuple[int, PlayInput]]) -> RecordResult:
    if ONE_STATEMENT and connection.vendor == "postgresql":
        for attempt in range(DEADLOCK_RETRIES):
            try:
                return _record_in_one_statement(pairs)
            except OperationalError as exc:
                # Two lists counting the same tracks at once may lock rows in opposite
                # orders; PostgreSQL aborts one, which simply runs again.
                if getattr(exc.__cause__, "sqlstate", None) != "40P01" or attempt == DEADLOCK_RETRIES - 1:
                    raise
    try:
        return _record(pairs)
    except IntegrityError:
        # The same play arrived twice at once (two processes, a retried request): the
        # other transaction won; now the duplicates are visible and skipped.
        return _record(pairs)


PLAY_COLUMNS = ("user_id", "track_id", "artist_name", "track_title", "album_title", "recording_mbid", "match_key",
                "duration_s", "played_at", "played_s", "source", "room_id", "client", "sent_on", "created_at")
# Every table and column name below is a constant; values only travel as parameters.
ONE_STATEMENT_SQL = """
WITH ins AS (
    INSERT INTO scrobbling_play ({columns}) VALUES {values}
    ON CONFLICT DO NOTHING
    RETURNING id, user_id, track_id, artist_name, track_title, played_at, sent_on
), tracks AS (
    SELECT tr.id, tr.album_id, tr.artist_id FROM ins JOIN catalog_track tr ON tr.id = ins.track_id
), track_counts AS (
    UPDATE catalog_track x SET play_count = x.play_count + c.n
    FROM (SELECT id, count(*) AS n FROM tracks GROUP BY id) c WHERE x.id = c.id
), album_counts AS (
    UPDATE catalog_album x SET play_count = x.play_count + c.n
    FROM (SELECT album_id AS id, count(*) AS n FROM tracks WHERE album_id IS NOT NULL GROUP BY album_id) c
    WHERE x.id = c.id
), artist_counts AS (
    UPDATE catalog_artist x SET play_count = x.play_count + c.n
    FROM (SELECT artist_id AS id, count(*) AS n FROM tracks GROUP BY artist_id) c WHERE x.id = c.id
), buffered AS (
    INSERT INTO scrobbling_bufferentry (user_id, service, play_id, played_at, enqueued_at, attempts, lease_token)
    SELECT ins.user_id, link.service, ins.id, ins.played_at, now(), 0, ''
    FROM ins JOIN scrobbling_scrobblerlink link ON link.user_id = ins.user_id
    WHERE ins.sent_on
    RETURNING user_id, service
)
SELECT id, user_id, track_id, artist_name, track_title, played_at, NULL, 0 FROM ins
UNION ALL
SELECT NULL, user_id, NULL, NULL, NULL, NULL, service, count(*) FROM buffered GROUP BY user_id, service
"""


def _record_in_one_statement(pairs: list[tuple[int, PlayInput]]) -> RecordResult:
    """_record in a single statement (PostgreSQL): the play rows (ON CONFLICT DO NOTHING
    skips plays already recorded), the three play counts and the buffer rows, in one round
    trip that is atomic by itself. This is the submit path's cost (docs/benchmarks.md)."""
    now = timezone.now()
    rows = [_play_row(user_id, p, created_at=now) for user_id, p in pairs]
    placeholders = "(" + ", ".join(["%s"] * len(PLAY_COLUMNS)) + ")"
    sql = ONE_STATEMENT_SQL.format(columns=", ".join(PLAY_COLUMNS), values=", ".join([placeholders] * len(rows)))
    params = [getattr(row, column) for row in rows for column in PLAY_COLUMNS]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        answer = cursor.fetchall()
    inserted = {tuple(key): play_id for play_id, *key, _, _ in answer if play_id is not None}
    result = RecordResult()
    for index, row in enumerate(rows):
        play_id = inserted.pop((row.user_id, row.track_id, row.artist_name, row.track_title, row.played_at), None)
        if play_id is None:
            result.duplicates.append(index)
        else:
            row.pk = play_id
            row._state.adding = False
            result.created.append(row)
    _kick(Counter({(user_id, service): n for _, user_id, *_, service, n in answer if service is not None}))
    return result


def _record(pairs: list[tuple[int, PlayInput]]) -> RecordResult:
    result = RecordResult()
    with transaction.atomic():
        existing = _existing_keys(pairs)
        fresh = []
        for index, (user_id, play) in enumerate(pairs):
            if (user_id, *play.key()) in existing:
                result.duplicates.append(index)
            else:
                fresh.append((user_id, play))
        if not fresh:
            return result
        rows = Play.objects.bulk_create([_play_row(user_id, p) for user_id, p in fresh])
        _count_plays([p.track for _, p in fresh if p.track is not None])
        links: dict[int, list[str]] = {}
        for user_id, service in ScrobblerLink.objects.filter(user_id__in={u for u, _ in fresh}).values_list(
            "user_id", "service"
        ):
            links.setdefault(user_id, []).append(service)
        entries = [BufferEntry(user_id=row.user_id, service=service, play=row, played_at=row.played_at)
                   for row in rows if row.sent_on for service in links.get(row.user_id, [])]
        BufferEntry.objects.bulk_create(entries)
        result.created = rows
        _kick(Counter((e.user_id, e.service) for e in entries))
    return result


def _play_row(user_id: int, p: PlayInput, **extra) -> Play:
    artist_name, track_title = p.artist_name[:300], p.track_title[:500]
    return Play(user_id=user_id, track=p.track, artist_name=artist_name, track_title=track_title,
                album_title=p.album_title[:300], recording_mbid=p.recording_mbid[:36],
                match_key=match_key(artist_name, track_title), duration_s=p.duration_s,
                played_at=p.played_at, played_s=p.played_s, source=p.source, room_id=p.room_id,
                client=p.client[:100], sent_on=p.sendable, **extra)


def _kick(buffered: Counter) -> None:
    """After commit: a drain for each (user, service) that got plays, and the metrics."""
    from scrobbling import delivery

    if buffered:
        delivery.kick_many_on_commit(sorted(buffered))
    per_service = Counter()
    for (_, service), count in buffered.items():
        per_service[service] += count
    transaction.on_commit(lambda: [metrics.scrobbles_buffered.labels(service=s).inc(n) for s, n in per_service.items()])


def _existing_keys(pairs: list[tuple[int, PlayInput]]) -> set[tuple]:
    times = {p.played_at for _, p in pairs}
    matched = {p.track.pk for _, p in pairs if p.track is not None}
    keys: set[tuple] = set()
    query = Play.objects.filter(user_id__in={u for u, _ in pairs}, played_at__in=times)
    if matched:
        for user_id, track_id, played_at in query.filter(track_id__in=matched).values_list(
            "user_id", "track_id", "played_at"
        ):
            keys.add((user_id, "t", track_id, played_at))
    if any(p.track is None for _, p in pairs):
        for user_id, artist, title, played_at in query.filter(track__isnull=True).values_list(
            "user_id", "artist_name", "track_title", "played_at"
        ):
            keys.add((user_id, "u", fold(artist), fold(title), played_at))
    return keys


def _count_plays(tracks: list[Track]) -> None:
    """Add one play per track to track, album and artist counts, ids in order so that
    concurrent transactions lock rows in the same order. On PostgreSQL the three tables
    are updated in one statement (one round trip on the submit path)."""
    counts = [
        (Track, sorted(Counter(t.pk for t in tracks).items())),
        (Album, sorted(Counter(t.album_id for t in tracks if t.album_id).items())),
        (Artist, sorted(Counter(t.artist_id for t in tracks).items())),
    ]
    counts = [(model, pairs) for model, pairs in counts if pairs]
    if not counts:  # only unmatched plays: nothing to count
        return
    if connection.vendor == "postgresql":
        parts, params = [], []
        for model, pairs in counts:
            values = ", ".join(["(%s::bigint, %s::integer)"] * len(pairs))
            # Only table names of our models and %s placeholders go into the text.
            parts.append(f"UPDATE {model._meta.db_table} AS t SET play_count = t.play_count + v.n "  # noqa: S608
                         f"FROM (VALUES {values}) AS v(id, n) WHERE t.id = v.id")
            params += [value for pair in pairs for value in pair]
        *first, last = parts
        sql = ("WITH " + ", ".join(f"u{i} AS ({part})" for i, part in enumerate(first)) + " " if first else "") + last
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        return
    for model, pairs in counts:
        by_amount: dict[int, list[int]] = {}
        for pk, amount in pairs:
            by_amount.setdefault(amount, []).append(pk)
        for amount, pks in by_amount.items():
            model.objects.filter(pk__in=pks).update(play_count=F("play_count") + amount)


# --- listens from outside players (the ListenBrainz-compatible endpoint) ----------

LISTEN_TYPES = {"single", "import", "playing_now"}


def listens_submit(*, user, listen_type, payload) -> RecordResult | None:
    """Listens in ListenBrainz's format. Matched to library tracks by recording MBID, else
    by artist and title (case- and accent-insensitive); unmatched listens are kept too."""
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
    if listen_type == "playing_now":
        play = listens[0]
        if play.track is not None:
            now_playing_set(user=user, track=play.track, source=Play.Source.EXTERNAL)
        else:
            now_playing_listen(user=user, play=play)
        return None
    seen: set[tuple] = set()
    unique = [p for p in listens if not (p.key() in seen or seen.add(p.key()))]
    return plays_record(user=user, plays=unique)


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


MAX_DURATION_S = 7 * 24 * 3600  # a longer "track" is a mistake, and is ignored


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
    tracks = Track.objects.select_related("artist", "album")
    mbids = {p.recording_mbid for p in plays if p.recording_mbid}
    by_mbid = {t.musicbrainz_id: t for t in tracks.filter(musicbrainz_id__in=mbids)} if mbids else {}
    keys = {match_key(p.artist_name, p.track_title) for p in plays if p.recording_mbid not in by_mbid}
    by_key = {}
    for track in tracks.filter(match_key__in=keys).order_by("-id") if keys else []:
        by_key[track.match_key] = track
    for play in plays:
        track = by_mbid.get(play.recording_mbid) or by_key.get(match_key(play.artist_name, play.track_title))
        if track is not None:
            play.track = track
            play.duration_s = play.duration_s or track.duration_s
            play.album_title = play.album_title or (track.album.title if track.album else "")


# --- now playing ---------------------------------------------------------------------


def now_playing_set(*, user, track: Track, position_s: float = 0.0, rate: float = 1.0, paused: bool = False,
                    source: str = Play.Source.API, room=None) -> dict:
    """Remember what `user` is playing (TTL: the time left, + 5 s; 30 min while paused) and,
    at the start of a track, send it on to the user's services once."""
    if isinstance(position_s, bool) or not isinstance(position_s, (int, float)) \
            or not 0 <= position_s <= MAX_DURATION_S:
        raise ScrobbleError("invalid", "position_s must be a number of seconds from 0.", field="position_s")
    return now_playing_set_many(users=[user], track=track, position_s=float(position_s), rate=rate, paused=paused,
                                source=source, room=room)[0]


def now_playing_set_many(*, users: list, track: Track, position_s: float, rate: float = 1.0, paused: bool = False,
                         source: str, room=None) -> list[dict]:
    """now_playing_set for several people at once (a room's members): one Redis round trip
    to read, one to write."""
    if not users:
        return []
    position_s = min(position_s, track.duration_s)
    now_ms = int(timezone.now().timestamp() * 1000)
    ttl_s = NOW_PLAYING_PAUSED_TTL_S if paused else (track.duration_s - position_s) / max(rate, 0.01) + 5
    base = {
        "track_id": track.pk, "title": track.title, "artist": track.artist.name,
        "album": track.album.title if track.album else "", "duration_s": track.duration_s, "position_s": position_s,
        "at_ms": now_ms, "paused": paused, "source": source,
        "room": {"id": room.pk, "name": room.name, "slug": room.slug, "private": room.visibility == "private"}
        if room else None,
    }
    entries = [dict(base, user_id=user.pk, username=user.get_username()) for user in users]
    redis = sync_redis()
    previous = redis.hmget(NOW_PLAYING_KEY, [str(user.pk) for user in users])
    pipe = redis.pipeline(transaction=False)
    pipe.hset(NOW_PLAYING_KEY, mapping={str(e["user_id"]): json.dumps(e) for e in entries})
    pipe.zadd(NOW_PLAYING_KEY + ":expires", {str(e["user_id"]): now_ms + int(ttl_s * 1000) for e in entries})
    pipe.execute()
    sendable = PlayInput.of_track(track, played_at=timezone.now(), source=source).sendable
    starters = [e["user_id"] for e, before in zip(entries, previous, strict=True) if _is_new_start(before, e)]
    if not paused and sendable and starters:
        linked = set(ScrobblerLink.objects.filter(user_id__in=starters, status=ScrobblerLink.Status.ACTIVE)
                     .values_list("user_id", flat=True))
        for user_id in sorted(linked):
            tasks.send_now_playing.delay_on_commit(user_id, track.pk)
    return entries


def now_playing_listen(*, user, play: PlayInput) -> dict:
    """Now playing from an outside player for a track that is not in the library: shown
    like the others (without a link to a track) for its duration, or 10 minutes when the
    player did not say, and sent on to the user's services at its start."""
    now_ms = int(timezone.now().timestamp() * 1000)
    entry = {"track_id": None, "title": play.track_title, "artist": play.artist_name, "album": play.album_title,
             "duration_s": play.duration_s, "position_s": 0.0, "at_ms": now_ms, "paused": False,
             "source": Play.Source.EXTERNAL, "room": None, "user_id": user.pk, "username": user.get_username()}
    ttl_s = (play.duration_s or UNKNOWN_LENGTH_NOW_PLAYING_TTL_S) + 5
    redis = sync_redis()
    previous = redis.hget(NOW_PLAYING_KEY, str(user.pk))
    pipe = redis.pipeline(transaction=False)
    pipe.hset(NOW_PLAYING_KEY, str(user.pk), json.dumps(entry))
    pipe.zadd(NOW_PLAYING_KEY + ":expires", {str(user.pk): now_ms + int(ttl_s * 1000)})
    pipe.execute()
    if play.sendable and _is_new_start(previous, entry) and ScrobblerLink.objects.filter(
        user=user, status=ScrobblerLink.Status.ACTIVE
    ).exists():
        listen = {"artist": play.artist_name, "title": play.track_title, "album": play.album_title,
                  "duration_s": play.duration_s, "mbid": play.recording_mbid}
        tasks.send_now_playing.delay_on_commit(user.pk, None, listen)
    return entry


def _is_new_start(previous: bytes | None, entry: dict) -> bool:
    if previous is None:
        return True
    before = json.loads(previous)
    if (before["track_id"], before.get("title"), before.get("artist")) != (entry["track_id"], entry["title"],
                                                                           entry["artist"]):
        return True
    elapsed_s = 0 if before["paused"] else (entry["at_ms"] - before["at_ms"]) / 1000
    expected_s = before["position_s"] + elapsed_s
    # The same track again from (near) its start: a new play of it.
    return entry["position_s"] < 5 and expected_s > entry["position_s"] + 10


def now_playing_clear(*, user_id: int) -> None:
    pipe = sync_redis().pipeline(transaction=False)
    pipe.hdel(NOW_PLAYING_KEY, str(user_id))
    pipe.zrem(NOW_PLAYING_KEY + ":expires", str(user_id))
    pipe.execute()


def now_playing_expire() -> int:
    """Drop the entries whose time ran out (the beat's sweep, every minute); how many."""
    redis = sync_redis()
    now_ms = int(timezone.now().timestamp() * 1000)
    expired = redis.zrangebyscore(NOW_PLAYING_KEY + ":expires", "-inf", now_ms)
    if expired:
        pipe = redis.pipeline(transaction=False)
        pipe.hdel(NOW_PLAYING_KEY, *expired)
        pipe.zrem(NOW_PLAYING_KEY + ":expires", *expired)
        pipe.execute()
    return len(expired)


def now_playing_list() -> list[dict]:
    """Who is listening to what right now. A pure read: entries whose time ran out are left
    out here and deleted by now_playing_expire."""
    redis = sync_redis()
    now_ms = int(timezone.now().timestamp() * 1000)
    pipe = redis.pipeline(transaction=False)
    pipe.zrangebyscore(NOW_PLAYING_KEY + ":expires", "-inf", now_ms)
    pipe.hgetall(NOW_PLAYING_KEY)
    expired, current = pipe.execute()
    expired = set(expired)
    entries = [json.loads(value) for user_id, value in current.items() if user_id not in expired]
    for entry in entries:
        if not entry["paused"]:
            position_s = entry["position_s"] + (now_ms - entry["at_ms"]) / 1000
            entry["position_s"] = min(entry["duration_s"], position_s) if entry["duration_s"] else position_s
    return sorted(entries, key=lambda e: (e["paused"], e["username"]))


# --- rooms ---------------------------------------------------------------------------


def room_playback_changed(*, state, online_user_ids: set[int]) -> None:
    """A room's playback changed: its members online see it as their now playing."""
    from django.contrib.auth import get_user_model

    if not online_user_ids:
        return
    if state.entry is None or state.status == "stopped":
        for user_id in online_user_ids:
            now_playing_clear(user_id=user_id)
        return
    now = int(timezone.now().timestamp() * 1000)
    now_playing_set_many(users=list(get_user_model().objects.filter(pk__in=online_user_ids)), track=state.entry.track,
                         position_s=state.position_at(now), rate=state.rate, paused=state.status != "playing",
                         source=Play.Source.ROOM, room=state.room)


def room_now_playing_users() -> dict[int, set[int]]:
    """Who shows a room as their now playing: {room id: user ids}."""
    rooms: dict[int, set[int]] = {}
    for user_id, value in sync_redis().hgetall(NOW_PLAYING_KEY).items():
        room = json.loads(value).get("room")
        if room:
            rooms.setdefault(room["id"], set()).add(int(user_id))
    return rooms


def room_now_playing_clear(*, room_id: int, user_ids: set[int]) -> int:
    """These people left room `room_id`: clear their now playing if it is still that room's
    (not if they have moved on to something else meanwhile). Returns how many were cleared."""
    if not user_ids:
        return 0
    redis = sync_redis()
    keys = [str(user_id) for user_id in sorted(user_ids)]
    gone = [key for key, value in zip(keys, redis.hmget(NOW_PLAYING_KEY, keys), strict=True)
            if value is not None and (json.loads(value).get("room") or {}).get("id") == room_id]
    if gone:
        pipe = redis.pipeline(transaction=False)
        pipe.hdel(NOW_PLAYING_KEY, *gone)
        pipe.zrem(NOW_PLAYING_KEY + ":expires", *gone)
        pipe.execute()
    return len(gone)


def room_scrobble(*, state, online_user_ids: set[int]) -> int:
    """Scrobble the room's current play for every member online now, once it has been played
    long enough. The play's start time makes it unique, so however many processes ask,
    each member gets one scrobble per play. Returns how many were recorded."""
    from django.contrib.auth import get_user_model

    if state.status != "playing" or state.entry is None or state.started_at is None or not online_user_ids:
        return 0
    track = state.entry.track
    played_s = state.heard_at(int(timezone.now().timestamp() * 1000))
    if not play_counts(duration_s=track.duration_s, played_s=played_s):
        return 0
    user_ids = list(get_user_model().objects.filter(pk__in=online_user_ids, is_active=True).values_list("pk", flat=True))
    play = PlayInput.of_track(track, played_at=state.started_at, played_s=played_s, source=Play.Source.ROOM,
                              room_id=state.room_id)
    return len(plays_record_for_users(user_ids=user_ids, play=play).created)


# --- links ---------------------------------------------------------------------------


def scrobbler(service: str) -> type[ScrobblingClient]:
    """The registered client class of a service name a user gave (404 when there is none)."""
    try:
        return registry.get(service)
    except UnknownService:
        raise ScrobbleError("not_found", f"No scrobbling service called {str(service)[:50]!r}.") from None


def _client_of(kind: type[ScrobblingClient], *, api_root: str = "") -> ScrobblingClient:
    if not kind.configured():
        raise ScrobbleError("not_linked", kind.not_configured_message())
    return kind.build(api_root=api_root)


def connect_url(*, service: str, callback_url: str) -> str:
    """Where to send the user to allow this server, for a service linked in the browser."""
    kind = scrobbler(service)
    if kind.auth != "web":
        raise ScrobbleError("invalid", f"{kind.label} is linked with a token, not in the browser.")
    _client_of(kind).close()  # raises when the service is not configured
    return kind.connect_url(callback_url=callback_url)


def link_web(*, user, service: str, token: str | None = None, session_key: str | None = None) -> ScrobblerLink:
    """Link a service of the Last.fm kind from an authorised web-auth token (exchanged for a
    session key) or from a session key obtained elsewhere (checked with the service)."""
    kind = scrobbler(service)
    if kind.auth != "web":
        raise ScrobbleError("invalid", f"{kind.label} is linked with a token.")
    if not (token or session_key):
        raise ScrobbleError("invalid", f"Give the token {kind.label} sent back or a session key.")
    with _checking(_client_of(kind), refused=f"{kind.label} did not accept that authorisation; try connecting "
                                             "again.") as client:
        name, session_key = client.link_token(token) if token else (client.check(session_key), session_key)
    return _link_save(user=user, service=kind.name, account_name=name, secret=session_key)


TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII: what fits in an Authorization header
TOKEN_MAX_CHARS = 200
API_ROOT_MAX_CHARS = 300  # ScrobblerLink.api_root


def link_token(*, user, service: str, token: str, api_root: str = "") -> ScrobblerLink:
    """Link a service the user pastes a token for (ListenBrainz, or a compatible server of
    theirs at `api_root`); the token is checked with the service first."""
    kind = scrobbler(service)
    if kind.auth != "token":
        raise ScrobbleError("invalid", f"{kind.label} is linked in the browser (/scrobbling/{kind.name}/connect) or "
                                       "with manage.py link_scrobbler.")
    token = (token or "").strip()
    api_root = (api_root or "").strip().rstrip("/")
    if not token:
        raise ScrobbleError("invalid", "Paste your ListenBrainz user token (listenbrainz.org/settings).", field="token")
    if len(token) > TOKEN_MAX_CHARS or not TOKEN_CHARS.fullmatch(token):
        raise ScrobbleError("invalid", "That is not a user token: a token is letters, digits and punctuation "
                                       f"(no spaces or accented letters), at most {TOKEN_MAX_CHARS} characters.",
                            field="token")
    if api_root:
        if len(api_root) > API_ROOT_MAX_CHARS:
            raise ScrobbleError("invalid", f"The server address is longer than {API_ROOT_MAX_CHARS} characters.",
                                field="api_root")
        try:
            outbound.check_url(api_root)
        except outbound.URLRefused as exc:
            raise ScrobbleError("invalid", str(exc), field="api_root") from None
    with _checking(_client_of(kind, api_root=api_root), refused=f"{kind.label} says this token is not valid.") \
            as client:
        name = client.check(token)
    return _link_save(user=user, service=kind.name, account_name=name, secret=token, api_root=api_root)


@contextlib.contextmanager
def _checking(client: ScrobblingClient, *, refused: str):
    """Use `client` to check credentials: a refusal or an unreachable service becomes a
    ScrobbleError the user can read; the client is closed in any case."""
    service = client.label
    try:
        yield client
    except AuthExpired:
        raise ScrobbleError("forbidden", refused, field="token") from None
    except NotAllowed as exc:
        raise ScrobbleError("invalid", str(exc), field="api_root") from None
    except ClientError as exc:
        raise ScrobbleError("service", f"{service} could not be reached to check the link ({exc}); try again.") \
            from None
    finally:
        client.close()


def _link_save(*, user, service: str, account_name: str, secret: str, api_root: str = "") -> ScrobblerLink:
    from scrobbling import delivery

    with transaction.atomic():
        link, _ = ScrobblerLink.objects.update_or_create(
            user=user, service=service,
            defaults={"account_name": account_name[:100], "secret": secret, "api_root": api_root,
                      "status": ScrobblerLink.Status.ACTIVE, "paused_reason": "", "paused_at": None,
                      "failures": 0, "retry_at": None, "last_error": ""},
        )
        delivery.kick_on_commit(user_id=user.pk, service=service)  # plays kept while paused go out now
    return link


def link_remove(*, user, service: str) -> int:
    """Unlink a service. Plays still waiting for it stay and go out if it is linked again
    (or are discarded with buffer_discard); returns how many wait."""
    deleted, _ = ScrobblerLink.objects.filter(user=user, service=service).delete()
    if not deleted:
        raise ScrobbleError("not_linked", f"{scrobbler(service).label} is not linked.")
    return BufferEntry.objects.filter(user=user, service=service).count()


def buffer_discard(*, user, service: str) -> int:
    """Drop the plays waiting for an unlinked service (the history keeps them)."""
    if ScrobblerLink.objects.filter(user=user, service=service).exists():
        raise ScrobbleError("invalid", "Plays for a linked service are being sent; unlink it first.")
    deleted, _ = BufferEntry.objects.filter(user=user, service=service).delete()
    return deleted


def link_pause(*, link: ScrobblerLink, reason: str) -> None:
    ScrobblerLink.objects.filter(pk=link.pk).update(
        status=ScrobblerLink.Status.PAUSED, paused_reason=reason[:300], paused_at=timezone.now()
    )

