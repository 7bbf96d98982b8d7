"""Entering a room from a socket: a service, since a public room's visitor becomes a member."""

from __future__ import annotations

import pytest

from rooms import services
from rooms.models import Membership, Room
from rooms.services import RoomError


@pytest.fixture
def rooms(db, bob):
    return (Room.objects.create(owner=bob, name="Open Lounge", slug="open-lounge"),
            Room.objects.create(owner=bob, name="Secret", slug="secret", visibility=Room.Visibility.PRIVATE))


def test_a_visitor_entering_a_public_room_becomes_a_listener(alice, rooms):
    public, _ = rooms
    assert services.room_enter(slug="open-lounge", user=alice) == public
    assert Membership.objects.get(room=public, user=alice).role == Membership.Role.LISTENER


def test_a_visitor_cannot_enter_a_private_room_and_nothing_is_written(alice, rooms):
    with pytest.raises(RoomError) as error:
        services.room_enter(slug="secret", user=alice)
    assert error.value.code == "forbidden"
    with pytest.raises(RoomError) as missing:
        services.room_enter(slug="nowhere", user=alice)
    assert missing.value.code == "not_found"
    assert not Membership.objects.filter(user=alice).exists()

