"""Delivering a backlog of plays to Last.fm and ListenBrainz, batched versus one per request,
and how fast submitting a play answers.

Run by hand from the repository root (pytest does not collect it):

    .venv/bin/python bench/scrobble_drain.py --users 10 --plays 1000 --submits 1000

What it does, on loopback, with its own PostgreSQL database and Redis database:
  1. the local fake Last.fm and ListenBrainz servers of the test suite (tests/scrobbling/fakes.py:
     they check signatures, tokens and payloads like the real services and store what they
     accept); USERS users, each linked to both;
  2. USERS x PLAYS plays recorded (scrobbling.recording.plays_record, in lists of 1000 like an
     offline player's sync), which buffers one row per play per service;
  3. batched: scrobbling.delivery.drain for every (user, service), as the Celery task does:
     Last.fm 50 plays per track.scrobble, ListenBrainz 1000 per import. Requests counted by
     the fakes, wall time, and a check that each fake holds every play once, in order;
  4. floor: the same code with SCROBBLING_LASTFM_BATCH=1 and SCROBBLING_LISTENBRAINZ_BATCH=1,
     i.e. one play per request, as Navidrome sends them;
  5. submit latency: POST /api/scrobbling/scrobbles with one play (bearer token, through the
     whole Django stack: middleware, auth, validation, the transaction, the Celery enqueue)
     SUBMITS times, against GET /api/me with the same token (auth and routing, no write).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import BenchEnv, django_setup, percentile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--plays", type=int, default=1000, help="plays per user")
    parser.add_argument("--submits", type=int, default=1000, help="single-play submissions to time")
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra setting for the run, e.g. DATABASE_CONN_MAX_AGE=60")
    args = parser.parse_args()
    env = BenchEnv("scrobble", redis_db=args.redis_db, extra={
        "LASTFM_API_KEY": "bench-key", "LASTFM_API_SECRET": "bench-secret",
        **dict(item.split("=", 1) for item in args.setting),
    })
    with env.created():
        django_setup()
        results = run(args, env)
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


def run(args, env) -> dict:
    from django.conf import settings

    from tests.scrobbling.fakes import FakeLastfm, FakeListenBrainz

    lastfm = FakeLastfm("bench-key", "bench-secret", daily_limit=10**9).start()
    listenbrainz = FakeListenBrainz().start()
    settings.LASTFM_API_ROOT = lastfm.url
    settings.LISTENBRAINZ_API_ROOT = listenbrainz.url
    try:
        users = setup(args, lastfm, listenbrainz)
        batched = drain_all(users, lastfm, listenbrainz, label="batched")
        check_delivered(users, lastfm, listenbrainz, args.plays)
        rebuffer(lastfm, listenbrainz)
        settings.SCROBBLING_LASTFM_BATCH = settings.SCROBBLING_LISTENBRAINZ_BATCH = 1
        single = drain_all(users, lastfm, listenbrainz, label="one per request")
        check_delivered(users, lastfm, listenbrainz, args.plays)
        submit = {"daphne": submit_latency(args.submits, env), "in_process": submit_in_process(args.submits)}
    finally:
        lastfm.stop()
        listenbrainz.stop()
    total = args.users * args.plays
    return {
        "plays": total,
        "batched": batched,
        "one_per_request": single,
        "requests_per_1000_plays": {
            service: {"batched": batched[service]["requests"] * 1000 / total,
                      "one_per_request": single[service]["requests"] * 1000 / total}
            for service in ("lastfm", "listenbrainz")
        },
        "speedup": {service: single[service]["seconds"] / batched[service]["seconds"]
                    for service in ("lastfm", "listenbrainz")},
        "submit": submit,
    }


def setup(args, lastfm, listenbrainz) -> list:
    from _harness import create_users
    from django.utils import timezone

    from scrobbling.inputs import PlayInput
    from scrobbling.models import ScrobblerLink
    from scrobbling.recording import plays_record
    from tests.factories import make_track

    tracks = [make_track(f"Song {i}", f"Artist {i % 7}", f"Album {i % 5}", duration_s=180.0 + i) for i in range(50)]
    users = [user for user, _ in create_users(args.users, prefix="scrob")]
    for user in users:
        ScrobblerLink.objects.create(user=user, service="lastfm", account_name=user.username,
                                     secret=lastfm.add_session(user.username))
        ScrobblerLink.objects.create(user=user, service="listenbrainz", account_name=user.username,
                                     secret=listenbrainz.add_user(user.username))
    start = timezone.now() - timedelta(days=5)
    began = time.perf_counter()
    for user in users:
        plays = [PlayInput.of_track(tracks[i % len(tracks)], played_at=start + timedelta(minutes=4 * i),
                                    source="api") for i in range(args.plays)]
        for first in range(0, len(plays), 1000):
            plays_record(user=user, plays=plays[first:first + 1000])
    print(f"recorded {args.users * args.plays} plays in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    return users


def drain_all(users, lastfm, listenbrainz, *, label: str) -> dict:
    from scrobbling import delivery

    out = {}
    for service, fake in (("lastfm", lastfm), ("listenbrainz", listenbrainz)):
        before = len(fake.requests)
        began = time.perf_counter()
        for user in users:
            result = delivery.drain(user_id=user.pk, service=service, budget_s=3600)
            if result.retry_in_s is not None or result.paused or result.dead:
                raise RuntimeError(f"drain did not deliver everything: {result}")
        seconds = time.perf_counter() - began
        out[service] = {"requests": len(fake.requests) - before, "seconds": round(seconds, 3)}
        print(f"{label:>16} {service:<12} {out[service]['requests']:>6} requests {seconds:8.2f} s", file=sys.stderr)
    return out


def check_delivered(users, lastfm, listenbrainz, plays: int) -> None:
    from scrobbling.models import BufferEntry

    assert not BufferEntry.objects.exists(), "plays left in the buffer"
    for user in users:
        stamps = [int(s["timestamp"]) for s in lastfm.scrobbles[user.username]]
        if len(stamps) != plays or stamps != sorted(stamps):
            raise RuntimeError("Last.fm: plays missing or out of order")
        listened = [item["listened_at"] for item in listenbrainz.listens[user.username]]
        if len(listened) != plays or listened != sorted(listened):
            raise RuntimeError("ListenBrainz: plays missing or out of order")


def rebuffer(lastfm, listenbrainz) -> None:
    """The same plays waiting again, and fakes that have not seen them."""
    from scrobbling.models import BufferEntry, Play, ScrobblerLink

    with lastfm.lock:
        lastfm.scrobbles.clear()
    with listenbrainz.lock:
        listenbrainz.listens.clear()
    links = list(ScrobblerLink.objects.values_list("user_id", "service"))
    entries = []
    for play_id, user_id, played_at in Play.objects.values_list("id", "user_id", "played_at"):
        entries += [BufferEntry(user_id=user_id, service=service, play_id=play_id, played_at=played_at)
                    for link_user, service in links if link_user == user_id]
    BufferEntry.objects.bulk_create(entries, batch_size=5000)


WARM_UP = 50


def submitter(prefix: str) -> tuple[str, int]:
    """A user with both services linked (so each play is buffered twice): (token, track id)."""
    from _harness import create_users

    from catalog.models import Track
    from scrobbling.models import ScrobblerLink

    (user, token), = create_users(1, prefix=prefix)
    for service in ("lastfm", "listenbrainz"):
        ScrobblerLink.objects.create(user=user, service=service, account_name="s", secret="secret")
    return token, Track.objects.first().pk


def play_body(track_id: int, i: int) -> str:
    from django.utils import timezone

    played_at = timezone.now().replace(microsecond=0) - timedelta(days=3) + timedelta(minutes=i)
    return json.dumps({"track_id": track_id, "played_at": played_at.isoformat()})


def interleaved(count: int, submit, floor) -> dict:
    """Time submit(i) then floor(), count times after WARM_UP rounds; each returns its status."""
    submit_ms, floor_ms = [], []
    for i in range(count + WARM_UP):
        began = time.perf_counter()
        submitted = submit(i)
        elapsed = (time.perf_counter() - began) * 1000
        began = time.perf_counter()
        floored = floor()
        floor_elapsed = (time.perf_counter() - began) * 1000
        if (submitted, floored) != (201, 200):
            raise RuntimeError(f"submit answered {submitted}, /api/me {floored}")
        if i >= WARM_UP:
            submit_ms.append(elapsed)
            floor_ms.append(floor_elapsed)
    return {"count": count, "submit": _stats(submit_ms), "floor_get_me": _stats(floor_ms),
            "p50_ratio": round(statistics.median(submit_ms) / statistics.median(floor_ms), 2)}


def submit_latency(count: int, env) -> dict:
    """POST one play through a real Daphne (as in the Procfile) on a keep-alive connection,
    interleaved with GET /api/me on a second one."""
    from _harness import Server

    token, track_id = submitter("submitter")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Host": "127.0.0.1"}
    with Server.daphne(env, gc_log=False) as server:
        posts = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        gets = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

        def call(connection, method, path, body=None) -> int:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status

        return interleaved(count, lambda i: call(posts, "POST", "/api/scrobbling/scrobbles", play_body(track_id, i)),
                           lambda: call(gets, "GET", "/api/me"))


def submit_in_process(count: int) -> dict:
    """The same through Django's test client in this process: the Django stack without the
    server (no ASGI, no socket; the test client also keeps the database connection)."""
    from django.test import Client

    token, track_id = submitter("inproc")
    client = Client(HTTP_HOST="127.0.0.1", headers={"Authorization": f"Bearer {token}"})
    return interleaved(
        count,
        lambda i: client.post("/api/scrobbling/scrobbles", data=play_body(track_id, i),
                              content_type="application/json").status_code,
        lambda: client.get("/api/me").status_code,
    )


def _stats(values: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(values), 3), "p99_ms": round(percentile(values, 99), 3),
            "max_ms": round(max(values), 3)}


if __name__ == "__main__":
    main()
