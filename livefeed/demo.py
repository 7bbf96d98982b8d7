"""The demo live channel of `make run`: a room on the local simulator (`manage.py
live_simulator`, started by make run), followed whenever it is live, so a new installation
with no internet shows messages flowing."""

from __future__ import annotations

from livefeed.models import LiveChannel

DEMO_ROOM = "7001"


def channel_load(*, user) -> tuple[LiveChannel, bool]:
    """(channel, created). An existing demo channel is left as the user set it."""
    return LiveChannel.objects.get_or_create(
        platform="simulator", ref=DEMO_ROOM,
        defaults={"added_by": user, "title": "模拟直播间 · the demo live room", "streamer_name": "Chorus",
                  "auto_follow": True, "check_interval_s": 10, "desired": LiveChannel.Desired.FOLLOW})
