"""Watching an FLV or TS recording in a browser: browsers play mp4, not FLV or MPEG-TS, so a
segment in those containers is remuxed on demand (codec copy, faststart: seconds of disk I/O,
never a re-encode) into a cache folder, LIVEFEED_PLAYBACK_CACHE_DIR, and served from there
with Range requests.

The cache file is named by the segment and the source's size and mtime: a file that changed
(still being written, or remuxed by a post-processing step) gets a new copy. The segment still
being recorded (time-shift) is remuxed as far as it is on disk now (ffmpeg reads a growing FLV
to its current end); a copy younger than LIVEFEED_PLAYBACK_REFRESH_S is served again instead of
remuxing on every reload. Concurrent first requests for one segment remux once: they take an
exclusive lock file (flock, so it works across processes and is released if one dies). The
cache is kept under LIVEFEED_PLAYBACK_CACHE_MB by deleting the least recently served copies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from django.conf import settings

from livefeed import postprocess
from livefeed.models import Segment

# Containers a browser plays as they are; anything else is remuxed for playback.


class PlaybackError(Exception):
    """Why a segment cannot be played: an HTTP status, a code and a sentence for the viewer."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def cache_dir() -> Path:
    return Path(settings.LIVEFEED_PLAYBACK_CACHE_DIR)


def _copies(segment_id: int) -> list[Path]:
    return sorted(cache_dir().glob(f"segment-{segment_id}-*.mp4"))


def playable_file(*, segment: Segment) -> Path:
    """The mp4 to serve for `segment` (remuxed now if there is no fresh copy); PlaybackError
    when the file is gone or ffmpeg cannot remux it."""
    source = Path(segment.file_path)
    try:
        info = source.stat()
    except OSError:
        raise PlaybackError(410, "gone", "The segment's file is not on the server any more.") from None
    if not info.st_size:
        raise PlaybackError(409, "not_ready", "Nothing of this segment is on disk yet; try again in a few seconds.")
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"segment-{segment.pk}-{info.st_size}-{info.st_mtime_ns}.mp4"
    with open(folder / f"segment-{segment.pk}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the second request waits for the first one's remux
        if target.exists():
            return _served(target)
        growing = segment.state == Segment.State.RECORDING
        if growing:  # time-shift: a recent enough copy of the part so far will do
            recent = [path for path in _copies(segment.pk)
                      if time.time() - path.stat().st_mtime < settings.LIVEFEED_PLAYBACK_REFRESH_S]
            if recent:
                return _served(recent[-1])
        try:
            postprocess.remux(str(source), str(target), fmt="mp4")
        except postprocess.StepFailed as exc:
            raise PlaybackError(502, "remux_failed", f"This segment could not be made playable: {exc}") from None
        for old in _copies(segment.pk):
            if old != target:
                with contextlib.suppress(OSError):
                    old.unlink()
    evict(keep=target)
    return target


def _served(path: Path) -> Path:
    """Mark the copy as just served: its access time, which `evict` goes by (set here, as a
    mount with noatime would not); its mtime stays when it was made (the time-shift age)."""
    with contextlib.suppress(OSError):
        info = path.stat()
        os.utime(path, ns=(time.time_ns(), info.st_mtime_ns))
    return path


def evict(*, keep: Path | None = None) -> list[Path]:
    """Delete the least recently served copies until the cache is under its cap (the copy
    just made is kept even if it alone is larger); the deleted paths."""
    cap = settings.LIVEFEED_PLAYBACK_CACHE_MB * 1024 * 1024
    entries = []
    for path in cache_dir().glob("segment-*.mp4"):
        with contextlib.suppress(OSError):
            info = path.stat()
            entries.append((max(info.st_atime, info.st_mtime), info.st_size, path))
    total = sum(size for _, size, _ in entries)
    deleted = []
    for _, size, path in sorted(entries):
        if total <= cap:
            break
        if path == keep:
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            deleted.append(path)
            total -= size
    return deleted
