"""The film and TV half of the catalog: titles synced from Douban and TMDB (catalog/clients),
merged by external ids, with their people, seasons and episodes, the videos that play them,
and what users do with them (favourites, watch progress, danmaku). `SyncRun` and `SyncItem`
record every sync: what it listed, what it fetched, what failed and why.

Imported into catalog/models.py, which is where Django finds them; import them from there.

Uniqueness is the database's: one title per (source, kind, id) and per IMDb id, one person per
key, one genre/country/language per name, one credit per (title, person, role), one season per
number, one episode per number in its season, one run in flight per source. A sync killed at
any point and run again therefore never makes a second row of anything.

Field locks: a field a staff member edited by hand is named in `Title.locked_fields`; no sync
writes it again until the lock is released (the admin shows the locks and releases them).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from catalog.keys import KEY_LENGTH, search_key

MOVIE = "movie"
TV = "tv"
RECORDING = "recording"

# Title fields a sync writes and a staff member can lock. The order is the admin's.
LOCKABLE_FIELDS = (
    "title", "original_title", "other_titles", "year", "rating", "votes", "synopsis", "cover",
    "release_date", "runtime_min", "imdb_id", "episode_count", "episode_runtime_min",
    "season_number", "genres", "countries", "languages", "releases", "credits",
)


class _Named(models.Model):
    """A genre, country/region or language: one row per name, as the source writes it."""

    name = models.CharField(max_length=100, unique=True)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Genre(_Named):
    pass


class Country(_Named):
    class Meta(_Named.Meta):
        verbose_name_plural = "countries"


class Language(_Named):
    pass


class Person(models.Model):
    """A director, writer or actor. `key` is what makes two credits the same person: the first
    source's own id ("douban:1274297", "tmdb:287") or, where the source gives none, the folded
    name ("name:张艺谋")."""

    name = models.CharField(max_length=300)
    key = models.CharField(max_length=KEY_LENGTH, unique=True)
    search_key = models.CharField(max_length=KEY_LENGTH, default="", editable=False)
    external_ids = models.JSONField(default=dict, blank=True, help_text='{"douban": "1274297", "tmdb": "287"}')
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "people"
        indexes = [models.Index(fields=["search_key"], name="person_search_idx")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        self.search_key = search_key(self.name)
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "search_key"}
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("catalog:person", args=[self.pk])


class Title(models.Model):
    class Kind(models.TextChoices):
        MOVIE = "movie", "Film"
        TV = "tv", "TV"
        RECORDING = "recording", "Live recording"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    title = models.CharField(max_length=500, help_text="The title in the catalog's language (Douban's Chinese title).")
    original_title = models.CharField(max_length=500, blank=True, default="")
    other_titles = models.JSONField(default=list, blank=True, help_text="Other names (又名, the other language's).")
    search_key = models.CharField(max_length=2000, default="", editable=False,
                                  help_text="Every title folded, what search matches; set on save.")
    year = models.PositiveSmallIntegerField(null=True, blank=True)
    rating = models.FloatField(null=True, blank=True, help_text="Douban's rating, 0-10 (TMDB's where Douban has none).")
    votes = models.PositiveIntegerField(null=True, blank=True)
    synopsis = models.TextField(blank=True, default="")
    cover = models.CharField(max_length=300, blank=True, default="",
                             help_text="Path of the stored cover under MEDIA_ROOT.")
    cover_source_url = models.URLField(max_length=1000, blank=True, default="",
                                       help_text="Where the cover was downloaded from.")
    release_date = models.DateField(null=True, blank=True, help_text="The earliest release (first air date for TV).")
    runtime_min = models.PositiveIntegerField(null=True, blank=True)
    imdb_id = models.CharField(max_length=16, blank=True, default="")
    episode_count = models.PositiveIntegerField(null=True, blank=True)
    episode_runtime_min = models.PositiveIntegerField(null=True, blank=True)
    season_number = models.PositiveSmallIntegerField(null=True, blank=True,
                                                     help_text="TV: the season this title is (Douban lists seasons as titles).")
    genres = models.ManyToManyField(Genre, blank=True, related_name="titles")
    countries = models.ManyToManyField(Country, blank=True, related_name="titles")
    languages = models.ManyToManyField(Language, blank=True, related_name="titles")
    locked_fields = models.JSONField(default=list, blank=True,
                                     help_text="Fields edited by hand: no sync writes them until released.")
    field_sources = models.JSONField(default=dict, blank=True, editable=False,
                                     help_text='Which source wrote each field: {"rating": "douban"}.')
    details_fetched_at = models.DateTimeField(null=True, blank=True,
                                              help_text="Last time a source's details were fetched (tiered refresh).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-release_date", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["imdb_id"], condition=~Q(imdb_id=""), name="title_imdb_unique"),
            models.CheckConstraint(condition=Q(rating__isnull=True) | Q(rating__gte=0, rating__lte=10),
                                   name="title_rating_range"),
        ]
        indexes = [
            models.Index(fields=["kind", "-release_date"], name="title_kind_release_idx"),
            models.Index(fields=["year"], name="title_year_idx"),
            models.Index(fields=["-rating"], name="title_rating_idx"),
            models.Index(fields=["details_fetched_at"], name="title_fetched_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.year})" if self.year else self.title

    def save(self, *args, **kwargs):
        names = [self.title, self.original_title, *[str(name) for name in (self.other_titles or [])]]
        self.search_key = "\x1f".join(search_key(name) for name in names if name)[:2000]
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "search_key"}
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("catalog:title", args=[self.pk])

    def is_locked(self, field: str) -> bool:
        return field in (self.locked_fields or [])


class ExternalId(models.Model):
    """A title's id at one source. TMDB numbers movies and TV apart (movie 1399 and tv 1399 are
    two titles), so the kind is part of the key."""

    title = models.ForeignKey(Title, on_delete=models.CASCADE, related_name="external_ids")
    source = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, choices=Title.Kind.choices)
    value = models.CharField(max_length=64)

    class Meta:
        ordering = ["source"]
        constraints = [
            models.UniqueConstraint(fields=["source", "kind", "value"], name="external_id_unique"),
            models.UniqueConstraint(fields=["title", "source"], name="external_id_one_per_source"),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.kind}/{self.value}"


class Release(models.Model):
    """One dated release of a title, as a source lists it ("2023-05-19(戛纳电影节)")."""

    class Precision(models.TextChoices):
        DAY = "day"
        MONTH = "month"
        YEAR = "year"

    title = models.ForeignKey(Title, on_delete=models.CASCADE, related_name="releases")
    date = models.DateField()
    region = models.CharField(max_length=100, blank=True, default="")
    precision = models.CharField(max_length=8, choices=Precision.choices, default=Precision.DAY)

    class Meta:
        ordering = ["date", "region"]
        constraints = [models.UniqueConstraint(fields=["title", "date", "region"], name="release_unique")]

    def __str__(self) -> str:
        return f"{self.date.isoformat()} ({self.region})" if self.region else self.date.isoformat()


class Credit(models.Model):
    class Role(models.TextChoices):
        DIRECTOR = "director"
        WRITER = "writer"
        ACTOR = "actor"

    title = models.ForeignKey(Title, on_delete=models.CASCADE, related_name="credits")
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="credits")
    role = models.CharField(max_length=16, choices=Role.choices)
    order = models.PositiveSmallIntegerField(default=0, help_text="The source's order within the role, from 0.")
    character = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["role", "order"]
        constraints = [models.UniqueConstraint(fields=["title", "person", "role"], name="credit_unique")]

    def __str__(self) -> str:
        return f"{self.person} ({self.role}) in {self.title}"


class Season(models.Model):
    title = models.ForeignKey(Title, on_delete=models.CASCADE, related_name="seasons")
    number = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=300, blank=True, default="")
    air_date = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [models.UniqueConstraint(fields=["title", "number"], name="season_unique")]

    def __str__(self) -> str:
        return f"{self.title} S{self.number:02d}"


class Episode(models.Model):
    season = models.ForeignKey(Season, on_delete=models.CASCADE, related_name="episodes")
    number = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=300, blank=True, default="")
    air_date = models.DateField(null=True, blank=True)
    runtime_min = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["season__number", "number"]
        constraints = [models.UniqueConstraint(fields=["season", "number"], name="episode_unique")]

    def __str__(self) -> str:
        return f"{self.season.title} S{self.season.number:02d}E{self.number:02d}"


class Video(models.Model):
    """A playable file of a title (or of one of its episodes): a local file imported from under
    LIBRARY_DIR, matched by its name ("Title (Year).mkv", "S01E02"), or a live recording."""

    title = models.ForeignKey(Title, on_delete=models.CASCADE, related_name="videos")
    episode = models.ForeignKey(Episode, on_delete=models.CASCADE, null=True, blank=True, related_name="videos")
    file_path = models.CharField(max_length=1024, unique=True, help_text="Absolute path of the video file.")
    mime_type = models.CharField(max_length=64)
    duration_s = models.FloatField(null=True, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    file_mtime_ns = models.BigIntegerField(default=0)
    stream_url = models.CharField(max_length=300, blank=True, default="", help_text=(
        "Where the player gets it when the file itself is not playable in a browser (a live "
        "recording's FLV/TS part, remuxed to mp4 by the live feed); empty: the file, as it is."))
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["episode__season__number", "episode__number", "id"]

    def __str__(self) -> str:
        return self.file_path

    def get_stream_url(self) -> str:
        return self.stream_url or reverse("catalog:video-stream", args=[self.pk])


class Danmaku(models.Model):
    """A time-coded comment, drawn over the picture when the playhead reaches `offset_ms`."""

    class Mode(models.TextChoices):
        SCROLL = "scroll"
        TOP = "top"
        BOTTOM = "bottom"

    MAX_LENGTH = 100

    title = models.ForeignKey(Title, on_delete=models.CASCADE, related_name="danmaku")
    episode = models.ForeignKey(Episode, on_delete=models.CASCADE, null=True, blank=True, related_name="danmaku")
    offset_ms = models.PositiveIntegerField()
    text = models.CharField(max_length=MAX_LENGTH)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="danmaku")
    color = models.CharField(max_length=7, default="#ffffff", help_text="#rrggbb")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.SCROLL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["offset_ms", "id"]
        verbose_name_plural = "danmaku"
        indexes = [models.Index(fields=["title", "episode", "offset_ms"], name="danmaku_window_idx")]

    def __str__(self) -> str:
        return f"{self.offset_ms / 1000:.1f}s {self.text}"


class Favorite(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="favorites")
    title = models.ForeignKey(Title, on_delete=models.CASCADE, related_name="favorites")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["user", "title"], name="favorite_unique")]

    def __str__(self) -> str:
        return f"{self.user} ♥ {self.title}"


class WatchProgress(models.Model):
    """Where a user is in a title (a film) or in one episode of it (TV)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watch_progress")
    title = models.ForeignKey(Title, on_delete=models.CASCADE, related_name="watch_progress")
    episode = models.ForeignKey(Episode, on_delete=models.CASCADE, null=True, blank=True, related_name="watch_progress")
    position_s = models.FloatField(default=0)
    finished = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name_plural = "watch progress"
        constraints = [
            models.UniqueConstraint(fields=["user", "title"], condition=Q(episode__isnull=True),
                                    name="progress_title_unique"),
            models.UniqueConstraint(fields=["user", "episode"], condition=Q(episode__isnull=False),
                                    name="progress_episode_unique"),
            models.CheckConstraint(condition=Q(position_s__gte=0), name="progress_position_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.user} at {self.position_s:.0f}s of {self.episode or self.title}"


class SyncRun(models.Model):
    """One sync of one source: what it listed, what it did with each item, how it ended."""

    class Kind(models.TextChoices):
        NEWEST = "newest", "Newest titles"
        CHANGES = "changes", "Changed titles"
        REFRESH = "refresh", "Refresh"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        MANUAL = "manual"
        API = "api"

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        BLOCKED = "blocked", "Stopped: the source refused us"

    IN_FLIGHT = (State.QUEUED, State.RUNNING)

    source = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.NEWEST)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULE)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True,
                                       help_text="The worker running it holds it until then; a later worker takes over.")
    lease_owner = models.CharField(max_length=64, blank=True, default="", editable=False,
                                   help_text="The token of the worker holding the lease.")
    retry_at = models.DateTimeField(null=True, blank=True,
                                    help_text="Blocked by the source: the next trigger continues it from then on.")
    listed = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    new = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    detail_requests = models.PositiveIntegerField(default=0)
    current_item = models.CharField(max_length=500, blank=True, default="")
    error = models.TextField(blank=True, default="", help_text="Why the run stopped, when it did.")
    errors = models.JSONField(default=list, blank=True, help_text='[{"item": ..., "reason": ...}]')

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["source"], condition=Q(state__in=["queued", "running"]),
                                    name="sync_run_one_in_flight"),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.kind} #{self.pk} ({self.state})"

    def get_absolute_url(self) -> str:
        return reverse("catalog:sync-run", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.state not in self.IN_FLIGHT

    @property
    def percent(self) -> int:
        if self.state == self.State.DONE:
            return 100
        if not self.listed:
            return 0
        return min(100, round(100 * self.done / self.listed))


class SyncItem(models.Model):
    """One listed entry of a run and what became of it; what a resumed run still has to do."""

    class State(models.TextChoices):
        PENDING = "pending"
        NEW = "new"
        UPDATED = "updated"
        UNCHANGED = "unchanged"
        SKIPPED = "skipped"
        FAILED = "failed"

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="items")
    source_id = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=Title.Kind.choices)
    label = models.CharField(max_length=500, blank=True, default="")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    reason = models.CharField(max_length=500, blank=True, default="")
    title = models.ForeignKey(Title, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["run", "kind", "source_id"], name="sync_item_unique")]
        indexes = [models.Index(fields=["run", "state"], name="sync_item_state_idx")]

    def __str__(self) -> str:
        return f"{self.kind}/{self.source_id}: {self.state}"
