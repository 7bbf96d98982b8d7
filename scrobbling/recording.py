"""Recording plays: the history rows, the play counts and the delivery buffer.

A play is recorded once (unique per user, track and start time), in one transaction with
its play counts (catalog's tables, written by catalog's code: catalog.services.tracks_played,
or on PostgreSQL its clauses tracks_played_sql inside the recording statement) and one
buffer row per linked service; delivery happens later in workers (scrobbling.delivery,
started through scrobbling.kicks). Nothing here waits for an outside service.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from catalog import services as catalog
from catalog.keys import fold, match_key
from project import metrics
from scrobbling import kicks, nowplaying
from scrobbling.inputs import MAX_PLAYS_PER_REQUEST, PlayInput, ScrobbleError, parse_listens, validate_items
from scrobbling.models import BufferEntry, Play, ScrobblerLink


@dataclass
class RecordResult:
    created: list[Play] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)  # indexes of plays already recorded


def scrobbles_submit(*, user, items: list[dict] | dict, source: str = Play.Source.API) -> RecordResult:
    """The scrobble API: one play or a list of up to 1000. Every item is validated first; if
    any is refused, nothing is recorded and the error lists each refused item."""
    single = isinstance(items, dict)
    items = [items] if single else items
    if not isinstance(items, list) or not items:
        raise ScrobbleError("invalid", "Send a play object or a non-empty list of them.")
    if len(items) > MAX_PLAYS_PER_REQUEST:
        raise ScrobbleError("too_many", f"At most {MAX_PLAYS_PER_REQUEST} plays per request; got {len(items)}.")
    plays, rejected = validate_items(items, source=source)
    if rejected:
        if single:
            raise ScrobbleError(rejected[0]["error"], rejected[0]["message"])
        raise ScrobbleError("invalid", f"{len(rejected)} of {len(items)} plays were refused; nothing was recorded.",
                            rejected=rejected)
    result = plays_record(user=user, plays=plays)
    if single and result.duplicates:
        raise ScrobbleError("duplicate", "This play is already recorded (same track and played_at).")
    return result


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
# Every table and column name below is a constant (catalog's play counts are catalog's SQL:
# catalog.services.tracks_played_sql); values only travel as parameters.
ONE_STATEMENT_SQL = """
WITH ins AS (
    INSERT INTO scrobbling_play ({columns}) VALUES {values}
    ON CONFLICT DO NOTHING
    RETURNING id, user_id, track_id, artist_name, track_title, played_at, sent_on
), {counts}, buffered AS (
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


COUNTED = "(SELECT track_id, count(*) FROM ins WHERE track_id IS NOT NULL GROUP BY track_id)"  # plays per track


def _record_in_one_statement(pairs: list[tuple[int, PlayInput]]) -> RecordResult:
    """_record in a single statement (PostgreSQL): the play rows (ON CONFLICT DO NOTHING
    skips plays already recorded), their play counts (catalog's clauses:
    catalog.services.tracks_played_sql) and the buffer rows, in one round trip that is atomic
    by itself. This is the submit path's cost (docs/benchmarks.md)."""
    now = timezone.now()
    rows = [_play_row(user_id, p, created_at=now) for user_id, p in pairs]
    placeholders = "(" + ", ".join(["%s"] * len(PLAY_COLUMNS)) + ")"
    sql = ONE_STATEMENT_SQL.format(columns=", ".join(PLAY_COLUMNS), values=", ".join([placeholders] * len(rows)),
                                   counts=catalog.tracks_played_sql(source=COUNTED))
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
        catalog.tracks_played(counts=Counter(p.track.pk for _, p in fresh if p.track is not None))
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
    if buffered:
        kicks.kick_many_on_commit(sorted(buffered))
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


def listens_submit(*, user, listen_type, payload) -> RecordResult | None:
    """Listens in ListenBrainz's format (scrobbling.inputs.parse_listens): recorded, or for
    `playing_now` shown as the user's now playing; unmatched listens are kept too."""
    listens = parse_listens(listen_type=listen_type, payload=payload)
    if listen_type == "playing_now":
        play = listens[0]
        if play.track is not None:
            nowplaying.now_playing_set(user=user, track=play.track, source=Play.Source.EXTERNAL)
        else:
            nowplaying.now_playing_listen(user=user, play=play)
        return None
    seen: set[tuple] = set()
    unique = [p for p in listens if not (p.key() in seen or seen.add(p.key()))]
    return plays_record(user=user, plays=unique)
