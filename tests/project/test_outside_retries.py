"""project/outside.py with_retries / backoff_s: what is retried, how long it waits."""

from __future__ import annotations

import pytest

from project.outside import GiveUp, RetryLater, backoff_s, with_retries


class Flaky:
    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_retry_later_is_retried_with_growing_jittered_waits():
    waits: list[float] = []
    call = Flaky(RetryLater("a"), RetryLater("b"), RetryLater("c"))
    assert with_retries(call, attempts=4, first_s=1, max_s=30, sleep=waits.append) == "ok"
    assert call.calls == 4
    assert 0.5 <= waits[0] <= 1
    assert 1 <= waits[1] <= 2
    assert 2 <= waits[2] <= 4


def test_the_wait_the_service_asked_for_is_honoured():
    waits: list[float] = []
    call = Flaky(RetryLater("busy", retry_after_s=7, status=429))
    assert with_retries(call, attempts=3, first_s=1, max_s=30, sleep=waits.append) == "ok"
    assert waits == [7]


def test_a_wait_longer_than_max_goes_up_at_once():
    waits: list[float] = []
    call = Flaky(RetryLater("come back in an hour", retry_after_s=3600))
    with pytest.raises(RetryLater, match="an hour"):
        with_retries(call, attempts=5, max_s=30, sleep=waits.append)
    assert call.calls == 1
    assert waits == []


def test_the_last_failure_goes_up_and_give_up_is_never_retried():
    waits: list[float] = []
    with pytest.raises(RetryLater, match="c"):
        with_retries(Flaky(RetryLater("a"), RetryLater("b"), RetryLater("c")), attempts=3, sleep=waits.append)
    assert len(waits) == 2
    call = Flaky(GiveUp("bad"))
    with pytest.raises(GiveUp):
        with_retries(call, attempts=5, sleep=waits.append)
    assert call.calls == 1


def test_backoff_is_capped():
    assert all(15 <= backoff_s(40, first_s=1, max_s=30) <= 30 for _ in range(50))
