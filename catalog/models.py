"""The music library: artists, albums, tracks, and library imports."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse

from catalog.keys import KEY_LENGTH, UNKNOWN_ARTIST, fold, match_key, name_key, search_key  # noqa: F401


# The folding rules live in catalog/keys.py (public: other apps match plays with them); the
# names are imported here too, so code and migrations that found them here still do.
def _set_keys(instance: models.Model, keys: dict[str, str], kwargs: dict) -> None:
    """Set folded key fields before a save (and save them with `update_fields` too)."""
    for field, value in keys.items():
        setattr(instance, field, value)
    if kwargs.get("update_fields") is not None:
        kwargs["update_fields"] = {*kwargs["update_fields"], *keys}


class Artist(models.Model):
    name = models.CharField(max_length=300)
    name_key = models.CharField(max_length=KEY_LENGTH, default="", editable=False,
                                help_text="The name case-folded (see name_key), set on save; unique.")
    search_key = models.CharField(max_length=KEY_LENGTH, default="", editable=False,
                                  help_text="The name case- and accent-folded, what search matches; set on save.")
    play_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name_key"]
        constraints = [models.UniqueConstraint(fields=["name_key"], name="artist_name_key_unique")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        renamed = not self._state.adding and "name" in (kwargs.get("update_fields") or {"name"})
        _set_keys(self, {"name_key": name_key(self.name), "search_key": search_key(self.name)}, kwargs)
        super().save(*args, **kwargs)
        if renamed:  # the tracks' match keys carry the artist's name (a rename in the admin)
            tracks = list(self.tracks.only("id", "title"))
            for track in tracks:
                track.match_key = match_key(self.name, track.title)
            Track.objects.bulk_update(tracks, ["match_key"], batch_size=500)

    def get_absolute_url(self) -> str:
        return reverse("catalog:artist", args=[self.pk])


class Album(models.Model):
    title = models.CharField(max_length=300)
    title_key = models.CharField(max_length=KEY_LENGTH, default="", editable=False,
                                 help_text="The title case-folded (see name_key), set on save; unique per artist.")
    search_key = models.CharField(max_length=KEY_LENGTH, default="", editable=False,
                                  help_text="The title case- and accent-folded, what search matches; set on save.")
    artist = models.ForeignKey(Artist, on_delete=models.CASCADE, related_name="albums")
    year = models.PositiveSmallIntegerField(null=True, blank=True)
    play_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["title_key"]
        constraints = [
            models.UniqueConstraint(fields=["artist", "title_key"], name="album_artist_title_key_unique")
        ]

    def __str__(self) -> str:
        return self.title

    def save(self, *args, **kwargs):
        _set_keys(self, {"title_key": name_key(self.title), "search_key": search_key(self.title)}, kwargs)
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("catalog:album", args=[self.pk])


class Track(models.Model):
    title = models.CharField(max_length=500)
    artist = models.ForeignKey(Artist, on_delete=models.PROTECT, related_name="tracks")
    album = models.ForeignKey(Album, on_delete=models.SET_NULL, null=True, blank=True, related_name="tracks")
    track_number = models.PositiveSmallIntegerField(null=True, blank=True)
    disc_number = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_s = models.FloatField()
    file_path = models.CharField(max_length=1024, unique=True, help_text="Absolute path of the audio file.")
    format = models.CharField(max_length=16, help_text="Container/codec, e.g. mp3, flac, ogg.")
    mime_type = models.CharField(max_length=64)
    bitrate_bps = models.PositiveIntegerField(null=True, blank=True)
    sample_rate_hz = models.PositiveIntegerField(null=True, blank=True)
    size_bytes = models.PositiveBigIntegerField()
    file_mtime_ns = models.BigIntegerField(default=0, help_text="Modification time when imported.")
    checksum = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the file's bytes.")
    musicbrainz_id = models.CharField(max_length=36, blank=True, default="")
    match_key = models.CharField(max_length=400, blank=True, default="", editable=False,
                                 help_text="Folded artist and title (see match_key), set on save.")
    added_at = models.DateTimeField(auto_now_add=True)
    play_count = models.PositiveIntegerField(default=0)
    missing_since = models.DateTimeField(
        null=True, blank=True, help_text="Set when the file was found missing on disk."
    )

    class Meta:
        ordering = ["album__title", "disc_number", "track_number", "title"]
        indexes = [
            models.Index(Lower("title"), name="track_title_lower_idx"),
            models.Index(fields=["-added_at"], name="track_added_idx"),
            models.Index(fields=["match_key"], name="track_match_key_idx"),
            models.Index(fields=["musicbrainz_id"], name="track_mbid_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.artist} – {self.title}"

    def save(self, *args, **kwargs):
        _set_keys(self, {"match_key": match_key(self.artist.name, self.title)}, kwargs)
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("catalog:track", args=[self.pk])

    def get_stream_url(self) -> str:
        return reverse("catalog:track-stream", args=[self.pk])


class ImportJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    path = models.CharField(max_length=1024)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    files_total = models.PositiveIntegerField(null=True, blank=True, help_text="Known once the walk is done.")
    files_seen = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    already_present = models.PositiveIntegerField(default=0, help_text="Files already in the library.")
    skipped = models.PositiveIntegerField(default=0, help_text="Files that could not be imported.")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Import #{self.pk} of {self.path}"

    def get_absolute_url(self) -> str:
        return reverse("catalog:import-detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.FAILED}

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        if not self.files_total:
            return 0
        return min(100, round(100 * self.files_seen / self.files_total))


class ImportSkip(models.Model):
    """A file an import could not take, and why."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="skips")
    path = models.CharField(max_length=1024)
    reason = models.CharField(max_length=500)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


# The film and TV catalog (its own module; here so Django finds the models).
from catalog.film_models import (  # noqa: E402, F401
    Country,
    Credit,
    Danmaku,
    Episode,
    ExternalId,
    Favorite,
    Genre,
    Language,
    Person,
    Release,
    Season,
    SyncItem,
    SyncRun,
    Title,
    Video,
    WatchProgress,
)
