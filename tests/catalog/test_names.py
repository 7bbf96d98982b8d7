"""Artist names and album titles: one artist whatever the case, in every script, and search
that ignores case and accents, alike on PostgreSQL and SQLite (`make test` runs both).

SQLite's LOWER() and LIKE fold ASCII letters only, so these used to hold on PostgreSQL alone."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from catalog import selectors, services
from catalog.models import Album, Artist, Track, name_key, search_key
from tests.conftest import make_audio
from tests.factories import UserFactory, make_track

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("first", "second"),
    [("Ünïcode Ärtist", "ÜNÏCODE ÄRTIST"), ("Straße", "STRASSE"), ("Björk", "björk"), ("ΣΊΣΥΦΟΣ", "σίσυφος"),
     ("Sigur  Rós", "sigur rós")],
)
def test_a_name_in_another_case_is_the_same_artist(first, second):
    artist = services.artist_get_or_create(name=first)
    assert services.artist_get_or_create(name=second) == artist
    assert Artist.objects.get().name == first  # the name as first seen is kept


def test_names_that_differ_by_accents_stay_two_artists():
    assert services.artist_get_or_create(name="Café") != services.artist_get_or_create(name="Cafe")


def test_the_database_refuses_a_second_artist_of_the_same_name_in_another_case():
    Artist.objects.create(name="Ünïcode Ärtist")
    with pytest.raises(IntegrityError), transaction.atomic():
        Artist.objects.create(name="ÜNÏCODE ÄRTIST")


def test_an_album_title_in_another_case_is_the_same_album_of_that_artist():
    artist = services.artist_get_or_create(name="Ünïcode Ärtist")
    album = services.album_get_or_create(title="Ärger Über Öl", artist=artist, year=None)
    assert services.album_get_or_create(title="ÄRGER ÜBER ÖL", artist=artist, year=2020) == album
    album.refresh_from_db()
    assert album.year == 2020  # an empty year is filled by the second sighting
    other = services.artist_get_or_create(name="Someone Else")
    assert services.album_get_or_create(title="ÄRGER ÜBER ÖL", artist=other, year=None) != album
    with pytest.raises(IntegrityError), transaction.atomic():
        Album.objects.create(title="ärger über öl", artist=artist)


def test_a_renamed_artist_keeps_its_keys_in_step():
    artist = Artist.objects.create(name="Old Name")
    artist.name = "Ünïcode Ärtist"
    artist.save(update_fields=["name"])
    artist.refresh_from_db()
    assert (artist.name_key, artist.search_key) == ("ünïcode ärtist", "unicode artist")


def test_a_renamed_artist_is_found_by_its_new_name_and_matched_by_it():
    track = make_track("Flac Tone", "Old Name", None, duration_s=200.0)
    artist = track.artist
    artist.name = "Ünïcode Ärtist"
    artist.save()
    assert [t.title for t in selectors.track_search(query="UNICODE tone")] == ["Flac Tone"]
    assert list(selectors.track_search(query="old")) == []
    track.refresh_from_db()
    assert track.match_key == "unicode artist\x1fflac tone"


def test_importing_files_tagged_in_two_cases_gives_one_artist_and_album(tmp_path, settings):
    settings.LIBRARY_DIR = tmp_path
    make_audio(tmp_path / "a.flac", 1, ["-c:a", "flac"], {"title": "One", "artist": "Ünïcode Ärtist", "album": "Ärger"})
    make_audio(tmp_path / "b.flac", 1, ["-c:a", "flac"], {"title": "Two", "artist": "ÜNÏCODE ÄRTIST", "album": "ÄRGER"},
               frequency=550)
    job = services.import_job_run(job_id=services.import_job_create(path=str(tmp_path), enqueue=False).pk)
    assert job.imported == 2
    assert Artist.objects.count() == 1
    assert Album.objects.count() == 1
    assert set(Track.objects.values_list("artist__name", "album__title").distinct()) == {("Ünïcode Ärtist", "Ärger")}


@pytest.fixture
def library():
    make_track("Flac Tone", "Ünïcode Ärtist", "Ärger Über Öl", duration_s=200.0)
    make_track("Plain Song", "Plain Artist", "Plain Album", duration_s=200.0)


@pytest.mark.parametrize("query", ["ÜNÏCODE", "ünïcode", "unicode", "Unicode ARTIST", "  ünï  "])
def test_searching_an_artist_ignores_case_and_accents(library, query):
    assert [a.name for a in selectors.artist_search(query=query)] == ["Ünïcode Ärtist"]
    assert [t.title for t in selectors.track_search(query=query)] == ["Flac Tone"]
    assert [a.title for a in selectors.album_search(query=query)] == ["Ärger Über Öl"]


@pytest.mark.parametrize("query", ["ÄRGER", "arger uber", "ÖL"])
def test_searching_an_album_title_ignores_case_and_accents(library, query):
    assert [a.title for a in selectors.album_search(query=query)] == ["Ärger Über Öl"]
    assert [t.title for t in selectors.track_search(query=query)] == ["Flac Tone"]
    assert list(selectors.artist_search(query=query)) == []


def test_searching_a_track_title_ignores_case_and_accents(library):
    make_track("Déjà Vu", "Plain Artist", None, duration_s=200.0)
    assert [t.title for t in selectors.track_search(query="DEJA")] == ["Déjà Vu"]
    assert [t.title for t in selectors.track_search(query="déjà plain")] == ["Déjà Vu"]


@pytest.mark.parametrize("query", ["%", "_", "a" * 500])
def test_search_takes_wildcards_as_plain_text(library, query):
    assert list(selectors.track_search(query=query)) == []
    assert list(selectors.album_search(query=query)) == []
    assert list(selectors.artist_search(query=query)) == []


def test_a_control_character_in_a_search_separates_words():
    """A NUL (which PostgreSQL refuses in any text) is never part of a name."""
    make_track("Flac Tone", "Ünïcode Ärtist", None, duration_s=200.0)
    assert [t.title for t in selectors.track_search(query="ünïcode\x00tone")] == ["Flac Tone"]
    assert [a.name for a in selectors.artist_search(query="\x00ünïcode\x1b")] == ["Ünïcode Ärtist"]
    assert len(selectors.track_search(query="\x00")) == 1  # nothing left to search for: everything


def test_the_library_pages_find_an_artist_typed_in_capitals(alice_client, library):
    for url in ["/library/artists/", "/library/albums/", "/library/"]:
        response = alice_client.get(url, {"q": "ÜNÏCODE"})
        assert response.status_code == 200
        assert "Ünïcode Ärtist" in response.content.decode(), url
    response = alice_client.get("/api/library/artists", {"q": "ÜNÏCODE"})
    assert [item["name"] for item in response.json()["items"]] == ["Ünïcode Ärtist"]


# --- the migration that introduced the keys -------------------------------------------

BEFORE_KEYS = [("catalog", "0002_track_match_key")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_the_migration_merges_artists_and_albums_that_were_two_only_by_case():
    """Rows the old Lower() uniqueness let through ("Straße" / "STRASSE" on both databases;
    on SQLite also "Ünïcode" / "ÜNÏCODE") are merged into the oldest, with their tracks
    and play counts; everything else keeps its keys filled."""
    old = _migrate(BEFORE_KEYS)
    OldArtist, OldAlbum, OldTrack = (old.get_model("catalog", name) for name in ("Artist", "Album", "Track"))
    first = OldArtist.objects.create(name="Straße", play_count=3)
    second = OldArtist.objects.create(name="STRASSE", play_count=2)
    other = OldArtist.objects.create(name="Ünïcode Ärtist", play_count=1)
    album_one = OldAlbum.objects.create(title="Weiß", artist=first, play_count=1)
    album_two = OldAlbum.objects.create(title="WEISS", artist=second, year=1999, play_count=4)
    for n, (artist, album) in enumerate([(first, album_one), (second, album_two), (other, None)]):
        OldTrack.objects.create(title=f"T{n}", artist=artist, album=album, duration_s=100, file_path=f"/x/{n}",
                                format="mp3", mime_type="audio/mpeg", size_bytes=1, checksum=f"{n:064d}")

    new = _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    NewArtist, NewAlbum, NewTrack = (new.get_model("catalog", name) for name in ("Artist", "Album", "Track"))
    assert sorted(NewArtist.objects.values_list("pk", "name", "name_key", "search_key", "play_count")) == [
        (first.pk, "Straße", "strasse", "strasse", 5),
        (other.pk, "Ünïcode Ärtist", "ünïcode ärtist", "unicode artist", 1),
    ]
    assert list(NewAlbum.objects.values_list("pk", "artist_id", "title_key", "year", "play_count")) == [
        (album_one.pk, first.pk, "weiss", 1999, 5),
    ]
    assert sorted(NewTrack.objects.values_list("title", "artist_id", "album_id")) == [
        ("T0", first.pk, album_one.pk), ("T1", first.pk, album_one.pk), ("T2", other.pk, None),
    ]
    with pytest.raises(IntegrityError), transaction.atomic():
        Artist.objects.create(name="straße")


def test_keys_are_bounded_and_fold_compatibility_forms():
    assert name_key("ﬃ  Ⅻ") == "ffi xii"
    assert len(name_key("ß" * 300)) == len(search_key("ß" * 300)) == 400



@pytest.mark.parametrize(("url", "query", "expected"), [
    ("/admin/catalog/artist/", "ÜNÏCODE", ["Ünïcode Ärtist"]),
    ("/admin/catalog/album/", "arger UBER", ["Ärger Über Öl"]),
    ("/admin/catalog/track/", "ünïcode FLAC", ["Flac Tone"]),
    ("/admin/catalog/track/", "/nowhere/", ["Flac Tone", "Plain Song"]),  # the plain fields still count
])
def test_admin_search_ignores_case_and_accents(client, library, url, query, expected):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    response = client.get(url, {"q": query})
    assert response.status_code == 200
    assert sorted(str(row).split(" – ")[-1] for row in response.context["cl"].result_list) == expected
