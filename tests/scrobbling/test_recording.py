"""Recording plays through the API: thresholds, timestamps, dedupe, counts, buffer rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from catalog.models import Album, Artist, Track, match_key
from project.accounts.services import token_create
from scrobbling import nowplaying, recording
from scrobbling.models import BufferEntry, Play, ScrobblerLink
from tests.factories import make_track

URL = "/api/scrobbling/scrobbles"


ONE_STATEMENT_ONLY_ON_POSTGRESQL = pytest.mark.postgres_only(
    reason="the single-statement recording is PostgreSQL SQL; on SQLite both params would take the ORM path"
)


@pytest.fixture(autouse=True, params=[pytest.param("one statement", marks=ONE_STATEMENT_ONLY_ON_POSTGRESQL), "orm"])
def recording_path(request, monkeypatch):
    """Every recording test runs on both paths: PostgreSQL's single statement and the
    portable ORM transaction (what SQLite uses)."""
    monkeypatch.setattr(recording, "ONE_STATEMENT", request.param == "one statement")
    return request.param


@pytest.fixture
def api(client, alice):
    _, raw = token_create(user=alice, name="player")

    def post(body, url=URL):
        return client.post(url, data=json.dumps(body), content_type="application/json",
                           headers={"Authorization": f"Bearer {raw}"})

    return post


@pytest.fixture
def song(db):
    return make_track("Windowlicker", "Aphex Twin", "Windowlicker", duration_s=366.0)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def test_a_play_is_recorded_with_counts(api, alice, song):
    played_at = timezone.now() - timedelta(minutes=10)
    response = api({"track_id": song.pk, "played_at": iso(played_at), "played_s": 300})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["accepted"] == 1
    assert body["duplicates"] == []
    play = Play.objects.get(user=alice)
    assert (play.track, play.played_at, play.played_s, play.source) == (song, played_at, 300.0, "api")
    assert (play.artist_name, play.track_title, play.album_title) == ("Aphex Twin", "Windowlicker", "Windowlicker")
    song.refresh_from_db()
    assert song.play_count == 1
    assert Album.objects.get(pk=song.album_id).play_count == 1
    assert Artist.objects.get(pk=song.artist_id).play_count == 1


def test_epoch_seconds_are_accepted(api, alice, song):
    epoch = int((timezone.now() - timedelta(hours=2)).timestamp())
    assert api({"track_id": song.pk, "played_at": epoch}).status_code == 201
    assert Play.objects.get(user=alice).played_at == datetime.fromtimestamp(epoch, tz=UTC)


def test_a_resubmitted_play_changes_nothing(api, alice, song):
    body = {"track_id": song.pk, "played_at": iso(timezone.now() - timedelta(minutes=5))}
    assert api(body).status_code == 201
    again = api(body)
    assert again.status_code == 409
    assert again.json()["error"] == "duplicate"
    assert Play.objects.filter(user=alice).count() == 1
    song.refresh_from_db()
    assert song.play_count == 1


@pytest.mark.parametrize(
    ("duration_s", "played_s", "counts"),
    [
        (366.0, 183.0, True),  # half
        (366.0, 182.0, False),
        (600.0, 240.0, True),  # 4 minutes of a long track
        (600.0, 239.0, False),
        (30.0, 30.0, False),  # 30 s tracks never count
        (31.0, 16.0, True),
        (366.0, None, True),  # the player says it counts
    ],
)
def test_threshold_rules(api, alice, duration_s, played_s, counts):
    track = make_track("T", "A", "B", duration_s=duration_s)
    body = {"track_id": track.pk, "played_at": iso(timezone.now() - timedelta(hours=1))}
    if played_s is not None:
        body["played_s"] = played_s
    response = api(body)
    assert response.status_code == (201 if counts else 400), response.content
    assert Play.objects.filter(user=alice).exists() is counts
    if not counts:
        assert "30 s" in response.json()["message"] or "counts from" in response.json()["message"]


@pytest.mark.parametrize(
    ("played_at", "needle"),
    [
        ("2002-09-30T23:59:59Z", "2002-10-01"),
        ("yesterday", "ISO 8601"),
        ("2026-01-01T10:00:00", "time zone"),
        (None, "required"),
        (True, "required"),
        ([1], "ISO 8601"),
    ],
)
def test_bad_timestamps_are_refused(api, alice, song, played_at, needle):
    response = api({"track_id": song.pk, "played_at": played_at})
    assert response.status_code == 400
    assert needle in response.json()["message"]
    assert not Play.objects.exists()


def test_a_play_more_than_an_hour_ahead_is_refused(api, song):
    soon = api({"track_id": song.pk, "played_at": iso(timezone.now() + timedelta(minutes=50))})
    assert soon.status_code == 201
    later = api({"track_id": song.pk, "played_at": iso(timezone.now() + timedelta(minutes=70))})
    assert later.status_code == 400
    assert "future" in later.json()["message"]


def test_unknown_track_and_missing_fields(api, song):
    unknown = api({"track_id": 999999, "played_at": iso(timezone.now())})
    assert unknown.status_code == 404
    assert "999999" in unknown.json()["message"]
    missing = api({"played_at": iso(timezone.now())})
    assert missing.status_code == 400
    assert "track_id" in missing.json()["message"]
    assert api("not a play").status_code == 400
    assert api([]).status_code == 400


def test_a_list_is_validated_per_item_and_nothing_partially_applied(api, alice, song):
    base = timezone.now() - timedelta(days=1)
    items = [
        {"track_id": song.pk, "played_at": iso(base)},
        {"track_id": 424242, "played_at": iso(base + timedelta(minutes=7))},
        {"track_id": song.pk, "played_at": "1999-01-01T00:00:00Z"},
        {"track_id": song.pk, "played_at": iso(base)},
    ]
    response = api(items)
    assert response.status_code == 400
    body = response.json()
    assert "nothing was recorded" in body["message"]
    assert [(r["index"], r["error"]) for r in body["rejected"]] == [(1, "not_found"), (2, "invalid"), (3, "duplicate")]
    assert not Play.objects.exists()
    song.refresh_from_db()
    assert song.play_count == 0


def test_a_list_of_offline_plays(api, alice, song):
    other = make_track("Flim", "Aphex Twin", "Come to Daddy", duration_s=177.0)
    base = timezone.now() - timedelta(days=6)
    items = [{"track_id": (song if i % 2 else other).pk, "played_at": int((base + timedelta(minutes=7 * i)).timestamp())}
             for i in range(1000)]
    response = api(items)
    assert response.status_code == 201, response.content[:300]
    assert response.json()["accepted"] == 1000
    assert Play.objects.filter(user=alice).count() == 1000
    assert Artist.objects.get(name="Aphex Twin").play_count == 1000
    # The same list again (a player that lost the answer): all duplicates, nothing counted twice.
    again = api(items)
    assert again.status_code == 200
    assert again.json()["accepted"] == 0
    assert len(again.json()["duplicates"]) == 1000
    assert Artist.objects.get(name="Aphex Twin").play_count == 1000


def test_lists_over_1000_are_refused(api, song):
    items = [{"track_id": song.pk, "played_at": 1_700_000_000 + i * 400} for i in range(1001)]
    response = api(items)
    assert response.status_code == 413
    assert "1000" in response.json()["message"]
    assert not Play.objects.exists()


def test_a_revoked_token_is_refused(client, alice, song):
    from project.accounts.services import token_revoke

    token, raw = token_create(user=alice, name="old")
    token_revoke(user=alice, token_id=token.pk)
    response = client.post(URL, data=json.dumps({"track_id": song.pk, "played_at": 1_700_000_000}),
                           content_type="application/json", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 401
    assert not Play.objects.exists()


def test_one_buffer_row_per_linked_service(api, alice, bob, song, django_capture_on_commit_callbacks):
    ScrobblerLink.objects.create(user=alice, service="lastfm", account_name="al", secret="sk")
    ScrobblerLink.objects.create(user=alice, service="listenbrainz", account_name="al", secret="tok")
    ScrobblerLink.objects.create(user=bob, service="lastfm", account_name="bo", secret="sk2")
    assert api({"track_id": song.pk, "played_at": 1_700_000_000}).status_code == 201
    play = Play.objects.get(user=alice)
    assert sorted(BufferEntry.objects.filter(play=play).values_list("service", flat=True)) == ["lastfm", "listenbrainz"]
    assert not BufferEntry.objects.filter(user=bob).exists()


def test_unknown_artist_plays_are_recorded_but_not_sent_on(api, alice):
    ScrobblerLink.objects.create(user=alice, service="lastfm", account_name="al", secret="sk")
    untagged = make_track("Track 05", "Unknown Artist", None, duration_s=200.0)
    assert api({"track_id": untagged.pk, "played_at": 1_700_000_000}).status_code == 201
    play = Play.objects.get(user=alice)
    assert play.sent_on is False
    assert not BufferEntry.objects.exists()


def test_submitting_does_not_wait_for_services(api, alice, song, settings):
    # Services that cannot be reached at all: the play is still accepted at once and buffered.
    settings.LASTFM_API_ROOT = "http://127.0.0.1:9/2.0/"
    ScrobblerLink.objects.create(user=alice, service="lastfm", account_name="al", secret="sk")
    assert api({"track_id": song.pk, "played_at": 1_700_000_000}).status_code == 201
    assert BufferEntry.objects.filter(user=alice).count() == 1


def test_now_playing_is_kept_with_a_ttl(api, alice, song, redis_client):
    response = api({"track_id": song.pk, "position_s": 300}, url="/api/scrobbling/now-playing")
    assert response.status_code == 200, response.content
    [entry] = nowplaying.now_playing_list()
    assert (entry["username"], entry["track_id"], entry["paused"]) == ("alice", song.pk, False)
    expires_ms = redis_client.zscore(nowplaying.NOW_PLAYING_KEY + ":expires", str(alice.pk))
    ttl_s = expires_ms / 1000 - timezone.now().timestamp()
    assert 66 < ttl_s <= 71.5  # 66 s left + 5 s
    api({"track_id": song.pk, "position_s": 310, "paused": True}, url="/api/scrobbling/now-playing")
    expires_ms = redis_client.zscore(nowplaying.NOW_PLAYING_KEY + ":expires", str(alice.pk))
    assert 29 * 60 < expires_ms / 1000 - timezone.now().timestamp() <= 30 * 60
    bad = api({"track_id": song.pk, "position_s": -1}, url="/api/scrobbling/now-playing")
    assert bad.status_code == 400
    missing = api({"track_id": 77777}, url="/api/scrobbling/now-playing")
    assert missing.status_code == 404


def test_history_api(api, alice, song, client):
    base = timezone.now() - timedelta(days=2)
    api([{"track_id": song.pk, "played_at": iso(base + timedelta(minutes=7 * i))} for i in range(5)])
    _, raw = token_create(user=alice, name="reader")
    response = client.get("/api/scrobbling/scrobbles?limit=2", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 200
    body = response.json()
    assert [p["played_at"] for p in body["plays"]] == [iso(base + timedelta(minutes=28)), iso(base + timedelta(minutes=21))]
    older = client.get(f"/api/scrobbling/scrobbles?limit=2&before={body['next_before'].replace('+', '%2B')}",
                       headers={"Authorization": f"Bearer {raw}"})
    assert older.json()["plays"][0]["played_at"] == iso(base + timedelta(minutes=14))


def test_a_track_is_matched_case_and_accent_insensitively(db):
    track = make_track("Jóga", "Björk", "Homogenic", duration_s=305.0)
    assert Track.objects.get(match_key=match_key("BJORK", " joga ")) == track


def test_the_demo_history_fills_90_days_once(alice):
    from scrobbling.demo import history_create

    for i in range(4):
        make_track(f"Demo {i}", "Demo Artist", "Demo Album", duration_s=120.0 + i)
    make_track("Jingle", "Demo Artist", None, duration_s=12.0)
    created = history_create(user=alice)
    plays = Play.objects.filter(user=alice)
    assert created == plays.count() > 100
    assert plays.filter(played_at__lt=timezone.now() - timedelta(days=91)).count() == 0
    assert not plays.filter(track_title="Jingle").exists()  # too short to scrobble
    assert Artist.objects.get(name="Demo Artist").play_count == created
    assert history_create(user=alice) == 0


def test_links_over_the_api(api, alice, client, fake_listenbrainz):
    _, raw = token_create(user=alice, name="links")
    headers = {"Authorization": f"Bearer {raw}"}
    token = fake_listenbrainz.add_user("alice_lb")
    refused = api({"token": "not-a-token"}, url="/api/scrobbling/links/listenbrainz")
    assert refused.status_code == 403
    assert "not valid" in refused.json()["message"]
    linked = api({"token": token}, url="/api/scrobbling/links/listenbrainz")
    assert linked.status_code == 201, linked.content
    assert (linked.json()["account_name"], linked.json()["status"]) == ("alice_lb", "active")
    assert ScrobblerLink.objects.get(user=alice).secret == token
    gone = client.delete("/api/scrobbling/links/listenbrainz", headers=headers)
    assert gone.status_code == 200
    assert gone.json()["linked"] is False
    again = client.delete("/api/scrobbling/links/listenbrainz", headers=headers)
    assert again.status_code == 404
    assert "not linked" in again.json()["message"]
    assert client.delete("/api/scrobbling/links/myspace", headers=headers).status_code == 404
    assert api({"token": "x"}, url="/api/scrobbling/links/lastfm").status_code == 400
