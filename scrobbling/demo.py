"""A listening history for the demo user, so the Scrobbles page has something to show."""

from __future__ import annotations

import random
from datetime import timedelta

from django.utils import timezone

from catalog import selectors as catalog
from scrobbling.inputs import MAX_PLAYS_PER_REQUEST, MIN_TRACK_S, PlayInput
from scrobbling.models import Play
from scrobbling.recording import plays_record


def history_create(*, user, days: int = 90, seed: int = 7) -> int:
    """Plays over the last `days` days, today included and nothing later than now, the same
    calendar days (in TIME_ZONE) as the Scrobbles page's chart (evenings and weekends
    busier); only for a user without any. Returns how many were recorded."""
    if Play.objects.filter(user=user).exists():
        return 0
    tracks = catalog.tracks_longer_than(duration_s=MIN_TRACK_S)
    if not tracks:
        return 0
    rng = random.Random(seed)  # noqa: S311 - demo data
    weights = [1 + 3 * (i % 3 == 0) for i in range(len(tracks))]  # a few favourites
    now = timezone.localtime()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    plays = []
    for day in range(days - 1, -1, -1):
        start = today - timedelta(days=day)
        sessions = rng.choice([0, 1, 1, 2, 3]) + (start.weekday() >= 5)
        for _ in range(sessions):
            moment = start + timedelta(hours=rng.choice([8, 12, 18, 19, 20, 21, 22]), minutes=rng.randrange(60))
            for _ in range(rng.randrange(2, 9)):
                track = rng.choices(tracks, weights)[0]
                if moment + timedelta(seconds=track.duration_s) > now:
                    break  # not yet played
                plays.append(PlayInput.of_track(track, played_at=moment, played_s=track.duration_s,
                                                source=Play.Source.LIBRARY))
                moment += timedelta(seconds=track.duration_s + rng.randrange(1, 20))
    recorded = 0
    for first in range(0, len(plays), MAX_PLAYS_PER_REQUEST):
        recorded += len(plays_record(user=user, plays=plays[first:first + MAX_PLAYS_PER_REQUEST]).created)
    return recorded
