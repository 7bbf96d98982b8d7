"""project/ratelimit.py: one turn per interval per key across threads and processes, on the
real Redis; a Redis restart never deadlocks it."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
import uuid

import pytest

from project import ratelimit
from project.outside import RetryLater
from tests.private_redis import PrivateRedis

INTERVAL_S = 0.25
# Sleeping wakes a little late on a loaded machine: a turn can be recorded late while the next
# one is on time, so consecutive turns may look closer than the interval by that much.
JITTER_S = 0.08


def _key() -> str:
    return f"test-{uuid.uuid4().hex}"


def _take_turns(key: str, count: int, times: list[float]) -> None:
    for _ in range(count):
        ratelimit.wait_turn(key, min_interval_s=INTERVAL_S, timeout_s=60)
        times.append(time.time())


def _process_turns(key: str, count: int, queue) -> None:
    times: list[float] = []
    _take_turns(key, count, times)
    queue.put(times)


def _assert_spaced(times: list[float], count: int) -> None:
    times = sorted(times)
    assert len(times) == count
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= INTERVAL_S - JITTER_S, gaps
    total = times[-1] - times[0]
    assert (count - 1) * INTERVAL_S - JITTER_S <= total <= (count - 1) * INTERVAL_S + 1.5, total


def test_two_threads_never_get_turns_closer_than_the_interval():
    key = _key()
    times: list[float] = []
    threads = [threading.Thread(target=_take_turns, args=(key, 6, times)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    _assert_spaced(times, 12)


def test_two_processes_never_get_turns_closer_than_the_interval():
    key = _key()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=_process_turns, args=(key, 6, queue)) for _ in range(2)]
    for process in processes:
        process.start()
    times = queue.get(timeout=30) + queue.get(timeout=30)
    for process in processes:
        process.join(10)
        assert process.exitcode == 0
    _assert_spaced(times, 12)


def test_a_turn_too_far_away_is_refused_and_not_reserved():
    key = _key()
    ratelimit.wait_turn(key, min_interval_s=5, timeout_s=1)
    started = time.monotonic()
    with pytest.raises(RetryLater) as refused:
        ratelimit.wait_turn(key, min_interval_s=5, timeout_s=1)
    assert time.monotonic() - started < 1
    assert 3.5 < refused.value.retry_after_s <= 5
    # The refusal reserved nothing: the next turn is still the one after the first.
    with pytest.raises(RetryLater) as again:
        ratelimit.wait_turn(key, min_interval_s=5, timeout_s=1)
    assert again.value.retry_after_s <= refused.value.retry_after_s


def test_other_keys_do_not_wait():
    ratelimit.wait_turn(_key(), min_interval_s=30, timeout_s=0)
    started = time.monotonic()
    ratelimit.wait_turn(_key(), min_interval_s=30, timeout_s=0)
    assert time.monotonic() - started < 0.5


def test_a_redis_restart_does_not_deadlock_it(tmp_path, settings):
    server = PrivateRedis(tmp_path).start()
    try:
        settings.REDIS_URL = server.url(7)
        key = _key()
        ratelimit.wait_turn(key, min_interval_s=INTERVAL_S, timeout_s=5)
        server.kill()
        started = time.monotonic()
        with pytest.raises(RetryLater, match="unreachable"):
            ratelimit.wait_turn(key, min_interval_s=INTERVAL_S, timeout_s=5)
        assert time.monotonic() - started < 5
        server.start()
        times: list[float] = []
        _take_turns(key, 4, times)
        _assert_spaced(times, 4)
    finally:
        server.stop()


# --- take_slot: at most N actions in any window ----------------------------------------------


def _slots(key: str, count: int, results: list) -> None:
    for _ in range(count):
        try:
            ratelimit.take_slot(key, limit=5, window_s=2)
            results.append("ok")
        except ratelimit.TooMany as exc:
            results.append(exc.retry_after_s)


def test_take_slot_counts_across_threads_and_frees_a_slot_when_the_oldest_leaves_the_window():
    key = _key()
    results: list = []
    threads = [threading.Thread(target=_slots, args=(key, 3, results)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("ok") == 5  # 12 tries from 4 threads, 5 allowed
    waits = [r for r in results if r != "ok"]
    assert len(waits) == 7
    assert all(0 < wait <= 2 for wait in waits)
    ratelimit.take_slot(f"{key}-other", limit=5, window_s=2)  # another key has its own budget
    time.sleep(max(waits) + 0.05)
    ratelimit.take_slot(key, limit=5, window_s=2)  # the window slid: allowed again
