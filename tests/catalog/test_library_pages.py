import pytest

from catalog.models import Album, Artist, Track

pytestmark = pytest.mark.django_db


def test_track_list_shows_play_buttons_with_stream_urls(alice_client, track):
    body = alice_client.get("/library/tracks/").content.decode()
    assert f'data-play="{track.pk}"' in body
    assert f'data-src="/library/tracks/{track.pk}/stream"' in body


@pytest.mark.parametrize(("query", "expected"), [("second", {"Second Song"}), ("test album", {"Test Song", "Second Song"}), ("ÜNÏCODE", {"Flac Tone"})])
def test_track_search_matches_title_artist_and_album(alice_client, imported, query, expected):
    page = alice_client.get("/library/tracks/", {"q": query}).context["page"]
    assert {t.title for t in page.object_list} == expected


def test_search_with_no_match_says_so(alice_client, imported):
    body = alice_client.get("/library/tracks/", {"q": "zzzz"}).content.decode()
    assert "No tracks match" in body


def test_htmx_search_returns_only_the_results(alice_client, imported):
    response = alice_client.get("/library/tracks/", {"q": "second"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="track-results")
    body = response.content.decode()
    assert "Second Song" in body
    assert "<html" not in body


def test_track_list_paginates(alice_client, imported, monkeypatch):
    monkeypatch.setattr("catalog.views.PAGE_SIZE", 2)
    first = alice_client.get("/library/tracks/").context["page"]
    last = alice_client.get("/library/tracks/", {"page": 2}).context["page"]
    assert len(first.object_list) == 2
    assert first.paginator.num_pages == 2
    assert not {t.pk for t in first.object_list} & {t.pk for t in last.object_list}


def test_empty_library_tells_staff_how_to_fill_it(staff_client):
    body = staff_client.get("/library/").content.decode()
    assert "Your library is empty" in body
    assert "/library/import/" in body


def test_album_artist_and_track_pages(alice_client, track):
    album = Album.objects.get(title__iexact="test album")
    artist = Artist.objects.get(name__iexact="test artist")
    assert "Second Song" in alice_client.get(f"/library/albums/{album.pk}/").content.decode()
    assert "Test Song" in alice_client.get(f"/library/artists/{artist.pk}/").content.decode()
    assert alice_client.get(f"/library/tracks/{track.pk}/").status_code == 200
    assert alice_client.get("/library/albums/").status_code == 200
    assert alice_client.get("/library/artists/").status_code == 200
    assert alice_client.get("/library/albums/999999/").status_code == 404


def test_library_pages_make_a_fixed_number_of_queries(alice_client, imported, django_assert_max_num_queries):
    with django_assert_max_num_queries(8):
        alice_client.get("/library/tracks/")
    with django_assert_max_num_queries(8):
        alice_client.get("/library/albums/")


def test_api_lists_and_searches_tracks(client, alice, imported):
    from project.accounts.services import token_create

    _, raw = token_create(user=alice, name="t")
    response = client.get("/api/library/tracks", {"q": "flac"}, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    item = body["items"][0]
    assert item["title"] == "Flac Tone"
    assert item["stream_url"] == f"/library/tracks/{item['id']}/stream"
    one = client.get(f"/api/library/tracks/{item['id']}", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert one.json()["artist"]["name"] == "Ünïcode Ärtist"
    assert client.get("/api/library/tracks/999999", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 404
    assert Track.objects.count() == 4


def test_openapi_docs_are_served(client, alice_client):
    assert alice_client.get("/api/docs").status_code == 200
    schema = alice_client.get("/api/openapi.json").json()
    assert "/api/library/tracks" in schema["paths"]


def test_admin_lists_every_model(client, db):
    from django.contrib import admin

    from tests.factories import UserFactory

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    for model in admin.site._registry:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(url).status_code == 200, url
        assert client.get(url, {"q": "x"}).status_code == 200, url


def test_api_errors_are_json_with_a_message(alice_client):
    missing = alice_client.get("/api/library/tracks/987654")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    unknown = alice_client.get("/api/no-such-endpoint")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "not_found", "message": "No API endpoint at /api/no-such-endpoint."}
    assert alice_client.get("/api/library/tracks", {"limit": 100000}).status_code == 422
