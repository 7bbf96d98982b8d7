"""Every non-trivial read of plays, statistics and links."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.db.models import Count, IntegerField, Max, Min, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from scrobbling import nowplaying
from scrobbling.clients import registry
from scrobbling.models import BufferEntry, DeadLetter, Play, ScrobblerLink

PERIODS = {"week": 7, "month": 30, "year": 365, "all": None}


def history(*, user, limit: int = 50, before: datetime | None = None) -> list[Play]:
    plays = Play.objects.filter(user=user).select_related("room", "track")
    if before is not None:
        plays = plays.filter(played_at__lt=before)
    return list(plays.order_by("-played_at", "-id")[:limit])


def _since(period: str) -> datetime | None:
    days = PERIODS.get(period)
    return None if days is None else timezone.now() - timedelta(days=days)


def _plays(user, period: str) -> QuerySet[Play]:
    plays = Play.objects.filter(user=user)
    since = _since(period)
    return plays if since is None else plays.filter(played_at__gte=since)


def plays_per_day(*, user, days: int = 90) -> list[tuple[date, int]]:
    """Plays per calendar day (in TIME_ZONE) over the last `days` days, oldest first, zeros included."""
    today = timezone.localdate()
    first = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    rows = (
        Play.objects.filter(user=user, played_at__gte=start)
        .annotate(day=TruncDate("played_at", tzinfo=timezone.get_current_timezone()))
        .values("day").annotate(plays=Count("id")).values_list("day", "plays")
    )
    counts = dict(rows)
    return [(first + timedelta(days=i), counts.get(first + timedelta(days=i), 0)) for i in range(days)]


def top_artists(*, user, period: str = "month", limit: int = 10) -> list[dict]:
    return list(
        _plays(user, period).values("artist_name").annotate(plays=Count("id"), last=Max("played_at"))
        .order_by("-plays", "artist_name")[:limit]
    )


def top_albums(*, user, period: str = "month", limit: int = 10) -> list[dict]:
    return list(
        _plays(user, period).exclude(album_title="").values("artist_name", "album_title")
        .annotate(plays=Count("id"), album_id=Min("track__album_id"))
        .order_by("-plays", "album_title")[:limit]
    )


def top_tracks(*, user, period: str = "month", limit: int = 10) -> list[dict]:
    return list(
        _plays(user, period).values("artist_name", "track_title")
        .annotate(plays=Count("id"), track_id=Min("track_id"))
        .order_by("-plays", "track_title")[:limit]
    )


def room_listening(*, user, period: str = "month", limit: int = 10) -> list[dict]:
    """Plays and time listened per room."""
    return list(
        _plays(user, period).filter(room__isnull=False).values("room__name", "room__slug")
        .annotate(plays=Count("id"), listened_s=Sum("played_s"), last=Max("played_at"))
        .order_by("-plays")[:limit]
    )


def summary(*, user) -> dict:
    plays = Play.objects.filter(user=user)
    totals = plays.aggregate(total=Count("id"), first=Min("played_at"))
    return {
        "total": totals["total"],
        "first": totals["first"],
        "unmatched": plays.filter(track__isnull=True).count(),
        "this_week": _plays(user, "week").count(),
    }


def link_statuses(*, user) -> list[dict]:
    """Each service: linked or not, as whom, paused or not, and how many plays wait."""
    links = {link.service: link for link in ScrobblerLink.objects.filter(user=user)}
    waiting = dict(
        BufferEntry.objects.filter(user=user).values("service").annotate(n=Count("id")).values_list("service", "n")
    )
    dead = dict(
        DeadLetter.objects.filter(user=user).values("service").annotate(n=Count("id")).values_list("service", "n")
    )
    statuses = []
    for kind in registry:
        link = links.get(kind.name)
        statuses.append({
            "service": kind.name,
            "label": kind.label,
            "auth": kind.auth,  # "web": linked in the browser; "token": the user pastes a token
            "configured": kind.configured(),
            "required_settings": kind.required_settings(),
            "linked": link is not None,
            "account_name": link.account_name if link else "",
            "status": link.status if link else "unlinked",
            "paused_reason": link.paused_reason if link else "",
            "api_root": link.api_root if link else "",
            "waiting": waiting.get(kind.name, 0),
            "refused": dead.get(kind.name, 0),
            "retry_at": link.retry_at if link else None,
            "last_error": link.last_error if link else "",
            "last_sent_at": link.last_sent_at if link else None,
        })
    return statuses


def listening_now() -> list[dict]:
    """Who is listening to what right now, as anyone signed in may see it (the home page and
    GET /api/scrobbling/now-playing): a private room is only "a private room", without its
    name, address or id."""
    entries = nowplaying.now_playing_list()
    for entry in entries:
        room = entry.get("room")
        if room and room.get("private"):
            entry["room"] = {"id": None, "name": None, "slug": None, "private": True}
    return entries


def paused_links_with_waiting(*, user) -> list[ScrobblerLink]:
    """The user's paused links, each with `waiting`: how many plays are kept for it. One
    query (the banner on every page asks)."""
    waiting = (
        BufferEntry.objects.filter(user_id=OuterRef("user_id"), service=OuterRef("service"))
        .order_by().values("service").annotate(n=Count("id")).values("n")
    )
    return list(
        ScrobblerLink.objects.filter(user=user, status=ScrobblerLink.Status.PAUSED).defer("secret")
        .annotate(waiting=Coalesce(Subquery(waiting, output_field=IntegerField()), 0))
    )
