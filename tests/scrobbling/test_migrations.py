"""Migrations of scrobbling data that change what is unique."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_oldest_of_unmatched_plays_that_are_one_listen(alice):
    """Copies the old Lower() uniqueness let through ("Bjork" beside "Björk") are dropped,
    with their pending deliveries; the oldest stays, and every play gets its key."""
    old = migrate([("scrobbling", "0001_initial")])
    OldPlay, OldBuffer = old.get_model("scrobbling", "Play"), old.get_model("scrobbling", "BufferEntry")
    played_at = timezone.now() - timedelta(days=1)
    kept = OldPlay.objects.create(user_id=alice.pk, artist_name="Björk", track_title="Jóga", played_at=played_at,
                                  source="external")
    copy = OldPlay.objects.create(user_id=alice.pk, artist_name="BJORK", track_title="JOGA", played_at=played_at,
                                  source="external")
    other = OldPlay.objects.create(user_id=alice.pk, artist_name="Björk", track_title="Jóga",
                                   played_at=played_at + timedelta(minutes=5), source="external")
    for play in (kept, copy):
        OldBuffer.objects.create(user_id=alice.pk, service="listenbrainz", play=play, played_at=played_at)

    new = migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    NewPlay, NewBuffer = new.get_model("scrobbling", "Play"), new.get_model("scrobbling", "BufferEntry")
    assert sorted(NewPlay.objects.values_list("pk", "match_key")) == [
        (kept.pk, "bjork\x1fjoga"), (other.pk, "bjork\x1fjoga"),
    ]
    assert list(NewBuffer.objects.values_list("play_id", flat=True)) == [kept.pk]
