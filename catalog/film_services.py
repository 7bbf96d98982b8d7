"""What users do with the film catalog: favourites, watch progress, danmaku; and the import
of local video files that makes titles playable.

Every value from outside is checked here (pages, the JSON API and the websocket all come
through), and every refusal is a `FilmError` naming the field, which callers answer with a
4xx or a websocket `error` event. A danmaku is published to the title's watchers only after
its row is committed (project/realtime.broadcast_on_commit).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import redis
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from catalog import audio
from catalog import services as library_services
from catalog.keys import search_key
from catalog.models import Danmaku, Episode, ExternalId, Favorite, Season, Title, Video, WatchProgress
from project import inputs, ratelimit, realtime
from project.refusals import Refusal

logger = logging.getLogger(__name__)

# A user may post at most this many danmaku in any DANMAKU_WINDOW_S (every process counts).
DANMAKU_PER_WINDOW = 5
DANMAKU_WINDOW_S = 10.0
# Progress at or beyond this share of the length counts as watched to the end.
FINISHED_SHARE = 0.95
# A player's currentTime can pass the stored duration by a frame or two.
END_TOLERANCE_S = 1.0
# Without a known length, no position or offset beyond this is believable (two days).
LONGEST_S = 48 * 3600
COLOR = re.compile(r"#[0-9a-fA-F]{6}")


class FilmError(Refusal):
    """A request the catalog refuses; `code` maps to an HTTP status (and a websocket error);
    a `rate_limited` one says when to try again (`retry_after_s`, the Retry-After header)."""

    HTTP_STATUS = {"invalid": 400, "forbidden": 403, "not_found": 404, "rate_limited": 429, "unavailable": 503}

    def __init__(self, code: str, message: str, *, field: str | None = None, retry_after_s: float | None = None):
        super().__init__(code, message, field=field)
        self.retry_after_s = retry_after_s


def title_group(title_id: int) -> str:
    """The realtime topic of one title's watchers (websocket /ws/catalog/titles/<title_id>/)."""
    return f"catalog.title.{title_id}"


def title_get(*, title_id) -> Title:
    if isinstance(title_id, bool) or not isinstance(title_id, int) or not 0 < title_id <= inputs.MAX_SAFE_INTEGER:
        raise FilmError("invalid", "title_id must be a title's id.", field="title_id")
    title = Title.objects.filter(pk=title_id).first()
    if title is None:
        raise FilmError("not_found", f"No title {title_id}.", field="title_id")
    return title


def episode_of(*, title: Title, episode_id) -> Episode | None:
    """The episode `episode_id` of `title` (None for the title itself), or FilmError."""
    if episode_id is None:
        return None
    if isinstance(episode_id, bool) or not isinstance(episode_id, int) or not 0 < episode_id <= inputs.MAX_SAFE_INTEGER:
        raise FilmError("invalid", "episode_id must be an episode's id (or null for the title).", field="episode_id")
    episode = Episode.objects.select_related("season").filter(pk=episode_id, season__title=title).first()
    if episode is None:
        raise FilmError("not_found", f"Title {title.pk} has no episode {episode_id}.", field="episode_id")
    return episode


def length_s(*, title: Title, episode: Episode | None) -> float | None:
    """How long the film (or episode) lasts: its video's duration, else the runtime the
    sources give; None when nothing says."""
    video = Video.objects.filter(title=title, episode=episode, duration_s__isnull=False).order_by("id").first()
    if video is not None and video.duration_s:
        return video.duration_s
    minutes = (episode.runtime_min or title.episode_runtime_min) if episode is not None else title.runtime_min
    return minutes * 60.0 if minutes else None


# --- favourites -----------------------------------------------------------------------------


def favorite_add(*, user, title: Title) -> bool:
    """Mark `title` a favourite of `user`; True if it was not one yet (idempotent)."""
    _, created = Favorite.objects.get_or_create(user=user, title=title)
    return created


def favorite_remove(*, user, title: Title) -> bool:
    """Unmark it; True if it was a favourite (idempotent)."""
    deleted, _ = Favorite.objects.filter(user=user, title=title).delete()
    return bool(deleted)


# --- watch progress -------------------------------------------------------------------------


def progress_save(*, user, title: Title, position, episode_id=None, finished=None) -> WatchProgress:
    """Where `user` is in the film (or the episode), in seconds. A position past the end is
    refused (it is a client bug, and it would show a wrong bar); at the last 5 % (or with
    `finished=True`) the title counts as watched."""
    episode = episode_of(title=title, episode_id=episode_id)
    length = length_s(title=title, episode=episode)
    try:
        position_s = inputs.number(position, field="position", minimum=0, maximum=LONGEST_S)
    except inputs.InputError as exc:
        raise FilmError.from_input(exc) from None
    if length is not None and position_s > length + END_TOLERANCE_S:
        raise FilmError("invalid", f"position {position_s:g} s is past the end ({length:g} s).", field="position")
    if finished is not None and not isinstance(finished, bool):
        raise FilmError("invalid", "finished must be true or false.", field="finished")
    if finished is None:
        finished = length is not None and position_s >= FINISHED_SHARE * length
    position_s = min(position_s, length) if length is not None else position_s
    progress, _ = WatchProgress.objects.update_or_create(
        user=user, title=title, episode=episode, defaults={"position_s": position_s, "finished": finished})
    return progress


# --- danmaku --------------------------------------------------------------------------------


def danmaku_json(row: Danmaku) -> dict:
    return {
        "id": row.pk, "title_id": row.title_id, "episode_id": row.episode_id, "offset_ms": row.offset_ms,
        "text": row.text, "color": row.color, "mode": row.mode,
        "user": row.user.get_username() if row.user_id and row.user else None,
        "created_at": row.created_at.isoformat(),
    }


def _danmaku_text(text) -> str:
    if not isinstance(text, str):
        raise FilmError("invalid", "text must be a string.", field="text")
    text = " ".join(text.split())  # one line: newlines and tabs would break the overlay
    if not text:
        raise FilmError("invalid", "text is empty.", field="text")
    if len(text) > Danmaku.MAX_LENGTH:
        raise FilmError("invalid", f"text is {len(text)} characters; at most {Danmaku.MAX_LENGTH}.", field="text")
    try:
        inputs.check_json_value(text)
    except inputs.InputError as exc:
        raise FilmError("invalid", exc.message.replace("The text", "text"), field="text") from None
    return text


def danmaku_post(*, user, title: Title, text, offset_ms, episode_id=None, color="#ffffff",
                 mode: str = Danmaku.Mode.SCROLL) -> Danmaku:
    """Post a time-coded comment and send it to everyone watching the title."""
    episode = episode_of(title=title, episode_id=episode_id)
    text = _danmaku_text(text)
    try:
        offset = inputs.whole_number(offset_ms, field="offset_ms", minimum=0, maximum=LONGEST_S * 1000)
    except inputs.InputError as exc:
        raise FilmError.from_input(exc) from None
    length = length_s(title=title, episode=episode)
    if length is not None and offset > (length + END_TOLERANCE_S) * 1000:
        raise FilmError("invalid", f"offset_ms {offset} is past the end ({round(length * 1000)} ms).", field="offset_ms")
    if not isinstance(color, str) or not COLOR.fullmatch(color):
        raise FilmError("invalid", "color must be #rrggbb.", field="color")
    if mode not in Danmaku.Mode.values:
        raise FilmError("invalid", f"mode must be one of {', '.join(Danmaku.Mode.values)}.", field="mode")
    _danmaku_budget(user)
    row = Danmaku.objects.create(title=title, episode=episode, offset_ms=offset, text=text, user=user,
                                 color=color.lower(), mode=mode)
    event = {"type": "catalog.danmaku", "title_id": title.pk, "danmaku": danmaku_json(row)}
    realtime.broadcast_on_commit(title_group(title.pk), event)
    return row


def _danmaku_budget(user) -> None:
    try:
        ratelimit.take_slot(f"danmaku:{user.pk}", limit=DANMAKU_PER_WINDOW, window_s=DANMAKU_WINDOW_S)
    except ratelimit.TooMany as exc:
        raise FilmError("rate_limited", f"At most {DANMAKU_PER_WINDOW} danmaku in {DANMAKU_WINDOW_S:g} s: "
                        f"wait {math.ceil(exc.retry_after_s)} s.", field="text",
                        retry_after_s=exc.retry_after_s) from None
    except (redis.RedisError, OSError):
        raise FilmError("unavailable", "Posting is paused for a moment (the server cannot count posts); "
                        "try again.") from None


def window_bounds(*, from_ms, to_ms) -> tuple[int, int]:
    """A danmaku time window from query values (already whole numbers), checked."""
    try:
        start = inputs.whole_number(from_ms, field="from_ms", minimum=0, maximum=LONGEST_S * 1000)
        end = inputs.whole_number(to_ms, field="to_ms", minimum=0, maximum=LONGEST_S * 1000)
    except inputs.InputError as exc:
        raise FilmError.from_input(exc) from None
    if end < start:
        raise FilmError("invalid", "to_ms must not be before from_ms.", field="to_ms")
    return start, end


# --- video import ---------------------------------------------------------------------------

VIDEO_SUFFIXES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/mp4", ".webm": "video/webm",
                  ".mkv": "video/x-matroska", ".ogv": "video/ogg", ".avi": "video/x-msvideo"}
_EPISODE = re.compile(r"(?<![a-z0-9])s(\d{1,2})\s*e(\d{1,3})(?![0-9])", re.IGNORECASE)
_YEAR_PAREN = re.compile(r"[\(\[]((?:18|19|20)\d{2})[\)\]]")
_YEAR_BARE = re.compile(r"(?<![0-9])((?:19|20)\d{2})(?![0-9])")
_SEASON_FOLDER = re.compile(r"^(season|series|s)\s*\d+$|^第.+季$", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedName:
    name: str
    year: int | None
    season: int | None = None
    episode: int | None = None


def parse_video_name(path: Path) -> ParsedName:
    """What a file name says: "Title (2023).mkv", "Show S01E02.mp4", "Show.Name.S01E02.1080p.mkv",
    or "Show/Season 1/S01E02.mkv" (the show's name from the folders)."""
    stem = path.stem
    text = stem.replace("_", " ") if " " in stem else re.sub(r"[._]", " ", stem)
    season = episode = None
    marker = _EPISODE.search(text)
    if marker:
        season, episode = int(marker.group(1)), int(marker.group(2))
        text = text[: marker.start()]
    year = None
    found = _YEAR_PAREN.search(text) or _YEAR_BARE.search(text)
    if found and (found.start() > 0 or marker):
        year = int(found.group(1))
        text = text[: found.start()]
    name = text.strip(" -–.[]()")
    if not name and marker:
        for folder in reversed(path.parent.parts):
            if not _SEASON_FOLDER.match(folder.strip()):
                show = parse_video_name(Path(folder + ".x"))
                return ParsedName(show.name, year or show.year, season, episode)
    return ParsedName(name, year, season, episode)


def _find_title(parsed: ParsedName) -> tuple[Title | None, str]:
    """The one title whose name (any language) is the file's, preferring the year; or why not."""
    key = search_key(parsed.name)
    if not key:
        return None, "no title in the file name"
    candidates = [t for t in Title.objects.filter(search_key__contains=key) if key in t.search_key.split("\x1f")]
    if parsed.season is not None:
        candidates = [t for t in candidates if t.kind == Title.Kind.TV] or candidates
    if parsed.year is not None and len(candidates) > 1:
        candidates = [t for t in candidates if t.year == parsed.year] or candidates
    elif parsed.year is not None and candidates and all(t.year not in (None, parsed.year) for t in candidates):
        return None, f"“{parsed.name}” is in the catalog, but not from {parsed.year}"
    if not candidates:
        return None, f"no title “{parsed.name}”{f' ({parsed.year})' if parsed.year else ''} in the catalog"
    if len(candidates) > 1:
        return None, f"“{parsed.name}” matches {len(candidates)} titles; add the year to the file name"
    return candidates[0], ""


@dataclass(frozen=True)
class ProbedVideo:
    duration_s: float | None
    width: int | None
    height: int | None


def probe_video(path: Path) -> ProbedVideo:
    """The length and picture size of a video (ffprobe, as the music import reads audio)."""
    try:
        data = audio.ffprobe_json(path, streams="v:0")
    except audio.ProbeFailed as exc:
        reasons = {"missing": "ffprobe is not installed", "timeout": "ffprobe took too long to read it"}
        raise ValueError(reasons.get(exc.kind) or f"not a playable video ({exc.detail})") from None
    streams = data.get("streams") or []
    if not streams:
        raise ValueError("no video stream in the file")
    try:
        duration = float((data.get("format") or {}).get("duration") or streams[0].get("duration") or 0) or None
    except ValueError:
        duration = None
    return ProbedVideo(duration, streams[0].get("width") or None, streams[0].get("height") or None)


@dataclass
class VideoImportReport:
    created: list[Video] = field(default_factory=list)
    updated: list[Video] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


def _video_files(root: Path):
    """The files the music import would look at (hidden ones left out, links not followed),
    those with a video's ending."""
    for path in library_services._audio_candidates(root):
        if path.suffix.lower() in VIDEO_SUFFIXES:
            yield path


def video_import(*, path: str, user=None, restrict_to_library: bool = True) -> VideoImportReport:
    """Make the video files under `path` (a folder inside LIBRARY_DIR from the web) playable:
    each is matched to a title by its name, probed, and recorded once (by its path); an
    unchanged file is not probed again, so importing the same folder twice changes nothing."""
    if user is not None and not user.is_staff:
        raise FilmError("forbidden", "Only staff can import videos.")
    try:
        root = library_services.validate_import_path(path, restrict_to_library=restrict_to_library)
    except ValidationError as exc:
        raise FilmError("invalid", exc.messages[0], field="path") from None
    report = VideoImportReport()
    for file_path in _video_files(root):
        try:
            _video_import_file(file_path.resolve(), report)
        except (OSError, ValueError) as exc:
            report.skipped.append((str(file_path), str(exc)))
    return report


def _video_import_file(path: Path, report: VideoImportReport) -> None:
    stat = path.stat()
    existing = Video.objects.filter(file_path=str(path)).first()
    if existing is not None and existing.size_bytes == stat.st_size and existing.file_mtime_ns == stat.st_mtime_ns:
        report.unchanged += 1
        return
    parsed = parse_video_name(path)
    title, why = _find_title(parsed)
    if title is None:
        report.skipped.append((str(path), why))
        return
    probed = probe_video(path)
    with transaction.atomic():
        episode = None
        if parsed.season is not None:
            season, _ = Season.objects.get_or_create(title=title, number=parsed.season)
            episode, _ = Episode.objects.get_or_create(season=season, number=parsed.episode)
        values = {"title": title, "episode": episode, "mime_type": VIDEO_SUFFIXES[path.suffix.lower()],
                  "duration_s": probed.duration_s, "width": probed.width, "height": probed.height,
                  "size_bytes": stat.st_size, "file_mtime_ns": stat.st_mtime_ns}
        video, created = Video.objects.update_or_create(file_path=str(path), defaults=values)
    (report.created if created else report.updated).append(video)


# --- live recordings ------------------------------------------------------------------------

RECORDING_SOURCE = "livefeed"


@dataclass(frozen=True)
class RecordingComment:
    offset_ms: int  # from the part's start
    text: str
    color: str = "#ffffff"
    mode: str = Danmaku.Mode.SCROLL


@dataclass(frozen=True)
class RecordingPart:
    """One file of a recording, as the catalog shows it: an episode of the title's one season
    (so the player lists the parts and goes on with the next one), with its comments."""

    number: int  # 1, 2, ...: the part's place in the recording
    name: str
    file_path: str
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    size_bytes: int = 0
    comments: tuple[RecordingComment, ...] = ()
    # Where the player gets an mp4 of a file a browser cannot play (flv, ts): the live feed's
    # on-demand remux. Without it such a part is listed without a player.
    stream_url: str = ""


def _recording_danmaku(title: Title, episode: Episode, comments) -> list[Danmaku]:
    rows = []
    for comment in comments:
        text = " ".join(str(comment.text).split())[: Danmaku.MAX_LENGTH]
        if not text or comment.offset_ms < 0 or comment.mode not in Danmaku.Mode.values \
                or not COLOR.fullmatch(comment.color):
            continue
        rows.append(Danmaku(title=title, episode=episode, offset_ms=min(int(comment.offset_ms), LONGEST_S * 1000),
                            text=text, color=comment.color.lower(), mode=comment.mode))
    return rows


def recording_title_save(*, source_id: str, title: str, parts, original_title: str = "", synopsis: str = "",
                         release_date=None) -> Title:
    """Make (or bring up to date) the `recording` title of a live recording, named by the
    recorder's id (`source_id`), with the given parts: each becomes an episode with its file
    as the video (when a browser can play it: mp4/webm, or an flv/ts part with a `stream_url`
    that serves it as mp4; otherwise it is listed without a player) and its comments as the episode's danmaku. Parts not given are left as they are,
    so a recording still going on adds its parts one by one (time-shift). Saving a part again
    replaces its comments (those users posted while watching stay). Idempotent; two saves of
    one recording at once (a segment's hook and the end's) make one title: the loser of the
    race on the external id saves again into the winner's."""
    try:
        return _recording_title_save(source_id, title, parts, original_title, synopsis, release_date)
    except IntegrityError:
        return _recording_title_save(source_id, title, parts, original_title, synopsis, release_date)


def _recording_title_save(source_id, title, parts, original_title, synopsis, release_date) -> Title:
    with transaction.atomic():
        external = ExternalId.objects.select_related("title").filter(
            source=RECORDING_SOURCE, kind=Title.Kind.RECORDING, value=source_id).first()
        if external is None:
            row = Title.objects.create(kind=Title.Kind.RECORDING, title=title[:500], original_title=original_title[:500],
                                       synopsis=synopsis, release_date=release_date,
                                       year=release_date.year if release_date else None)
            ExternalId.objects.create(title=row, source=RECORDING_SOURCE, kind=Title.Kind.RECORDING, value=source_id)
        else:
            row = external.title
            row.title, row.original_title, row.synopsis = title[:500], original_title[:500], synopsis
            row.save(update_fields=["title", "original_title", "synopsis", "updated_at"])
        season, _ = Season.objects.get_or_create(title=row, number=1, defaults={"name": "Recording"})
        for part in parts:
            _recording_part_save(row, season, part)
        row.episode_count = Episode.objects.filter(season=season).count()
        row.save(update_fields=["episode_count", "updated_at"])
    return row


def _recording_part_save(title: Title, season: Season, part: RecordingPart) -> None:
    episode, _ = Episode.objects.update_or_create(
        season=season, number=part.number,
        defaults={"name": part.name[:300], "runtime_min": math.ceil(part.duration_s / 60) if part.duration_s else None})
    mime_type = VIDEO_SUFFIXES.get(Path(part.file_path).suffix.lower())
    Video.objects.filter(episode=episode).exclude(file_path=part.file_path).delete()
    if mime_type in ("video/mp4", "video/webm") or part.stream_url:
        Video.objects.update_or_create(file_path=part.file_path, defaults={
            "title": title, "episode": episode, "mime_type": "video/mp4" if part.stream_url else mime_type,
            "duration_s": part.duration_s, "width": part.width, "height": part.height,
            "size_bytes": part.size_bytes, "stream_url": part.stream_url})
    Danmaku.objects.filter(title=title, episode=episode, user__isnull=True).delete()
    Danmaku.objects.bulk_create(_recording_danmaku(title, episode, part.comments), batch_size=2000)


def recording_titles(*, source_ids) -> dict[str, int]:
    """{source_id: title id} of the recordings that are in the catalog."""
    return dict(ExternalId.objects.filter(source=RECORDING_SOURCE, kind=Title.Kind.RECORDING,
                                          value__in=[str(x) for x in source_ids]).values_list("value", "title_id"))


def recording_title_remove(*, source_id: str) -> bool:
    """Take a recording out of the catalog (its files stay where they are); True if it was in."""
    deleted, _ = Title.objects.filter(external_ids__source=RECORDING_SOURCE, external_ids__kind=Title.Kind.RECORDING,
                                      external_ids__value=source_id).delete()
    return bool(deleted)
