"""Every write to live channels and sessions except the messages (livefeed/storage.py).

- Channels: added by URL (one per platform and room: adding it again gives the same one),
  removed, followed and unfollowed only by the user who added them or staff. Following sets
  what the user wants (`desired`); the fetcher brings `state` to it.
- State: `channel_transition` is a compare-and-set on the state (optionally on the state the
  caller expects to leave), stores a `LiveStateChange`, logs it with the channel and session
  ids and publishes `live.status` after commit (docs/protocol.md, "Live feed").
- Exactly one fetcher per channel: a lease (`lease_take` succeeds only when nobody holds it
  or the holder's lease expired; `lease_renew` and `lease_release` only with the token
  `lease_take` returned). A worker killed mid-session stops renewing; once its lease expires
  another one takes the channel, continues the same session (`session_open` returns the
  open one) and records the gap.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q
from django.db.models.functions import Now
from django.utils import timezone

from livefeed.clients import UnsupportedUrl, client_for_url
from livefeed.models import LiveChannel, LiveSession, LiveStateChange
from project.realtime import broadcast_on_commit
from project.refusals import Refusal

logger = logging.getLogger(__name__)

State = LiveChannel.State
MAX_URL_LENGTH = 2000
MAX_REASON_LENGTH = 500


class LiveError(Refusal):
    """A request the live feed refuses; `code` maps to an HTTP status (and a websocket error)."""

    HTTP_STATUS = {"invalid": 400, "forbidden": 403, "not_found": 404, "conflict": 409}


def live_group(channel_id: int) -> str:
    """The realtime topic of one channel (websocket /ws/live/<channel_id>/)."""
    return f"live.{channel_id}"


def status_event(channel: LiveChannel, *, reason: str = "") -> dict:
    return {
        "type": "live.status",
        "channel_id": channel.pk,
        "state": channel.state,
        "desired": channel.desired,
        "session_id": channel.current_session_id,
        "last_error": channel.last_error or None,
        "reconnects": channel.reconnects,
        "consecutive_failures": channel.consecutive_failures,
        "messages_total": channel.messages_total,
        "malformed_total": channel.malformed_total,
        "next_check_at": channel.next_check_at.isoformat() if channel.next_check_at else None,
        "state_changed_at": channel.state_changed_at.isoformat() if channel.state_changed_at else None,
        "reason": reason or None,
    }


def _broadcast_status(channel_id: int, *, reason: str = "") -> None:
    def event() -> dict:
        return status_event(LiveChannel.objects.get(pk=channel_id), reason=reason)

    broadcast_on_commit(live_group(channel_id), event)


def _get(channel_id: int) -> LiveChannel:
    channel = LiveChannel.objects.filter(pk=channel_id).first()
    if channel is None:
        raise LiveError("not_found", f"No live channel {channel_id}.")
    return channel


def can_manage(channel: LiveChannel, user) -> bool:
    """Only the user who added a channel and staff may start, stop or delete it."""
    return bool(user and user.is_authenticated and (user.is_staff or channel.added_by_id == user.pk))


def _require_manage(channel: LiveChannel, user) -> None:
    if not can_manage(channel, user):
        raise LiveError("forbidden", "Only the user who added this channel, or staff, can start, stop or remove it.")


# --- channels ---------------------------------------------------------------------------


def channel_add(*, user, url: str, auto_follow: bool = False) -> tuple[LiveChannel, bool]:
    """(channel, created): the channel of the room at `url`; the existing one if that room
    was added before (by anyone)."""
    if not isinstance(url, str) or not url.strip():
        raise LiveError("invalid", "url: give the address of a live room.", field="url")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise LiveError("invalid", f"url: at most {MAX_URL_LENGTH} characters.", field="url")
    try:
        client, ref = client_for_url(url)
    except UnsupportedUrl as exc:
        raise LiveError("invalid", f"url: {exc}", field="url") from None
    existing = LiveChannel.objects.filter(platform=client.name, ref=ref).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            # Auto-follow means "follow it whenever it is live": the fetcher holds it from now
            # on, waiting while the room is offline.
            channel = LiveChannel.objects.create(
                platform=client.name, ref=ref, added_by=user, auto_follow=bool(auto_follow),
                desired=LiveChannel.Desired.FOLLOW if auto_follow else LiveChannel.Desired.STOP)
    except IntegrityError:  # added by someone else at the same moment
        return LiveChannel.objects.get(platform=client.name, ref=ref), False
    logger.info("live channel added", extra={"channel_id": channel.pk, "platform": channel.platform, "ref": ref})
    return channel, True


def channel_update_info(*, channel_id: int, title: str = "", streamer_name: str = "", streamer_id: str = "",
                        avatar_url: str = "") -> None:
    """What the platform says about the room (from RoomInfo); empty values keep what is stored."""
    changes = {key: value[:limit] for key, value, limit in (
        ("title", title, 300), ("streamer_name", streamer_name, 200), ("streamer_id", streamer_id, 100),
        ("avatar_url", avatar_url, 1000)) if value}
    if changes:
        LiveChannel.objects.filter(pk=channel_id).update(**changes)


def channel_remove(*, channel_id: int, actor) -> None:
    """Delete the channel with its sessions and messages (in batches: a busy channel has
    millions). A fetcher still following it loses its lease and stops."""
    from livefeed.storage import messages_delete

    channel = _get(channel_id)
    _require_manage(channel, actor)
    LiveChannel.objects.filter(pk=channel_id).update(desired=LiveChannel.Desired.STOP)
    messages_delete(channel_id=channel_id)
    channel.delete()
    logger.info("live channel removed", extra={"channel_id": channel_id})


def _set_desired(channel_id: int, actor, desired: str) -> LiveChannel:
    channel = _get(channel_id)
    _require_manage(channel, actor)
    changes = {"desired": desired}
    if desired == LiveChannel.Desired.FOLLOW:
        changes.update(next_check_at=timezone.now(), consecutive_failures=0)
    if LiveChannel.objects.filter(pk=channel_id).exclude(desired=desired).update(**changes):
        logger.info("live channel %s", desired, extra={"channel_id": channel_id, "user_id": actor.pk})
        _broadcast_status(channel_id, reason=f"{desired} asked by {actor.get_username()}")
        channel.refresh_from_db()
    return channel


def channel_follow(*, channel_id: int, actor) -> LiveChannel:
    """Ask for the channel to be followed (idempotent: following a followed channel changes nothing)."""
    return _set_desired(channel_id, actor, LiveChannel.Desired.FOLLOW)


def channel_unfollow(*, channel_id: int, actor) -> LiveChannel:
    """Ask for the channel to stop being followed (idempotent)."""
    return _set_desired(channel_id, actor, LiveChannel.Desired.STOP)


def channel_count_malformed(*, channel_id: int, kinds: dict[str, int]) -> None:
    """Add the fetcher's malformed-frame counts (per kind) to the channel's."""
    kinds = {str(kind)[:30]: int(count) for kind, count in kinds.items() if count > 0}
    if not kinds:
        return
    with transaction.atomic():
        channel = LiveChannel.objects.select_for_update().only("malformed_by_kind").filter(pk=channel_id).first()
        if channel is None:
            return
        by_kind = dict(channel.malformed_by_kind)
        for kind, count in kinds.items():
            by_kind[kind] = by_kind.get(kind, 0) + count
        LiveChannel.objects.filter(pk=channel_id).update(
            malformed_by_kind=by_kind, malformed_total=F("malformed_total") + sum(kinds.values()))


# --- state ------------------------------------------------------------------------------


def channel_transition(*, channel_id: int, to: str, reason: str = "", expected_from: str | None = None,
                       next_check_at=None) -> bool:
    """Move the channel to state `to`; True if it moved. With `expected_from`, only from that
    state (a compare-and-set: of two callers, one wins). A move to the state it is in is no
    transition (False, nothing stored). `reason` is stored with the change; moving to
    `error` or `reconnecting` also makes it the channel's last error."""
    if to not in State.values:
        raise LiveError("invalid", f"to: not a state ({', '.join(State.values)}).", field="to")
    if expected_from is not None and expected_from not in State.values:
        raise LiveError("invalid", f"expected_from: not a state ({', '.join(State.values)}).", field="expected_from")
    reason = (reason or "")[:MAX_REASON_LENGTH]
    now = timezone.now()
    with transaction.atomic():
        channel = LiveChannel.objects.select_for_update().filter(pk=channel_id).only(
            "state", "current_session_id").first()
        if channel is None:
            raise LiveError("not_found", f"No live channel {channel_id}.")
        from_state = channel.state
        if from_state == to or (expected_from is not None and from_state != expected_from):
            return False
        changes: dict = {"state": to, "state_changed_at": now}
        if to in (State.ERROR, State.RECONNECTING):
            changes["last_error"] = reason
        if to == State.RECONNECTING:
            changes["reconnects"] = F("reconnects") + 1
        if to == State.RUNNING:
            changes["consecutive_failures"] = 0
        if to == State.WAITING or next_check_at is not None:
            changes["next_check_at"] = next_check_at
        LiveChannel.objects.filter(pk=channel_id).update(**changes)
        LiveStateChange.objects.create(channel_id=channel_id, session_id=channel.current_session_id,
                                       from_state=from_state, to_state=to, reason=reason)
        _broadcast_status(channel_id, reason=reason)
    logger.info("live state %s -> %s", from_state, to,
                extra={"channel_id": channel_id, "session_id": channel.current_session_id, "reason": reason})
    return True


def channel_settle(*, channel_id: int, to: str, reason: str) -> bool:
    """The fetcher ends for good (the broadcast ended, an error a person must fix): what the
    user asked becomes "stop" (so no fetcher starts it again by itself), then the state `to`
    with its reason, in one transaction."""
    with transaction.atomic():
        LiveChannel.objects.filter(pk=channel_id).update(desired=LiveChannel.Desired.STOP)
        return channel_transition(channel_id=channel_id, to=to, reason=reason)


def channel_failure(*, channel_id: int) -> int:
    """One more failed connect in a row; the count now (the fetcher gives up at LIVEFEED_MAX_FAILURES)."""
    LiveChannel.objects.filter(pk=channel_id).update(consecutive_failures=F("consecutive_failures") + 1)
    return LiveChannel.objects.filter(pk=channel_id).values_list("consecutive_failures", flat=True).first() or 0


# --- leases -----------------------------------------------------------------------------


def _expiry(ttl_s: float):
    """The database's clock plus ttl_s: leases are compared with one clock, whatever the
    clocks of the machines that take and renew them say."""
    return ExpressionWrapper(Now() + timedelta(seconds=ttl_s), output_field=DateTimeField())


# A channel has two leases: the fetcher's (its messages) and the recorder's (its video,
# livefeed/recorder.py), each on fields of its own, so the two may run in different workers.
LEASE_FIELDS = {"fetch": "lease", "record": "record_lease"}


def _lease_field(kind: str, name: str) -> str:
    return f"{LEASE_FIELDS[kind]}_{name}"


def lease_take(*, channel_id: int, owner: str, ttl_s: float, kind: str = "fetch") -> str | None:
    """Take the channel for `owner` for `ttl_s` seconds: the lease's token, or None while
    another holder's lease is live."""
    token = secrets.token_hex(16)
    expires = _lease_field(kind, "expires_at")
    taken = LiveChannel.objects.filter(pk=channel_id).filter(
        Q(**{f"{expires}__isnull": True}) | Q(**{f"{expires}__lte": Now()})).update(
        **{_lease_field(kind, "owner"): owner[:200], _lease_field(kind, "token"): token, expires: _expiry(ttl_s)})
    if taken:
        logger.info("live lease taken", extra={"channel_id": channel_id, "owner": owner, "kind": kind})
        return token
    return None


def lease_renew(*, channel_id: int, token: str, ttl_s: float, kind: str = "fetch") -> bool:
    """Extend the lease; False when it is no longer this token's (taken over, or the channel
    removed): the holder must stop at once."""
    if not token:
        return False
    return bool(LiveChannel.objects.filter(pk=channel_id, **{_lease_field(kind, "token"): token}).update(
        **{_lease_field(kind, "expires_at"): _expiry(ttl_s)}))


def lease_release(*, channel_id: int, token: str, kind: str = "fetch") -> bool:
    if not token:
        return False
    released = LiveChannel.objects.filter(pk=channel_id, **{_lease_field(kind, "token"): token}).update(
        **{_lease_field(kind, "owner"): "", _lease_field(kind, "token"): "", _lease_field(kind, "expires_at"): None})
    return bool(released)


# --- sessions ---------------------------------------------------------------------------


def session_open(*, channel_id: int, title: str = "") -> tuple[LiveSession, bool]:
    """(session, created): the channel's open session, or a new one when none is open (a
    worker taking the channel over continues the same session)."""
    with transaction.atomic():
        channel = LiveChannel.objects.select_for_update().filter(pk=channel_id).first()
        if channel is None:
            raise LiveError("not_found", f"No live channel {channel_id}.")
        open_session = LiveSession.objects.filter(channel_id=channel_id, ended_at__isnull=True).first()
        if open_session is not None:
            if channel.current_session_id != open_session.pk:
                LiveChannel.objects.filter(pk=channel_id).update(current_session=open_session)
            return open_session, False
        session = LiveSession.objects.create(channel_id=channel_id, started_at=timezone.now(),
                                             title_at_start=(title or channel.title)[:300])
        LiveChannel.objects.filter(pk=channel_id).update(current_session=session)
    logger.info("live session opened", extra={"channel_id": channel_id, "session_id": session.pk})
    _broadcast_status(channel_id, reason="session opened")
    return session, True


def session_close(*, session_id: int, reason: str) -> bool:
    """End the session (idempotent: False if it had ended). `reason`: LiveSession.EndReason."""
    if reason not in LiveSession.EndReason.values:
        raise LiveError("invalid", f"reason: one of {', '.join(LiveSession.EndReason.values)}.", field="reason")
    with transaction.atomic():
        session = LiveSession.objects.select_for_update().filter(pk=session_id).first()
        if session is None:
            raise LiveError("not_found", f"No live session {session_id}.")
        if session.ended_at is not None:
            return False
        session.ended_at = timezone.now()
        session.end_reason = reason
        session.save(update_fields=["ended_at", "end_reason"])
        LiveChannel.objects.filter(pk=session.channel_id, current_session_id=session_id).update(current_session=None)
        _broadcast_status(session.channel_id, reason=f"session ended: {reason}")
    logger.info("live session closed", extra={"channel_id": session.channel_id, "session_id": session_id,
                                              "reason": reason})
    return True


def session_gap_add(*, session_id: int, start_ms: int, end_ms: int) -> None:
    """Record that nothing was received between start_ms and end_ms (a take-over, a
    reconnect). Recording the same gap twice stores it once."""
    if isinstance(start_ms, bool) or isinstance(end_ms, bool) or not isinstance(start_ms, int) \
            or not isinstance(end_ms, int):
        raise LiveError("invalid", "start_ms and end_ms: whole numbers of milliseconds.", field="start_ms")
    if end_ms < start_ms:
        raise LiveError("invalid", "end_ms: before start_ms.", field="end_ms")
    with transaction.atomic():
        session = LiveSession.objects.select_for_update().filter(pk=session_id).first()
        if session is None:
            raise LiveError("not_found", f"No live session {session_id}.")
        gaps = [list(gap) for gap in session.gaps]
        if [start_ms, end_ms] in gaps:
            return
        gaps.append([start_ms, end_ms])
        gaps.sort()
        session.gaps = gaps
        session.save(update_fields=["gaps"])
    logger.info("live session gap", extra={"session_id": session_id, "start_ms": start_ms, "end_ms": end_ms})

