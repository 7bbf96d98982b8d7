"""Play counts are catalog's: tracks_played adds plays to tracks, their albums and artists."""

from __future__ import annotations

import pytest

from catalog import services
from catalog.models import Album, Artist, Track
from tests.factories import make_track

pytestmark = pytest.mark.django_db


def _counts(model, *names) -> list[int]:
    field = "title" if model is not Artist else "name"
    return [model.objects.get(**{field: name}).play_count for name in names]


def test_plays_add_up_on_the_track_its_album_and_its_artist():
    first = make_track("Jóga", "Björk", "Homogenic", duration_s=305.0)
    second = make_track("Hunter", "Björk", "Homogenic", duration_s=255.0)
    single = make_track("Army of Me", "Björk", None, duration_s=234.0)  # no album
    other = make_track("Windowlicker", "Aphex Twin", "Windowlicker", duration_s=366.0)

    services.tracks_played(counts={first.pk: 2, second.pk: 1, single.pk: 3})
    services.tracks_played(counts={first.pk: 1, other.pk: 1})

    assert _counts(Track, "Jóga", "Hunter", "Army of Me", "Windowlicker") == [3, 1, 3, 1]
    assert _counts(Album, "Homogenic", "Windowlicker") == [4, 1]
    assert _counts(Artist, "Björk", "Aphex Twin") == [7, 1]


def test_no_plays_change_nothing():
    track = make_track("Jóga", "Björk", "Homogenic", duration_s=305.0)

    services.tracks_played(counts={})
    services.tracks_played(counts={track.pk: 0})

    assert _counts(Track, "Jóga") == _counts(Album, "Homogenic") == _counts(Artist, "Björk") == [0]
