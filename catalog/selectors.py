"""Every non-trivial read of the music library."""

from __future__ import annotations

import unicodedata

from django.db.models import Count, Q, QuerySet, Sum

from catalog.keys import search_key
from catalog.models import Album, Artist, ImportJob, Track

# Searches match the stored folded keys (catalog.keys.search_key) with a folded query:
# case- and accent-insensitive for every script, alike on PostgreSQL and SQLite (whose
# LIKE and LOWER() fold ASCII letters only). A word must appear in one of the fields.
MAX_SEARCH_WORDS = 8


def search_words(query: str) -> list[str]:
    """The folded words of a search (at most MAX_SEARCH_WORDS), as the keys store them."""
    # Control characters (a NUL, which PostgreSQL refuses in any text) are never in a name.
    query = "".join(" " if unicodedata.category(c) == "Cc" else c for c in query)
    return search_key(query).split()[:MAX_SEARCH_WORDS]


def track_search(*, query: str = "") -> QuerySet[Track]:
    tracks = Track.objects.select_related("artist", "album")
    for word in search_words(query):
        # match_key is the folded artist and title, joined by a separator no word contains.
        tracks = tracks.filter(Q(match_key__contains=word) | Q(album__search_key__contains=word))
    return tracks.order_by("artist__name_key", "album__title_key", "disc_number", "track_number", "title")


def artist_search(*, query: str = "") -> QuerySet[Artist]:
    artists = Artist.objects.annotate(track_total=Count("tracks", distinct=True), album_total=Count("albums", distinct=True))
    if words := search_words(query):
        artists = artists.filter(search_key__contains=" ".join(words))
    return artists.filter(track_total__gt=0).order_by("name_key")


def album_search(*, query: str = "") -> QuerySet[Album]:
    albums = Album.objects.select_related("artist").annotate(track_total=Count("tracks"), duration_total_s=Sum("tracks__duration_s"))
    for word in search_words(query):
        albums = albums.filter(Q(search_key__contains=word) | Q(artist__search_key__contains=word))
    return albums.filter(track_total__gt=0).order_by("title_key")


def album_tracks(*, album: Album) -> QuerySet[Track]:
    return album.tracks.select_related("artist", "album").order_by("disc_number", "track_number", "title")


def artist_albums(*, artist: Artist) -> QuerySet[Album]:
    return artist.albums.annotate(track_total=Count("tracks")).order_by("-year", "title")


def artist_tracks(*, artist: Artist) -> QuerySet[Track]:
    return artist.tracks.select_related("album").order_by("album__title", "disc_number", "track_number", "title")


def library_stats() -> dict:
    totals = Track.objects.aggregate(tracks=Count("id"), duration_s=Sum("duration_s"), size_bytes=Sum("size_bytes"))
    return {
        "tracks": totals["tracks"] or 0,
        "duration_s": totals["duration_s"] or 0,
        "size_bytes": totals["size_bytes"] or 0,
        "artists": Artist.objects.filter(tracks__isnull=False).distinct().count(),
        "albums": Album.objects.filter(tracks__isnull=False).distinct().count(),
    }


def recent_tracks(*, limit: int = 8) -> QuerySet[Track]:
    return Track.objects.select_related("artist", "album").order_by("-added_at")[:limit]


def import_jobs_recent(*, limit: int = 20) -> QuerySet[ImportJob]:
    return ImportJob.objects.select_related("created_by").order_by("-created_at")[:limit]


# --- tracks for other apps (scrobbling), with their artist and album -------------------


def _tracks() -> QuerySet[Track]:
    return Track.objects.select_related("artist", "album")


def track_get(*, track_id: int) -> Track | None:
    return _tracks().filter(pk=track_id).first()


def tracks_by_id(*, ids: set[int]) -> dict[int, Track]:
    return _tracks().in_bulk(ids) if ids else {}


def tracks_by_mbid(*, mbids: set[str]) -> dict[str, Track]:
    """Tracks by MusicBrainz recording id."""
    return {t.musicbrainz_id: t for t in _tracks().filter(musicbrainz_id__in=mbids)} if mbids else {}


def tracks_by_match_key(*, keys: set[str]) -> dict[str, Track]:
    """Tracks by match key (catalog.keys.match_key: folded artist and title); the first
    imported of a key when several share it."""
    return {t.match_key: t for t in _tracks().filter(match_key__in=keys).order_by("-id")} if keys else {}


def tracks_longer_than(*, duration_s: float) -> list[Track]:
    return list(_tracks().filter(duration_s__gt=duration_s))
