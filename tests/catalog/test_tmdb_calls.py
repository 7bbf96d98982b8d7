"""TMDB: lookups by IMDb id, changes, newest, both kinds of credential, error bodies, retries
and the politeness limit."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from datetime import UTC, date, datetime, timedelta

import pytest

from catalog.clients import MOVIE, TV, GiveUp, ListedTitle, RetryLater
from catalog.clients.tmdb import TmdbClient, credential_kind
from tests.catalog.tmdb_fake import V3_KEY, V4_TOKEN, FakeTmdb, sample_movie, sample_show

WRONG_KEY = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def fake():
    with FakeTmdb(api_key=V3_KEY, read_token=V4_TOKEN) as server:
        server.add_movie(sample_movie())
        show, seasons = sample_show(seasons=1)
        server.add_show(show, seasons)
        yield server


def client_for(fake: FakeTmdb, **options) -> TmdbClient:
    options = {"api_key": V3_KEY, "language": "zh-CN", "retry_first_s": 0.05, **options}
    return TmdbClient(api_root=fake.url, **options)


# --- credentials ------------------------------------------------------------------------

def test_credential_kind_tells_a_read_token_from_an_api_key():
    assert credential_kind(V3_KEY) == "v3"
    assert credential_kind(V4_TOKEN) == "v4"
    assert credential_kind(f"  {V4_TOKEN}\n") == "v4"


def test_a_v3_key_goes_in_the_query(fake):
    client_for(fake).details("27205", kind=MOVIE)
    (request,) = fake.api_requests()
    assert request.params["api_key"] == V3_KEY
    assert "authorization" not in request.headers


def test_a_v4_read_token_goes_in_the_authorization_header(fake):
    details = client_for(fake, api_key=V4_TOKEN).details("27205", kind=MOVIE)
    assert details.title == "盗梦空间"
    (request,) = fake.api_requests()
    assert request.headers["authorization"] == f"Bearer {V4_TOKEN}"
    assert "api_key" not in request.params


@pytest.mark.parametrize("wrong", [WRONG_KEY, V4_TOKEN[:-4] + "AAAA"])
def test_a_refused_credential_is_give_up_naming_the_setting_without_the_credential(fake, wrong):
    with pytest.raises(GiveUp) as caught:
        client_for(fake, api_key=wrong).details("27205", kind=MOVIE)
    message = str(caught.value)
    assert "CATALOG_TMDB_API_KEY" in message
    assert "code 7: Invalid API key" in message
    assert caught.value.status == 401
    assert wrong not in message
    assert wrong not in caught.value.answer
    assert len(fake.api_requests()) == 1  # not retried


def test_an_error_that_echoes_the_key_has_it_cut_out(fake):
    fake.fail_next(1, status=401, body={"success": False, "status_code": 7,
                                        "status_message": f"Invalid API key: {V3_KEY} is not a key"})
    with pytest.raises(GiveUp) as caught:
        client_for(fake).details("27205", kind=MOVIE)
    assert "Invalid API key: *** is not a key" in str(caught.value)
    assert V3_KEY not in caught.value.answer


def test_enabled_only_with_a_key(settings):
    settings.CATALOG_TMDB_API_KEY = ""
    assert TmdbClient.enabled() is False
    settings.CATALOG_TMDB_API_KEY = "   "
    assert TmdbClient.enabled() is False
    with pytest.raises(GiveUp, match="CATALOG_TMDB_API_KEY"):
        TmdbClient()
    settings.CATALOG_TMDB_API_KEY = V3_KEY
    assert TmdbClient.enabled() is True


def test_the_client_takes_its_settings(fake, settings):
    settings.CATALOG_TMDB_API_ROOT = fake.url
    settings.CATALOG_TMDB_API_KEY = V4_TOKEN
    settings.CATALOG_TMDB_LANGUAGE = "en-US"
    settings.CATALOG_TMDB_IMAGE_ROOT = "http://img.test/p"
    details = TmdbClient().details("27205", kind=MOVIE)
    assert details.title == "Inception"
    assert details.cover_url == "http://img.test/p/w500/oYuLEt3zVCKq57qu2F8dT7NIa6f.jpg"
    assert fake.api_requests()[0].params["language"] == "en-US"


def test_the_key_is_not_in_the_repr_nor_in_httpx_log_lines(fake, caplog):
    client = client_for(fake)
    assert V3_KEY not in repr(client)
    with caplog.at_level(logging.INFO, logger="httpx"):
        client.details("27205", kind=MOVIE)
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("httpx")]
    assert any("api_key=***" in line for line in lines)
    assert not any(V3_KEY in line for line in lines)


# --- errors -----------------------------------------------------------------------------

def test_a_missing_title_is_give_up_naming_it(fake):
    with pytest.raises(GiveUp) as caught:
        client_for(fake).details("999999", kind=TV)
    assert "tv 999999" in str(caught.value)
    assert "code 34: The resource you requested could not be found." in str(caught.value)
    assert caught.value.status == 404
    assert caught.value.code == 34
    assert len(fake.api_requests()) == 1


def test_an_answer_that_is_not_json_is_give_up(fake):
    fake.fail_next(1, status=200, body="<html>maintenance</html>")
    with pytest.raises(GiveUp, match="not a JSON object"):
        client_for(fake).details("27205", kind=MOVIE)


def test_5xx_is_retried_with_backoff(fake):
    fake.fail_next(2, status=503)
    details = client_for(fake).details("27205", kind=MOVIE)
    assert details.title == "盗梦空间"
    assert [request.status for request in fake.api_requests()] == [503, 503, 200]


def test_5xx_that_lasts_is_retry_later_after_the_retries(fake):
    fake.fail_next(10, status=500)
    with pytest.raises(RetryLater) as caught:
        client_for(fake, retries=2).details("27205", kind=MOVIE)
    assert caught.value.status == 500
    assert "code 11" in str(caught.value)
    assert len(fake.api_requests()) == 3


def test_429_waits_what_retry_after_says(fake):
    fake.fail_next(1, status=429, headers={"Retry-After": "1"})
    details = client_for(fake).details("27205", kind=MOVIE)
    assert details.title == "盗梦空间"
    assert [request.status for request in fake.api_requests()] == [429, 200]
    assert fake.arrivals[1] - fake.arrivals[0] >= 0.95


def test_429_asking_for_a_long_wait_is_retry_later_at_once(fake):
    fake.fail_next(1, status=429, headers={"Retry-After": "3600"})
    with pytest.raises(RetryLater) as caught:
        client_for(fake).details("27205", kind=MOVIE)
    assert caught.value.retry_after_s == pytest.approx(3600)
    assert "code 25" in str(caught.value)
    assert len(fake.api_requests()) == 1


def test_a_timeout_is_retried_then_retry_later(fake):
    fake.delay_s = 1.0
    with pytest.raises(RetryLater, match="no answer within"):
        client_for(fake, timeout_s=0.2, retries=1).details("27205", kind=MOVIE)
    assert len(fake.api_requests()) == 2


def test_a_refused_connection_is_retry_later_without_the_key():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = TmdbClient(api_root=f"http://127.0.0.1:{port}/3", api_key=V3_KEY, retries=1, retry_first_s=0.01)
    with pytest.raises(RetryLater) as caught:
        client.details("27205", kind=MOVIE)
    assert V3_KEY not in str(caught.value)


# --- politeness -------------------------------------------------------------------------

def test_requests_are_spaced_at_most_20_a_second_across_clients(fake):
    def fetch() -> None:
        client = client_for(fake)  # its own connections, like another worker
        for _ in range(8):
            client.find_by_imdb("tt1375666")

    workers = [threading.Thread(target=fetch) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    arrivals = sorted(fake.arrivals)
    assert len(arrivals) == 16
    # Turns are 1/20 s apart when sent; a request can only arrive after its turn, but late
    # (a loaded machine delays one by 0.1 s or more, and the next ones arrive on time), so
    # the rate is checked over every run of 10 gaps (0.5 s) with 0.25 s for such a delay.
    # Unspaced, the 16 requests would all arrive within a few tens of milliseconds.
    spans = [arrivals[index + 10] - arrivals[index] for index in range(len(arrivals) - 10)]
    assert min(spans) >= 0.25, spans
    assert arrivals[-1] - arrivals[0] >= 15 * 0.05 - 0.05


# --- find, changes, newest --------------------------------------------------------------

def test_find_by_imdb_id(fake):
    client = client_for(fake)
    assert client.find_by_imdb("tt1375666") == [(MOVIE, "27205")]
    assert client.find_by_imdb("tt0944947") == [(TV, "1399")]
    assert client.find_by_imdb("tt0000001") == []
    request = fake.api_requests()[0]
    assert request.path == "/3/find/tt1375666"
    assert request.params["external_source"] == "imdb_id"


@pytest.mark.parametrize("bad", ["nm0000138", "1375666", "tt", "tt1375666/../x"])
def test_find_refuses_what_is_not_an_imdb_id(fake, bad):
    with pytest.raises(GiveUp, match="imdb_id"):
        client_for(fake).find_by_imdb(bad)
    assert fake.api_requests() == []


def test_changes_walk_14_day_windows_and_every_page(fake):
    today = datetime.now(UTC).date()
    since = today - timedelta(days=30)
    with fake.lock:
        fake.changed["movie"] = [(since + timedelta(days=index % 31), 1000 + index) for index in range(250)]
        fake.changed["movie"].append((today, 1000))  # changed twice: listed once
        fake.changed["movie"].append((since - timedelta(days=1), 5))  # before `since`
        fake.changed["tv"] = [(today, 1399)]
    ids = client_for(fake).changes(kind=MOVIE, since=since)

    assert sorted(ids) == sorted(str(1000 + index) for index in range(250))
    assert len(ids) == len(set(ids))
    requests = fake.api_requests("/3/movie/changes")
    windows = sorted({(request.params["start_date"], request.params["end_date"]) for request in requests})
    assert windows[0][0] == since.isoformat()
    assert windows[-1][1] == today.isoformat()
    for start, end in windows:
        assert (date.fromisoformat(end) - date.fromisoformat(start)).days <= 13
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert date.fromisoformat(start) == date.fromisoformat(end) + timedelta(days=1)  # no day left out
    assert len(windows) == 3
    first_window = [request.params["page"] for request in requests if request.params["start_date"] == windows[0][0]]
    assert first_window == ["1", "2"]  # 14 days of 250 ids over 31 days: more than 100, two pages
    assert "language" not in requests[0].params
    assert client_for(fake).changes(kind=TV, since=today) == ["1399"]


def test_changes_since_a_future_day_is_refused(fake):
    with pytest.raises(GiveUp, match="since"):
        client_for(fake).changes(kind=MOVIE, since=datetime.now(UTC).date() + timedelta(days=2))


def test_newest_is_what_is_showing_now(fake):
    with fake.lock:
        fake.now_playing = [27205]
        fake.on_the_air = [1399]
    client = client_for(fake)
    assert client.newest(kind=MOVIE) == [ListedTitle(
        source_id="27205", title="盗梦空间", kind=MOVIE, rating=pytest.approx(8.369),
        url="https://www.themoviedb.org/movie/27205", cover_url="https://image.tmdb.org/t/p/w500/oYuLEt3zVCKq57qu2F8dT7NIa6f.jpg")]
    (show,) = client.newest(kind=TV)
    assert (show.source_id, show.title, show.kind) == ("1399", "权力的游戏", TV)
    assert [request.path for request in fake.api_requests()] == ["/3/movie/now_playing", "/3/tv/on_the_air"]
