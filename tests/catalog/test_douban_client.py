"""DoubanClient end to end against the fake Douban (real HTTP on 127.0.0.1) and the real Redis
behind the politeness limiter: the list and the details, the anti-bot answers, retries, the
answers that are no data, and the spacing of requests. No database."""

from __future__ import annotations

import itertools
import socket
import threading
from datetime import date
from pathlib import Path

import pytest

from catalog.clients import Blocked, GiveUp, ListedTitle, Release, RetryLater, registry
from catalog.clients.douban import BLOCKED_BACKOFF_S, DoubanClient
from tests.catalog.douban_fake import FakeDouban, FakeSubject, Person

PAGES = Path(__file__).parent / "pages"
# The limiter spaces the sends; the fake sees arrivals, which also carry each request's own
# latency (a new connection, a thread that is scheduled late on a loaded machine).
JITTER_S = 0.15


@pytest.fixture
def fake():
    server = FakeDouban().start()
    server.add(FakeSubject("36081094", "奥本海默", original_title="Oppenheimer", year=2023,
                           directors=[Person("克里斯托弗·诺兰", "1054524")], cast=[Person("基里安·墨菲", "1047992")],
                           genres=["剧情", "传记"], releases=["2023-08-30(中国大陆)", "2023-07-21(美国)"],
                           runtime="180分钟", imdb_id="tt15398776", synopsis="原子弹之父。", rating="8.8",
                           votes="600000", cover="https://img9.doubanio.com/view/photo/s_ratio_poster/public/p1.jpg"))
    server.add(FakeSubject("35267208", "繁花", kind="tv", year=2023, releases=["2023-12-27(中国大陆)"],
                           episode_count=30, episode_runtime="45分钟", rating="8.7", votes="300000"))
    server.add_page("3541415", (PAGES / "subject_3541415.html").read_text(encoding="utf-8"), title="盗梦空间",
                    rate="9.4")
    yield server
    server.stop()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def client(fake, sleeps):
    douban = DoubanClient(root=fake.url, min_interval_s=0.05, timeout_s=2, retries=2, wait_max_s=10,
                          sleep=sleeps.append)
    yield douban
    douban.close()


def test_registered_as_douban():
    assert registry.get("douban") is DoubanClient


def test_the_newest_list_and_the_details(client, fake):
    assert client.newest(kind="movie") == [
        ListedTitle("36081094", "奥本海默", "movie", 8.8, f"{fake.url}/subject/36081094/",
                    "https://img9.doubanio.com/view/photo/s_ratio_poster/public/p1.jpg"),
        ListedTitle("3541415", "盗梦空间", "movie", 9.4, f"{fake.url}/subject/3541415/")]
    listed = fake.requests[-1]
    assert listed.path == "/j/search_subjects"
    assert listed.params == {"type": "movie", "tag": "最新", "page_limit": "80", "page_start": "0"}
    assert [title.source_id for title in client.newest(kind="tv")] == ["35267208"]
    details = client.details("36081094", kind="movie")
    assert (details.title, details.original_title, details.year, details.runtime_min) == ("奥本海默", "Oppenheimer",
                                                                                        2023, 180)
    assert details.releases == [Release(date(2023, 8, 30), "中国大陆"), Release(date(2023, 7, 21), "美国")]
    assert details.release_date == date(2023, 7, 21)
    assert [(c.role, c.name, c.source_person_id) for c in details.credits] == [
        ("director", "克里斯托弗·诺兰", "1054524"), ("actor", "基里安·墨菲", "1047992")]
    assert fake.requests[-1].path == "/subject/36081094/"
    tv = client.details("35267208", kind="tv")
    assert (tv.kind, tv.episode_count, tv.episode_runtime_min, tv.release_date) == ("tv", 30, 45, date(2023, 12, 27))
    saved = client.details("3541415", kind="movie")
    assert (saved.title, saved.imdb_id, saved.votes) == ("盗梦空间", "tt1375666", 1970885)


@pytest.mark.parametrize("block", ["page", "redirect", "login", "403", "418"])
def test_the_anti_bot_answers_raise_blocked_at_once(client, fake, block):
    fake.block = block
    with pytest.raises(Blocked) as blocked:
        client.details("36081094", kind="movie")
    assert blocked.value.retry_after_s == BLOCKED_BACKOFF_S
    assert len(fake.requests) == 1  # not retried: the run stops politely
    with pytest.raises(Blocked):
        client.newest(kind="movie")


def test_5xx_are_retried_with_backoff(client, fake, sleeps):
    fake.fail_next(2, status=500)
    assert client.details("36081094", kind="movie").title == "奥本海默"
    assert [request.status for request in fake.requests] == [500, 500, 200]
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5
    assert 0.5 <= sleeps[1] <= 1


def test_429_waits_what_retry_after_says(client, fake, sleeps):
    fake.fail_next(1, status=429, headers={"Retry-After": "3"})
    assert len(client.newest(kind="movie")) == 2
    assert sleeps == [3.0]


def test_a_retry_after_too_long_to_wait_goes_up_with_it(client, fake, sleeps):
    fake.fail_next(1, status=429, headers={"Retry-After": "3600"})
    with pytest.raises(RetryLater) as later:
        client.newest(kind="movie")
    assert later.value.retry_after_s == 3600
    assert later.value.status == 429
    assert sleeps == []


def test_the_retries_run_out(client, fake):
    fake.fail_next(5, status=503)
    with pytest.raises(RetryLater, match="busy"):
        client.details("36081094", kind="movie")
    assert len(fake.requests) == 3


def test_a_slow_answer_times_out_and_is_retried(fake, sleeps):
    fake.delay_s = 1.5
    slow = DoubanClient(root=fake.url, min_interval_s=0, timeout_s=0.3, retries=1, sleep=sleeps.append)
    try:
        with pytest.raises(RetryLater, match=r"no answer within 0\.3s"):
            slow.details("36081094", kind="movie")
    finally:
        slow.close()
    assert len(fake.requests) == 2


@pytest.mark.parametrize(("garbage", "problem"), [
    (b"<html><body>\xe7\xb3\xbb\xe7\xbb\x9f\xe7\xbb\xb4\xe6\x8a\xa4</body></html>", "not JSON"),
    (b'{"subjects": "none"}', "not Douban's list"), (b'{"subjects": [{"id": "abc", "title": "x"}]}', "subjects"),
    (b"\xff\xfe\x00", "not JSON")])
def test_a_list_that_is_not_the_json_douban_sends_is_give_up(client, fake, garbage, problem):
    fake.garbage = garbage
    with pytest.raises(GiveUp, match=problem):
        client.newest(kind="movie")
    assert len(fake.requests) == 1


def test_a_missing_subject_a_page_that_is_no_subject_and_bad_arguments_are_give_up(client, fake):
    with pytest.raises(GiveUp, match="no such subject"):
        client.details("999", kind="movie")
    fake.pages["5"] = "<html><head><title>豆瓣电影</title></head><body><p>热门电影</p></body></html>"
    with pytest.raises(GiveUp, match="no Douban subject page"):
        client.details("5", kind="movie")
    sent = len(fake.requests)
    with pytest.raises(GiveUp, match="not a number"):
        client.details("../../admin", kind="movie")
    with pytest.raises(GiveUp, match="not 'music'"):
        client.newest(kind="music")
    assert len(fake.requests) == sent


def _assert_spaced(arrivals: list[float], interval_s: float) -> None:
    gaps = [later - earlier for earlier, later in itertools.pairwise(sorted(arrivals))]
    assert min(gaps) >= interval_s - JITTER_S, gaps


def test_requests_are_spaced_by_the_interval(fake):
    douban = DoubanClient(root=fake.url, min_interval_s=0.4, timeout_s=5, retries=0)
    try:
        douban.newest(kind="movie")
        for source_id in ("36081094", "35267208", "3541415"):
            douban.details(source_id, kind="movie")
    finally:
        douban.close()
    assert len(fake.arrivals) == 4
    _assert_spaced(fake.arrivals, 0.4)
    assert fake.arrivals[-1] - fake.arrivals[0] >= 3 * 0.4 - JITTER_S


def test_two_workers_share_the_interval_of_one_host(fake):
    def work():
        douban = DoubanClient(root=fake.url, min_interval_s=0.5, timeout_s=5, retries=0)
        try:
            for source_id in ("36081094", "35267208", "3541415"):
                douban.details(source_id, kind="movie")
        finally:
            douban.close()

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert len(fake.arrivals) == 6
    _assert_spaced(fake.arrivals, 0.5)
    assert max(fake.arrivals) - min(fake.arrivals) >= 5 * 0.5 - JITTER_S


def test_the_limiter_wait_too_long_is_retry_later(fake):
    douban = DoubanClient(root=fake.url, min_interval_s=30, timeout_s=5, retries=0, wait_max_s=1)
    try:
        douban.newest(kind="movie")
        with pytest.raises(RetryLater, match="next turn"):
            douban.newest(kind="movie")
    finally:
        douban.close()
    assert len(fake.requests) == 1


def test_network_errors_are_retried_then_go_up(sleeps):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the socket is closed
    douban = DoubanClient(root=f"http://127.0.0.1:{port}", min_interval_s=0, timeout_s=2, retries=2,
                          sleep=sleeps.append)
    try:
        with pytest.raises(RetryLater, match="ConnectError"):
            douban.newest(kind="movie")
    finally:
        douban.close()
    assert len(sleeps) == 2
