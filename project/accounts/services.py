"""Accounts: API tokens (created once, stored hashed, revoked for good), sign-up with the
SIGNUP mode and invite links (stored hashed too, used by a conditional update), and
revocation of open connections when a token or a user stops being valid."""

from __future__ import annotations

import base64
import copy
import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from project.accounts import revocation
from project.accounts.models import ApiToken, Invite

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
    if ApiToken.objects.filter(id=token.id, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        # Connections opened with this token (websockets, radio streams) close now too.
        revocation.revoke_on_commit(user_id=token.user_id, reason=revocation.REASON_TOKEN, token_id=token.id)
    token.refresh_from_db(fields=["revoked_at"])
    return token


def token_authenticate(raw: str | None, *, streams: bool = False) -> AbstractBaseUser | None:
    """The active user owning `raw`, or None for an unknown, revoked or malformed token.

    A stream token (stream_token_get) opens audio streams and playlists only: it counts
    only where the caller says `streams=True`.

    The user carries `auth_token_id`, the token's id, so that a connection opened with it
    can be closed when that token (and not another of the user's) is revoked."""
    return tokens_authenticate([raw], streams=streams)[0]


def tokens_authenticate(raws: list[str | None], *, streams: bool = False) -> list[AbstractBaseUser | None]:
    """token_authenticate for many tokens at once (a reconnect storm's handshakes), in one
    query, and one write of last_used_at for those due: a user (or None) per token, in order."""
    digests = {raw: _digest(raw) for raw in raws if raw and raw.startswith(TOKEN_PREFIX) and len(raw) <= 200}
    if not digests:
        return [None] * len(raws)
    found = {
        token.digest: token
        for token in ApiToken.objects.select_related("user").filter(
            digest__in=set(digests.values()), revoked_at__isnull=True, user__is_active=True
        )
        if streams or not _is_stream_token(token)
    }
    now = timezone.now()
    due = [t.id for t in found.values() if t.last_used_at is None or now - t.last_used_at > LAST_USED_RESOLUTION]
    if due:
        ApiToken.objects.filter(id__in=due).update(last_used_at=now)
    users, given = [], set()
    for raw in raws:
        token = found.get(digests.get(raw))
        if token is None:
            users.append(None)
            continue
        # Each caller gets its own user object, even for the same token twice.
        user = copy.copy(token.user) if token.id in given else token.user
        given.add(token.id)
        user.auth_token_id = token.id
        users.append(user)
    return users


# --- the stream token ------------------------------------------------------------------
# Playlists (M3U) carry a token in each track URL, for players that cannot log in. It is a
# row like any API token (listed and revocable on the settings page), but it opens only
# streams, and its value is derived from the row's id with SECRET_KEY (an HMAC), so the
# server can put it in every playlist it makes without storing it: revoking it breaks every
# playlist made with it, and the next playlist gets a new one.

STREAM_TOKEN_NAME = "Playlists and players (streams only)"  # noqa: S105 - a label


def _stream_raw(token: ApiToken) -> str:
    mac = salted_hmac("chorus.accounts.stream-token", f"{token.user_id}:{token.pk}", algorithm="sha256")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def _is_stream_token(token: ApiToken) -> bool:
    return token.name == STREAM_TOKEN_NAME and constant_time_compare(token.digest, _digest(_stream_raw(token)))


def stream_token_get(*, user: AbstractBaseUser) -> str:
    """The user's stream token (made on first use): only for audio streams and playlists."""
    for token in ApiToken.objects.filter(user=user, name=STREAM_TOKEN_NAME, revoked_at__isnull=True).order_by("-id"):
        if _is_stream_token(token):
            return _stream_raw(token)
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=STREAM_TOKEN_NAME, prefix="", digest=secrets.token_hex(32))
        raw = _stream_raw(token)
        token.prefix, token.digest = raw[: len(TOKEN_PREFIX) + 5], _digest(raw)
        token.save(update_fields=["prefix", "digest"])
    return raw


def bearer_from_header(value: str | None) -> str | None:
    """The token in an `Authorization: Bearer <token>` header value."""
    if not value:
        return None
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def user_connections_revoke(*, user_id: int) -> None:
    """Close every open connection of a user who was made inactive or deleted (after commit).
    Called for every save of an inactive user and every deletion (project/accounts/apps.py),
    so the admin's change form and `user.save()` both do it."""
    revocation.revoke_on_commit(user_id=user_id, reason=revocation.REASON_USER)


def user_deactivate(*, user: AbstractBaseUser) -> None:
    """Make an account inactive: it can no longer log in, its tokens are refused and its
    open connections close."""
    user.is_active = False
    user.save(update_fields=["is_active"])


# --- sign-up and invites -----------------------------------------------------------

INVITE_MAX_USES = 1000
INVITE_MAX_DAYS = 365


def signup_mode() -> str:
    """closed, invite or open (settings.SIGNUP)."""
    return settings.SIGNUP


def invite_create(*, created_by: AbstractBaseUser, max_uses: int = 1, expires_in_days: int | None = None,
                  note: str = "") -> tuple[Invite, str]:
    """A staff member makes an invite; returns the row and the raw token (shown only now)."""
    if not (created_by.is_active and created_by.is_staff):
        raise PermissionDenied("Only staff can create invites.")
    if isinstance(max_uses, bool) or not isinstance(max_uses, int) or not 1 <= max_uses <= INVITE_MAX_USES:
        raise ValidationError(f"An invite can be used 1 to {INVITE_MAX_USES} times.")
    if expires_in_days is not None and (
        isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int)
        or not 1 <= expires_in_days <= INVITE_MAX_DAYS
    ):
        raise ValidationError(f"An invite expires after 1 to {INVITE_MAX_DAYS} days (or never).")
    note = (note or "").strip()
    if len(note) > 100:
        raise ValidationError("A note has at most 100 characters.")
    invite = Invite(created_by=created_by, note=note, max_uses=max_uses)
    if expires_in_days is not None:
        invite.expires_at = timezone.now() + timedelta(days=expires_in_days)
    raw = invite_set_token(invite=invite)
    invite.save()
    return invite, raw


def invite_set_token(*, invite: Invite) -> str:
    """Give an unsaved invite a new token (the admin's add form uses this); returns it."""
    raw = secrets.token_urlsafe(24)
    invite.prefix = raw[:6]
    invite.digest = _digest(raw)
    return raw


def invite_check(*, raw: str | None) -> Invite:
    """The usable invite for `raw`, or ValidationError saying why it cannot be used."""
    if not raw or len(raw) > 200:
        raise ValidationError("This sign-up needs an invite link: ask the staff of this server for one.")
    invite = Invite.objects.filter(digest=_digest(raw)).first()
    status = invite.status() if invite is not None else "unknown"
    if status != "active":
        raise ValidationError({
            "unknown": "This invite link is not valid: check that you copied all of it.",
            "used": "This invite link has already been used. Ask for a new one.",
            "expired": "This invite link has expired. Ask for a new one.",
            "revoked": "This invite link was withdrawn. Ask for a new one.",
        }[status])
    return invite


def _invite_use(*, raw: str | None) -> Invite:
    """Take one use of the invite, or raise why not. A conditional update: of two sign-ups
    racing for the last use, exactly one gets it."""
    invite = invite_check(raw=raw)
    now = timezone.now()
    taken = (
        Invite.objects.filter(id=invite.id, revoked_at__isnull=True, uses__lt=F("max_uses"))
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .update(uses=F("uses") + 1)
    )
    if not taken:
        invite_check(raw=raw)  # says why (used up, expired or revoked meanwhile)
        raise ValidationError("This invite link can no longer be used.")
    return invite


def account_signup(*, username: str, password: str, invite_token: str | None = None) -> AbstractBaseUser:
    """Create an account as SIGNUP allows: `open` anyone, `invite` with a usable invite
    (one of its uses is taken), `closed` nobody (staff create accounts in the admin). The
    username and password are validated by the form (SignupForm) before this."""
    mode = signup_mode()
    if mode == "closed":
        raise PermissionDenied("Sign-up is closed on this server: its staff create accounts.")
    try:
        with transaction.atomic():
            if mode == "invite":
                _invite_use(raw=invite_token)
            return get_user_model().objects.create_user(username=username, password=password)
    except IntegrityError:  # the same username signed up a moment earlier
        raise ValidationError("A user with that username already exists.") from None


def invite_revoke(*, actor: AbstractBaseUser, invite_id: int) -> Invite:
    if not (actor.is_active and actor.is_staff):
        raise PermissionDenied("Only staff can withdraw invites.")
    invite = Invite.objects.filter(id=invite_id).first()
    if invite is None:
        raise ValidationError("No such invite.")
    Invite.objects.filter(id=invite.id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    invite.refresh_from_db(fields=["revoked_at"])
    return invite
