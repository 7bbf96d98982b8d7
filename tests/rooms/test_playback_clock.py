"""One formula for where playback is and how much of it was heard: the row and the room.state
event it becomes give the same answer at any moment."""

from __future__ import annotations

import pytest

from rooms import events
from rooms.models import PlaybackState


@pytest.mark.parametrize("status", [PlaybackState.Status.PLAYING, PlaybackState.Status.PAUSED])
@pytest.mark.parametrize("server_ms", [9_000, 10_000, 12_500])
def test_the_row_and_its_event_agree_on_position_and_heard(status, server_ms):
    state = PlaybackState(status=status, position_s=30.0, heard_s=5.0, anchor_ms=10_000, rate=2.0)
    event = {"status": status, "position_s": 30.0, "heard_s": 5.0, "anchor_ms": 10_000, "rate": 2.0}
    assert events.position_at(event, server_ms) == state.position_at(server_ms)
    assert events.heard_at(event, server_ms) == state.heard_at(server_ms)


def test_playing_runs_at_its_rate_from_the_anchor_and_not_before():
    state = PlaybackState(status=PlaybackState.Status.PLAYING, position_s=30.0, heard_s=5.0, anchor_ms=10_000, rate=2.0)
    assert state.position_at(9_000) == 30.0  # a scheduled start: where it will start
    assert state.position_at(12_500) == 35.0
    assert state.heard_at(12_500) == 10.0
