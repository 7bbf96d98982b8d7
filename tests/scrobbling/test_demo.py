"""The demo listening history `make run` loads: what the command prints is what the chart shows."""

import pytest
from django.utils import timezone

from catalog.demo import DEMO_TRACKS
from scrobbling import demo, selectors
from scrobbling.models import Play
from tests.factories import UserFactory, make_track

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_tracks():
    return [make_track(t.title, t.artist, t.album, duration_s=t.duration_s) for t in DEMO_TRACKS]


@pytest.mark.parametrize("seed", [7, 1, 2, 3])
def test_the_demo_history_is_exactly_what_the_90_day_chart_counts(demo_tracks, seed):
    user = UserFactory()

    recorded = demo.history_create(user=user, seed=seed)

    chart = selectors.plays_per_day(user=user, days=90)
    assert recorded > 300
    assert sum(count for _, count in chart) == recorded == Play.objects.filter(user=user).count()
    assert not Play.objects.filter(user=user, played_at__gt=timezone.now()).exists()

