"""Every change a room's members must see is published to the room's topic once the
change commits, with what changed in it (the other broadcasts: state in
test_consumer_controls, member deltas in test_member_deltas)."""

from __future__ import annotations

import pytest

from rooms import services
from rooms.models import Membership
from tests.factories import make_track


@pytest.fixture
def room(alice, bob):
    room = services.room_create(owner=alice, name="Lounge")
    services.room_join(room=room, user=bob)
    return room


@pytest.fixture
def songs(db):
    return [make_track(title, "Björk", "Post", duration_s=200.0) for title in ("Army of Me", "Hyperballad", "Isobel")]


def _only(published, event_type: str, room) -> dict:
    [(topic, event)] = published.of_type(event_type)
    assert topic == services.topic(room.pk)
    return event


def test_renaming_a_room_tells_its_members_after_commit(published, room, alice):
    with published.on_commit():
        services.room_update(room=room, actor=alice, name="Late Lounge", shuffle=True)
        assert published == []  # nothing before the commit
    event = _only(published, "room.settings", room)
    assert event["name"] == "Late Lounge"
    assert event["shuffle"] is True


def test_a_new_role_is_announced_to_the_room(published, room, alice, bob):
    with published.on_commit():
        services.member_set_role(room=room, actor=alice, user_id=bob.pk, role=Membership.Role.DJ)
    members = {m["user"]: m["role"] for m in _only(published, "room.members", room)["members"]}
    assert members == {"alice": "host", "bob": "dj"}


def test_a_removed_member_disappears_from_the_announced_list(published, room, alice, bob):
    with published.on_commit():
        services.member_remove(room=room, actor=alice, user_id=bob.pk)
    members = [m["user"] for m in _only(published, "room.members", room)["members"]]
    assert members == ["alice"]


def test_adding_moving_and_removing_queue_entries_each_send_the_new_queue(published, room, alice, songs):
    def titles(event):
        return [entry["track"]["title"] for entry in event["entries"]]

    entries = []
    for song in songs:
        with published.on_commit():
            entries.append(services.queue_add(room=room, actor=alice, track_id=song.pk))
    assert [titles(event) for _, event in published.of_type("room.queue")] == [
        ["Army of Me"], ["Army of Me", "Hyperballad"], ["Army of Me", "Hyperballad", "Isobel"]]

    published.clear()
    with published.on_commit():
        services.queue_move(room=room, actor=alice, entry_id=entries[2].pk, to_index=0)
    assert titles(_only(published, "room.queue", room)) == ["Isobel", "Army of Me", "Hyperballad"]

    published.clear()
    with published.on_commit():
        services.queue_remove(room=room, actor=alice, entry_id=entries[0].pk)
    assert titles(_only(published, "room.queue", room)) == ["Isobel", "Hyperballad"]
