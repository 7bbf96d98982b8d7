"""Every write to the music library."""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from catalog import audio, tasks
from catalog.keys import UNKNOWN_ARTIST, name_key
from catalog.models import Album, Artist, ImportJob, ImportSkip, Track
from project.metrics import import_files

logger = logging.getLogger(__name__)

# How often a running import writes its counters (seconds), so progress bars move.
PROGRESS_INTERVAL_S = 0.5
MAX_IMPORT_PATH_CHARS = 1024  # as the import form and ImportJob.path allow
UPLOAD_SUFFIXES = {".mp3", ".flac", ".ogg", ".opus", ".m4a", ".mp4", ".aac", ".wav", ".aif", ".aiff", ".wma", ".wv"}


@dataclass(frozen=True)
class FileOutcome:
    status: str  # "imported" | "present" | "skipped"
    track: Track | None = None
    reason: str = ""


def artist_get_or_create(*, name: str) -> Artist:
    """The artist of this name, whatever its case ("ÜNÏCODE ÄRTIST" is "Ünïcode Ärtist"):
    matched on the stored folded key, so alike on PostgreSQL and SQLite."""
    name = name.strip()[:300] or UNKNOWN_ARTIST
    key = name_key(name)
    artist = Artist.objects.filter(name_key=key).first()
    if artist is not None:
        return artist
    try:
        with transaction.atomic():
            return Artist.objects.create(name=name)
    except IntegrityError:  # created concurrently by another import
        return Artist.objects.get(name_key=key)


def album_get_or_create(*, title: str, artist: Artist, year: int | None) -> Album:
    title = title.strip()[:300]
    key = name_key(title)
    album = Album.objects.filter(artist=artist, title_key=key).first()
    if album is not None:
        if album.year is None and year:
            Album.objects.filter(pk=album.pk, year__isnull=True).update(year=year)
        return album
    try:
        with transaction.atomic():
            return Album.objects.create(title=title, artist=artist, year=year)
    except IntegrityError:
        return Album.objects.get(artist=artist, title_key=key)


def _title_from_file_name(path: Path) -> str:
    stem = path.stem.replace("_", " ").strip()
    # "03 - Song name" / "03. Song name" -> "Song name"
    head, sep, rest = stem.partition(" ")
    if sep and head.rstrip(".-").isdigit() and rest.strip(" -."):
        stem = rest.strip(" -.")
    return stem[:500] or path.name[:500]


def track_import_file(*, path: Path) -> FileOutcome:
    """Add one file to the library. Importing the same bytes twice creates nothing new."""
    path = path.resolve()
    try:
        stat = path.stat()
    except OSError as exc:
        return FileOutcome("skipped", reason=f"cannot read the file ({exc.strerror})")
    if stat.st_size == 0:
        return FileOutcome("skipped", reason="empty file")
    existing = Track.objects.filter(file_path=str(path)).first()
    if existing and existing.size_bytes == stat.st_size and existing.file_mtime_ns == stat.st_mtime_ns:
        _clear_missing(existing)
        return FileOutcome("present", track=existing)
    try:
        info = audio.probe(path)
        checksum = audio.file_checksum(path)
    except audio.NotAudio as exc:
        return FileOutcome("skipped", reason=str(exc))
    except OSError as exc:
        return FileOutcome("skipped", reason=f"cannot read the file ({exc.strerror})")
    same_bytes = Track.objects.filter(checksum=checksum).first()
    if same_bytes is not None:
        if same_bytes.missing_since is not None or not Path(same_bytes.file_path).exists():
            # The file moved: follow it rather than keep a dead path.
            Track.objects.filter(pk=same_bytes.pk).update(
                file_path=str(path), file_mtime_ns=stat.st_mtime_ns, missing_since=None
            )
        return FileOutcome("present", track=same_bytes)
    return _track_save(path=path, stat=stat, info=info, checksum=checksum, existing=existing)


def _track_save(*, path: Path, stat: os.stat_result, info: audio.AudioInfo, checksum: str, existing: Track | None) -> FileOutcome:
    with transaction.atomic():
        artist = artist_get_or_create(name=info.artist)
        album = None
        if info.album:
            album_artist = artist_get_or_create(name=info.album_artist) if info.album_artist else artist
            album = album_get_or_create(title=info.album, artist=album_artist, year=info.year)
        fields = {
            "title": info.title or _title_from_file_name(path),
            "artist": artist,
            "album": album,
            "track_number": info.track_number,
            "disc_number": info.disc_number,
            "duration_s": round(info.duration_s, 3),
            "format": info.format,
            "mime_type": info.mime_type,
            "bitrate_bps": info.bitrate_bps,
            "sample_rate_hz": info.sample_rate_hz,
            "size_bytes": stat.st_size,
            "file_mtime_ns": stat.st_mtime_ns,
            "checksum": checksum,
            "musicbrainz_id": info.musicbrainz_id,
            "missing_since": None,
        }
        try:
            with transaction.atomic():
                if existing is not None:  # same path, new content: the file was re-tagged or replaced
                    for key, value in fields.items():
                        setattr(existing, key, value)
                    existing.save()
                    return FileOutcome("present", track=existing)
                track = Track.objects.create(file_path=str(path), **fields)
        except IntegrityError:  # another import took the same file or bytes at the same moment
            return FileOutcome("present", track=Track.objects.filter(checksum=checksum).first())
    return FileOutcome("imported", track=track)


def _clear_missing(track: Track) -> None:
    if track.missing_since is not None:
        Track.objects.filter(pk=track.pk).update(missing_since=None)


def track_mark_missing(*, track: Track) -> None:
    """Flag a track whose file has gone from disk (shown in the admin)."""
    if track.missing_since is None:
        Track.objects.filter(pk=track.pk, missing_since__isnull=True).update(missing_since=timezone.now())
        logger.warning("track file missing", extra={"track_id": track.pk, "path": track.file_path})


# --- play counts -------------------------------------------------------------------


def tracks_played(*, counts: dict[int, int]) -> None:
    """Add `counts` plays ({track id: plays}) to those tracks' play counts and to their
    albums' and artists', in the caller's transaction. On PostgreSQL the three tables are
    one statement (tracks_played_sql); elsewhere one UPDATE per table and amount."""
    counts = {track_id: n for track_id, n in counts.items() if n}
    if not counts:
        return
    if connection.vendor == "postgresql":
        values = "(VALUES " + ", ".join(["(%s::bigint, %s::integer)"] * len(counts)) + ")"
        with connection.cursor() as cursor:
            cursor.execute(f"WITH {tracks_played_sql(source=values)} SELECT 1",
                           [value for pair in sorted(counts.items()) for value in pair])
        return
    albums: Counter[int] = Counter()
    artists: Counter[int] = Counter()
    for track_id, album_id, artist_id in Track.objects.filter(pk__in=counts).values_list("pk", "album_id", "artist_id"):
        if album_id is not None:
            albums[album_id] += counts[track_id]
        artists[artist_id] += counts[track_id]
    for model, amounts in ((Track, counts), (Album, albums), (Artist, artists)):
        by_amount: dict[int, list[int]] = {}
        for pk, amount in sorted(amounts.items()):  # ids in order: concurrent writers lock alike
            by_amount.setdefault(amount, []).append(pk)
        for amount, pks in by_amount.items():
            model.objects.filter(pk__in=pks).update(play_count=F("play_count") + amount)


def tracks_played_sql(*, source: str) -> str:
    """tracks_played as clauses of a PostgreSQL WITH list, for a caller that records plays
    in one statement (scrobbling: the play rows, these counts and its buffer rows in one
    round trip): add `n` plays to each track of `source`, a relation of (track_id, n) rows
    (a subquery over the caller's own CTE, or VALUES), and to their albums and artists.
    The clauses are named played_tracks, played_albums and played_artists. Only our models'
    table names go into the text; `source` is the caller's SQL, never a value."""
    track, album, artist = (model._meta.db_table for model in (Track, Album, Artist))
    return f"""played_tracks AS (
    UPDATE {track} x SET play_count = x.play_count + v.n FROM {source} AS v(track_id, n) WHERE x.id = v.track_id
    RETURNING x.album_id, x.artist_id, v.n
), played_albums AS (
    UPDATE {album} x SET play_count = x.play_count + c.n
    FROM (SELECT album_id AS id, sum(n) AS n FROM played_tracks WHERE album_id IS NOT NULL GROUP BY album_id) c
    WHERE x.id = c.id
), played_artists AS (
    UPDATE {artist} x SET play_count = x.play_count + c.n
    FROM (SELECT artist_id AS id, sum(n) AS n FROM played_tracks GROUP BY artist_id) c WHERE x.id = c.id
)"""  # noqa: S608


# --- library imports -----------------------------------------------------------------


def validate_import_path(path: str, *, restrict_to_library: bool) -> Path:
    if not isinstance(path, str) or not path.strip():
        raise ValidationError("Give the folder to import.")
    if len(path) > MAX_IMPORT_PATH_CHARS:
        raise ValidationError(f"The path is too long: at most {MAX_IMPORT_PATH_CHARS} characters.")
    if "\x00" in path:
        raise ValidationError("The path contains a NUL character.")
    try:
        folder = Path(path.strip()).expanduser()
        if not folder.is_absolute():
            folder = Path(settings.LIBRARY_DIR) / folder
        folder = folder.resolve()
        if len(str(folder)) > MAX_IMPORT_PATH_CHARS:
            raise ValidationError(f"The path is too long: at most {MAX_IMPORT_PATH_CHARS} characters.")
        if restrict_to_library:
            library = Path(settings.LIBRARY_DIR).resolve()
            if folder != library and library not in folder.parents:
                raise ValidationError(
                    f"Only folders inside the library folder ({library}) can be imported from the web."
                )
        if not folder.exists():
            raise ValidationError(f"No such folder: {folder}")
        if not folder.is_dir() and not folder.is_file():
            raise ValidationError(f"Not a folder or file: {folder}")
    except (OSError, ValueError) as exc:  # a name too long for the file system, a lone surrogate, ...
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a usable path"
        raise ValidationError(f"Cannot use that path: {reason}.") from None
    return folder


def import_job_create(*, path: str, user=None, restrict_to_library: bool = True, enqueue: bool = True) -> ImportJob:
    """Record an import of `path` and hand it to a worker once the row is committed."""
    if user is not None and not user.is_staff:
        raise PermissionDenied("Only staff can import into the library.")
    folder = validate_import_path(path, restrict_to_library=restrict_to_library)
    job = ImportJob.objects.create(path=str(folder), created_by=user)
    if enqueue:
        tasks.run_import.delay_on_commit(job.pk)
    return job


def _audio_candidates(root: Path):
    if root.is_file():
        yield root
        return
    for directory, subdirs, files in os.walk(root, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(directory) / name


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Run an import. A job redelivered after a worker died starts over; files already
    imported count as present, so nothing is duplicated."""
    claimed = ImportJob.objects.filter(
        pk=job_id, status__in=[ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]
    ).update(
        status=ImportJob.Status.RUNNING, started_at=timezone.now(), files_total=None,
        files_seen=0, imported=0, already_present=0, skipped=0, error="",
    )
    if not claimed:
        return None  # finished already: a duplicate delivery changes nothing
    job = ImportJob.objects.get(pk=job_id)
    ImportSkip.objects.filter(job=job).delete()
    root = Path(job.path)
    try:
        if not root.exists():
            raise FileNotFoundError(f"{root} no longer exists")
        job.files_total = sum(1 for _ in _audio_candidates(root))
        job.save(update_fields=["files_total"])
        _import_files(job, root)
    except Exception as exc:
        logger.exception("import failed", extra={"job_id": job.pk})
        job.status = ImportJob.Status.FAILED
        job.error = str(exc)[:2000] or exc.__class__.__name__
    else:
        job.status = ImportJob.Status.DONE
    job.finished_at = timezone.now()
    job.save()
    logger.info(
        "import finished",
        extra={"job_id": job.pk, "status": job.status, "imported": job.imported,
               "present": job.already_present, "skipped": job.skipped},
    )
    return job


_COUNTERS = ["files_seen", "imported", "already_present", "skipped"]


def _import_files(job: ImportJob, root: Path) -> None:
    last_save = time.monotonic()
    for path in _audio_candidates(root):
        outcome = track_import_file(path=path)
        import_files.labels(outcome.status).inc()
        job.files_seen += 1
        if outcome.status == "imported":
            job.imported += 1
        elif outcome.status == "present":
            job.already_present += 1
        else:
            job.skipped += 1
            ImportSkip.objects.create(job=job, path=str(path), reason=outcome.reason[:500])
        if time.monotonic() - last_save >= PROGRESS_INTERVAL_S:
            job.save(update_fields=_COUNTERS)
            last_save = time.monotonic()
    job.save(update_fields=_COUNTERS)


def upload_save(*, files: list[UploadedFile], user) -> ImportJob:
    """Store uploaded audio files under LIBRARY_DIR/uploads/ and import them."""
    if not user.is_staff:
        raise PermissionDenied("Only staff can upload into the library.")
    if not files:
        raise ValidationError("Choose one or more audio files to upload.")
    limit = settings.UPLOAD_MAX_MB * 1024 * 1024
    for upload in files:
        suffix = Path(upload.name or "").suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise ValidationError(f"{upload.name}: not an audio file Chorus can play ({suffix or 'no extension'}).")
        if upload.size > limit:
            raise ValidationError(f"{upload.name}: larger than {settings.UPLOAD_MAX_MB} MB.")
    batch = Path(settings.LIBRARY_DIR) / "uploads" / f"{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    batch.mkdir(parents=True, exist_ok=False)
    for upload in files:
        name = Path(upload.name).name.replace("\x00", "")[:200] or "upload"
        target = batch / name
        counter = 1
        while target.exists():
            target = batch / f"{Path(name).stem}-{counter}{Path(name).suffix}"
            counter += 1
        with target.open("wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
    return import_job_create(path=str(batch), user=user)
