"""Reads of the live feed: channel lists and status, sessions, message pages. No writes."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Case, IntegerField, Prefetch, Q, QuerySet, Value, When
from django.utils import timezone

from livefeed import services
from livefeed.models import LiveChannel, LiveMessage, LiveSession, Recording, Segment

ACTIVE_STATES = (LiveChannel.State.RUNNING, LiveChannel.State.RECONNECTING, LiveChannel.State.STARTING)
MESSAGES_LIMIT_MAX = 1000


def channel_list() -> QuerySet[LiveChannel]:
    """Every channel, those being followed first (then the most recently added)."""
    return LiveChannel.objects.select_related("current_session", "added_by").annotate(
        active=Case(When(state__in=ACTIVE_STATES, then=Value(0)), default=Value(1), output_field=IntegerField()),
    ).order_by("active", "-id")


def channel_status_event(*, channel_id: int) -> dict | None:
    channel = LiveChannel.objects.select_related("current_session").filter(pk=channel_id).first()
    if channel is None:
        return None
    return services.status_event(channel)


def channel_sessions(*, channel: LiveChannel) -> QuerySet[LiveSession]:
    return LiveSession.objects.filter(channel=channel).order_by("-started_at", "-id")


def _session_rows(session: LiveSession, *, type: str | None, user: str | None) -> QuerySet[LiveMessage]:
    rows = LiveMessage.objects.filter(session=session)
    if type:
        rows = rows.filter(type=type)
    if user:
        rows = rows.filter(channel_id=session.channel_id, user_id=user)
    return rows


def session_messages(*, session: LiveSession, type: str | None = None, user: str | None = None,
                     after_id: int | None = None, limit: int = 100) -> tuple[list[LiveMessage], int | None]:
    """Oldest first by id after `after_id`; the id to ask after next, or None at the end."""
    rows = _session_rows(session, type=type, user=user)
    if after_id:
        rows = rows.filter(id__gt=after_id)
    page = list(rows.order_by("id")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, (page[-1].pk if more and page else None)


def channel_get(*, channel_id: int) -> LiveChannel:
    return LiveChannel.objects.get(pk=channel_id)


def channel_last_received_ms(*, channel_id: int) -> int:
    """When the channel's last message was stored (ms), or now if it has none: where the gap
    of a take-over starts."""
    at = LiveChannel.objects.filter(pk=channel_id).values_list("last_message_at", flat=True).first()
    return int(at.timestamp() * 1000) if at else int(timezone.now().timestamp() * 1000)


@dataclass(frozen=True)
class FollowWork:
    take: list[int]  # channels that want following and that nobody holds (or whose lease expired)
    stop: list[int]  # channels this fetcher holds whose user asked to stop, or that were removed


def channels_to_follow(*, held: list[int]) -> FollowWork:
    now = timezone.now()
    take = list(LiveChannel.objects.filter(desired=LiveChannel.Desired.FOLLOW).filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)).order_by("id").values_list("id", flat=True))
    still = set(LiveChannel.objects.filter(pk__in=held, desired=LiveChannel.Desired.FOLLOW).values_list("id", flat=True))
    return FollowWork(take=take, stop=[channel_id for channel_id in held if channel_id not in still])


def session_search(*, session: LiveSession, type: str | None = None, user: str | None = None, query: str = "",
                   limit: int = 200) -> list[LiveMessage]:
    """The newest `limit` messages of a session matching the filters, newest first; `query`
    matches the text or the user's name."""
    rows = _session_rows(session, type=type, user=user)
    if query:
        rows = rows.filter(Q(content__icontains=query) | Q(user_name__icontains=query))
    return list(rows.order_by("-id")[:limit])


def _with_segments(recordings: QuerySet[Recording]) -> QuerySet[Recording]:
    return recordings.select_related("channel").prefetch_related(
        Prefetch("segments", queryset=Segment.objects.order_by("index")))


def channel_recordings(*, channel: LiveChannel, limit: int = 200) -> list[Recording]:
    """The channel's recordings, newest first, each with its segments (two queries)."""
    return list(_with_segments(Recording.objects.filter(channel=channel).order_by("-started_at", "-id"))[:limit])


def recording_detail(*, recording_id: int) -> Recording | None:
    return _with_segments(Recording.objects.filter(pk=recording_id)).first()


def segment_detail(*, segment_id: int) -> Segment | None:
    return Segment.objects.select_related("recording__channel").filter(pk=segment_id).first()
