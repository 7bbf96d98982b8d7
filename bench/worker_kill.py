"""A Celery worker killed (-9) in the middle of delivering plays: none may be lost.

Run by hand from the repository root (pytest does not collect it):

    .venv/bin/python bench/worker_kill.py                      # 20 users x 300 plays, 3 kills
    .venv/bin/python bench/worker_kill.py --users 5 --plays 100 --kills 1   # smoke

What it does, on loopback, with its own PostgreSQL database and a private redis-server
(the broker; never the shared Redis):
  1. the fake Last.fm and ListenBrainz of the test suite (tests/scrobbling/fakes.py), each
     answering after DELAY seconds so that a drain takes a while; USERS users linked to both;
  2. USERS x PLAYS plays recorded (scrobbling.recording.plays_record), which buffers one row
     per play per service and queues one drain task per link;
  3. a real worker (`celery -A project worker`, as in the Procfile) starts draining; once
     the fakes hold KILL_AT of what is due (a positive signal, counted from their requests),
     the whole worker (its main process and its pool) gets SIGKILL, as the OOM killer or a
     lost machine would do, and a new worker starts. This repeats KILLS times;
  4. the sweep the beat runs every minute (leases of a killed worker expire, links with
     plays due get a drain) is queued every SWEEP seconds here, so the run stays short;
     SCROBBLING_LEASE_S is 5 s for the same reason;
  5. when the buffer is empty: every play must have reached each fake at least once, in an
     accepted request; the report counts plays lost (must be 0), plays sent more than once
     (allowed: a batch in flight when the worker died is sent again), and dead letters.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

from tests.private_redis import PrivateRedis

SERVICES = ("lastfm", "listenbrainz")


class Worker:
    """`celery -A project worker` in its own process group, so that one SIGKILL ends the
    main process and its pool together."""

    def __init__(self, env: dict, label: str, concurrency: int):
        self.log = h.SCRATCH / f"worker-kill-{label}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(h.BIN / "celery"), "-A", "project", "worker", f"--concurrency={concurrency}",
                 "--loglevel=WARNING", "--without-gossip", "--without-mingle", "-n", f"bench-{label}@%h"],
                cwd=h.ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def delivered(lastfm, listenbrainz) -> dict[str, Counter]:
    """(user name, timestamp) -> times it arrived in an accepted request, per service."""
    counts = {service: Counter() for service in SERVICES}
    with lastfm.lock:
        sessions = dict(lastfm.sessions)
        lastfm_requests = list(lastfm.requests)
    for request in lastfm_requests:
        if request.status != 200 or request.params.get("method") != "track.scrobble":
            continue
        user = sessions.get(request.params.get("sk"))
        for name, value in request.params.items():
            if name.startswith("timestamp["):
                counts["lastfm"][(user, int(value))] += 1
    with listenbrainz.lock:
        tokens = dict(listenbrainz.tokens)
        lb_requests = list(listenbrainz.requests)
    for request in lb_requests:
        if request.status != 200 or not request.path.endswith("/submit-listens") or not request.json:
            continue
        if request.json.get("listen_type") == "playing_now":
            continue
        user = tokens.get(request.headers.get("authorization", "").removeprefix("Token ").strip())
        for listen in request.json.get("payload", []):
            counts["listenbrainz"][(user, int(listen["listened_at"]))] += 1
    return counts


def setup(args, lastfm, listenbrainz) -> set[tuple[str, int]]:
    """Users linked to both fakes and their plays; returns the (user name, timestamp) due."""
    from django.utils import timezone

    from scrobbling.inputs import PlayInput
    from scrobbling.models import ScrobblerLink
    from scrobbling.recording import plays_record
    from tests.factories import make_track

    tracks = [make_track(f"Song {i}", f"Artist {i % 7}", f"Album {i % 5}", duration_s=180.0 + i) for i in range(20)]
    users = [user for user, _ in h.create_users(args.users, prefix="killed")]
    for user in users:
        ScrobblerLink.objects.create(user=user, service="lastfm", account_name=user.username,
                                     secret=lastfm.add_session(user.username))
        ScrobblerLink.objects.create(user=user, service="listenbrainz", account_name=user.username,
                                     secret=listenbrainz.add_user(user.username))
    start = (timezone.now() - timedelta(days=3)).replace(microsecond=0)
    due = set()
    for user in users:
        plays = [PlayInput.of_track(tracks[i % len(tracks)], played_at=start + timedelta(minutes=4 * i),
                                    source="api") for i in range(args.plays)]
        plays_record(user=user, plays=plays)  # queues a drain per link, after commit
        due |= {(user.username, int(play.played_at.timestamp())) for play in plays}
    return due


def run(args, env: h.PrivateRedisEnv) -> dict:
    from scrobbling import tasks
    from scrobbling.models import BufferEntry, DeadLetter
    from tests.scrobbling.fakes import FakeLastfm, FakeListenBrainz

    lastfm = FakeLastfm("bench-key", "bench-secret", daily_limit=10**9).start()
    listenbrainz = FakeListenBrainz().start()
    lastfm.delay_s = listenbrainz.delay_s = args.delay
    worker_env = env.environ() | {"LASTFM_API_ROOT": lastfm.url, "LISTENBRAINZ_API_ROOT": listenbrainz.url}
    workers: list[Worker] = []
    kills = []
    try:
        due = setup(args, lastfm, listenbrainz)
        total = len(due) * len(SERVICES)
        started = time.monotonic()
        workers.append(Worker(worker_env, "0", args.concurrency))
        for k in range(args.kills):
            # Kill once the fakes hold the next share of the plays (a positive signal).
            target = total * args.kill_at * (k + 1) / (args.kills + 1)
            deadline = time.monotonic() + args.timeout
            while sum(len(c) for c in delivered(lastfm, listenbrainz).values()) < target:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the worker delivered too little to be killed mid-drain; see {workers[-1].log}")
                time.sleep(0.02)
            in_buffer = BufferEntry.objects.count()
            leased = BufferEntry.objects.exclude(lease_token="").count()
            workers[-1].kill()
            kills.append({"at_s": round(time.monotonic() - started, 2), "buffered": in_buffer, "leased": leased})
            print(f"kill -9 #{k + 1} at {kills[-1]['at_s']} s: {in_buffer} rows buffered, {leased} leased",
                  flush=True)
            workers.append(Worker(worker_env, str(k + 1), args.concurrency))
        # What the beat does every minute, every SWEEP seconds, until the buffer is empty.
        deadline = time.monotonic() + args.timeout
        while BufferEntry.objects.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{BufferEntry.objects.count()} plays still buffered after {args.timeout} s")
            tasks.sweep.delay()
            time.sleep(args.sweep)
        drained_s = time.monotonic() - started
        counts = delivered(lastfm, listenbrainz)
    finally:
        for worker in workers:
            worker.stop()
        lastfm.stop()
        listenbrainz.stop()
    per_service = {}
    for service in SERVICES:
        got = counts[service]
        per_service[service] = {
            "due": len(due), "arrived": len(set(got) & due), "lost": len(due - set(got)),
            "sent_more_than_once": sum(1 for key in due if got[key] > 1),
            "extra_copies": sum(n - 1 for key, n in got.items() if n > 1),
        }
    return {"users": args.users, "plays_per_user": args.plays, "kills": kills, "seconds": round(drained_s, 1),
            "dead_letters": DeadLetter.objects.count(), "services": per_service,
            "lost_total": sum(s["lost"] for s in per_service.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--plays", type=int, default=300, help="plays per user")
    parser.add_argument("--kills", type=int, default=3, help="times the worker is killed during the drain")
    parser.add_argument("--kill-at", type=float, default=0.9,
                        help="the kills are spread over this share of the delivery (0.9: before 90 %% arrived)")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds each fake takes to answer")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--sweep", type=float, default=2.0, help="seconds between two sweeps (the beat: 60)")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--json", default=str(h.SCRATCH / "worker_kill.json"))
    args = parser.parse_args()
    redis_server = PrivateRedis(h.SCRATCH / "worker-kill-redis").start()
    try:
        env = h.PrivateRedisEnv("workerkill", private_url=redis_server.url(0), extra={
            # One key for this process and the workers: the links' secrets are encrypted with it.
            "SECRET_KEY": "bench-only-" + secrets.token_urlsafe(48),
            "LASTFM_API_KEY": "bench-key", "LASTFM_API_SECRET": "bench-secret", "SCROBBLING_LEASE_S": "5",
            "SCROBBLING_LISTENBRAINZ_BATCH": "100", "OUTBOUND_ALLOW_PRIVATE": "127.0.0.0/8",
            "CELERY_CONCURRENCY": str(args.concurrency),
        })
        with env.created():
            h.django_setup()
            result = run(args, env)
    finally:
        redis_server.stop()
    print(json.dumps(result, indent=1))
    for service, figures in result["services"].items():
        print(f"{service:>12}: {figures['due']} plays due, {figures['arrived']} arrived, {figures['lost']} lost, "
              f"{figures['sent_more_than_once']} sent more than once")
    print(f"{len(result['kills'])} kill -9 of the worker during the drain; everything delivered in "
          f"{result['seconds']} s; dead letters {result['dead_letters']}; lost {result['lost_total']}")
    Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
