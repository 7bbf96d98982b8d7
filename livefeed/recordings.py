"""What a recording means outside the recorder: the hooks the recorder (livefeed/recorder.py)
calls, after commit, when a segment is ready and when a recording ends. The catalog side
(a recording as a watchable title with its comments) is done from here, through the catalog's
public functions, so the recorder knows nothing of the catalog."""

from __future__ import annotations


def recording_segment_ready(*, segment_id: int) -> None:
    """A segment was closed and post-processed (state done or failed, its file kept): a
    recording in progress can be watched so far (time-shift)."""


def recording_finish(*, recording_id: int) -> None:
    """The recording ended (ended_at set, every segment closed)."""
