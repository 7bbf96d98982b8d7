"""Who is listening now, as other people see it: the home page and GET
/api/scrobbling/now-playing tell the same, and neither names a private room."""

from __future__ import annotations

import pytest

from project.accounts.services import token_create
from rooms.models import Room
from scrobbling import nowplaying
from tests.factories import UserFactory, make_track, shown_room


@pytest.fixture
def song(db):
    return make_track("Hyperballad", "Björk", "Post", duration_s=321.0)


@pytest.fixture
def rooms(bob):
    return (Room.objects.create(owner=bob, name="Secret Garden Party", slug="secret-garden",
                                visibility=Room.Visibility.PRIVATE),
            Room.objects.create(owner=bob, name="Open Lounge", slug="open-lounge"))


def test_the_api_does_not_name_other_peoples_private_rooms(client, alice, bob, song, rooms):
    private, public = rooms
    carol = UserFactory(username="carol")
    nowplaying.now_playing_set(user=bob, track=song, room=shown_room(private))
    nowplaying.now_playing_set(user=carol, track=song, room=shown_room(public))
    _, raw = token_create(user=alice, name="player")

    response = client.get("/api/scrobbling/now-playing", headers={"Authorization": f"Bearer {raw}"})

    assert response.status_code == 200
    by_user = {entry["username"]: entry for entry in response.json()}
    assert by_user["bob"]["room"] == {"id": None, "name": None, "slug": None, "private": True}
    assert by_user["carol"]["room"] == {"id": public.pk, "name": "Open Lounge", "slug": "open-lounge",
                                        "private": False}
    assert "Secret Garden" not in response.content.decode()
    assert "secret-garden" not in response.content.decode()
    assert by_user["bob"]["track_id"] == song.pk  # what is played is not a secret


def test_the_home_page_and_the_api_agree(client, alice, bob, song, rooms):
    private, _ = rooms
    nowplaying.now_playing_set(user=bob, track=song, room=shown_room(private))
    client.force_login(alice)

    page = client.get("/listening-now").content.decode()
    api = client.get("/api/scrobbling/now-playing").json()

    assert "a private room" in page
    assert "Secret Garden" not in page
    assert api[0]["room"]["private"] is True
    assert api[0]["room"]["name"] is None


def test_listing_leaves_out_a_finished_track_and_the_sweep_deletes_it(bob, song, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from project.realtime import sync_redis
    from scrobbling import tasks

    nowplaying.now_playing_set(user=bob, track=song)
    later = timezone.now() + timedelta(seconds=song.duration_s + 60)
    monkeypatch.setattr(timezone, "now", lambda: later)

    assert nowplaying.now_playing_list() == []
    assert nowplaying.now_playing_list() == []
    assert sync_redis().hexists(nowplaying.NOW_PLAYING_KEY, str(bob.pk)), "a read deleted the entry"

    tasks.sweep()

    assert not sync_redis().hexists(nowplaying.NOW_PLAYING_KEY, str(bob.pk))
    assert nowplaying.now_playing_expire() == 0
