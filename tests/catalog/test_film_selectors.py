"""Catalog search and lists: titles found in any language and by the people credited, the
filters and sorts of the grid, a title read in a fixed number of queries, and what one user
keeps (favourites, continue watching)."""

from __future__ import annotations

import pytest

from catalog import film_selectors as selectors
from catalog import film_services as services
from catalog.film_selectors import TitleFilters
from tests.catalog.film_support import small_catalog
from tests.factories import TitleFactory, credit, episode

pytestmark = pytest.mark.django_db


def found(**filters) -> list[str]:
    return [t.title for t in selectors.title_search(filters=TitleFilters(**filters))]


@pytest.fixture
def catalog():
    return small_catalog()


@pytest.mark.parametrize(("query", "expected"), [
    ("英雄", ["英雄"]), ("hero", ["英雄"]), ("HERO", ["英雄"]), ("ying xiong", ["英雄"]),
    ("amelie", ["天使爱美丽"]), ("Amélie", ["天使爱美丽"]), ("fabuleux destin", ["天使爱美丽"]),
    ("黑镜", ["黑镜"]), ("black mirror", ["黑镜"]), ("爱美", ["天使爱美丽"]),
])
def test_a_title_is_found_by_any_of_its_names_in_any_language(catalog, query, expected):
    assert found(q=query) == expected


def test_a_title_is_found_by_a_person_credited_on_it_once_however_many_roles(catalog):
    assert found(q="张艺谋") == ["英雄"]  # director and writer: still one result
    assert found(q="梁朝伟") == ["英雄"]
    assert found(q="audrey tautou") == ["天使爱美丽"]
    assert found(q="nobody at all") == []


def test_filters_narrow_by_kind_genre_country_year_and_rating(catalog):
    assert found(kind="tv") == ["黑镜"]
    assert found(kind="movie") == ["英雄", "天使爱美丽"]
    assert found(genre="喜剧") == ["天使爱美丽"]
    assert found(country="中国大陆") == ["英雄"]
    assert found(year=2001) == ["天使爱美丽"]
    assert found(rating_min=8.6) == ["黑镜", "天使爱美丽"]
    assert found(rating_min=8.6, kind="movie") == ["天使爱美丽"]
    assert found(q="hero", genre="喜剧") == []


def test_sorts(catalog):
    unrated = TitleFactory(title="Zzz", rating=None, release_date=None, year=None)
    assert found(sort="newest") == ["黑镜", "英雄", "天使爱美丽", "Zzz"]  # undated last
    assert found(sort="rating") == ["天使爱美丽", "黑镜", "英雄", "Zzz"]  # unrated last
    assert found(sort="title")[0] == "Zzz"
    assert found(sort="added")[0] == unrated.title


def test_filter_choices_list_what_titles_have(catalog):
    choices = selectors.filter_choices()
    assert set(choices["genres"]) == {"剧情", "喜剧", "科幻"}
    assert set(choices["countries"]) == {"中国大陆", "美国"}
    assert choices["years"] == [2011, 2002, 2001]


def test_a_title_with_everything_costs_the_same_queries_however_big(catalog, django_assert_num_queries,
                                                                    django_assert_max_num_queries):
    big = catalog["show"]
    for n in range(3, 30):
        episode(big, 1 + n // 10, n)
        credit(big, f"Actor {n}", "actor", n)
    # The title, genres, countries, languages, releases, external ids, credits with people,
    # seasons, episodes, episodes' videos, the film's videos.
    with django_assert_num_queries(11):
        title = selectors.title_detail(title_id=big.pk)
        sum(len(s.episodes.all()) + sum(len(e.videos.all()) for e in s.episodes.all()) for s in title.seasons.all())
        [c.person.name for c in title.credits.all()]
        list(title.genres.all()), list(title.releases.all()), list(title.external_ids.all()), title.own_videos
    small = catalog["amelie"]
    with django_assert_max_num_queries(11):
        title = selectors.title_detail(title_id=small.pk)
        [c.person.name for c in title.credits.all()]


def test_credits_by_role_keep_the_sources_order(catalog):
    roles = selectors.credits_by_role(selectors.title_detail(title_id=catalog["hero"].pk))
    assert [c.person.name for c in roles["actor"]] == ["李连杰", "梁朝伟", "张曼玉", "章子怡"]
    assert [c.person.name for c in roles["writer"]] == ["李冯", "张艺谋"]


def test_a_person_has_every_credit(catalog):
    zhang = catalog["hero"].credits.get(role="director").person
    person = selectors.person_detail(person_id=zhang.pk)
    assert sorted(c.role for c in person.credits.all()) == ["director", "writer"]


def test_continue_watching_is_the_unfinished_most_recent_first_one_per_title(catalog, alice, bob):
    hero, show = catalog["hero"], catalog["show"]
    first, second = (e for e in show.seasons.get().episodes.order_by("number"))
    services.progress_save(user=alice, title=show, position=20, episode_id=first.pk)
    services.progress_save(user=alice, title=hero, position=600)
    services.progress_save(user=alice, title=show, position=30, episode_id=second.pk)
    services.progress_save(user=alice, title=catalog["amelie"], position=99 * 60, finished=True)
    services.progress_save(user=bob, title=catalog["amelie"], position=60)
    watching = selectors.continue_watching(user=alice)
    assert [(p.title.title, p.episode_id) for p in watching] == [("黑镜", second.pk), ("英雄", None)]
    assert watching[1].percent == round(100 * 600 / (99 * 60))


def test_favourites_the_latest_first(catalog, alice, bob):
    services.favorite_add(user=alice, title=catalog["hero"])
    services.favorite_add(user=alice, title=catalog["show"])
    services.favorite_add(user=bob, title=catalog["amelie"])
    assert [t.title for t in selectors.user_favorites(user=alice)] == ["黑镜", "英雄"]
