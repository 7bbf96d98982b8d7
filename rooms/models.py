"""Listening rooms: who is in them, what is queued, and the shared playback state."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.urls import reverse


def new_invite_code() -> str:
    return secrets.token_urlsafe(12)


class Room(models.Model):
    class Visibility(models.TextChoices):
        PUBLIC = "public"
        PRIVATE = "private"

    class ControlPolicy(models.TextChoices):
        HOST_ONLY = "host_only", "Only the host"
        DJS = "djs", "Host and DJs"
        EVERYONE = "everyone", "Everyone"

    class Repeat(models.TextChoices):
        OFF = "off"
        ONE = "one"
        ALL = "all"

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="owned_rooms")
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC)
    control_policy = models.CharField(max_length=10, choices=ControlPolicy.choices, default=ControlPolicy.DJS)
    invite_code = models.CharField(max_length=32, unique=True, default=new_invite_code)
    repeat = models.CharField(max_length=3, choices=Repeat.choices, default=Repeat.OFF)
    shuffle = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("rooms:detail", args=[self.slug])


class Membership(models.Model):
    class Role(models.TextChoices):
        HOST = "host"
        DJ = "dj"
        LISTENER = "listener"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.LISTENER)
    joined_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    # The last sync report of this member's player (milliseconds).
    offset_ms = models.FloatField(null=True, blank=True)
    rtt_ms = models.FloatField(null=True, blank=True)
    drift_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["joined_at"]
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="membership_room_user_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.room} ({self.role})"


class QueueEntry(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="queue")
    track = models.ForeignKey("catalog.Track", on_delete=models.CASCADE, related_name="+")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    position = models.PositiveIntegerField()
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "id"]
        indexes = [models.Index(fields=["room", "position"])]

    def __str__(self) -> str:
        return f"#{self.position} {self.track_id} in {self.room_id}"


def clock_at(*, base_s: float, playing: bool, anchor_ms: int, rate: float, server_ms: int) -> float:
    """The one playback formula: seconds at `server_ms` of a clock that read `base_s` at
    `anchor_ms` and runs at `rate` while playing (stopped before its anchor: a scheduled
    start). Position and seconds heard, of a row and of a room.state event, all use it."""
    if not playing or server_ms <= anchor_ms:
        return base_s
    return base_s + (server_ms - anchor_ms) / 1000 * rate


class PlaybackState(models.Model):
    """One per room. Position at server time T while playing:
    position_s + (T - anchor_ms) / 1000 * rate. Every change bumps `version` by one,
    written with a compare-and-set on the previous version."""

    class Status(models.TextChoices):
        PLAYING = "playing"
        PAUSED = "paused"
        STOPPED = "stopped"
        WAITING = "waiting"

    room = models.OneToOneField(Room, on_delete=models.CASCADE, primary_key=True, related_name="playback")
    entry = models.ForeignKey(QueueEntry, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.STOPPED)
    position_s = models.FloatField(default=0)
    anchor_ms = models.BigIntegerField(default=0)
    rate = models.FloatField(default=1.0)
    volume = models.FloatField(default=1.0)
    version = models.PositiveBigIntegerField(default=0)
    # While waiting: when the wait started (server ms) and which entry the members load.
    waiting_since_ms = models.BigIntegerField(null=True, blank=True)
    # When the current entry's play began (first start from its beginning); a play's
    # scrobbles carry it as played_at, which makes them unique per play.
    started_at = models.DateTimeField(null=True, blank=True)
    # Seconds of the current play actually played up to anchor_ms (seeks do not count): a
    # play is scrobbled on what was heard, not on where it is.
    heard_s = models.FloatField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.room_id}: {self.status} v{self.version}"

    def heard_at(self, server_ms: int) -> float:
        """Seconds of this play heard by `server_ms`."""
        return clock_at(base_s=self.heard_s, playing=self.status == self.Status.PLAYING, anchor_ms=self.anchor_ms,
                        rate=self.rate, server_ms=server_ms)

    def position_at(self, server_ms: int) -> float:
        """Where playback is at `server_ms` (before a scheduled start: where it will start)."""
        return clock_at(base_s=self.position_s, playing=self.status == self.Status.PLAYING,
                        anchor_ms=self.anchor_ms, rate=self.rate, server_ms=server_ms)
