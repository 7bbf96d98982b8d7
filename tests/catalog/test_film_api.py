"""/api/catalog/: the title fields by their agreed names, search and filters, people and
seasons, favourites, progress and danmaku, and every kind of bad input answered with a 4xx
that names the field (never a 500)."""

from __future__ import annotations

import json

import pytest

from catalog.models import Danmaku, Favorite, Video, WatchProgress
from project.accounts.services import token_create
from tests.catalog.film_support import small_catalog

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clean_redis")]


@pytest.fixture
def catalog():
    return small_catalog()


@pytest.fixture
def api(client, alice):
    """A client with alice's bearer token, as a program would call the API."""
    raw = token_create(user=alice, name="tests")[1]

    class Api:
        def call(self, method: str, path: str, body=None, raw_body: str | None = None):
            data = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
            return getattr(client, method)(f"/api/catalog{path}", data=data, content_type="application/json",
                                           headers={"Authorization": f"Bearer {raw}"})

        def get(self, path: str):
            return client.get(f"/api/catalog{path}", headers={"Authorization": f"Bearer {raw}"})

    return Api()


def test_a_title_has_every_field_by_its_agreed_name(api, catalog):
    hero = catalog["hero"]
    body = api.get(f"/titles/{hero.pk}").json()
    expected = {
        "title": "英雄", "original_title": "Hero", "kind": "movie", "year": 2002, "rating": 7.7,
        "directors": ["张艺谋"], "writers": ["李冯", "张艺谋"], "cast": ["李连杰", "梁朝伟", "张曼玉", "章子怡"],
        "genres": ["剧情"], "countries": ["中国大陆"], "languages": ["汉语普通话"], "release_date": "2002-12-14",
        "runtime_min": 99, "imdb_id": "tt0299977", "synopsis": "秦王统一六国前夕……", "episode_count": None,
        "episode_runtime_min": None, "external_ids": {"douban": "1306123", "tmdb": "79"}, "cover_url": None,
    }
    assert {key: body[key] for key in expected} == expected
    assert body["releases"] == [{"date": "2002-12-14", "region": "中国大陆", "precision": "day"},
                                {"date": "2004-08-27", "region": "美国", "precision": "day"}]
    assert body["websocket"] == f"/ws/catalog/titles/{hero.pk}/"


def test_a_stored_cover_has_a_local_url(api, catalog):
    show = catalog["show"]
    show.cover = "covers/3.jpg"
    show.save()
    assert api.get(f"/titles/{show.pk}").json()["cover_url"] == "/catalog/covers/covers/3.jpg"


def test_the_list_searches_filters_and_pages(api, catalog):
    assert [t["title"] for t in api.get("/titles?q=black%20mirror").json()["items"]] == ["黑镜"]
    assert [t["title"] for t in api.get("/titles?q=%E6%A2%81%E6%9C%9D%E4%BC%9F").json()["items"]] == ["英雄"]  # 梁朝伟
    assert [t["title"] for t in api.get("/titles?kind=movie&genre=%E5%96%9C%E5%89%A7").json()["items"]] == ["天使爱美丽"]
    assert [t["title"] for t in api.get("/titles?country=%E7%BE%8E%E5%9B%BD&year=2011").json()["items"]] == ["黑镜"]
    page = api.get("/titles?limit=2&offset=0&sort=rating").json()
    assert page["count"] == 3
    assert [t["title"] for t in page["items"]] == ["天使爱美丽", "黑镜"]
    assert [t["title"] for t in api.get("/titles?limit=2&offset=2&sort=rating").json()["items"]] == ["英雄"]


@pytest.mark.parametrize(("query", "field"), [
    ("kind=film", "kind"), ("year=abc", "year"), ("year=1" + "0" * 400, "year"), ("rating_min=nan", "rating_min"),
    ("rating_min=11", "rating_min"), ("sort=best", "sort"), ("q=" + "x" * 201, "q"), ("offset=" + "9" * 30, "offset"),
])
def test_bad_list_parameters_are_a_4xx_naming_them(api, catalog, query, field):
    response = api.get(f"/titles?{query}")
    assert 400 <= response.status_code < 500
    assert response.json()["field"] == field


def test_people_and_seasons(api, catalog):
    zhang = catalog["hero"].credits.get(role="director").person
    person = api.get(f"/people/{zhang.pk}").json()
    assert person["name"] == "张艺谋"
    assert sorted(c["role"] for c in person["credits"]) == ["director", "writer"]
    show = catalog["show"]
    seasons = api.get(f"/titles/{show.pk}/seasons").json()
    assert [(s["number"], [(e["number"], e["name"]) for e in s["episodes"]]) for s in seasons] == [
        (1, [(1, "国歌"), (2, "一千五百万积分")])]
    assert seasons[0]["episodes"][0]["position"] is None


@pytest.mark.parametrize("path", ["/titles/999999", "/titles/999999/seasons", "/people/999999",
                                  "/titles/999999/progress", "/titles/999999/danmaku"])
def test_unknown_ids_are_404_naming_the_id(api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert response.json()["field"] in {"title_id", "person_id"}


@pytest.mark.parametrize("path", ["/titles/9007199254740992", "/people/9007199254740993",
                                  "/titles/" + "9" * 400, "/titles/abc"])
def test_ids_out_of_range_are_a_4xx_never_a_500(api, path):
    assert 400 <= api.get(path).status_code < 500


def test_anonymous_callers_are_refused(client, catalog):
    response = client.get(f"/api/catalog/titles/{catalog['hero'].pk}")
    assert response.status_code == 401
    assert client.get("/api/catalog/titles").status_code == 401


def test_favourites_are_idempotent(api, catalog, alice):
    hero = catalog["hero"]
    first = api.call("put", f"/titles/{hero.pk}/favorite").json()
    again = api.call("put", f"/titles/{hero.pk}/favorite").json()
    assert (first["changed"], again["changed"], again["favorite"]) == (True, False, True)
    assert Favorite.objects.filter(user=alice, title=hero).count() == 1
    assert [t["title"] for t in api.get("/favorites").json()["items"]] == ["英雄"]
    assert api.call("delete", f"/titles/{hero.pk}/favorite").json()["changed"] is True
    assert api.call("delete", f"/titles/{hero.pk}/favorite").json() == {"title_id": hero.pk, "favorite": False,
                                                                        "changed": False}
    assert api.get("/favorites").json()["items"] == []
    assert api.call("put", "/titles/999999/favorite").status_code == 404


def test_the_session_needs_the_csrf_token_to_write(catalog, alice):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    response = browser.put(f"/api/catalog/titles/{catalog['hero'].pk}/favorite")
    assert response.status_code == 403
    assert not Favorite.objects.exists()


def test_progress_is_saved_and_read_back_and_finished_near_the_end(api, catalog, alice):
    hero = catalog["hero"]  # 99 min
    assert api.get(f"/titles/{hero.pk}/progress").json()["position"] == 0
    saved = api.call("put", f"/titles/{hero.pk}/progress", {"position": 61.5}).json()
    assert (saved["position"], saved["finished"]) == (61.5, False)
    assert api.get(f"/titles/{hero.pk}/progress").json()["position"] == 61.5
    near_end = api.call("put", f"/titles/{hero.pk}/progress", {"position": 99 * 60 * 0.96}).json()
    assert near_end["finished"] is True
    explicit = api.call("put", f"/titles/{hero.pk}/progress", {"position": 10, "finished": True}).json()
    assert explicit["finished"] is True
    assert WatchProgress.objects.filter(user=alice, title=hero).count() == 1


def test_progress_of_an_episode(api, catalog):
    show = catalog["show"]
    first = show.seasons.get().episodes.get(number=1)  # 1 min
    saved = api.call("put", f"/titles/{show.pk}/progress", {"position": 30, "episode_id": first.pk})
    assert saved.status_code == 200, saved.json()
    assert api.get(f"/titles/{show.pk}/progress?episode_id={first.pk}").json()["position"] == 30
    assert api.get(f"/titles/{show.pk}/progress").json()["position"] == 0
    seasons = api.get(f"/titles/{show.pk}/seasons").json()
    assert seasons[0]["episodes"][0]["position"] == 30
    past = api.call("put", f"/titles/{show.pk}/progress", {"position": 62, "episode_id": first.pk})
    assert (past.status_code, past.json()["field"]) == (400, "position")


def test_progress_past_the_videos_end_is_refused(api, catalog, tmp_path):
    hero = catalog["hero"]
    Video.objects.create(title=hero, file_path=str(tmp_path / "hero.mp4"), mime_type="video/mp4", duration_s=2.0)
    response = api.call("put", f"/titles/{hero.pk}/progress", {"position": 60})
    assert response.status_code == 400
    assert response.json()["field"] == "position"
    assert "past the end" in response.json()["message"]
    assert api.call("put", f"/titles/{hero.pk}/progress", {"position": 2.4}).json()["finished"] is True


@pytest.mark.parametrize(("raw", "field"), [
    ('{"position": NaN}', "position"), ('{"position": Infinity}', "position"), ('{"position": -1}', "position"),
    ('{"position": 1e400}', "position"), ('{"position": ' + "1" * 400 + "}", "position"),
    ('{"position": "12"}', "position"), ('{"position": true}', "position"), ("{}", "position"),
    ('{"position": 1, "finished": "yes"}', "finished"), ('{"position": 1, "episode_id": "x"}', "episode_id"),
    ('{"position": 1, "episode_id": 999999}', "episode_id"), ('{"position": 1, "episode_id": 1.5}', "episode_id"),
])
def test_bad_progress_is_a_4xx_naming_the_field(api, catalog, raw, field):
    response = api.call("put", f"/titles/{catalog['hero'].pk}/progress", raw_body=raw)
    assert 400 <= response.status_code < 500, response.content
    assert response.json()["field"] == field
    assert not WatchProgress.objects.exists()


def test_an_episode_of_another_title_is_refused(api, catalog):
    other = catalog["show"].seasons.get().episodes.get(number=1)
    response = api.call("put", f"/titles/{catalog['hero'].pk}/progress", {"position": 1, "episode_id": other.pk})
    assert (response.status_code, response.json()["field"]) == (404, "episode_id")


@pytest.mark.parametrize("raw", ["not json", "[" * 5000 + "]" * 5000, '{"position": 1, "x": "\\u0000"}'])
def test_bodies_that_are_not_acceptable_json_are_400(api, catalog, raw):
    response = api.call("put", f"/titles/{catalog['hero'].pk}/progress", raw_body=raw)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"


def test_a_huge_body_is_413(api, catalog, settings):
    response = api.call("post", f"/titles/{catalog['hero'].pk}/danmaku",
                        raw_body=json.dumps({"text": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10), "offset_ms": 0}))
    assert response.status_code == 413
    assert not Danmaku.objects.exists()


def test_danmaku_are_posted_and_read_by_time_window(api, catalog, published):
    hero = catalog["hero"]
    with published.on_commit():
        posted = api.call("post", f"/titles/{hero.pk}/danmaku",
                          {"text": "  前方高能\n ", "offset_ms": 65_000, "color": "#FF0000", "mode": "top"})
    assert posted.status_code == 201, posted.json()
    body = posted.json()
    assert (body["text"], body["offset_ms"], body["color"], body["mode"], body["user"]) == (
        "前方高能", 65_000, "#ff0000", "top", "alice")
    [(topic, event)] = published.of_type("catalog.danmaku")
    assert (topic, event["title_id"]) == (f"catalog.title.{hero.pk}", hero.pk)
    assert {**event["danmaku"], "created_at": None} == {**body, "created_at": None}
    api.call("post", f"/titles/{hero.pk}/danmaku", {"text": "开头", "offset_ms": 1_000})
    assert [d["text"] for d in api.get(f"/titles/{hero.pk}/danmaku?from_ms=60000&to_ms=119999").json()] == ["前方高能"]
    assert [d["text"] for d in api.get(f"/titles/{hero.pk}/danmaku").json()] == ["开头", "前方高能"]
    assert api.get(f"/titles/{hero.pk}/danmaku?from_ms=0&to_ms=999").json() == []


def test_danmaku_of_an_episode_stay_with_it(api, catalog):
    show = catalog["show"]
    first = show.seasons.get().episodes.get(number=1)
    api.call("post", f"/titles/{show.pk}/danmaku", {"text": "第一集", "offset_ms": 5_000, "episode_id": first.pk})
    assert [d["text"] for d in api.get(f"/titles/{show.pk}/danmaku?episode_id={first.pk}").json()] == ["第一集"]
    assert api.get(f"/titles/{show.pk}/danmaku").json() == []
    past = api.call("post", f"/titles/{show.pk}/danmaku", {"text": "太晚", "offset_ms": 70_000, "episode_id": first.pk})
    assert (past.status_code, past.json()["field"]) == (400, "offset_ms")


@pytest.mark.parametrize(("body", "field"), [
    ({"text": "", "offset_ms": 0}, "text"), ({"text": "   \n\t ", "offset_ms": 0}, "text"),
    ({"text": "长" * 101, "offset_ms": 0}, "text"), ({"text": 5, "offset_ms": 0}, "text"),
    ({"offset_ms": 0}, "text"), ({"text": "hi", "offset_ms": -1}, "offset_ms"),
    ({"text": "hi", "offset_ms": 99 * 60_000 + 5_000}, "offset_ms"), ({"text": "hi", "offset_ms": 1.5}, "offset_ms"),
    ({"text": "hi", "offset_ms": "10"}, "offset_ms"), ({"text": "hi"}, "offset_ms"),
    ({"text": "hi", "offset_ms": 0, "color": "red"}, "color"), ({"text": "hi", "offset_ms": 0, "mode": "spin"}, "mode"),
    ({"text": "hi", "offset_ms": 0, "episode_id": 424242}, "episode_id"),
])
def test_bad_danmaku_are_a_4xx_naming_the_field(api, catalog, body, field):
    response = api.call("post", f"/titles/{catalog['hero'].pk}/danmaku", body)
    assert 400 <= response.status_code < 500, response.content
    assert response.json()["field"] == field
    assert not Danmaku.objects.exists()


@pytest.mark.parametrize(("raw", "field"), [('{"text": "hi", "offset_ms": NaN}', "offset_ms"),
                                            ('{"text": "hi", "offset_ms": ' + "9" * 400 + "}", "offset_ms"),
                                            ('{"text": "\\ud800", "offset_ms": 0}', "text")])
def test_danmaku_numbers_json_does_not_allow_are_400(api, catalog, raw, field):
    response = api.call("post", f"/titles/{catalog['hero'].pk}/danmaku", raw_body=raw)
    assert response.status_code == 400
    assert response.json()["field"] == field


@pytest.mark.parametrize(("query", "field"), [("from_ms=-1", "from_ms"), ("from_ms=10&to_ms=5", "to_ms"),
                                              ("to_ms=" + "9" * 400, "to_ms"), ("from_ms=abc", "from_ms")])
def test_bad_danmaku_windows_are_a_4xx_naming_the_field(api, catalog, query, field):
    response = api.get(f"/titles/{catalog['hero'].pk}/danmaku?{query}")
    assert 400 <= response.status_code < 500
    assert response.json()["field"] == field


def test_more_than_five_danmaku_in_ten_seconds_is_429(api, catalog, client, bob):
    hero = catalog["hero"]
    for n in range(5):
        assert api.call("post", f"/titles/{hero.pk}/danmaku", {"text": f"第{n}条", "offset_ms": n}).status_code == 201
    sixth = api.call("post", f"/titles/{hero.pk}/danmaku", {"text": "第六条", "offset_ms": 6})
    assert sixth.status_code == 429
    body = sixth.json()
    assert body["error"] == "rate_limited"
    assert "At most 5 danmaku in 10 s" in body["message"]
    assert 0 < body["retry_after_s"] <= 10
    assert 1 <= int(sixth["Retry-After"]) <= 10
    assert Danmaku.objects.count() == 5
    # The budget is each user's own: bob still posts.
    client.force_login(bob)
    response = client.post(f"/api/catalog/titles/{hero.pk}/danmaku", data={"text": "我也来", "offset_ms": 7},
                           content_type="application/json")
    assert response.status_code == 201


def test_the_endpoints_are_in_the_openapi_document(client, alice):
    client.force_login(alice)
    paths = client.get("/api/openapi.json").json()["paths"]
    for path in ["/api/catalog/titles", "/api/catalog/titles/{title_id}", "/api/catalog/titles/{title_id}/seasons",
                 "/api/catalog/people/{person_id}", "/api/catalog/favorites", "/api/catalog/titles/{title_id}/favorite",
                 "/api/catalog/titles/{title_id}/progress", "/api/catalog/titles/{title_id}/danmaku"]:
        assert path in paths
