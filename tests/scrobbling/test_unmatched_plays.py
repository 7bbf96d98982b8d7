"""A listen that matched no library track is recorded once, whatever the case or accents
it is sent again with: the same rule on the ORM path (SQLite) and PostgreSQL's single
statement, held by a unique folded key rather than Lower() (ASCII-only on SQLite)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from scrobbling import recording
from scrobbling.inputs import PlayInput
from scrobbling.models import Play

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, params=[
    pytest.param("one statement", marks=pytest.mark.postgres_only(
        reason="the single-statement recording is PostgreSQL SQL; SQLite takes the ORM path")),
    "orm",
])
def recording_path(request, monkeypatch):
    monkeypatch.setattr(recording, "ONE_STATEMENT", request.param == "one statement")


def listen(artist: str, title: str, played_at) -> PlayInput:
    return PlayInput(played_at=played_at, artist_name=artist, track_title=title, source=Play.Source.EXTERNAL)


@pytest.mark.parametrize(("again_artist", "again_title"), [("BJÖRK", "JÓGA"), ("Bjork", "Joga"), ("  björk ", "jóga")])
def test_an_unmatched_listen_sent_again_in_other_case_or_accents_is_a_duplicate(alice, again_artist, again_title):
    played_at = timezone.now() - timedelta(hours=1)
    first = recording.plays_record(user=alice, plays=[listen("Björk", "Jóga", played_at)])
    assert len(first.created) == 1
    again = recording.plays_record(user=alice, plays=[listen(again_artist, again_title, played_at)])
    assert (again.created, again.duplicates) == ([], [0])
    assert Play.objects.get(user=alice).artist_name == "Björk"


def test_other_listens_of_the_same_moment_are_kept(alice, bob):
    played_at = timezone.now() - timedelta(hours=1)
    recording.plays_record(user=alice, plays=[listen("Björk", "Jóga", played_at)])
    assert len(recording.plays_record(user=bob, plays=[listen("Björk", "Jóga", played_at)]).created) == 1
    assert len(recording.plays_record(user=alice, plays=[listen("Björk", "Hyperballad", played_at)]).created) == 1
    assert len(recording.plays_record(user=alice, plays=[listen("Björk", "Jóga", played_at + timedelta(seconds=1))]).created) == 1


def test_the_database_refuses_a_second_copy_of_an_unmatched_play(alice):
    played_at = timezone.now()
    Play.objects.create(user=alice, artist_name="Ünïcode Ärtist", track_title="Tone", played_at=played_at, source="api")
    with pytest.raises(IntegrityError), transaction.atomic():
        Play.objects.create(user=alice, artist_name="ÜNÏCODE ÄRTIST", track_title="TONE", played_at=played_at,
                            source="api")

