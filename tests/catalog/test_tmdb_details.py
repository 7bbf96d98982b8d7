"""TMDB details mapped to TitleDetails: a movie, a TV show with its seasons and episodes, the
other language's title, and what is absent staying empty."""

from __future__ import annotations

from datetime import date

import pytest

from catalog.clients import MOVIE, TV, Credit, Episode, GiveUp, Release, registry
from catalog.clients.tmdb import TmdbClient
from tests.catalog.tmdb_fake import V3_KEY, FakeTmdb, sample_movie, sample_show


@pytest.fixture
def fake():
    with FakeTmdb(api_key=V3_KEY) as server:
        yield server


def client_for(fake: FakeTmdb, **options) -> TmdbClient:
    options = {"api_key": V3_KEY, "language": "zh-CN", "image_root": "http://images.test/t/p/", **options}
    return TmdbClient(api_root=fake.url, **options)


def test_tmdb_is_a_registered_source():
    assert registry.get("tmdb") is TmdbClient


def test_movie_every_field_in_one_request(fake):
    fake.add_movie(sample_movie())
    details = client_for(fake).details("27205", kind=MOVIE)

    (request,) = fake.api_requests()
    assert request.path == "/3/movie/27205"
    assert request.params["language"] == "zh-CN"
    assert request.params["append_to_response"].split(",") == ["external_ids", "credits", "translations",
                                                               "release_dates"]
    assert (details.source, details.source_id, details.kind) == ("tmdb", "27205", MOVIE)
    assert details.title == "盗梦空间"
    assert details.original_title == "Inception"
    assert details.other_titles == []  # the English title is the original one: not repeated
    assert details.year == 2010
    assert details.rating == pytest.approx(8.369)
    assert details.votes == 35000
    assert details.synopsis.startswith("道姆·柯布")
    assert details.cover_url == "http://images.test/t/p/w500/oYuLEt3zVCKq57qu2F8dT7NIa6f.jpg"
    assert details.releases == [Release(date(2010, 7, 13), "US"), Release(date(2010, 7, 16), "US"),
                                Release(date(2010, 9, 1), "CN")]
    assert details.release_date == date(2010, 7, 13)
    assert details.runtime_min == 148
    assert details.imdb_id == "tt1375666"
    assert details.genres == ["Action", "Science Fiction"]
    assert details.countries == ["GB", "US"]
    assert details.languages == ["en", "ja"]
    assert details.credits == [
        Credit("Christopher Nolan", "director", 0, source_person_id="525"),
        Credit("Christopher Nolan", "writer", 0, source_person_id="525"),
        Credit("Leonardo DiCaprio", "actor", 0, "Dom Cobb", "6193"),
        Credit("Joseph Gordon-Levitt", "actor", 1, "Arthur", "24045"),
        Credit("Elliot Page", "actor", 2, "Ariadne", "27578"),
    ]
    assert details.external_ids == {"imdb": "tt1375666", "wikidata": "Q25188"}
    assert details.episode_count is None
    assert details.seasons == []


def test_english_title_of_a_chinese_film_is_kept_beside_the_chinese_one(fake):
    movie = sample_movie()
    movie.update(id=10997, title="Farewell My Concubine", original_title="霸王别姬", original_language="zh",
                 overview="")
    movie["translations"]["translations"] = [
        {"iso_3166_1": "US", "iso_639_1": "en", "name": "English", "english_name": "English",
         "data": {"title": "Farewell My Concubine", "overview": "Two boys meet at an opera training school.",
                  "homepage": "", "tagline": ""}},
        {"iso_3166_1": "CN", "iso_639_1": "zh", "name": "普通话", "english_name": "Mandarin",
         "data": {"title": "霸王别姬", "overview": "", "homepage": "", "tagline": ""}},
    ]
    fake.add_movie(movie)
    details = client_for(fake).details("10997", kind=MOVIE)
    assert (details.title, details.original_title) == ("霸王别姬", "霸王别姬")
    assert details.other_titles == ["Farewell My Concubine"]
    assert details.synopsis == "Two boys meet at an opera training school."  # no Chinese one: the English
    assert len(fake.api_requests()) == 1


def test_with_english_as_the_language_the_chinese_title_is_the_other_one(fake):
    fake.add_movie(sample_movie())
    details = client_for(fake, language="en-US").details("27205", kind=MOVIE)
    assert details.title == "Inception"
    assert details.other_titles == ["盗梦空间"]


def test_tv_show_with_its_seasons_and_episodes(fake):
    show, seasons = sample_show(seasons=2, episodes=3)
    fake.add_show(show, seasons)
    details = client_for(fake).details("1399", kind=TV)

    first, second = fake.api_requests()
    assert first.path == second.path == "/3/tv/1399"
    assert first.params["append_to_response"] == "external_ids,credits,translations"
    assert second.params["append_to_response"] == "season/0,season/1,season/2"
    assert (details.kind, details.title, details.original_title) == (TV, "权力的游戏", "Game of Thrones")
    assert details.other_titles == []
    assert details.year == 2011
    assert details.releases == [Release(date(2011, 4, 17))]
    assert details.rating == pytest.approx(8.456)
    assert details.votes == 24000
    assert details.synopsis == "故事背景是一个虚构的世界……"
    assert details.cover_url.endswith("/w500/1XS1oqL89opfnbLl8WnZY1O1uJx.jpg")
    assert details.imdb_id == "tt0944947"
    assert details.external_ids == {"imdb": "tt0944947", "tvdb": "121361", "wikidata": "Q23572"}
    assert details.genres == ["Sci-Fi & Fantasy", "Drama"]
    assert details.countries == ["GB", "US"]
    assert details.languages == ["en"]
    assert details.episode_count == 73
    assert details.episode_runtime_min == 55  # episode_run_time is empty: the first episode's runtime
    assert details.runtime_min is None
    assert [credit for credit in details.credits if credit.role != "actor"] == [
        Credit("David Benioff", "writer", 0, source_person_id="9813")]
    assert [(credit.name, credit.order, credit.character) for credit in details.credits if credit.role == "actor"] == [
        ("Peter Dinklage", 0, "Tyrion Lannister"), ("Emilia Clarke", 1, "Daenerys Targaryen")]
    assert [(season.number, season.title, season.air_date) for season in details.seasons] == [
        (0, "特别篇", date(2011, 4, 17)), (1, "第 1 季", date(2011, 4, 17)), (2, "第 2 季", date(2012, 4, 17))]
    assert details.seasons[2].episodes == (
        Episode(1, "S2E1 标题", date(2012, 4, 17), 55), Episode(2, "S2E2 标题", date(2012, 4, 18), 56),
        Episode(3, "S2E3 标题", date(2012, 4, 19), 57))


def test_episode_run_time_given_by_the_show_wins(fake):
    show, seasons = sample_show(seasons=1)
    show["episode_run_time"] = [60, 50]
    fake.add_show(show, seasons)
    assert client_for(fake).details("1399", kind=TV).episode_runtime_min == 60


def test_a_long_show_fetches_its_seasons_twenty_at_a_time(fake):
    show, seasons = sample_show(seasons=24, episodes=1)  # seasons 0..24: 25 of them
    fake.add_show(show, seasons)
    details = client_for(fake).details("1399", kind=TV)
    appended = [request.params["append_to_response"] for request in fake.api_requests()][1:]
    assert [len(group.split(",")) for group in appended] == [20, 5]
    assert [season.number for season in details.seasons] == list(range(25))
    assert all(len(season.episodes) == 1 for season in details.seasons)


def test_what_the_answer_lacks_stays_empty(fake):
    fake.add_movie({"id": 5, "title": "Four Rooms", "original_title": "Four Rooms", "release_date": "",
                    "release_dates": {"results": []},
                    "runtime": 0, "vote_average": 0.0, "vote_count": 0, "poster_path": None, "imdb_id": None,
                    "overview": ""})
    details = client_for(fake).details("5", kind=MOVIE)
    assert details.title == "Four Rooms"
    assert (details.year, details.rating, details.runtime_min, details.release_date) == (None, None, None, None)
    assert (details.cover_url, details.imdb_id, details.synopsis) == ("", "", "")
    assert details.votes == 0
    assert details.credits == details.genres == details.countries == details.releases == []
    assert details.external_ids == {}


@pytest.mark.parametrize(("source_id", "kind", "named"), [("abc", MOVIE, "source_id"), ("12", "anime", "kind"),
                                                          ("", TV, "source_id")])
def test_bad_ids_and_kinds_are_refused_before_any_request(fake, source_id, kind, named):
    with pytest.raises(GiveUp, match=named):
        client_for(fake).details(source_id, kind=kind)
    assert fake.api_requests() == []


def test_without_release_dates_the_primary_release_date_is_the_release(fake):
    movie = sample_movie()
    del movie["release_dates"]
    fake.add_movie(movie)
    details = client_for(fake).details("27205", kind=MOVIE)
    assert details.releases == [Release(date(2010, 7, 15))]
    assert details.year == 2010
