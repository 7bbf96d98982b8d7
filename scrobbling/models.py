"""Plays (listening history), links to scrobbling services, and the delivery buffer.

A play is written once, in one transaction with its play counts and one BufferEntry per
service the user has linked. Workers drain the buffer per (service, user) in played_at
order; an entry is deleted only once the service has accepted it. What a service refuses
for good goes to DeadLetter with the service's answer, where staff can requeue it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from catalog.keys import match_key
from project.crypto import EncryptedTextField
from scrobbling.clients import registry, service_choices

# `service` columns hold a registered client's name (scrobbling/clients): the choices are
# the registry's, read when needed, so a new service needs no migration.


class Play(models.Model):
    """One play of a track by a user: the history row. Unique per (user, track, played_at),
    so a resubmitted play changes nothing."""

    class Source(models.TextChoices):
        ROOM = "room", "Room"
        LIBRARY = "library", "Library player"
        API = "api", "API"
        EXTERNAL = "external", "External player"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="plays")
    track = models.ForeignKey(
        "catalog.Track", on_delete=models.SET_NULL, null=True, blank=True, related_name="plays",
        help_text="Empty for a listen from an outside player that matched no library track.",
    )
    # What was played, as sent on to services (kept if the library track goes away).
    artist_name = models.CharField(max_length=300)
    track_title = models.CharField(max_length=500)
    album_title = models.CharField(max_length=300, blank=True, default="")
    recording_mbid = models.CharField(max_length=36, blank=True, default="")
    match_key = models.CharField(
        max_length=400, blank=True, default="", editable=False,
        help_text="Folded artist and title (catalog.models.match_key): an unmatched play is unique by it.",
    )
    duration_s = models.FloatField(null=True, blank=True)
    played_at = models.DateTimeField(help_text="When the play started.")
    played_s = models.FloatField(null=True, blank=True, help_text="How long it was played, when known.")
    source = models.CharField(max_length=10, choices=Source.choices)
    room = models.ForeignKey("rooms.Room", on_delete=models.SET_NULL, null=True, blank=True, related_name="plays")
    client = models.CharField(max_length=100, blank=True, default="", help_text="The submitting program, if it said.")
    sent_on = models.BooleanField(default=True, help_text="False when it is kept here only (unknown artist).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-played_at", "-id"]
        indexes = [
            models.Index(fields=["user", "-played_at"], name="play_user_played_idx"),
            models.Index(fields=["played_at"], name="play_played_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "track", "played_at"], condition=Q(track__isnull=False), name="play_user_track_time_unique"
            ),
            # Folded in Python, not Lower(): SQLite's LOWER() folds ASCII letters only, and
            # the ORM path and PostgreSQL's single statement must agree on what is a duplicate.
            models.UniqueConstraint(
                fields=["user", "match_key", "played_at"],
                condition=Q(track__isnull=True), name="play_user_unmatched_key_time_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} played {self.artist_name} – {self.track_title} at {self.played_at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        self.match_key = match_key(self.artist_name, self.track_title)
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "match_key"}
        super().save(*args, **kwargs)

    @property
    def is_matched(self) -> bool:
        return self.track_id is not None


class ScrobblerLink(models.Model):
    """A user's account at a scrobbling service. `secret` is the Last.fm session key or the
    ListenBrainz token, encrypted at rest."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused: reconnect"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scrobbler_links")
    service = models.CharField(max_length=20, choices=service_choices)
    account_name = models.CharField(max_length=100, help_text="The user's name at the service.")
    secret = EncryptedTextField()
    api_root = models.URLField(
        max_length=300, blank=True, default="",
        help_text="ListenBrainz-compatible server of this user (Maloja, Koito...); empty: LISTENBRAINZ_API_ROOT.",
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    paused_reason = models.CharField(max_length=300, blank=True, default="")
    paused_at = models.DateTimeField(null=True, blank=True)
    # Back-off after errors the service said to retry later.
    failures = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    last_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user_id", "service"]
        constraints = [models.UniqueConstraint(fields=["user", "service"], name="scrobbler_link_user_service_unique")]

    def __str__(self) -> str:
        return f"{self.user} on {self.get_service_display()} as {self.account_name}"

    @property
    def linked_in_browser(self) -> bool:
        """Reconnected by a round trip to the service (web auth), not with a pasted token."""
        return registry.get(self.service).auth == "web"

    @property
    def is_paused(self) -> bool:
        return self.status == self.Status.PAUSED


class BufferEntry(models.Model):
    """A play waiting to be delivered to one service. Claimed by a worker with a lease
    (lease_until, lease_token) and deleted only after the service accepted it: a worker
    killed mid-send leaves the lease to expire, and the next drain sends it again."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    service = models.CharField(max_length=20, choices=service_choices)
    play = models.ForeignKey(Play, on_delete=models.CASCADE, related_name="buffer_entries")
    played_at = models.DateTimeField()
    enqueued_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        ordering = ["played_at", "id"]
        verbose_name_plural = "buffer entries"
        indexes = [models.Index(fields=["service", "user", "played_at", "id"], name="buffer_drain_order_idx")]
        constraints = [models.UniqueConstraint(fields=["service", "play"], name="buffer_service_play_unique")]

    def __str__(self) -> str:
        return f"{self.play} → {self.service}"


class DeadLetter(models.Model):
    """A play a service refused for good, with what was sent and what it answered."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    service = models.CharField(max_length=20, choices=service_choices)
    play = models.ForeignKey(Play, on_delete=models.CASCADE, related_name="dead_letters")
    payload = models.JSONField(help_text="What was sent.")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.IntegerField(null=True, blank=True, help_text="The service's own error or ignore code.")
    reason = models.CharField(max_length=500)
    answer = models.TextField(blank=True, default="", help_text="The service's answer, as received.")
    created_at = models.DateTimeField(auto_now_add=True)
    requeue_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="Staff asked to send it again; it moves back once the link is active."
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["service", "play"], name="deadletter_service_play_unique")]

    def __str__(self) -> str:
        return f"{self.play} refused by {self.service}: {self.reason}"
