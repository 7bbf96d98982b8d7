"""API tokens: created once, stored hashed, revoked for good."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from project.accounts.models import ApiToken

TOKEN_PREFIX = "chorus_"  # noqa: S105 - a public marker, not a secret
# last_used_at is written at most this often per token, to keep reads cheap.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    """Create a token for `user`; returns the row and the raw token (shown only now)."""
    name = name.strip()
    if not name:
        raise ValidationError("Give the token a name, such as the device or script that uses it.")
    if len(name) > 100:
        raise ValidationError("A token name has at most 100 characters.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=raw[: len(TOKEN_PREFIX) + 5], digest=_digest(raw))
    return token, raw


def token_revoke(*, user: AbstractBaseUser, token_id: int) -> ApiToken:
    """Revoke one of `user`'s tokens. Staff may not revoke other people's tokens here either."""
    try:
        token = ApiToken.objects.get(id=token_id)
    except ApiToken.DoesNotExist:
        raise ValidationError("No such token.") from None
    if token.user_id != user.pk:
        raise PermissionDenied("That token belongs to someone else.")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def token_authenticate(raw: str | None) -> AbstractBaseUser | None:
    """The active user owning `raw`, or None for an unknown, revoked or malformed token."""
    if not raw or not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=_digest(raw), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(id=token.id).update(last_used_at=now)
    return token.user


def bearer_from_header(value: str | None) -> str | None:
    """The token in an `Authorization: Bearer <token>` header value."""
    if not value:
        return None
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None
