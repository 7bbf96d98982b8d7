"""The processes of `make run` (web, worker, and here the test itself) write the one database
at the same time: on SQLite (one file in WAL mode, `make test` runs this there too) as on
PostgreSQL, nothing is refused as "database is locked" and nothing is lost."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.request
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from project.accounts.services import token_create
from scrobbling import inputs, recording
from scrobbling.models import BufferEntry, DeadLetter, Play, ScrobblerLink
from tests.factories import UserFactory, make_track
from tests.live import DAPHNE, _server_env, stop_process_group
from tests.scrobbling.fakes import FakeListenBrainz

pytestmark = pytest.mark.alone  # a Celery worker: see pyproject.toml's markers
CELERY = DAPHNE.with_name("celery")
REQUESTS = 8  # through the web server, two threads at once
PLAYS_PER_REQUEST = 15
PLAYS_IN_THIS_PROCESS = 40
DEADLINE_S = 90


@pytest.fixture
def listenbrainz():
    fake = FakeListenBrainz().start()
    yield fake
    fake.stop()


@pytest.fixture
def worker(transactional_db, listenbrainz, redis_client, tmp_path):
    """`celery -A project worker` (as in the Procfile) on the test database and Redis."""
    redis_client.delete("celery")  # tasks queued by earlier tests' commits are not ours
    log = tmp_path / "worker.log"
    env = _server_env({"LISTENBRAINZ_API_ROOT": listenbrainz.url})
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(CELERY), "-A", "project", "worker", "--concurrency=2", "--loglevel=WARNING",
             "--without-gossip", "--without-mingle", "-n", f"test-{os.getpid()}@%h"],
            cwd=settings.BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    yield log
    stop_process_group(process)


def linked_user(name: str, listenbrainz: FakeListenBrainz):
    user = UserFactory(username=name)
    ScrobblerLink.objects.create(user=user, service="listenbrainz", account_name=name,
                                 secret=listenbrainz.add_user(name))
    return user


def delivered(listenbrainz: FakeListenBrainz, name: str) -> int:
    with listenbrainz.lock:
        return len(listenbrainz.listens.get(name, []))


def test_web_worker_and_another_process_write_the_database_at_once(asgi_server_factory, worker, listenbrainz):
    (server,) = asgi_server_factory(1, env={"LISTENBRAINZ_API_ROOT": listenbrainz.url})
    alice, bob = linked_user("alice", listenbrainz), linked_user("bob", listenbrainz)
    _, token = token_create(user=alice, name="player")
    tracks = [make_track(f"Song {i}", f"Artist {i % 3}", f"Album {i % 2}", duration_s=200.0) for i in range(5)]
    start = (timezone.now() - timedelta(days=2)).replace(microsecond=0)
    statuses: list[int] = []

    def submit(request_index: int) -> None:
        """Alice's player: a batch of plays through the web server."""
        body = [{"track_id": tracks[n % 5].pk, "played_s": 200,
                 "played_at": (start + timedelta(minutes=4 * (request_index * PLAYS_PER_REQUEST + n))).isoformat()}
                for n in range(PLAYS_PER_REQUEST)]
        request = urllib.request.Request(
            f"{server.url}/api/scrobbling/scrobbles", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            statuses.append(response.status)

    def submit_all(first: int) -> None:
        for index in range(first, REQUESTS, 2):
            submit(index)

    senders = [threading.Thread(target=submit_all, args=(first,)) for first in (0, 1)]
    for sender in senders:
        sender.start()
    # Meanwhile this process records Bob's plays, one transaction each, while the worker
    # delivers and deletes buffer rows and the web server writes Alice's.
    for n in range(PLAYS_IN_THIS_PROCESS):
        play = inputs.PlayInput.of_track(tracks[n % 5], played_at=start + timedelta(minutes=3 * n), source="api")
        assert len(recording.plays_record(user=bob, plays=[play]).created) == 1
    for sender in senders:
        sender.join(60)
    assert statuses == [201] * REQUESTS

    deadline = time.monotonic() + DEADLINE_S
    expected = {"alice": REQUESTS * PLAYS_PER_REQUEST, "bob": PLAYS_IN_THIS_PROCESS}
    while time.monotonic() < deadline:
        if {name: delivered(listenbrainz, name) for name in expected} == expected and not BufferEntry.objects.exists():
            break
        time.sleep(0.2)
    logs = worker.read_text(errors="replace") + server.log()
    assert {name: delivered(listenbrainz, name) for name in expected} == expected, logs[-3000:]
    assert Play.objects.filter(user=alice).count() == expected["alice"]
    assert Play.objects.filter(user=bob).count() == expected["bob"]
    assert not BufferEntry.objects.exists()
    assert not DeadLetter.objects.exists()
    assert "database is locked" not in logs
    tracks[0].refresh_from_db()
    assert tracks[0].play_count == (expected["alice"] + expected["bob"]) // 5
