"""M3U playlists of an album, a search and a room's queue, whose track URLs a media player
opens with the user's streams-only token."""

from __future__ import annotations

import http.client
import json
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import AsyncClient, Client

from catalog.models import Album, Track
from catalog.playlists import m3u
from project.accounts.models import ApiToken
from project.accounts.services import STREAM_TOKEN_NAME, token_revoke
from rooms import services as room_services
from rooms.models import Room
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def entries(body: bytes) -> list[tuple[str, str]]:
    """[(#EXTINF line, URL)] of a playlist, after checking its header."""
    lines = body.decode("utf-8").splitlines()
    assert lines[0] == "#EXTM3U"
    lines = [line for line in lines[1:] if not line.startswith("#PLAYLIST:")]
    assert len(lines) % 2 == 0, lines
    return list(zip(lines[0::2], lines[1::2], strict=True))


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def stream(url: str, **headers):
    """GET a track URL as a player would: no session, only what the URL (or headers) carry."""
    parts = urlsplit(url)

    async def run():
        response = await AsyncClient().get(f"{parts.path}?{parts.query}", headers=headers)
        body = b"".join([chunk async for chunk in response.streaming_content]) if response.streaming else response.content
        return response, body

    return async_to_sync(run)()


def test_album_playlist_lists_its_tracks_in_order_with_urls_a_player_can_open(alice_client, track):
    album = Album.objects.get(pk=track.album_id)
    response = alice_client.get(f"/library/albums/{album.pk}/playlist.m3u")
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/x-mpegurl; charset=utf-8"
    name = f"{album.artist.name} - {album.title}"
    assert response["Content-Disposition"] == f'attachment; filename="{name}.m3u"'
    assert response["Cache-Control"] == "private, no-store"
    assert f"#PLAYLIST:{name}" in response.content.decode()
    tracks = list(album.tracks.order_by("disc_number", "track_number", "title"))
    listed = entries(response.content)
    assert [info for info, _ in listed] == [f"#EXTINF:{round(t.duration_s)},{t.artist.name} - {t.title}" for t in tracks]
    for (_, url), expected in zip(listed, tracks, strict=True):
        assert url.startswith(f"http://testserver/library/tracks/{expected.pk}/stream?token=chorus_")
    played, body = stream(listed[0][1])
    assert played.status_code == 200
    assert body == Path(tracks[0].file_path).read_bytes()


def test_the_token_in_playlists_is_one_streams_only_token_listed_in_settings(alice, alice_client, track):
    first = entries(alice_client.get(f"/library/albums/{track.album_id}/playlist.m3u").content)
    second = entries(alice_client.get("/library/tracks/playlist.m3u").content)
    token = token_of(first[0][1])
    assert {token_of(url) for _, url in first + second} == {token}  # made once, reused
    assert ApiToken.objects.filter(user=alice, name=STREAM_TOKEN_NAME).count() == 1
    settings_page = alice_client.get("/accounts/settings/").content.decode()
    assert settings_page.count(STREAM_TOKEN_NAME) == 2  # explained, and listed with its Revoke button
    # It opens streams (bearer, ?token=, basic) but not the API, nor what a full token opens.
    api = Client().get("/api/library/tracks", headers={"authorization": f"Bearer {token}"})
    assert api.status_code == 401
    assert stream(track.get_stream_url(), authorization=f"Bearer {token}")[0].status_code == 200


def test_revoking_the_stream_token_breaks_old_playlists_and_the_next_gets_a_new_one(alice, alice_client, track):
    url = entries(alice_client.get(f"/library/albums/{track.album_id}/playlist.m3u").content)[0][1]
    token = ApiToken.objects.get(user=alice, name=STREAM_TOKEN_NAME)
    token_revoke(user=alice, token_id=token.pk)
    refused, _ = stream(url)
    assert refused.status_code == 401
    fresh = entries(alice_client.get(f"/library/albums/{track.album_id}/playlist.m3u").content)[0][1]
    assert token_of(fresh) != token_of(url)
    assert stream(fresh)[0].status_code == 200


def test_another_users_playlist_token_is_their_own(alice_client, bob, track):
    bob_client = Client()
    bob_client.force_login(bob)
    alice_url = entries(alice_client.get("/library/tracks/playlist.m3u").content)[0][1]
    bob_url = entries(bob_client.get("/library/tracks/playlist.m3u").content)[0][1]
    assert token_of(alice_url) != token_of(bob_url)
    assert ApiToken.objects.get(user=bob, name=STREAM_TOKEN_NAME).user_id == bob.pk


def test_search_playlist_has_the_searched_tracks_only(alice_client, imported):
    everything = entries(alice_client.get("/library/tracks/playlist.m3u").content)
    assert len(everything) == Track.objects.count()
    response = alice_client.get("/library/tracks/playlist.m3u", {"q": "second"})
    assert response["Content-Disposition"] == 'attachment; filename="Chorus - second.m3u"'
    found = entries(response.content)
    assert [info.split(",", 1)[1] for info, _ in found] == ["test artist - Second Song"]


def test_format_and_bitrate_are_passed_on_to_every_track_url(alice_client, track):
    listed = entries(alice_client.get(f"/library/albums/{track.album_id}/playlist.m3u", {"format": "opus", "bitrate": "96"}).content)
    query = parse_qs(urlsplit(listed[0][1]).query)
    assert (query["format"], query["bitrate"]) == (["opus"], ["96"])
    response, body = stream(listed[0][1])
    assert response["Content-Type"] == "audio/ogg"
    assert body.startswith(b"OggS")


@pytest.mark.parametrize(("query", "words"), [({"format": "wav"}, "format must be"), ({"bitrate": "64"}, "needs format")])
def test_bad_format_for_a_playlist_is_400_naming_it(alice_client, track, query, words):
    response = alice_client.get(f"/library/albums/{track.album_id}/playlist.m3u", query)
    assert response.status_code == 400
    assert words in response.json()["message"]


@pytest.mark.parametrize("path", ["/library/albums/{album}/playlist.m3u", "/library/tracks/playlist.m3u"])
def test_anonymous_playlist_request_is_401_with_a_basic_challenge(track, path):
    response = Client().get(path.format(album=track.album_id))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith('Basic realm="Chorus"')
    assert "?token=" in response.json()["message"]


def test_unknown_album_playlist_is_404(alice_client, track):
    response = alice_client.get("/library/albums/999999/playlist.m3u")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_a_playlist_can_be_fetched_by_a_player_with_a_token_in_its_url(alice, track):
    from project.accounts.services import token_create

    _, raw = token_create(user=alice, name="phone")
    response = Client().get("/library/tracks/playlist.m3u", {"token": raw})
    assert response.status_code == 200
    url = entries(response.content)[0][1]
    assert token_of(url) != raw  # the full API token is never copied into a playlist


def test_names_with_newlines_stay_on_their_line():
    class Artist:
        name = "Bad\nArtist"

    class FakeTrack:
        artist = Artist()
        title = "Title\r\n#EXTINF:1,injected\nhttp://evil.example/"
        duration_s = 61.6

    text = m3u(tracks=[FakeTrack()], url_of=lambda t: "http://chorus.test/x", title="A\nB")
    assert text.splitlines() == [
        "#EXTM3U",
        "#PLAYLIST:A B",
        "#EXTINF:62,Bad Artist - Title #EXTINF:1,injected http://evil.example/",
        "http://chorus.test/x",
    ]


# --- the room's queue --------------------------------------------------------------------


@pytest.fixture
def queued_room(alice, imported):
    room = room_services.room_create(owner=alice, name="Night Shift", visibility=Room.Visibility.PRIVATE)
    tracks = list(Track.objects.order_by("title")[:3])
    for track in tracks:
        room_services.queue_add(room=room, actor=alice, track_id=track.pk)
    return room, tracks


def test_room_playlist_is_the_queue_from_the_track_playing_now(alice_client, alice, queued_room):
    room, tracks = queued_room
    listed = entries(alice_client.get(f"/rooms/{room.slug}/playlist.m3u").content)
    assert [url.split("?")[0] for _, url in listed] == [f"http://testserver{t.get_stream_url()}" for t in tracks]
    room_services.playback_control(room=room, actor=alice, control=room_services.Control(action="next"))
    room_services.playback_control(room=room, actor=alice, control=room_services.Control(action="next"))
    now = entries(alice_client.get(f"/rooms/{room.slug}/playlist.m3u").content)
    current = room.playback.__class__.objects.get(room=room).entry.track
    assert now[0][1].split("?")[0] == f"http://testserver{current.get_stream_url()}"
    assert len(now) < len(listed)


def test_room_playlist_of_a_private_room_is_refused_to_others(queued_room, track):
    room, _ = queued_room
    outsider = Client()
    outsider.force_login(UserFactory(username="outsider"))
    response = outsider.get(f"/rooms/{room.slug}/playlist.m3u")
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert Client().get(f"/rooms/{room.slug}/playlist.m3u").status_code == 401
    assert outsider.get("/rooms/no-such-room/playlist.m3u").status_code == 404


def test_room_page_album_page_and_search_offer_the_playlists(alice_client, queued_room, track):
    room, _ = queued_room
    assert f'href="/rooms/{room.slug}/playlist.m3u"' in alice_client.get(room.get_absolute_url()).content.decode()
    assert f'href="/library/albums/{track.album_id}/playlist.m3u"' in alice_client.get(f"/library/albums/{track.album_id}/").content.decode()
    assert 'href="/library/tracks/playlist.m3u?q=test%20song"' in alice_client.get("/library/tracks/", {"q": "test song"}).content.decode()


# --- a real player ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["query", "basic-in-url"])
def test_ffmpeg_plays_a_track_url_with_the_token_in_the_url(alice, track, asgi_server, how):
    """What mpv and VLC do with a URL (mpv uses ffmpeg's HTTP client): ?token=, or
    user:token@host, which they send as basic auth after the 401 challenge."""
    from project.accounts.services import stream_token_get

    token = stream_token_get(user=alice)
    host = urlsplit(asgi_server.url).netloc
    url = f"http://{host}{track.get_stream_url()}?token={token}" if how == "query" else f"http://player:{token}@{host}{track.get_stream_url()}"
    probe = subprocess.run(
        [settings.FFPROBE_BINARY, "-v", "error", "-show_entries", "format=duration", "-of", "json", url],
        capture_output=True, timeout=60, text=True,
    )
    assert probe.returncode == 0, probe.stderr
    assert float(json.loads(probe.stdout)["format"]["duration"]) == pytest.approx(track.duration_s, abs=0.3)


def test_radio_and_track_streams_answer_401_with_the_same_challenge(asgi_server, track, queued_room):
    room, _ = queued_room
    for path in (track.get_stream_url(), f"/rooms/{room.slug}/radio"):
        connection = http.client.HTTPConnection("127.0.0.1", asgi_server.port, timeout=10)
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 401
        assert response.getheader("WWW-Authenticate") == 'Basic realm="Chorus", charset="UTF-8"'
        connection.close()
