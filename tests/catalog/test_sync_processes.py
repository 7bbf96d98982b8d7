"""The sync in real worker processes (python -m tests.catalog.sync_worker, on the test
database and Redis) against one fake Douban: two processes syncing at once share the
per-host limit (the fake never sees two requests closer than the interval) and never make a
second row of anything; a worker killed with SIGKILL mid-run leaves a lease that expires, and
the run taken over finishes every item once."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from catalog import sync
from catalog.clients import registry
from catalog.models import Country, ExternalId, Genre, SyncItem, SyncRun, Title
from tests.catalog.sync_support import douban_fixture, full_subject, sync_settings_fixture  # noqa: F401 - fixtures
from tests.catalog.sync_worker import MirrorDouban
from tests.live import _server_env, stop_process_group

# Worker processes timed against each other, and a Celery worker: see pyproject.toml's markers.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.alone]
INTERVAL_S = 0.25
# The limiter spaces the sends; arrivals at the fake also carry each request's own latency.
JITTER_S = 0.05


@pytest.fixture
def mirror():
    registry.register(MirrorDouban)
    yield MirrorDouban
    registry._by_name.pop(MirrorDouban.name, None)


@pytest.fixture
def start_worker(douban, sync_settings, tmp_path):
    started: list[subprocess.Popen] = []

    def start(run_id: int) -> subprocess.Popen:
        """A worker with the settings as the test has them now."""
        env = _server_env({
            "CATALOG_DOUBAN_ROOT": douban.url, "CATALOG_DOUBAN_WAIT_MAX_S": "30", "CATALOG_TMDB_API_KEY": "",
            "CATALOG_DOUBAN_MIN_INTERVAL_S": str(sync_settings.CATALOG_DOUBAN_MIN_INTERVAL_S),
            "MEDIA_ROOT": str(sync_settings.MEDIA_ROOT), "CATALOG_SYNC_LEASE_S": str(sync_settings.CATALOG_SYNC_LEASE_S),
        })
        log = (tmp_path / f"worker-{run_id}-{len(started)}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "tests.catalog.sync_worker", str(run_id)],
                                   cwd=settings.BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        return process

    yield start
    for process in started:
        stop_process_group(process)


def _wait(predicate, *, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        time.sleep(0.05)
    return value


def test_two_worker_processes_share_the_douban_host_limit_and_make_no_duplicates(
        douban, sync_settings, mirror, start_worker, tmp_path):
    sync_settings.CATALOG_DOUBAN_MIN_INTERVAL_S = INTERVAL_S
    for number in range(1, 5):
        subject = full_subject(number, douban.url, imdb_id=f"tt{9000000 + number}")
        subject.cover = ""  # pages only: covers of the mirror source would be another key's
        douban.add(subject)
    first, _ = sync.sync_start(source="douban", trigger="manual", enqueue=False)
    second, _ = sync.sync_start(source="douban_mirror", trigger="manual", enqueue=False)

    workers = [start_worker(first.pk), start_worker(second.pk)]
    for worker in workers:
        assert worker.wait(60) == 0, "\n".join(log.read_text() for log in tmp_path.glob("worker-*.log"))

    logs = "\n".join(log.read_text() for log in tmp_path.glob("worker-*.log"))
    assert [run.state for run in SyncRun.objects.order_by("id")] == ["done", "done"], logs
    assert len(douban.arrivals) == 2 * (2 + 4)  # each run: two lists, four pages
    arrivals = sorted(douban.arrivals)
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert min(gaps) >= INTERVAL_S - JITTER_S, gaps
    # Both processes merged the same four films (the same IMDb ids): one title each.
    assert Title.objects.count() == 4
    assert not ExternalId.objects.values("source", "kind", "value").annotate(n=Count("id")).filter(n__gt=1)
    assert Genre.objects.count() == 2
    assert Country.objects.count() == 2


def test_a_worker_killed_mid_run_is_taken_over_once_its_lease_expires(douban, sync_settings, start_worker):
    sync_settings.CATALOG_DOUBAN_MIN_INTERVAL_S = 0.1
    sync_settings.CATALOG_SYNC_LEASE_S = 1.5
    for number in range(1, 9):
        douban.add(full_subject(number, douban.url))
    run, _ = sync.sync_start(source="douban", trigger="manual", enqueue=False)
    worker = start_worker(run.pk)

    _wait(lambda: SyncRun.objects.get(pk=run.pk).done >= 3, timeout_s=30, what="three titles done")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)

    killed = SyncRun.objects.get(pk=run.pk)
    assert killed.state == "running"
    assert killed.lease_owner != ""
    pending = SyncItem.objects.filter(run=run, state="pending").count()
    assert 0 < pending < 8
    assert sync.sync_execute(run_id=run.pk).done == killed.done  # its lease still holds: not taken
    again, started = sync.sync_start(source="douban", trigger="schedule", enqueue=False)
    assert (again.pk, started) == (run.pk, False)  # the next trigger gets the same run

    _wait(lambda: SyncRun.objects.get(pk=run.pk).lease_until <= timezone.now(), timeout_s=10, what="lease expiry")
    finished = sync.sync_execute(run_id=run.pk)

    assert finished.state == "done"
    assert (finished.listed, finished.done, finished.new, finished.failed) == (8, 8, 8, 0)
    assert SyncItem.objects.filter(run=run).exclude(state="new").count() == 0
    assert Title.objects.count() == 8
    assert not ExternalId.objects.values("source", "kind", "value").annotate(n=Count("id")).filter(n__gt=1)
    assert [r.path for r in douban.requests].count("/j/search_subjects") == 2  # listed once, by the first worker


def test_a_started_sync_is_run_by_a_celery_worker(douban, sync_settings, redis_client, tmp_path):
    from tests.live import DAPHNE

    douban.add(full_subject(1, douban.url))
    redis_client.delete("celery")
    env = _server_env({"CATALOG_DOUBAN_ROOT": douban.url, "CATALOG_DOUBAN_MIN_INTERVAL_S": "0.01",
                       "CATALOG_TMDB_API_KEY": "", "MEDIA_ROOT": str(sync_settings.MEDIA_ROOT)})
    log = (tmp_path / "celery.log").open("wb")
    worker = subprocess.Popen(
        [str(DAPHNE.with_name("celery")), "-A", "project", "worker", "-Q", "celery", "--pool=solo", "--loglevel=INFO",
         "--without-gossip", "--without-mingle", "-n", f"sync-{os.getpid()}@%h"],
        cwd=settings.BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        run, started = sync.sync_start(source="douban", trigger="api")  # enqueued once committed
        assert started
        try:
            _wait(lambda: SyncRun.objects.get(pk=run.pk).state == "done", timeout_s=60, what="the worker ran it")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the worker's log: {(tmp_path / 'celery.log').read_text()[-3000:]}") from None
    finally:
        stop_process_group(worker)
    assert Title.objects.get().title == "影片1"
