from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A personal API token. Only its SHA-256 digest is stored; the token is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="The first characters, to tell tokens apart.")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Invite(models.Model):
    """An invite link to sign up (SIGNUP=invite). Only its SHA-256 digest is stored; the
    link is shown once, to the staff member who made it. Each sign-up uses one of
    `max_uses`, by a conditional update, so concurrent sign-ups never overuse it."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="invites_created"
    )
    note = models.CharField(max_length=100, blank=True, help_text="Who it is for (shown to staff only).")
    prefix = models.CharField(max_length=12, help_text="The first characters, to tell invites apart.")
    digest = models.CharField(max_length=64, unique=True)
    max_uses = models.PositiveIntegerField(default=1)
    uses = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(max_uses__gte=1), name="invite_max_uses_positive"),
            models.CheckConstraint(condition=models.Q(uses__lte=models.F("max_uses")), name="invite_not_overused"),
        ]

    def __str__(self) -> str:
        return f"{self.note or 'invite'} ({self.prefix}…)"

    def status(self, now=None) -> str:
        """active, used, expired or revoked."""
        from django.utils import timezone

        now = now or timezone.now()
        if self.revoked_at is not None:
            return "revoked"
        if self.uses >= self.max_uses:
            return "used"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"
