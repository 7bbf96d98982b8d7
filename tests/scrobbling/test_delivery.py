"""Delivering buffered plays to Last.fm and ListenBrainz (scrobbling.delivery), against the
local fakes that speak the real protocols, on the real database.

Drains are called directly (synchronously); the task path runs Celery eagerly.
"""

from __future__ import annotations

import io
import random
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY

from scrobbling import delivery, inputs, links, nowplaying, recording, tasks
from scrobbling.models import BufferEntry, DeadLetter, Play, ScrobblerLink
from tests.factories import UserFactory, make_track
from tests.scrobbling.fakes import FakeListenBrainz, FakeMaloja, lastfm_signature

LASTFM = "lastfm"
LISTENBRAINZ = "listenbrainz"


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def song(db):
    # Non-ASCII on purpose: the Last.fm signature is an md5 of the utf-8 text.
    return make_track("Jóga", "Björk", "Homogenic", duration_s=305.0)


@pytest.fixture
def eager_celery():
    """Tasks run at once, in this process, and their errors propagate."""
    from project.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


def link(user, service: str, secret: str, *, account: str = "acct", api_root: str = "") -> ScrobblerLink:
    return ScrobblerLink.objects.create(user=user, service=service, account_name=account, secret=secret,
                                        api_root=api_root)


def link_lastfm(user, fake) -> ScrobblerLink:
    return link(user, LASTFM, fake.add_session(f"{user.username}_lfm"), account=f"{user.username}_lfm")


def link_listenbrainz(user, fake) -> ScrobblerLink:
    return link(user, LISTENBRAINZ, fake.add_user(f"{user.username}_lb"), account=f"{user.username}_lb")


def play_times(count: int, *, ago: timedelta = timedelta(days=2), step: timedelta = timedelta(minutes=1),
               shuffle: bool = False) -> list[datetime]:
    """count play start times, oldest `ago` ago, whole seconds; shuffled: recorded out of order."""
    start = (timezone.now() - ago).replace(microsecond=0)
    times = [start + step * i for i in range(count)]
    if shuffle:
        random.Random(count).shuffle(times)
    return times


def record(user, track, times: list[datetime]) -> list[Play]:
    """Record plays as the API does (one buffer row per linked service)."""
    plays = [inputs.PlayInput.of_track(track, played_at=t, source=Play.Source.API) for t in times]
    return recording.plays_record(user=user, plays=plays).created


def unix(times) -> list[int]:
    return [int(t.timestamp()) for t in times]


def scrobble_requests(fake) -> list:
    return [r for r in fake.requests if r.params.get("method") == "track.scrobble"]


def batch_timestamps(request) -> list[int]:
    """The timestamp[i] params of one track.scrobble request, in index order."""
    count = sum(1 for name in request.params if name.startswith("timestamp["))
    return [int(request.params[f"timestamp[{i}]"]) for i in range(count)]


def stored_timestamps(fake, user_name: str) -> list[int]:
    with fake.lock:
        return [s["timestamp"] for s in fake.scrobbles.get(user_name, [])]


def submissions(fake) -> list[dict]:
    return [r.json for r in fake.requests if r.path == "/1/submit-listens"]


def stored_listens(fake, user_name: str) -> list[int]:
    with fake.lock:
        return [listen["listened_at"] for listen in fake.listens.get(user_name, [])]


def buffered(user, service: str) -> int:
    return BufferEntry.objects.filter(user=user, service=service).count()


def sent_total(service: str) -> float:
    return REGISTRY.get_sample_value("chorus_scrobbles_sent_total", {"service": service}) or 0.0


def back_off_over(user, service: str) -> None:
    """As if the back-off had passed."""
    ScrobblerLink.objects.filter(user=user, service=service).update(retry_at=timezone.now() - timedelta(seconds=1))


def seconds_ahead(moment: datetime, since: datetime) -> float:
    return (moment - since).total_seconds()


# --- Last.fm: signature and batching --------------------------------------------------------


def test_lastfm_accepts_the_signed_scrobbles(alice, song, fake_lastfm, settings):
    link_lastfm(alice, fake_lastfm)
    times = play_times(2)
    record(alice, song, times)

    result = delivery.drain(user_id=alice.pk, service=LASTFM)

    assert (result.sent, result.dead) == (2, 0)
    [request] = scrobble_requests(fake_lastfm)
    assert request.status == 200
    assert request.params["api_sig"] == lastfm_signature(request.params, settings.LASTFM_API_SECRET)
    assert (request.params["artist[0]"], request.params["track[0]"]) == ("Björk", "Jóga")
    assert stored_timestamps(fake_lastfm, "alice_lfm") == unix(times)
    assert buffered(alice, LASTFM) == 0
    assert ScrobblerLink.objects.get(user=alice).last_sent_at is not None


def test_a_wrong_api_secret_dead_letters_the_batch_with_lastfms_answer(alice, song, fake_lastfm, settings):
    link_lastfm(alice, fake_lastfm)
    plays = record(alice, song, play_times(2))
    settings.LASTFM_API_SECRET = "0" * 32

    result = delivery.drain(user_id=alice.pk, service=LASTFM)

    assert (result.sent, result.dead) == (0, 2)
    assert stored_timestamps(fake_lastfm, "alice_lfm") == []
    assert buffered(alice, LASTFM) == 0
    letters = DeadLetter.objects.filter(user=alice, service=LASTFM).order_by("play__played_at")
    assert [letter.play_id for letter in letters] == [p.pk for p in sorted(plays, key=lambda p: p.played_at)]
    for letter in letters:
        assert (letter.http_status, letter.error_code) == (403, 13)
        assert "Invalid method signature supplied" in letter.answer
        assert "error 13" in letter.reason
        assert letter.payload["artist"] == "Björk"
        assert letter.payload["played_at"] == letter.play.played_at.isoformat()


def test_a_refused_server_api_key_keeps_the_plays_for_when_the_operator_fixes_it(alice, song, fake_lastfm, settings):
    link_lastfm(alice, fake_lastfm)
    record(alice, song, play_times(3))
    settings.LASTFM_API_KEY = "revoked-key"  # the fake answers error 10, invalid API key

    result = delivery.drain(user_id=alice.pk, service=LASTFM)

    assert (result.sent, result.dead) == (0, 0)
    assert result.retry_in_s is not None
    assert buffered(alice, LASTFM) == 3
    assert not DeadLetter.objects.exists()
    assert "error 10" in ScrobblerLink.objects.get(user=alice).last_error
    settings.LASTFM_API_KEY = fake_lastfm.api_key
    ScrobblerLink.objects.filter(user=alice).update(retry_at=None)
    assert delivery.drain(user_id=alice.pk, service=LASTFM).sent == 3


def test_120_plays_go_to_lastfm_in_three_batches_in_played_at_order(alice, song, fake_lastfm):
    link_lastfm(alice, fake_lastfm)
    times = play_times(120, shuffle=True)  # recorded out of order: ids are not played_at order
    record(alice, song, times)
    sent_before = sent_total(LASTFM)

    result = delivery.drain(user_id=alice.pk, service=LASTFM)

    assert (result.sent, result.requests) == (120, 3)
    batches = [batch_timestamps(r) for r in scrobble_requests(fake_lastfm)]
    assert [len(b) for b in batches] == [50, 50, 20]
    assert [t for b in batches for t in b] == sorted(unix(times))
    assert stored_timestamps(fake_lastfm, "alice_lfm") == sorted(unix(times))
    assert buffered(alice, LASTFM) == 0
    assert sent_total(LASTFM) - sent_before == 120


def test_1500_plays_go_to_listenbrainz_as_two_imports_and_one_play_as_single(alice, song, fake_listenbrainz):
    link_listenbrainz(alice, fake_listenbrainz)
    times = play_times(1500, ago=timedelta(days=5), shuffle=True)
    record(alice, song, times)
    sent_before = sent_total(LISTENBRAINZ)

    result = delivery.drain(user_id=alice.pk, service=LISTENBRAINZ)

    assert (result.sent, result.requests) == (1500, 2)
    documents = submissions(fake_listenbrainz)
    assert [(d["listen_type"], len(d["payload"])) for d in documents] == [("import", 1000), ("import", 500)]
    assert [listen["listened_at"] for d in documents for listen in d["payload"]] == sorted(unix(times))
    assert stored_listens(fake_listenbrainz, "alice_lb") == sorted(unix(times))
    assert buffered(alice, LISTENBRAINZ) == 0
    assert sent_total(LISTENBRAINZ) - sent_before == 1500

    [latest] = record(alice, song, play_times(1, ago=timedelta(minutes=10)))
    assert delivery.drain(user_id=alice.pk, service=LISTENBRAINZ).sent == 1
    document = submissions(fake_listenbrainz)[-1]
    assert document["listen_type"] == "single"
    assert document["payload"][0]["listened_at"] == int(latest.played_at.timestamp())
    assert document["payload"][0]["track_metadata"]["track_name"] == "Jóga"
    assert sent_total(LISTENBRAINZ) - sent_before == 1501


def test_a_paused_users_plays_do_not_hold_up_another_users(alice, bob, song, fake_lastfm):
    link(alice, LASTFM, "a-session-key-lastfm-never-issued", account="alice_lfm")  # error 9
    link_lastfm(bob, fake_lastfm)
    times = play_times(6)
    record(alice, song, times[0::2])
    record(bob, song, times[1::2])

    due = delivery.sweep()
    assert due == sorted([(alice.pk, LASTFM), (bob.pk, LASTFM)])
    results = {user_id: delivery.drain(user_id=user_id, service=service) for user_id, service in due}

    assert results[alice.pk].paused
    assert results[alice.pk].sent == 0
    assert results[bob.pk].sent == 3
    assert stored_timestamps(fake_lastfm, "bob_lfm") == unix(times[1::2])
    assert buffered(alice, LASTFM) == 3
    assert buffered(bob, LASTFM) == 0
    assert ScrobblerLink.objects.get(user=alice).is_paused
    assert not ScrobblerLink.objects.get(user=bob).is_paused
    assert delivery.sweep() == []  # a paused link is not due


# --- try-later answers: back-off, then everything exactly once --------------------------------


RETRY_CASES = {
    "http_503": ({"status": 503}, (2.5, 5.0), "HTTP 503"),
    "http_429_retry_after": ({"status": 429, "headers": {"Retry-After": "7"}}, (7.0, 7.0), "HTTP 429"),
    "lastfm_11_service_offline": ({"error_code": 11}, (2.5, 5.0), "error 11"),
    "lastfm_16_temporary_error": ({"error_code": 16}, (2.5, 5.0), "error 16"),
    "lastfm_29_rate_limit": ({"error_code": 29}, (2.5, 5.0), "error 29"),
}


@pytest.mark.parametrize("case", [*RETRY_CASES, "network_down"])
def test_lastfm_try_later_answers_back_the_link_off_and_keep_the_plays(case, alice, song, fake_lastfm, settings,
                                                                      closed_url):
    link_lastfm(alice, fake_lastfm)
    times = play_times(3)
    record(alice, song, times)
    if case == "network_down":
        settings.LASTFM_API_ROOT = f"{closed_url}/2.0/"
        window, error = (2.5, 5.0), "ConnectError"
    else:
        failure, window, error = RETRY_CASES[case]
        fake_lastfm.fail_next(1, **failure)

    before = timezone.now()
    result = delivery.drain(user_id=alice.pk, service=LASTFM)
    after = timezone.now()

    assert result.sent == 0
    assert result.retry_in_s is not None
    entries = BufferEntry.objects.filter(user=alice, service=LASTFM)
    assert entries.count() == 3
    assert all(e.lease_until is None and e.lease_token == "" for e in entries)  # lease released
    linked = ScrobblerLink.objects.get(user=alice)
    assert linked.failures == 1
    assert not linked.is_paused
    assert error in linked.last_error
    assert seconds_ahead(linked.retry_at, before) >= window[0]
    assert seconds_ahead(linked.retry_at, after) <= window[1]
    assert not DeadLetter.objects.exists()

    settings.LASTFM_API_ROOT = fake_lastfm.url
    assert delivery.drain(user_id=alice.pk, service=LASTFM).requests == 0  # still backing off
    back_off_over(alice, LASTFM)
    assert delivery.drain(user_id=alice.pk, service=LASTFM).sent == 3

    assert stored_timestamps(fake_lastfm, "alice_lfm") == unix(times)  # each play exactly once
    assert buffered(alice, LASTFM) == 0
    linked.refresh_from_db()
    assert (linked.failures, linked.retry_at, linked.last_error) == (0, None, "")


def test_a_timed_out_batch_is_sent_again_and_only_that_batch_repeats(alice, song, fake_lastfm, settings):
    settings.SCROBBLING_HTTP_TIMEOUT_S = 0.3
    link_lastfm(alice, fake_lastfm)
    times = play_times(3)
    record(alice, song, times)
    fake_lastfm.delay_s = 0.6

    result = delivery.drain(user_id=alice.pk, service=LASTFM)

    assert result.sent == 0
    assert result.retry_in_s is not None
    assert "no answer within 0.3s" in ScrobblerLink.objects.get(user=alice).last_error
    assert buffered(alice, LASTFM) == 3
    # Last.fm took the slow request after all, once its delay was over.
    deadline = time.monotonic() + 3
    while scrobble_requests(fake_lastfm)[-1].status is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stored_timestamps(fake_lastfm, "alice_lfm") == unix(times)

    fake_lastfm.delay_s = 0
    back_off_over(alice, LASTFM)
    assert delivery.drain(user_id=alice.pk, service=LASTFM).sent == 3
    assert buffered(alice, LASTFM) == 0
    # The unanswered batch went out again: at most one batch repeated, nothing more.
    assert Counter(stored_timestamps(fake_lastfm, "alice_lfm")) == {t: 2 for t in unix(times)}


def test_back_off_doubles_from_5_seconds_to_4_minutes_with_jitter(alice, song, fake_lastfm):
    link_lastfm(alice, fake_lastfm)
    record(alice, song, play_times(1))
    for failures, step in [(1, 5), (2, 10), (3, 20)]:
        fake_lastfm.fail_next(1, status=503)
        before = timezone.now()
        delivery.drain(user_id=alice.pk, service=LASTFM)
        after = timezone.now()
        linked = ScrobblerLink.objects.get(user=alice)
        assert linked.failures == failures
        assert seconds_ahead(linked.retry_at, before) >= step / 2
        assert seconds_ahead(linked.retry_at, after) <= step
        back_off_over(alice, LASTFM)

    for failures, step in enumerate([5, 10, 20, 40, 80, 160, 240, 240, 240], start=1):
        waits = [delivery.backoff_s(failures) for _ in range(300)]
        assert all(step / 2 <= wait <= step for wait in waits), (failures, min(waits), max(waits))
        assert min(waits) < step * 0.6
        assert max(waits) > step * 0.9


def test_a_retry_after_of_hours_is_capped_at_six_hours(alice, song, fake_lastfm):
    link_lastfm(alice, fake_lastfm)
    record(alice, song, play_times(1))
    fake_lastfm.fail_next(1, status=503, headers={"Retry-After": str(30 * 24 * 3600)})
    result = delivery.drain(user_id=alice.pk, service=LASTFM)
    assert result.retry_in_s == delivery.RETRY_AFTER_MAX_S == 6 * 3600


# --- Last.fm: revoked session, ignored items, daily limit -----------------------------------


@pytest.mark.parametrize("relink_with", ["session_key", "token"])
def test_a_revoked_lastfm_session_pauses_the_link_and_relinking_sends_the_kept_plays(
    relink_with, alice, song, fake_lastfm
):
    link(alice, LASTFM, "revoked-session-key", account="alice_lfm")
    times = play_times(4)
    record(alice, song, times)

    result = delivery.drain(user_id=alice.pk, service=LASTFM)

    assert result.paused
    assert result.sent == 0
    linked = ScrobblerLink.objects.get(user=alice)
    assert linked.is_paused
    assert linked.paused_at is not None
    assert "error 9" in linked.paused_reason
    assert "Invalid session key" in linked.paused_reason
    entries = BufferEntry.objects.filter(user=alice, service=LASTFM)
    assert entries.count() == 4
    assert all(e.lease_token == "" for e in entries)
    assert not DeadLetter.objects.exists()
    assert delivery.drain(user_id=alice.pk, service=LASTFM).requests == 0  # paused: nothing is tried

    if relink_with == "session_key":
        links.link_web(user=alice, service=LASTFM, session_key=fake_lastfm.add_session("alice_lfm"))
    else:
        links.link_web(user=alice, service=LASTFM, token=fake_lastfm.authorize_token("alice_lfm"))
    linked.refresh_from_db()
    assert (linked.status, linked.paused_reason, linked.paused_at) == (ScrobblerLink.Status.ACTIVE, "", None)

    assert delivery.drain(user_id=alice.pk, service=LASTFM).sent == 4
    assert stored_timestamps(fake_lastfm, "alice_lfm") == unix(times)
    assert buffered(alice, LASTFM) == 0


def test_items_lastfm_ignores_become_dead_letters_and_the_accepted_ones_are_deleted(alice, song, fake_lastfm):
    link_lastfm(alice, fake_lastfm)
    too_old = play_times(2, ago=timedelta(days=15))
    recent = play_times(2, ago=timedelta(hours=3))
    plays = record(alice, song, too_old + recent)

    result = delivery.drain(user_id=alice.pk, service=LASTFM)

    assert (result.sent, result.dead, result.requests) == (2, 2, 1)
    assert [len(batch_timestamps(r)) for r in scrobble_requests(fake_lastfm)] == [4]
    assert stored_timestamps(fake_lastfm, "alice_lfm") == unix(recent)
    assert buffered(alice, LASTFM) == 0
    old_ids = {p.pk for p in plays if p.played_at in too_old}
    letters = list(DeadLetter.objects.filter(user=alice))
    assert {letter.play_id for letter in letters} == old_ids
    for letter in letters:
        assert letter.error_code == 3
        assert letter.answer == "Timestamp was too old"
    # Nothing more goes out on the next drain.
    delivery.drain(user_id=alice.pk, service=LASTFM)
    assert len(scrobble_requests(fake_lastfm)) == 1


def test_over_the_daily_limit_only_the_limited_plays_wait_an_hour(alice, song, fake_lastfm):
    link_lastfm(alice, fake_lastfm)
    fake_lastfm.daily_limit = 3
    times = play_times(5)
    plays = record(alice, song, times)

    before = timezone.now()
    result = delivery.drain(user_id=alice.pk, service=LASTFM)
    after = timezone.now()

    assert (result.sent, result.dead, result.retry_in_s) == (3, 0, 3600)
    assert stored_timestamps(fake_lastfm, "alice_lfm") == unix(times[:3])
    waiting = BufferEntry.objects.filter(user=alice, service=LASTFM)
    assert {e.play_id for e in waiting} == {p.pk for p in plays if p.played_at in times[3:]}
    assert all(e.lease_token == "" and e.lease_until is None for e in waiting)
    linked = ScrobblerLink.objects.get(user=alice)
    assert seconds_ahead(linked.retry_at, before) >= 3600
    assert seconds_ahead(linked.retry_at, after) <= 3600
    assert "daily" in linked.last_error
    assert not DeadLetter.objects.exists()
    assert delivery.drain(user_id=alice.pk, service=LASTFM).requests == 0  # not before the hour is over

    fake_lastfm.daily_limit = 2800  # a new day
    back_off_over(alice, LASTFM)
    assert delivery.drain(user_id=alice.pk, service=LASTFM).sent == 2
    [_, resend] = scrobble_requests(fake_lastfm)
    assert batch_timestamps(resend) == unix(times[3:])  # the accepted ones are not sent again
    assert stored_timestamps(fake_lastfm, "alice_lfm") == unix(times)
    assert buffered(alice, LASTFM) == 0


# --- ListenBrainz errors --------------------------------------------------------------------


def test_listenbrainz_401_pauses_the_link_and_keeps_the_plays(alice, song, fake_listenbrainz):
    link(alice, LISTENBRAINZ, "0b7c9f1e-revoked-token", account="alice_lb")
    record(alice, song, play_times(2))

    result = delivery.drain(user_id=alice.pk, service=LISTENBRAINZ)

    assert result.paused
    assert result.sent == 0
    linked = ScrobblerLink.objects.get(user=alice)
    assert linked.is_paused
    assert "HTTP 401" in linked.paused_reason
    assert buffered(alice, LISTENBRAINZ) == 2
    assert not DeadLetter.objects.exists()


def test_listenbrainz_400_dead_letters_the_batch_with_the_answer(alice, fake_listenbrainz):
    link_listenbrainz(alice, fake_listenbrainz)
    bad = make_track("Hyperballad", "Björk", "Post", duration_s=321.0, mbid="not-a-musicbrainz-id")
    record(alice, bad, play_times(2))

    result = delivery.drain(user_id=alice.pk, service=LISTENBRAINZ)

    assert (result.sent, result.dead) == (0, 2)
    assert buffered(alice, LISTENBRAINZ) == 0
    assert stored_listens(fake_listenbrainz, "alice_lb") == []
    letters = DeadLetter.objects.filter(user=alice, service=LISTENBRAINZ)
    assert letters.count() == 2
    for letter in letters:
        assert letter.http_status == 400
        assert "recording_mbid MBID format invalid." in letter.answer
        assert letter.payload["mbid"] == "not-a-musicbrainz-id"


def test_listenbrainz_429_waits_as_long_as_x_ratelimit_reset_in_says(alice, song, fake_listenbrainz):
    link_listenbrainz(alice, fake_listenbrainz)
    times = play_times(2)
    record(alice, song, times)
    fake_listenbrainz.fail_next(1, status=429, headers={"X-RateLimit-Reset-In": "12"})

    before = timezone.now()
    result = delivery.drain(user_id=alice.pk, service=LISTENBRAINZ)
    after = timezone.now()

    assert result.retry_in_s == 12
    linked = ScrobblerLink.objects.get(user=alice)
    assert seconds_ahead(linked.retry_at, before) >= 12
    assert seconds_ahead(linked.retry_at, after) <= 12
    assert (linked.failures, buffered(alice, LISTENBRAINZ)) == (1, 2)
    back_off_over(alice, LISTENBRAINZ)
    assert delivery.drain(user_id=alice.pk, service=LISTENBRAINZ).sent == 2
    assert stored_listens(fake_listenbrainz, "alice_lb") == unix(times)


# --- a batch refused as a whole: one listen per request ---------------------------------------


@pytest.fixture
def maloja(allow_loopback):
    """The user's own Maloja (its ListenBrainz API), on this machine."""
    fake = FakeMaloja().start()
    yield fake
    fake.stop()


def test_maloja_refusing_an_import_for_two_listens_in_one_second_loses_no_play(alice, song, maloja):
    other = make_track("Army of Me", "Björk", "Post", duration_s=234.0)
    link(alice, LISTENBRAINZ, maloja.add_user("alice"), account="alice", api_root=maloja.url)
    t0, t1, t2 = play_times(3)
    record(alice, song, [t0, t1, t2])
    record(alice, other, [t1])  # the same second as song's second play

    result = delivery.drain(user_id=alice.pk, service=LISTENBRAINZ)

    # Maloja kept t0 and t1 of the import, then refused it with 409; one per request, it
    # answers ok to what it has, 409 to the other track in t1's second, and keeps t2.
    assert [r.status for r in maloja.requests if r.path == "/1/submit-listens"] == [409, 200, 200, 409, 200]
    assert [r.json["listen_type"] for r in maloja.requests[1:]] == ["single"] * 4
    assert (result.sent, result.dead) == (4, 0)
    assert not DeadLetter.objects.exists()
    assert buffered(alice, LISTENBRAINZ) == 0
    assert [(s["listened_at"], s["track_name"]) for s in maloja.listens["alice"]] == [
        (int(t0.timestamp()), "Jóga"), (int(t1.timestamp()), "Jóga"), (int(t2.timestamp()), "Jóga")]
    assert {s["length_s"] for s in maloja.listens["alice"]} == {305}  # Maloja reads `duration` (s)


def test_maloja_3_2_3s_server_error_for_one_listen_dead_letters_only_that_one(alice, song, allow_loopback):
    """Maloja 3.2.3 answers 500 where later versions answer 409: the import is sent again
    one listen per request, and the one listen it fails on its own, while it takes the
    others, is dead-lettered instead of holding up the buffer for ever."""
    other = make_track("Army of Me", "Björk", "Post", duration_s=234.0)
    maloja = FakeMaloja(duplicate_timestamp_status=500).start()
    try:
        link(alice, LISTENBRAINZ, maloja.add_user("alice"), account="alice", api_root=maloja.url)
        t0, t1, t2 = play_times(3)
        record(alice, song, [t0, t1, t2])
        [clash] = record(alice, other, [t1])

        result = delivery.drain(user_id=alice.pk, service=LISTENBRAINZ)

        assert [r.status for r in maloja.requests if r.path == "/1/submit-listens"] == [500, 200, 200, 500, 200]
        assert (result.sent, result.dead, result.retry_in_s) == (3, 1, None)
        [letter] = DeadLetter.objects.filter(user=alice)
        assert (letter.play_id, letter.http_status) == (clash.pk, 500)
        assert "while the server took others" in letter.reason
        assert buffered(alice, LISTENBRAINZ) == 0
        assert [s["listened_at"] for s in maloja.listens["alice"]] == unix([t0, t1, t2])
    finally:
        maloja.stop()


def test_a_server_that_fails_every_listen_is_backed_off_not_dead_lettered(alice, song, fake_listenbrainz):
    link_listenbrainz(alice, fake_listenbrainz)
    record(alice, song, play_times(5))
    fake_listenbrainz.fail_next(10, status=500)

    result = delivery.drain(user_id=alice.pk, service=LISTENBRAINZ)

    # the import, then single listens until three 5xx in a row with none taken
    assert [r.status for r in fake_listenbrainz.requests] == [500, 500, 500, 500]
    assert (result.sent, result.dead) == (0, 0)
    assert result.retry_in_s is not None
    assert BufferEntry.objects.filter(user=alice, lease_token="").count() == 5
    assert not DeadLetter.objects.exists()


def test_503_is_not_tried_one_listen_at_a_time(alice, song, fake_listenbrainz):
    link_listenbrainz(alice, fake_listenbrainz)
    record(alice, song, play_times(3))
    fake_listenbrainz.fail_next(1, status=503)
    result = delivery.drain(user_id=alice.pk, service=LISTENBRAINZ)
    assert len(fake_listenbrainz.requests) == 1
    assert (result.sent, result.dead, buffered(alice, LISTENBRAINZ)) == (0, 0, 3)


def test_a_listenbrainz_batch_refused_for_one_listen_dead_letters_only_that_one(alice, song, fake_listenbrainz):
    link_listenbrainz(alice, fake_listenbrainz)
    bad = make_track("Refused Song", "Björk", "Post", duration_s=200.0)
    t0, t1, t2 = play_times(3)
    record(alice, song, [t0, t2])
    [refused] = record(alice, bad, [t1])
    fake_listenbrainz.refuse_titles = {"Refused Song"}

    result = delivery.drain(user_id=alice.pk, service=LISTENBRAINZ)

    assert (result.sent, result.dead) == (2, 1)
    assert [d["listen_type"] for d in submissions(fake_listenbrainz)] == ["import", "single", "single", "single"]
    assert stored_listens(fake_listenbrainz, "alice_lb") == unix([t0, t2])
    [letter] = DeadLetter.objects.filter(user=alice)
    assert (letter.play_id, letter.http_status) == (refused.pk, 400)
    assert "Scripted refusal of a listen." in letter.answer
    assert buffered(alice, LISTENBRAINZ) == 0


def test_a_try_later_answer_part_way_through_keeps_the_plays_not_yet_sent(alice, song, fake_listenbrainz):
    link_listenbrainz(alice, fake_listenbrainz)
    bad = make_track("Refused Song", "Björk", "Post", duration_s=200.0)
    times = play_times(4)
    record(alice, song, [times[0], times[2], times[3]])
    record(alice, bad, [times[1]])
    fake_listenbrainz.refuse_titles = {"Refused Song"}
    # the import (400), the first single (ok), the refused one (400), then 503
    fake_listenbrainz.fail_next(1, status=503, after=3)

    result = delivery.drain(user_id=alice.pk, service=LISTENBRAINZ)

    assert (result.sent, result.dead) == (1, 1)
    assert result.retry_in_s is not None
    assert stored_listens(fake_listenbrainz, "alice_lb") == unix(times[:1])
    assert BufferEntry.objects.filter(user=alice, lease_token="").count() == 2
    assert DeadLetter.objects.count() == 1
    back_off_over(alice, LISTENBRAINZ)
    assert delivery.drain(user_id=alice.pk, service=LISTENBRAINZ).sent == 2
    assert stored_listens(fake_listenbrainz, "alice_lb") == unix([times[0], times[2], times[3]])


def test_a_lastfm_answer_with_counts_but_no_list_is_trusted(alice, song, fake_lastfm):
    link_lastfm(alice, fake_lastfm)
    record(alice, song, play_times(3))
    fake_lastfm.fail_next(1, status=200, body={"scrobbles": {"@attr": {"accepted": 3, "ignored": 0}}})

    result = delivery.drain(user_id=alice.pk, service=LASTFM)

    assert (result.sent, result.dead) == (3, 0)
    assert not DeadLetter.objects.exists()
    assert buffered(alice, LASTFM) == 0


# --- dead letters: requeue by staff -----------------------------------------------------------


def grant(user, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="scrobbling", codename__in=codenames))


def test_staff_requeue_sends_dead_letters_again_once_the_link_is_active(staff, staff_client, alice, song,
                                                                        fake_lastfm, settings):
    grant(staff, "view_deadletter", "change_deadletter")
    linked = link_lastfm(alice, fake_lastfm)
    times = play_times(2)
    record(alice, song, times)
    good_secret = settings.LASTFM_API_SECRET
    settings.LASTFM_API_SECRET = "0" * 32  # a misconfigured server: Last.fm refuses everything
    delivery.drain(user_id=alice.pk, service=LASTFM)
    ids = list(DeadLetter.objects.values_list("id", flat=True))
    assert len(ids) == 2
    settings.LASTFM_API_SECRET = good_secret
    links.link_pause(link=linked, reason="testing: not yet")

    response = staff_client.post("/admin/scrobbling/deadletter/", {"action": "requeue", "_selected_action": ids})

    assert response.status_code == 302
    assert DeadLetter.objects.filter(requeue_requested_at__isnull=False).count() == 2
    assert delivery.sweep() == []  # the link is paused: they wait as dead letters
    assert DeadLetter.objects.count() == 2
    assert buffered(alice, LASTFM) == 0

    ScrobblerLink.objects.filter(pk=linked.pk).update(status=ScrobblerLink.Status.ACTIVE)
    assert delivery.sweep() == [(alice.pk, LASTFM)]
    assert not DeadLetter.objects.exists()
    assert buffered(alice, LASTFM) == 2
    assert delivery.drain(user_id=alice.pk, service=LASTFM).sent == 2
    assert stored_timestamps(fake_lastfm, "alice_lfm") == unix(times)


def test_staff_who_may_only_view_dead_letters_cannot_requeue_them(staff, staff_client, alice, song, fake_lastfm,
                                                                   settings):
    grant(staff, "view_deadletter")
    link_lastfm(alice, fake_lastfm)
    record(alice, song, play_times(1))
    settings.LASTFM_API_SECRET = "0" * 32
    delivery.drain(user_id=alice.pk, service=LASTFM)
    ids = list(DeadLetter.objects.values_list("id", flat=True))

    response = staff_client.post("/admin/scrobbling/deadletter/", {"action": "requeue", "_selected_action": ids})

    assert response.status_code == 200  # the changelist again: no such action for this user
    assert not DeadLetter.objects.filter(requeue_requested_at__isnull=False).exists()
    assert delivery.sweep() == []
    assert DeadLetter.objects.count() == 1
    assert buffered(alice, LASTFM) == 0


# --- leases ------------------------------------------------------------------------------------


def test_a_killed_workers_batch_waits_for_its_lease_then_goes_out(alice, song, fake_lastfm):
    link_lastfm(alice, fake_lastfm)
    times = play_times(3)
    record(alice, song, times)
    token, entries = delivery.claim(user_id=alice.pk, service=LASTFM)  # ...and the worker dies
    assert len(entries) == 3
    assert token

    result = delivery.drain(user_id=alice.pk, service=LASTFM)
    assert (result.sent, result.requests) == (0, 0)  # the lease is live: nobody else sends
    assert scrobble_requests(fake_lastfm) == []
    assert delivery.sweep() == []

    BufferEntry.objects.filter(lease_token=token).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert delivery.sweep() == [(alice.pk, LASTFM)]
    assert delivery.drain(user_id=alice.pk, service=LASTFM).sent == 3
    assert stored_timestamps(fake_lastfm, "alice_lfm") == unix(times)
    assert buffered(alice, LASTFM) == 0


def test_a_late_worker_deletes_nothing_of_a_reclaimed_batch(alice, song, fake_lastfm):
    link_lastfm(alice, fake_lastfm)
    times = play_times(3)
    record(alice, song, times)
    late_token, late_entries = delivery.claim(user_id=alice.pk, service=LASTFM)
    BufferEntry.objects.update(lease_until=timezone.now() - timedelta(seconds=1))  # it took too long
    new_token, new_entries = delivery.claim(user_id=alice.pk, service=LASTFM)
    assert new_token != late_token
    assert [e.pk for e in new_entries] == [e.pk for e in late_entries]
    linked = ScrobblerLink.objects.get(user=alice)
    client = links.scrobbler(LASTFM).build()
    try:
        # The late worker's request goes through, but the rows are the new worker's now.
        delivery._send(linked, client, late_token, late_entries, delivery.DrainResult())
        assert buffered(alice, LASTFM) == 3
        assert set(BufferEntry.objects.values_list("lease_token", flat=True)) == {new_token}
        delivery._send(linked, client, new_token, new_entries, delivery.DrainResult())
    finally:
        client.close()
    assert buffered(alice, LASTFM) == 0
    assert not DeadLetter.objects.exists()
    assert Counter(stored_timestamps(fake_lastfm, "alice_lfm")) == {t: 2 for t in unix(times)}  # one batch, twice


# --- secrets at rest ---------------------------------------------------------------------------


def raw_secret(link_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM scrobbling_scrobblerlink WHERE id = %s", [link_id])
        return cursor.fetchone()[0]


def test_session_keys_are_encrypted_at_rest(alice, fake_lastfm):
    session_key = fake_lastfm.add_session("alice_lfm")
    linked = links.link_web(user=alice, service=LASTFM, session_key=session_key)
    stored = raw_secret(linked.pk)
    assert stored.startswith("fernet:")
    assert session_key not in stored
    assert ScrobblerLink.objects.get(pk=linked.pk).secret == session_key


def test_an_unreadable_secret_pauses_the_link_without_sending(alice, song, fake_lastfm):
    linked = link_lastfm(alice, fake_lastfm)
    record(alice, song, play_times(2))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE scrobbling_scrobblerlink SET secret = %s WHERE id = %s", ["fernet:xyz", linked.pk])

    result = delivery.drain(user_id=alice.pk, service=LASTFM)

    assert result.paused
    assert result.sent == 0
    linked.refresh_from_db()
    assert linked.is_paused
    assert "cannot be read" in linked.paused_reason
    assert scrobble_requests(fake_lastfm) == []
    entries = BufferEntry.objects.filter(user=alice)
    assert entries.count() == 2
    assert all(e.lease_token == "" for e in entries)


# --- the task path (Celery, eagerly) ------------------------------------------------------------


def test_a_submitted_play_reaches_the_services_through_the_drain_task(
    eager_celery, alice, song, fake_lastfm, fake_listenbrainz, django_capture_on_commit_callbacks
):
    link_lastfm(alice, fake_lastfm)
    link_listenbrainz(alice, fake_listenbrainz)
    played_at = (timezone.now() - timedelta(minutes=20)).replace(microsecond=0)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        recording.scrobbles_submit(user=alice, items={"track_id": song.pk, "played_at": played_at.isoformat()})

    assert callbacks  # the drains were started only after the commit
    assert stored_timestamps(fake_lastfm, "alice_lfm") == [int(played_at.timestamp())]
    assert stored_listens(fake_listenbrainz, "alice_lb") == [int(played_at.timestamp())]
    assert not BufferEntry.objects.exists()


def test_the_sweep_task_drains_due_links_only(eager_celery, alice, bob, song, fake_lastfm):
    link_lastfm(alice, fake_lastfm)
    link_lastfm(bob, fake_lastfm)
    alice_times, bob_times = play_times(2), play_times(2, ago=timedelta(days=1))
    record(alice, song, alice_times)
    record(bob, song, bob_times)
    ScrobblerLink.objects.filter(user=bob).update(retry_at=timezone.now() + timedelta(minutes=5), failures=3)

    tasks.sweep.delay()

    assert stored_timestamps(fake_lastfm, "alice_lfm") == unix(alice_times)
    assert buffered(alice, LASTFM) == 0
    assert stored_timestamps(fake_lastfm, "bob_lfm") == []  # backing off
    assert buffered(bob, LASTFM) == 2

    back_off_over(bob, LASTFM)
    tasks.sweep.delay()
    assert stored_timestamps(fake_lastfm, "bob_lfm") == unix(bob_times)
    assert buffered(bob, LASTFM) == 0


# --- now playing --------------------------------------------------------------------------------


def now_playing_requests(lastfm, listenbrainz) -> tuple[list, list]:
    return ([r for r in lastfm.requests if r.params.get("method") == "track.updateNowPlaying"],
            [r for r in listenbrainz.requests if r.json and r.json.get("listen_type") == "playing_now"])


def test_now_playing_is_sent_once_per_track_start(eager_celery, alice, song, fake_lastfm,
                                                  fake_listenbrainz, django_capture_on_commit_callbacks):
    link_lastfm(alice, fake_lastfm)
    link_listenbrainz(alice, fake_listenbrainz)

    with django_capture_on_commit_callbacks(execute=True):
        nowplaying.now_playing_set(user=alice, track=song, position_s=0)
    lastfm_sent, listenbrainz_sent = now_playing_requests(fake_lastfm, fake_listenbrainz)
    assert len(lastfm_sent) == len(listenbrainz_sent) == 1
    assert fake_lastfm.now_playing["alice_lfm"]["track"] == "Jóga"
    assert fake_listenbrainz.playing_now["alice_lb"]["track_metadata"]["artist_name"] == "Björk"
    assert "listened_at" not in fake_listenbrainz.playing_now["alice_lb"]

    with django_capture_on_commit_callbacks(execute=True):  # the same play, a little later
        nowplaying.now_playing_set(user=alice, track=song, position_s=30)
    assert tuple(map(len, now_playing_requests(fake_lastfm, fake_listenbrainz))) == (1, 1)
    assert not Play.objects.exists()
    assert not BufferEntry.objects.exists()


def test_now_playing_is_not_retried_when_the_service_fails(eager_celery, alice, song, fake_lastfm,
                                                           fake_listenbrainz, django_capture_on_commit_callbacks):
    link_lastfm(alice, fake_lastfm)
    link_listenbrainz(alice, fake_listenbrainz)
    fake_lastfm.fail_next(1, status=503)
    fake_listenbrainz.fail_next(1, status=503)

    with django_capture_on_commit_callbacks(execute=True):
        nowplaying.now_playing_set(user=alice, track=song, position_s=0)

    lastfm_sent, listenbrainz_sent = now_playing_requests(fake_lastfm, fake_listenbrainz)
    assert [r.status for r in lastfm_sent] == [503]
    assert [r.status for r in listenbrainz_sent] == [503]
    assert fake_lastfm.now_playing == {}
    assert fake_listenbrainz.playing_now == {}
    for linked in ScrobblerLink.objects.filter(user=alice):
        assert (linked.status, linked.failures, linked.retry_at) == (ScrobblerLink.Status.ACTIVE, 0, None)
    assert nowplaying.now_playing_list()[0]["track_id"] == song.pk  # still shown here


def test_an_unknown_artist_is_not_sent_as_now_playing(eager_celery, alice, fake_lastfm,
                                                     fake_listenbrainz, django_capture_on_commit_callbacks):
    link_lastfm(alice, fake_lastfm)
    link_listenbrainz(alice, fake_listenbrainz)
    untagged = make_track("Track 05", "Unknown Artist", None, duration_s=200.0)

    with django_capture_on_commit_callbacks(execute=True):
        nowplaying.now_playing_set(user=alice, track=untagged, position_s=0)

    assert now_playing_requests(fake_lastfm, fake_listenbrainz) == ([], [])
    assert [e["track_id"] for e in nowplaying.now_playing_list()] == [untagged.pk]


# --- manage.py link_scrobbler -----------------------------------------------------------------------


@pytest.fixture
def own_listenbrainz():
    """A second ListenBrainz-compatible server (a user's own Maloja, say)."""
    fake = FakeListenBrainz().start()
    yield fake
    fake.stop()


def test_link_scrobbler_checks_a_listenbrainz_token(alice, fake_listenbrainz):
    token = fake_listenbrainz.add_user("alice_lb")
    out = io.StringIO()
    call_command("link_scrobbler", "alice", "listenbrainz", "--token", token, stdout=out)
    linked = ScrobblerLink.objects.get(user=alice, service=LISTENBRAINZ)
    assert (linked.account_name, linked.secret, linked.api_root) == ("alice_lb", token, "")
    assert "alice is linked to ListenBrainz as alice_lb" in out.getvalue()
    assert [r.path for r in fake_listenbrainz.requests] == ["/1/validate-token"]


def test_link_scrobbler_refuses_a_bad_listenbrainz_token(alice, fake_listenbrainz):
    with pytest.raises(CommandError, match="not valid"):
        call_command("link_scrobbler", "alice", "listenbrainz", "--token", "not-a-token")
    assert not ScrobblerLink.objects.exists()


def test_link_scrobbler_api_root_sends_that_users_listens_to_their_own_server(
    alice, bob, song, fake_listenbrainz, own_listenbrainz, allow_loopback
):
    token = own_listenbrainz.add_user("alice_maloja")
    call_command("link_scrobbler", "alice", "listenbrainz", "--token", token, "--api-root", own_listenbrainz.url + "/",
                 stdout=io.StringIO())
    link_listenbrainz(bob, fake_listenbrainz)  # bob uses the default server
    assert ScrobblerLink.objects.get(user=alice).api_root == own_listenbrainz.url
    times = play_times(3)
    record(alice, song, times)
    record(bob, song, times)

    delivery.drain(user_id=alice.pk, service=LISTENBRAINZ)
    delivery.drain(user_id=bob.pk, service=LISTENBRAINZ)

    assert stored_listens(own_listenbrainz, "alice_maloja") == unix(times)
    assert stored_listens(fake_listenbrainz, "bob_lb") == unix(times)
    assert [r for r in fake_listenbrainz.requests if r.headers.get("authorization") == f"Token {token}"] == []
    assert [r.path for r in own_listenbrainz.requests] == ["/1/validate-token", "/1/submit-listens"]


def test_link_scrobbler_checks_a_lastfm_session_key(alice, fake_lastfm):
    session_key = fake_lastfm.add_session("alice_lfm")
    call_command("link_scrobbler", "alice", "lastfm", "--session-key", session_key, stdout=io.StringIO())
    linked = ScrobblerLink.objects.get(user=alice, service=LASTFM)
    assert (linked.account_name, linked.secret) == ("alice_lfm", session_key)
    assert [r.params["method"] for r in fake_lastfm.requests] == ["user.getInfo"]

    UserFactory(username="carol")
    with pytest.raises(CommandError, match="did not accept"):
        call_command("link_scrobbler", "carol", "lastfm", "--session-key", "made-up-session-key")
    assert not ScrobblerLink.objects.filter(user__username="carol").exists()
