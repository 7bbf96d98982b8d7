"""Which recorded files a browser plays as they are, and which it plays only from their mp4
remux (livefeed/playback.py makes that on demand). A leaf module: the recordings' hooks
(livefeed/recordings.py) decide with it without importing the remux machinery."""

from __future__ import annotations

BROWSER_SUFFIXES = (".mp4", ".m4v", ".webm")
REMUXED_SUFFIXES = (".flv", ".ts")


def needs_remux(file_path: str) -> bool:
    """An FLV or TS part: played from its mp4 remux."""
    return file_path.lower().endswith(REMUXED_SUFFIXES)


def playable(file_path: str) -> bool:
    """A browser can play it, as it is or from its remux."""
    return file_path.lower().endswith(BROWSER_SUFFIXES + REMUXED_SUFFIXES)
