"""The film sync end to end against the fake Douban and the fake TMDB (real HTTP on loopback,
the real Redis limiter, the test database): what a run lists, fetches and stores, field by
field; the anti-bot page; retries and 429; TMDB's error bodies; the merge by IMDb id with the
field locks; the tiered refresh; a second trigger while a run is in flight; unknown sources."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from django.test import TestCase
from django.utils import timezone

from catalog import sync
from catalog.models import Country, Credit, ExternalId, Genre, Language, Person, SyncItem, SyncRun, Title
from project.outside import UnknownService
from tests.catalog.sync_support import (  # noqa: F401 - fixtures
    JPEG,
    douban_fixture,
    full_subject,
    images_fixture,
    sync_settings_fixture,
    tmdb_fixture,
    with_tmdb_fixture,
)
from tests.catalog.tmdb_fake import sample_movie, sample_show
from tests.scrobbling.fakes import Reply

pytestmark = pytest.mark.django_db


def _run(source: str = "douban", kind: str = "newest") -> SyncRun:
    run, started = sync.sync_start(source=source, kind=kind, trigger="manual", enqueue=False)
    assert started
    return sync.sync_execute(run_id=run.pk)


def _counts(run: SyncRun) -> dict[str, int]:
    return {name: getattr(run, name) for name in ("listed", "done", "new", "updated", "unchanged", "skipped",
                                                   "failed", "detail_requests")}


def test_a_douban_run_stores_every_field_of_each_new_film_and_series(sync_settings, douban):
    douban.add(full_subject(1, douban.url, imdb_id="tt0000001"))
    douban.add(full_subject(2, douban.url, kind="tv", released="2024-01-05"))

    run = _run()

    assert run.state == "done"
    assert _counts(run) == {"listed": 2, "done": 2, "new": 2, "updated": 0, "unchanged": 0, "skipped": 0,
                            "failed": 0, "detail_requests": 2}
    assert run.errors == []
    assert run.finished_at is not None
    assert run.lease_owner == ""
    film = Title.objects.get(external_ids__source="douban", external_ids__value="1000001")
    assert (film.kind, film.title, film.original_title, film.year, film.rating, film.votes) == (
        "movie", "影片1", "Film 1", 2023, 8.1, 12345)
    assert film.synopsis == "第1部的完整简介，很长。"  # the hidden long version
    assert film.other_titles == ["又名1"]
    assert (film.release_date, film.runtime_min, film.imdb_id) == (date(2022, 5, 19), 120, "tt0000001")
    assert [(r.date, r.region) for r in film.releases.all()] == [(date(2022, 5, 19), "戛纳电影节"),
                                                                (date(2023, 7, 21), "中国大陆")]
    assert sorted(film.genres.values_list("name", flat=True)) == ["剧情", "科幻"]
    assert sorted(film.countries.values_list("name", flat=True)) == ["中国大陆", "美国"]
    assert sorted(film.languages.values_list("name", flat=True)) == ["汉语普通话", "英语"]
    assert [(c.role, c.order, c.person.name, c.person.key) for c in film.credits.select_related("person")
            .order_by("role", "order")] == [
        ("actor", 0, "演员甲1", "douban:3000001"), ("actor", 1, "演员乙1", "douban:3100001"),
        ("director", 0, "导演1", "douban:2000001"), ("writer", 0, "编剧1", "name:编剧1")]
    assert film.field_sources["title"] == "douban"
    assert film.field_sources["rating"] == "douban"
    assert film.details_fetched_at is not None
    assert film.cover == "covers/douban-1000001.jpg"
    assert (Path(sync_settings.MEDIA_ROOT) / film.cover).read_bytes() == JPEG
    assert film.cover_source_url == f"{douban.url}/view/photo/s_ratio_poster/public/p1.jpg"
    series = Title.objects.get(external_ids__value="1000002")
    assert (series.kind, series.episode_count, series.episode_runtime_min) == ("tv", 12, 45)
    assert series.release_date == date(2023, 5, 19)
    items = list(SyncItem.objects.filter(run=run).values_list("kind", "source_id", "state", "title_id"))
    assert sorted(items) == [("movie", "1000001", "new", film.pk), ("tv", "1000002", "new", series.pk)]


def test_the_douban_cover_request_waits_its_turn_with_the_pages(sync_settings, douban):
    sync_settings.CATALOG_DOUBAN_MIN_INTERVAL_S = 0.2
    douban.add(full_subject(1, douban.url))
    douban.add(full_subject(2, douban.url))

    _run()

    assert len(douban.arrivals) == 6  # two lists, two pages, two covers: one host, one queue
    gaps = [later - earlier for earlier, later in zip(douban.arrivals, douban.arrivals[1:], strict=False)]
    assert min(gaps) >= 0.2 - 0.02
    cover_requests = [r for r in douban.requests if r.path.startswith("/view/photo/")]
    assert {r.headers.get("referer") for r in cover_requests} == {douban.url + "/"}


@pytest.mark.parametrize("block", ["page", "redirect", "403"])
def test_an_anti_bot_answer_stops_the_run_blocked_with_nothing_parsed(sync_settings, douban, block):
    for number in range(1, 4):
        douban.add(full_subject(number, douban.url))
    douban.block = block

    run = _run()

    assert run.state == "blocked"
    assert "anti-bot" in run.error or "refused" in run.error
    assert run.retry_at is not None
    assert run.retry_at > timezone.now() + timedelta(minutes=20)
    assert run.finished_at is None
    assert run.lease_owner == ""
    assert Title.objects.count() == 0
    assert Person.objects.count() == 0
    with pytest.raises(sync.SyncRefused) as refused:  # the next trigger waits for retry_at
        sync.sync_start(source="douban", trigger="schedule", enqueue=False)
    assert refused.value.code == "blocked"
    assert str(run.pk) in refused.value.message


def test_a_run_blocked_midway_keeps_its_items_pending_and_the_next_trigger_continues_it(sync_settings, douban):
    for number in range(1, 5):
        douban.add(full_subject(number, douban.url))
    douban.fail_next(1, status=403, body="<html>检测到有异常请求从你的 IP 发出</html>", after=4)  # 2 lists, page, cover

    run = _run()

    assert run.state == "blocked"
    assert (run.listed, run.new) == (4, 1)
    assert SyncItem.objects.filter(run=run, state="pending").count() == 3
    SyncRun.objects.filter(pk=run.pk).update(retry_at=timezone.now() - timedelta(seconds=1))
    again, started = sync.sync_start(source="douban", trigger="schedule", enqueue=False)
    assert (again.pk, started, again.state) == (run.pk, True, "queued")
    run = sync.sync_execute(run_id=run.pk)
    assert run.state == "done"
    assert (run.listed, run.done, run.new, run.failed) == (4, 4, 4, 0)
    assert Title.objects.count() == 4
    assert [r.path for r in douban.requests].count("/j/search_subjects") == 2  # not listed again


def test_a_429_with_retry_after_and_a_500_are_tried_again(sync_settings, douban):
    douban.add(full_subject(1, douban.url))
    douban.add(full_subject(2, douban.url))
    douban.fail_next(1, status=429, headers={"Retry-After": "0.2"}, after=2)
    douban.fail_next(1, status=500)

    run = _run()

    assert run.state == "done"
    assert (run.new, run.failed) == (2, 0)
    assert [r.status for r in douban.requests if r.path.startswith("/subject/")][:3] == [429, 500, 200]


def test_a_subject_that_keeps_failing_is_recorded_and_the_run_goes_on(sync_settings, douban):
    douban.add(full_subject(1, douban.url))
    douban.add(full_subject(2, douban.url))
    # The page of the first subject (after the two lists): every try answers 503.
    douban.fail_next(3, status=503, after=2)

    run = _run()

    assert run.state == "done"
    assert (run.new, run.failed, run.done) == (1, 1, 2)
    assert run.detail_requests == 1 + sync_settings.CATALOG_SYNC_ITEM_RETRIES + 1
    [error] = run.errors
    assert error["item"] == "影片1"
    assert "HTTP 503" in error["reason"]
    assert SyncItem.objects.get(run=run, source_id="1000001").state == "failed"


def test_a_missing_subject_and_a_page_that_is_no_subject_are_failures_on_their_items(sync_settings, douban):
    douban.add(full_subject(1, douban.url))
    douban.add(full_subject(2, douban.url))
    douban.add_page("1000002", "<html><body>no subject here</body></html>", title="影片2")
    with douban.lock:
        douban.subjects["1000003"] = full_subject(3, douban.url)
    douban.pages["1000003"] = "<html><body><h1>Oops</h1></body></html>"

    run = _run()

    assert run.state == "done"
    assert (run.new, run.failed) == (1, 2)
    assert Title.objects.count() == 1
    assert {e["source_id"] for e in run.errors} == {"1000002", "1000003"}


def test_a_cover_that_is_no_image_or_too_large_is_an_error_on_the_item_and_the_title_is_kept(sync_settings, douban):
    sync_settings.CATALOG_COVER_MAX_BYTES = 1024
    douban.add(full_subject(1, douban.url))
    douban.cover_reply = Reply(200, b"<html>not an image</html>", {"Content-Type": "text/html"})

    run = _run()

    title = Title.objects.get()
    assert (run.state, run.new, run.failed) == ("done", 1, 0)
    assert title.cover == ""
    assert title.rating == 8.1
    assert "not an image" in run.errors[0]["reason"]
    douban.cover_reply = Reply(200, bytes(5000), {"Content-Type": "image/jpeg"})
    douban.subjects["1000001"].rating = "8.2"  # the list shows a change: fetched again
    Title.objects.update(details_fetched_at=timezone.now() - timedelta(days=40))
    SyncRun.objects.update(state="done")
    run = _run()
    assert "more than the 1024 accepted" in run.errors[0]["reason"]
    assert not list((Path(sync_settings.MEDIA_ROOT) / "covers").glob("*"))  # nothing half-written


def test_a_list_that_is_not_json_fails_the_run_naming_it(sync_settings, douban):
    douban.garbage = b"<html>oops"

    run = _run()

    assert run.state == "failed"
    assert "not JSON" in run.error
    assert run.errors[-1]["reason"] == run.error


def test_a_second_run_within_8_hours_fetches_nothing_and_creates_no_rows(sync_settings, douban):
    for number in range(1, 11):
        douban.add(full_subject(number, douban.url))
    first = _run()
    rows = {model: model.objects.count() for model in (Title, Person, Genre, Country, Language, Credit, ExternalId)}
    pages_before = len(douban.subject_paths())

    second = _run()

    assert first.detail_requests == 10
    assert second.detail_requests <= first.detail_requests * 0.1
    assert len(douban.subject_paths()) == pages_before  # not one subject page
    assert (second.listed, second.skipped, second.new) == (10, 10, 0)
    assert {model: model.objects.count() for model in rows} == rows


def _states(run: SyncRun) -> dict[str, str]:
    return dict(SyncItem.objects.filter(run=run).values_list("source_id", "state"))


def test_the_tiers_decide_what_the_next_run_fetches(sync_settings, douban):
    today = timezone.now().date()
    subjects = []
    for number, days_ago in ((1, 10), (2, 90), (3, 3000)):  # released 10 days, 3 months, 8 years ago
        subject = full_subject(number, douban.url, rating="7.0")
        subject.releases = [f"{(today - timedelta(days=days_ago)).isoformat()}(中国大陆)"]
        subjects.append(douban.add(subject))
    _run()

    def changed_list_then_run(fetched_days_ago: float) -> dict[str, str]:
        for subject in subjects:  # the list shows a change: only the tier holds a title back
            subject.rating = str(float(subject.rating) + 0.1)
        Title.objects.update(details_fetched_at=timezone.now() - timedelta(days=fetched_days_ago))
        SyncRun.objects.update(state="done")
        return _states(_run())

    assert changed_list_then_run(0.4) == {"1000001": "skipped", "1000002": "skipped", "1000003": "skipped"}  # < 12 h
    assert changed_list_then_run(2) == {"1000001": "updated", "1000002": "skipped", "1000003": "skipped"}
    assert changed_list_then_run(8) == {"1000001": "updated", "1000002": "updated", "1000003": "skipped"}
    assert changed_list_then_run(31) == {"1000001": "updated", "1000002": "updated", "1000003": "updated"}


def test_an_entry_the_list_shows_unchanged_is_not_fetched(sync_settings, douban):
    douban.add(full_subject(1, douban.url))
    douban.add(full_subject(2, douban.url))
    _run()
    Title.objects.update(details_fetched_at=timezone.now() - timedelta(days=400))
    douban.subjects["1000002"].rating = "9.0"
    pages_before = len(douban.subject_paths())

    run = _run()

    assert (run.unchanged, run.updated, run.detail_requests) == (1, 1, 1)
    assert douban.subject_paths()[pages_before:] == ["/subject/1000002/"]
    assert Title.objects.get(external_ids__value="1000002").rating == 9.0


def test_refresh_runs_fetch_the_titles_their_tier_says_are_due(sync_settings, douban):
    for number in range(1, 4):
        douban.add(full_subject(number, douban.url, released="2001-01-01"))
    _run()
    Title.objects.filter(external_ids__value="1000001").update(details_fetched_at=timezone.now() - timedelta(days=31))
    Title.objects.filter(external_ids__value="1000002").update(details_fetched_at=timezone.now() - timedelta(days=20))

    run = _run(kind="refresh")

    assert run.state == "done"
    assert run.listed == 1
    assert list(SyncItem.objects.filter(run=run).values_list("source_id", "state")) == [("1000001", "unchanged")]
    assert run.detail_requests == 1


def test_douban_and_tmdb_merge_into_one_title_by_imdb_id(with_tmdb, douban, tmdb):
    subject = full_subject(1, douban.url, imdb_id="tt1375666")
    subject.original_title = "盗梦空间原名"
    douban.add(subject)

    run = _run()

    assert (run.state, run.new, run.failed) == ("done", 1, 0)
    assert run.detail_requests == 3  # the Douban page, TMDB's find, TMDB's details
    title = Title.objects.get()
    assert dict(title.external_ids.values_list("source", "value")) == {"douban": "1000001", "tmdb": "27205",
                                                                      "wikidata": "Q25188"}
    assert title.title == "影片1"
    assert title.rating == 8.1
    assert title.votes == 12345
    assert title.original_title == "Inception"  # TMDB first
    assert "盗梦空间原名" in title.other_titles
    assert title.field_sources["original_title"] == "tmdb"
    assert title.field_sources["synopsis"] == "douban"
    assert title.cover.startswith("covers/douban-")
    assert [r.path for r in tmdb.requests] == ["/3/find/tt1375666", "/3/movie/27205"]

    # A TMDB run later finds the same title by its TMDB id: still one title.
    tmdb.now_playing = [27205]
    Title.objects.update(details_fetched_at=timezone.now() - timedelta(days=400))
    run = _run(source="tmdb")
    assert run.state == "done"
    assert Title.objects.count() == 1


def test_a_locked_field_survives_a_refresh_and_releasing_it_lets_the_next_one_write(sync_settings, douban):
    subject = douban.add(full_subject(1, douban.url))
    _run()
    title = Title.objects.get()
    title.title, title.locked_fields = "我改的名字", ["title", "genres"]
    title.save()
    title.genres.set([Genre.objects.get_or_create(name="手工")[0]])
    subject.title, subject.genres, subject.rating = "新名字", ["动作"], "6.0"
    Title.objects.update(details_fetched_at=timezone.now() - timedelta(days=400))

    _run()

    title.refresh_from_db()
    assert title.title == "我改的名字"
    assert list(title.genres.values_list("name", flat=True)) == ["手工"]
    assert title.rating == 6.0  # not locked: refreshed
    Title.objects.filter(pk=title.pk).update(locked_fields=[], details_fetched_at=timezone.now() - timedelta(days=400))
    _run()
    title.refresh_from_db()
    assert title.title == "新名字"
    assert list(title.genres.values_list("name", flat=True)) == ["动作"]


def test_tmdb_refusing_the_key_is_recorded_on_the_run(with_tmdb, tmdb):
    with_tmdb.CATALOG_TMDB_API_KEY = "f" * 32

    run = _run(source="tmdb")

    assert run.state == "failed"
    assert "refused the credential in CATALOG_TMDB_API_KEY" in run.error
    assert "f" * 32 not in run.error


def test_a_title_tmdb_does_not_have_is_a_failure_on_its_item(with_tmdb, tmdb):
    tmdb.now_playing = [27205]
    missing = sample_movie()
    missing["id"] = 999
    tmdb.add_movie(missing)
    tmdb.now_playing = [27205, 999]
    with tmdb.lock:
        del tmdb.movies[999]  # listed, then gone
    tmdb.now_playing = [27205]
    run = _run(source="tmdb")
    assert run.new == 1
    SyncRun.objects.update(state="done")
    tmdb.add_movie(missing)
    tmdb.now_playing = [999]
    Title.objects.update(details_fetched_at=timezone.now() - timedelta(days=400))
    tmdb.fail_next(1, status=404, after=2)  # the two lists answer; the details say not found

    run = _run(source="tmdb")

    assert (run.failed, run.new) == (1, 0)
    assert "TMDB has no such title" in run.errors[0]["reason"]
    assert "34" in run.errors[0]["reason"]


def test_tmdb_changes_refresh_only_the_titles_the_catalog_has(with_tmdb, tmdb):
    tmdb.now_playing = [27205]
    _run(source="tmdb")
    Title.objects.update(details_fetched_at=timezone.now() - timedelta(days=400))
    today = timezone.now().date()
    tmdb.changed["movie"] = [(today, 27205), (today, 5555), (today - timedelta(days=1), 6666)]

    run = _run(source="tmdb", kind="changes")

    assert run.state == "done"
    assert list(SyncItem.objects.filter(run=run).values_list("source_id", flat=True)) == ["27205"]
    assert run.detail_requests == 1


def test_a_trigger_while_a_run_is_in_flight_gets_that_run(sync_settings, staff):
    first, started = sync.sync_start(source="douban", trigger="manual", user=staff, enqueue=False)
    second, started_again = sync.sync_start(source="douban", trigger="api", user=staff, enqueue=False)
    assert (started, started_again) == (True, False)
    assert second.pk == first.pk
    assert SyncRun.objects.count() == 1


def test_unknown_and_disabled_sources_and_non_staff_are_refused(sync_settings, alice):
    with pytest.raises(UnknownService, match="nosuch"):
        sync.sync_start(source="nosuch", trigger="manual", enqueue=False)
    with pytest.raises(sync.SyncRefused) as disabled:
        sync.sync_start(source="tmdb", trigger="manual", enqueue=False)
    assert disabled.value.code == "disabled"
    assert "CATALOG_TMDB_API_KEY" in disabled.value.message
    with pytest.raises(sync.SyncRefused) as forbidden:
        sync.sync_start(source="douban", trigger="manual", user=alice, enqueue=False)
    assert forbidden.value.code == "forbidden"
    with pytest.raises(sync.SyncRefused) as bad_kind:
        sync.sync_start(source="douban", kind="changes", trigger="manual", enqueue=False)
    assert bad_kind.value.field == "kind"
    assert [source.name for source in sync.enabled_sources()] == ["douban"]
    assert SyncRun.objects.count() == 0


def test_a_finished_run_executed_again_changes_nothing(sync_settings, douban):
    douban.add(full_subject(1, douban.url))
    run = _run()
    requests = len(douban.requests)
    again = sync.sync_execute(run_id=run.pk)
    assert _counts(again) == _counts(run)
    assert len(douban.requests) == requests


def test_requests_titles_and_run_durations_are_counted_in_the_metrics(sync_settings, douban):
    from prometheus_client import REGISTRY

    def sample(name: str, **labels) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    douban.add(full_subject(1, douban.url))
    douban.add(full_subject(2, douban.url))
    douban.fail_next(3, status=503, after=2)  # the first page: every try fails
    before = {
        "pages": sample("chorus_catalog_requests_total", source="douban", call="details", outcome="ok"),
        "retried": sample("chorus_catalog_requests_total", source="douban", call="details", outcome="retry_later"),
        "created": sample("chorus_catalog_titles_total", source="douban", outcome="created"),
        "failed": sample("chorus_catalog_titles_total", source="douban", outcome="failed"),
        "runs": sample("chorus_catalog_sync_duration_seconds_count", source="douban", kind="newest", state="done"),
    }
    with TestCase.captureOnCommitCallbacks(execute=True):
        _run()
    assert sample("chorus_catalog_requests_total", source="douban", call="details", outcome="ok") == before["pages"] + 1
    assert sample("chorus_catalog_requests_total", source="douban", call="details",
                  outcome="retry_later") == before["retried"] + 3
    assert sample("chorus_catalog_titles_total", source="douban", outcome="created") == before["created"] + 1
    assert sample("chorus_catalog_titles_total", source="douban", outcome="failed") == before["failed"] + 1
    assert sample("chorus_catalog_sync_duration_seconds_count", source="douban", kind="newest",
                  state="done") == before["runs"] + 1


def test_a_tmdb_series_is_stored_with_its_seasons_and_episodes(with_tmdb, tmdb):
    show, seasons = sample_show(seasons=2, episodes=3)
    tmdb.add_show(show, seasons)
    tmdb.on_the_air = [1399]

    run = _run(source="tmdb")

    assert (run.state, run.new, run.failed) == ("done", 1, 0)
    title = Title.objects.get()
    assert (title.kind, title.title, title.original_title) == ("tv", "权力的游戏", "Game of Thrones")
    assert (title.episode_count, title.episode_runtime_min, title.release_date) == (73, 55, date(2011, 4, 17))
    assert title.field_sources["seasons"] == "tmdb"
    assert [(s.number, s.name, s.episodes.count()) for s in title.seasons.all()] == [
        (0, "特别篇", 1), (1, "第 1 季", 3), (2, "第 2 季", 3)]
    episode = title.seasons.get(number=2).episodes.get(number=3)
    assert (episode.name, episode.air_date, episode.runtime_min) == ("S2E3 标题", date(2012, 4, 19), 57)
    assert dict(title.external_ids.values_list("source", "value")) == {"tmdb": "1399", "tvdb": "121361",
                                                                      "wikidata": "Q23572"}
    assert title.cover.startswith("covers/tmdb-1399")

    # Refreshed with one more episode (and a new rating, so that the list shows a change): the
    # same rows, one added.
    show["vote_average"] = 8.6
    seasons[2]["episodes"].append({**seasons[2]["episodes"][-1], "episode_number": 4, "name": "S2E4 标题"})
    Title.objects.update(details_fetched_at=timezone.now() - timedelta(days=400))
    SyncRun.objects.update(state="done")
    run = _run(source="tmdb")
    assert (run.updated, run.new) == (1, 0)
    assert title.seasons.get(number=2).episodes.count() == 4
    assert Title.objects.count() == 1


def test_a_page_the_parser_trips_on_fails_its_title_and_the_run_goes_on(sync_settings, douban, monkeypatch):
    from catalog.clients import douban as douban_client

    douban.add(full_subject(1, douban.url))
    douban.add(full_subject(2, douban.url))
    real = douban_client.parse_subject

    def tripping(html, *, source_id, kind):
        if source_id == "1000001":
            raise ValueError("a field the parser did not expect")
        return real(html, source_id=source_id, kind=kind)

    monkeypatch.setattr(douban_client, "parse_subject", tripping)

    run = _run()

    assert (run.state, run.new, run.failed) == ("done", 1, 1)
    assert "unreadable: ValueError: a field the parser did not expect" in run.errors[0]["reason"]
