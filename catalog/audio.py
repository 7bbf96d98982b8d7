"""Reading what an audio file is: tags and stream properties (mutagen, then ffprobe)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import mutagen
from django.conf import settings

# Files with these endings are never audio; they are reported without being opened.
NOT_AUDIO_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".txt", ".nfo", ".cue", ".log",
    ".m3u", ".m3u8", ".pls", ".pdf", ".db", ".ini", ".json", ".xml", ".html", ".md",
}

# mutagen class name -> (format, MIME type)
_MUTAGEN_FORMATS = {
    "MP3": ("mp3", "audio/mpeg"),
    "EasyMP3": ("mp3", "audio/mpeg"),
    "FLAC": ("flac", "audio/flac"),
    "OggVorbis": ("ogg", "audio/ogg"),
    "OggOpus": ("opus", "audio/ogg"),
    "OggFLAC": ("flac", "audio/ogg"),
    "MP4": ("m4a", "audio/mp4"),
    "EasyMP4": ("m4a", "audio/mp4"),
    "WAVE": ("wav", "audio/wav"),
    "AIFF": ("aiff", "audio/aiff"),
    "ASF": ("wma", "audio/x-ms-wma"),
    "WavPack": ("wv", "audio/x-wavpack"),
    "MonkeysAudio": ("ape", "audio/x-ape"),
}

# ffprobe format_name (first of its comma list) -> (format, MIME type)
_FFPROBE_FORMATS = {
    "mp3": ("mp3", "audio/mpeg"),
    "flac": ("flac", "audio/flac"),
    "ogg": ("ogg", "audio/ogg"),
    "mov": ("m4a", "audio/mp4"),
    "wav": ("wav", "audio/wav"),
    "aiff": ("aiff", "audio/aiff"),
    "matroska": ("mka", "audio/x-matroska"),
    "asf": ("wma", "audio/x-ms-wma"),
    "aac": ("aac", "audio/aac"),
}


class NotAudio(Exception):
    """The file is not audio Chorus can play; str(exc) says why, for the import report."""


@dataclass(frozen=True)
class AudioInfo:
    title: str
    artist: str
    album: str
    album_artist: str
    track_number: int | None
    disc_number: int | None
    year: int | None
    duration_s: float
    format: str
    mime_type: str
    bitrate_bps: int | None
    sample_rate_hz: int | None
    musicbrainz_id: str


def file_checksum(path: Path, *, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _first_number(value: str | None) -> int | None:
    """'3/12' -> 3, '2019-05-01' -> 2019, junk -> None."""
    if not value:
        return None
    head = value.strip().split("/")[0].split("-")[0].strip()
    try:
        number = int(head)
    except ValueError:
        return None
    return number if 0 <= number < 32768 else None


def _tag(tags, key: str) -> str:
    if not tags:
        return ""
    try:
        values = tags.get(key)
    except (KeyError, ValueError):
        return ""
    if not values:
        return ""
    value = values[0] if isinstance(values, list) else values
    return str(value).strip().replace("\x00", "")[:500]


def probe(path: Path) -> AudioInfo:
    """Tags and stream properties of `path`, or NotAudio with the reason."""
    if path.suffix.lower() in NOT_AUDIO_SUFFIXES:
        raise NotAudio(f"not an audio file ({path.suffix.lower()})")
    try:
        parsed = mutagen.File(path, easy=True)
    except Exception:  # mutagen raises many types for damaged files
        parsed = None
    if parsed is not None and getattr(parsed.info, "length", 0) > 0:
        kind = _MUTAGEN_FORMATS.get(type(parsed).__name__)
        if kind is not None:
            return _info_from_mutagen(path, parsed, kind)
    return _probe_with_ffprobe(path)


def _info_from_mutagen(path: Path, parsed, kind: tuple[str, str]) -> AudioInfo:
    tags = parsed.tags
    info = parsed.info
    duration_s = float(info.length)
    bitrate = getattr(info, "bitrate", 0) or 0
    if not bitrate and duration_s > 0:
        bitrate = int(path.stat().st_size * 8 / duration_s)
    return AudioInfo(
        title=_tag(tags, "title"),
        artist=_tag(tags, "artist"),
        album=_tag(tags, "album"),
        album_artist=_tag(tags, "albumartist"),
        track_number=_first_number(_tag(tags, "tracknumber")),
        disc_number=_first_number(_tag(tags, "discnumber")),
        year=_first_number(_tag(tags, "date")),
        duration_s=duration_s,
        format=kind[0],
        mime_type=kind[1],
        bitrate_bps=int(bitrate) or None,
        sample_rate_hz=getattr(info, "sample_rate", None) or None,
        musicbrainz_id=_tag(tags, "musicbrainz_trackid")[:36],
    )


class ProbeFailed(Exception):
    """ffprobe could not read the file: `kind` is missing (no ffprobe), timeout or unreadable;
    `detail` is ffprobe's last line without the path."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(detail or kind)
        self.kind = kind
        self.detail = detail


def ffprobe_json(path: Path, *, streams: str) -> dict:
    """ffprobe's format and streams (`streams`: "a:0", "v:0") of `path`, or ProbeFailed.
    Shared by the music import and the film catalog's video import."""
    command = [
        settings.FFPROBE_BINARY, "-v", "error", "-print_format", "json",
        "-show_format", "-show_streams", "-select_streams", streams, str(path),
    ]
    try:
        result = subprocess.run(command, capture_output=True, timeout=30, check=False)
    except FileNotFoundError:
        raise ProbeFailed("missing") from None
    except subprocess.TimeoutExpired:
        raise ProbeFailed("timeout") from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        detail = message[-1].replace(str(path), "").strip(": ") if message else "unreadable"
        raise ProbeFailed("unreadable", detail[:200])
    return json.loads(result.stdout or b"{}")


def _probe_with_ffprobe(path: Path) -> AudioInfo:
    try:
        data = ffprobe_json(path, streams="a:0")
    except ProbeFailed as exc:
        reasons = {"missing": "could not read tags, and ffprobe is not installed",
                   "timeout": "ffprobe took too long to read it"}
        raise NotAudio(reasons.get(exc.kind) or f"not a playable audio file ({exc.detail})") from None
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    if not streams:
        raise NotAudio("no audio stream in the file")
    try:
        duration_s = float(fmt.get("duration") or streams[0].get("duration") or 0)
    except ValueError:
        duration_s = 0.0
    if duration_s <= 0:
        raise NotAudio("the audio has no length")
    format_name = (fmt.get("format_name") or "").split(",")[0]
    kind = _FFPROBE_FORMATS.get(format_name)
    if kind is None:
        raise NotAudio(f"unsupported container ({format_name or 'unknown'})")
    tags = {k.lower(): v for k, v in (fmt.get("tags") or {}).items()}

    def tag(key: str) -> str:
        return str(tags.get(key, "")).strip()[:500]

    return AudioInfo(
        title=tag("title"),
        artist=tag("artist"),
        album=tag("album"),
        album_artist=tag("album_artist"),
        track_number=_first_number(tag("track")),
        disc_number=_first_number(tag("disc")),
        year=_first_number(tag("date")),
        duration_s=duration_s,
        format=kind[0],
        mime_type=kind[1],
        bitrate_bps=_int_or_none(fmt.get("bit_rate")),
        sample_rate_hz=_int_or_none(streams[0].get("sample_rate")),
        musicbrainz_id=tag("musicbrainz_trackid")[:36],
    )


def _int_or_none(value) -> int | None:
    try:
        return int(value) or None
    except (TypeError, ValueError):
        return None
