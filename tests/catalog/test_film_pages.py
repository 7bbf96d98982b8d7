"""The catalog's pages: the home (empty state, grid, search, filters, pagination, favourites
and continue watching), a title's page with everything about it, the favourite button, a
person's page, and the covers served from MEDIA_ROOT."""

from __future__ import annotations

import json
import re

import pytest
from django.test import AsyncClient, Client
from django.urls import reverse

from catalog import film_services as services
from catalog.models import Favorite, Video
from tests.catalog.film_support import small_catalog
from tests.catalog.test_stream import fetch
from tests.factories import TitleFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog():
    return small_catalog()


def text_of(response) -> str:
    """The page's visible text, tags dropped and spaces collapsed."""
    html = response.content.decode()
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.mark.parametrize("path", ["/catalog/", "/catalog/titles/1/", "/catalog/people/1/"])
def test_anonymous_visitors_are_sent_to_log_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_an_empty_catalog_says_how_to_run_the_first_sync(alice_client):
    response = alice_client.get("/catalog/")
    text = text_of(response)
    assert "The catalog is empty" in text
    assert "python manage.py catalog_sync douban" in text
    assert "Sync now" not in text  # not staff


def test_staff_get_a_sync_now_button_per_enabled_source(staff_client, settings):
    settings.CATALOG_TMDB_API_KEY = ""
    html = staff_client.get("/catalog/").content.decode()
    form = re.search(r'<form method="post" action="{}"[^>]*>(.*?)</form>'.format(
        re.escape(reverse("catalog:sync-start", args=["douban"]))), html, re.S)
    assert form, html
    assert "csrfmiddlewaretoken" in form.group(1)
    assert "Sync now from Douban" in form.group(1)
    assert reverse("catalog:sync-start", args=["tmdb"]) not in html  # no key: TMDB does not run
    settings.CATALOG_TMDB_API_KEY = "k" * 32
    assert reverse("catalog:sync-start", args=["tmdb"]) in staff_client.get("/catalog/").content.decode()


def test_the_grid_shows_every_title_with_its_cover_or_a_placeholder(alice_client, catalog):
    show = catalog["show"]
    show.cover = "covers/9.jpg"
    show.save()
    html = alice_client.get("/catalog/").content.decode()
    for title in catalog.values():
        assert f'href="{title.get_absolute_url()}"' in html
    assert '<img class="poster" src="/catalog/covers/covers/9.jpg"' in html
    assert html.count('class="poster placeholder"') == 2
    assert "The catalog is empty" not in html


def test_search_and_filters_narrow_the_grid(alice_client, catalog):
    def shown(query: str) -> set[str]:
        html = alice_client.get(f"/catalog/?{query}").content.decode()
        return set(re.findall(r'<strong class="film-name">([^<]+)</strong>', html))

    assert shown("q=Amelie") == {"天使爱美丽"}
    assert shown("q=%E6%9D%8E%E8%BF%9E%E6%9D%B0") == {"英雄"}  # 李连杰
    assert shown("kind=tv") == {"黑镜"}
    assert shown("genre=%E5%89%A7%E6%83%85") == {"英雄"}
    assert shown("rating_min=8&sort=rating") == {"天使爱美丽", "黑镜"}
    assert shown("year=notayear") == {"英雄", "天使爱美丽", "黑镜"}  # a bad value is dropped, not an error
    assert "Nothing matches “zzz”" in text_of(alice_client.get("/catalog/?q=zzz"))


def test_the_grid_is_paged_and_keeps_the_filters(alice_client):
    for n in range(30):
        TitleFactory(title=f"Film {n:02d}", kind="movie")
    first = alice_client.get("/catalog/?kind=movie&sort=title").content.decode()
    assert first.count('class="card film-card"') == 24
    assert 'href="?kind=movie&amp;sort=title&amp;page=2"' in first
    second = alice_client.get("/catalog/?kind=movie&sort=title&page=2").content.decode()
    assert second.count('class="card film-card"') == 6
    assert "Page 2 of 2" in text_of(alice_client.get("/catalog/?kind=movie&sort=title&page=2"))


def test_the_home_has_my_favourites_and_continue_watching(alice_client, alice, bob, catalog):
    services.favorite_add(user=alice, title=catalog["amelie"])
    services.favorite_add(user=bob, title=catalog["show"])
    services.progress_save(user=alice, title=catalog["hero"], position=30 * 60)
    html = alice_client.get("/catalog/").content.decode()
    favourites = html.split('id="favorites-heading"')[1].split("</section>")[0]
    watching = html.split('id="continue-heading"')[1].split("</section>")[0]
    assert catalog["amelie"].get_absolute_url() in favourites
    assert catalog["show"].get_absolute_url() not in favourites
    assert catalog["hero"].get_absolute_url() in watching
    assert 'aria-valuenow="30"' in watching  # 30 of 99 minutes


def test_a_title_page_shows_everything_known(alice_client, catalog):
    hero = catalog["hero"]
    response = alice_client.get(hero.get_absolute_url())
    text = text_of(response)
    for expected in ["英雄", "Hero", "Ying xiong", "★ 7.7", "400,000 votes", "剧情", "中国大陆", "汉语普通话",
                     "2002-12-14 (中国大陆)", "2004-08-27 (美国)", "99 min", "tt0299977", "秦王统一六国前夕",
                     "李连杰 as 角色0", "No danmaku yet"]:
        assert expected in text, expected
    html = response.content.decode()
    assert 'href="https://www.imdb.com/title/tt0299977/"' in html
    assert 'href="https://movie.douban.com/subject/1306123/"' in html
    director = hero.credits.get(role="director").person
    assert f'href="{director.get_absolute_url()}"' in html
    assert 'id="film-player"' not in html  # no video


def test_a_tv_title_lists_its_episodes_with_the_users_progress(alice_client, alice, catalog):
    show = catalog["show"]
    first, second = show.seasons.get().episodes.order_by("number")
    services.progress_save(user=alice, title=show, position=60, episode_id=first.pk)
    services.progress_save(user=alice, title=show, position=15, episode_id=second.pk)
    html = alice_client.get(show.get_absolute_url()).content.decode()
    rows = dict(re.findall(r'<tr data-episode-id="(\d+)">(.*?)</tr>', html, re.S))
    assert "watched" in rows[str(first.pk)]
    assert "国歌" in rows[str(first.pk)]
    assert 'aria-valuenow="25"' in rows[str(second.pk)]  # 15 s of the 1-minute episode runtime
    assert "Season 1" in text_of(alice_client.get(show.get_absolute_url()))


def test_a_title_with_a_video_has_the_player_resuming_where_the_user_stopped(alice_client, alice, catalog, tmp_path):
    hero = catalog["hero"]
    video = Video.objects.create(title=hero, file_path=str(tmp_path / "hero.mp4"), mime_type="video/mp4", duration_s=120)
    services.progress_save(user=alice, title=hero, position=42)
    html = alice_client.get(hero.get_absolute_url()).content.decode()
    config = json.loads(re.search(r'<script id="film-player-config" type="application/json">(.*?)</script>', html,
                                  re.S).group(1))
    assert config["items"] == [{"videoId": video.pk, "src": video.get_stream_url(), "type": "video/mp4",
                                "episodeId": None, "label": "英雄", "durationS": 120.0, "positionS": 42.0}]
    assert config["websocket"] == f"/ws/catalog/titles/{hero.pk}/"
    assert config["start"] == 0
    assert config["csrfToken"]
    assert "chorus/film_player.js" in html


def test_the_favourite_button_adds_and_removes_with_a_form_post(alice, catalog):
    hero = catalog["hero"]
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    html = browser.get(hero.get_absolute_url()).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    url = reverse("catalog:favorite", args=[hero.pk])
    assert browser.post(url, {"action": "add"}).status_code == 403  # no CSRF token
    assert not Favorite.objects.exists()
    response = browser.post(url, {"action": "add", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert Favorite.objects.filter(user=alice, title=hero).exists()
    assert "♥ In your favourites" in browser.get(hero.get_absolute_url()).content.decode()
    browser.post(url, {"action": "remove", "csrfmiddlewaretoken": token})
    assert not Favorite.objects.exists()
    assert browser.post(reverse("catalog:favorite", args=[999999]), {"csrfmiddlewaretoken": token}).status_code == 404


def test_a_person_page_lists_their_credits_by_role(alice_client, catalog):
    zhang = catalog["hero"].credits.get(role="director").person
    text = text_of(alice_client.get(zhang.get_absolute_url()))
    assert "张艺谋" in text
    assert "Director" in text
    assert "Writer" in text
    assert alice_client.get("/catalog/people/999999/").status_code == 404
    assert alice_client.get("/catalog/titles/999999/").status_code == 404


# --- covers ---------------------------------------------------------------------------------


@pytest.fixture
def media(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    (tmp_path / "media" / "covers").mkdir(parents=True)
    (tmp_path / "media" / "covers" / "7.jpg").write_bytes(b"\xff\xd8\xff" + b"j" * 500)
    (tmp_path / "media" / "notes.txt").write_text("not a cover")
    (tmp_path / "secret.jpg").write_bytes(b"\xff\xd8\xff secret")
    (tmp_path / "media" / "covers" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    return tmp_path / "media"


@pytest.fixture
def viewer(alice) -> AsyncClient:
    client = AsyncClient()
    client.force_login(alice)
    return client


def test_a_cover_is_served_from_media_root_with_ranges(viewer, media):
    response, body = fetch(viewer, "/catalog/covers/covers/7.jpg")
    assert (response.status_code, response["Content-Type"], len(body)) == (200, "image/jpeg", 503)
    response, body = fetch(viewer, "/catalog/covers/covers/7.jpg", range="bytes=0-2")
    assert (response.status_code, body) == (206, b"\xff\xd8\xff")


@pytest.mark.parametrize("path", ["covers/../../secret.jpg", "covers/%2E%2E/%2E%2E/secret.jpg", "notes.txt",
                                  "covers/link.jpg", "covers/missing.jpg", "covers/a%00.jpg"])
def test_covers_outside_media_root_or_not_images_are_404(viewer, media, path):
    response, body = fetch(viewer, f"/catalog/covers/{path}")
    assert response.status_code in (400, 404)  # a NUL is refused by Django before the view
    assert b"secret" not in body


def test_covers_need_a_login(media):
    response, _ = fetch(AsyncClient(), "/catalog/covers/covers/7.jpg")
    assert response.status_code == 401


def test_the_home_costs_the_same_queries_for_a_few_titles_or_a_full_page(alice_client, alice, catalog):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries() -> int:
        with CaptureQueriesContext(connection) as context:
            assert alice_client.get("/catalog/").status_code == 200
        return len(context)

    services.favorite_add(user=alice, title=catalog["hero"])
    services.progress_save(user=alice, title=catalog["show"], position=10,
                           episode_id=catalog["show"].seasons.get().episodes.first().pk)
    few = queries()
    for n in range(30):
        title = TitleFactory(title=f"Film {n}")
        title.genres.set(catalog["hero"].genres.all())
        services.favorite_add(user=alice, title=title)
    assert queries() == few


def test_a_series_with_episode_videos_plays_them_from_the_episode_list(alice_client, alice, catalog, tmp_path):
    show = catalog["show"]
    second = show.seasons.get().episodes.get(number=2)
    video = Video.objects.create(title=show, episode=second, file_path=str(tmp_path / "s01e02.mp4"),
                                 mime_type="video/mp4", duration_s=60)
    services.progress_save(user=alice, title=show, position=12, episode_id=second.pk)
    html = alice_client.get(show.get_absolute_url()).content.decode()
    config = json.loads(re.search(r'<script id="film-player-config" type="application/json">(.*?)</script>', html,
                                  re.S).group(1))
    assert config["items"] == [{"videoId": video.pk, "src": video.get_stream_url(), "type": "video/mp4",
                                "episodeId": second.pk, "label": "S01E02 · 一千五百万积分", "durationS": 60.0,
                                "positionS": 12.0}]
    assert f'data-play-episode="{second.pk}"' in html
    first = show.seasons.get().episodes.get(number=1)
    assert f'data-play-episode="{first.pk}"' not in html  # no video for it


@pytest.mark.parametrize("query", ["rating_min=nan", "rating_min=inf", "year=1" + "0" * 400, "kind=bogus", "sort=best",
                                   "page=" + "9" * 400, "q=" + "x" * 300, "genre=" + "x" * 300])
def test_bad_filter_values_never_break_the_page(alice_client, catalog, query):
    response = alice_client.get(f"/catalog/?{query}")
    assert response.status_code == 200
    assert response.content.decode().count('class="card film-card"') == 3  # the bad value is left out


def test_a_very_long_title_is_cut_on_its_card_with_the_whole_in_its_tooltip(alice_client):
    TitleFactory(title="长" * 500)
    html = alice_client.get("/catalog/").content.decode()
    assert f'title="{"长" * 500} (2024)"' in html
    assert '<strong class="film-name">' in html


def test_a_title_page_costs_the_same_queries_however_many_episodes_and_credits(alice_client, alice, catalog, tmp_path):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import credit, episode

    show = catalog["show"]

    def queries() -> int:
        with CaptureQueriesContext(connection) as context:
            assert alice_client.get(show.get_absolute_url()).status_code == 200
        return len(context)

    first = show.seasons.get().episodes.get(number=1)
    Video.objects.create(title=show, episode=first, file_path=str(tmp_path / "1.mp4"), mime_type="video/mp4")
    few = queries()
    for n in range(3, 40):
        row = episode(show, 1 + n // 12, n, name=f"第{n}集")
        Video.objects.create(title=show, episode=row, file_path=str(tmp_path / f"{n}.mp4"), mime_type="video/mp4")
        services.progress_save(user=alice, title=show, position=1, episode_id=row.pk)
        credit(show, f"演员{n}", "actor", n)
    assert queries() == few


def test_a_series_starts_with_the_episode_watched_last_and_not_finished(alice_client, alice, catalog, tmp_path):
    from tests.factories import episode

    show = catalog["show"]
    rows = [show.seasons.get().episodes.get(number=n) for n in (1, 2)] + [episode(show, 1, 3)]
    for row in rows:
        Video.objects.create(title=show, episode=row, file_path=str(tmp_path / f"{row.number}.mp4"),
                             mime_type="video/mp4", duration_s=60)
    services.progress_save(user=alice, title=show, position=20, episode_id=rows[1].pk)
    services.progress_save(user=alice, title=show, position=60, episode_id=rows[0].pk)  # finished, and later
    html = alice_client.get(show.get_absolute_url()).content.decode()
    config = json.loads(re.search(r'<script id="film-player-config" type="application/json">(.*?)</script>', html,
                                  re.S).group(1))
    assert [item["episodeId"] for item in config["items"]] == [row.pk for row in rows]
    assert config["start"] == 1
    assert [item["positionS"] for item in config["items"]] == [0, 20.0, 0]
