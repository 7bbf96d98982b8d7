"""manage.py live_follow / live_unfollow: the same services and rules as the pages."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from livefeed.models import LiveChannel


def test_live_follow_adds_and_follows_and_live_unfollow_stops(staff, capsys):
    call_command("live_follow", "https://live.bilibili.com/5440")
    channel = LiveChannel.objects.get()
    assert (channel.platform, channel.ref, channel.desired) == ("bilibili", "5440", "follow")
    assert channel.added_by == staff
    assert "Added and following" in capsys.readouterr().out
    call_command("live_unfollow", "https://live.bilibili.com/5440")
    assert LiveChannel.objects.get().desired == "stop"
    call_command("live_follow", "https://live.bilibili.com/5440")
    call_command("live_unfollow", str(channel.pk))
    assert LiveChannel.objects.get().desired == "stop"


def test_a_bad_url_or_a_stranger_is_a_one_line_error(staff, bob):
    with pytest.raises(CommandError, match="Not a live room"):
        call_command("live_follow", "https://example.com/x")
    call_command("live_follow", "https://live.bilibili.com/5440")
    with pytest.raises(CommandError, match="Only the user who added"):
        call_command("live_unfollow", "https://live.bilibili.com/5440", "--as", bob.username)
    with pytest.raises(CommandError, match="No channel"):
        call_command("live_unfollow", "999999")
