"""The ListenBrainz-compatible endpoint (/apis/listenbrainz/1/...): real scrobbler clients
send plays here with a Chorus API token.

The client side is the real liblistenbrainz against a live server (Daphne on the test
database); requests the library would never send are made with the Django test client.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from liblistenbrainz import Listen, ListenBrainz
from liblistenbrainz.errors import InvalidAuthTokenException

from catalog.models import Track
from project.accounts.services import token_create, token_revoke
from scrobbling import nowplaying
from scrobbling.models import Play, ScrobblerLink
from tests.factories import make_track

PREFIX = "/apis/listenbrainz"
SUBMIT_URL = f"{PREFIX}/1/submit-listens"
VALIDATE_URL = f"{PREFIX}/1/validate-token"
MBID = "5b24fc32-cbc1-4fb6-8ee9-e6cd4ea4e6f5"


def chorus_listenbrainz(base_url: str) -> ListenBrainz:
    """liblistenbrainz as it is. It joins absolute endpoint paths ("/1/submit-listens") to its
    base URL with urljoin, which drops the base URL's path, so it talks to the aliases at the
    server root; other clients use <chorus>/apis/listenbrainz (tested with plain HTTP below)."""
    return ListenBrainz(api_base_url=base_url + PREFIX)


@pytest.fixture
def alice_token(alice) -> str:
    return token_create(user=alice, name="scrobbler")[1]


@pytest.fixture
def listenbrainz(asgi_server, alice_token) -> ListenBrainz:
    """liblistenbrainz logged in as alice (set_auth_token checks the token with validate-token)."""
    client = chorus_listenbrainz(asgi_server.url)
    client.set_auth_token(alice_token)
    return client


@pytest.fixture
def joga(db) -> Track:
    return make_track("Jóga", "Björk", "Homogenic", duration_s=305.0, mbid=MBID)


def ago(**delta) -> int:
    return int((timezone.now() - timedelta(**delta)).timestamp())


# --- with liblistenbrainz, over HTTP --------------------------------------------------------


def test_a_chorus_api_token_is_valid_and_other_tokens_are_not(asgi_server, alice):
    token, raw = token_create(user=alice, name="scrobbler")
    client = chorus_listenbrainz(asgi_server.url)
    client.set_auth_token(raw)  # raises when the server says it is not valid

    answer = requests.get(asgi_server.url + VALIDATE_URL, headers={"Authorization": f"Token {raw}"}, timeout=10)
    assert answer.json() == {"code": 200, "message": "Token valid.", "valid": True, "user_name": "alice"}

    for bad in ["chorus_not-a-real-token", "x" * 40]:
        with pytest.raises(InvalidAuthTokenException):
            chorus_listenbrainz(asgi_server.url).set_auth_token(bad)
    token_revoke(user=alice, token_id=token.pk)
    with pytest.raises(InvalidAuthTokenException):
        chorus_listenbrainz(asgi_server.url).set_auth_token(raw)


def test_a_single_listen_is_matched_by_recording_mbid(listenbrainz, alice, joga):
    listened_at = ago(minutes=5)
    answer = listenbrainz.submit_single_listen(
        Listen(track_name="Joga (Radio Edit)", artist_name="Bjork & Friends", listened_at=listened_at,
               recording_mbid=MBID, listening_from="mpv")
    )

    assert answer == {"status": "ok"}
    play = Play.objects.get(user=alice)
    assert play.track == joga
    assert play.source == Play.Source.EXTERNAL
    assert int(play.played_at.timestamp()) == listened_at
    assert play.duration_s == 305.0  # taken from the library track
    joga.refresh_from_db()
    assert joga.play_count == 1


def test_a_listen_is_matched_by_artist_and_title_ignoring_case_and_accents(listenbrainz, alice, joga):
    listenbrainz.submit_single_listen(Listen(track_name="joga", artist_name="BJORK", listened_at=ago(minutes=3)))

    play = Play.objects.get(user=alice)
    assert play.track == joga
    assert (play.artist_name, play.track_title) == ("BJORK", "joga")  # as the player sent it
    assert play.album_title == "Homogenic"


def test_an_unmatched_listen_is_kept_without_a_track_and_shown_in_the_history(listenbrainz, asgi_server, alice,
                                                                             alice_token, joga):
    listened_at = ago(minutes=7)
    listenbrainz.submit_single_listen(
        Listen(track_name="Army of Me", artist_name="Björk", release_name="Post", listened_at=listened_at)
    )

    play = Play.objects.get(user=alice)
    assert play.track is None
    assert (play.artist_name, play.track_title, play.album_title) == ("Björk", "Army of Me", "Post")
    history = requests.get(asgi_server.url + "/api/scrobbling/scrobbles",
                           headers={"Authorization": f"Bearer {alice_token}"}, timeout=10).json()
    [shown] = history["plays"]
    assert (shown["artist"], shown["title"], shown["track_id"], shown["matched"]) == ("Björk", "Army of Me", None,
                                                                                      False)
    joga.refresh_from_db()
    assert joga.play_count == 0


def test_an_import_records_every_listen_once_and_a_resubmit_changes_nothing(listenbrainz, alice, joga):
    listens = [Listen(track_name="Jóga" if i % 2 else f"Song {i}", artist_name="Björk",
                      listened_at=ago(days=3) + 400 * i) for i in range(300)]

    assert listenbrainz.submit_multiple_listens(listens) == {"status": "ok"}

    assert Play.objects.filter(user=alice).count() == 300
    assert Play.objects.filter(user=alice, track=joga).count() == 150
    joga.refresh_from_db()
    assert joga.play_count == 150

    # The player lost the answer and sends it all again, and one of them once more on its own.
    assert listenbrainz.submit_multiple_listens(listens) == {"status": "ok"}
    assert listenbrainz.submit_single_listen(listens[1]) == {"status": "ok"}
    assert listenbrainz.submit_single_listen(listens[2]) == {"status": "ok"}
    assert Play.objects.filter(user=alice).count() == 300
    joga.refresh_from_db()
    assert joga.play_count == 150


def test_playing_now_shows_the_track_as_now_playing_without_recording_a_play(listenbrainz, alice,
                                                                           joga):
    assert listenbrainz.submit_playing_now(Listen(track_name="JOGA", artist_name="björk")) == {"status": "ok"}

    [entry] = nowplaying.now_playing_list()
    assert (entry["username"], entry["track_id"], entry["source"], entry["paused"]) == ("alice", joga.pk,
                                                                                        "external", False)
    assert not Play.objects.exists()


# --- refused requests (plain HTTP) --------------------------------------------------------------


def submit(client, body, token: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Token {token}"} if token else {}
    content = body if isinstance(body, (str, bytes)) else json.dumps(body)
    response = client.post(SUBMIT_URL, data=content, content_type="application/json", headers=headers)
    return response.status_code, response.json()


def listen(**fields) -> dict:
    return {"listened_at": ago(hours=1), "track_metadata": {"artist_name": "Björk", "track_name": "Jóga"}, **fields}


def test_submitting_without_a_token_is_refused(client, alice_token, joga):
    status, body = submit(client, {"listen_type": "single", "payload": [listen()]}, None)
    assert (status, body["code"]) == (401, 401)
    assert "Authorization" in body["error"]
    status, _ = submit(client, {"listen_type": "single", "payload": [listen()]}, "chorus_unknown")
    assert status == 401
    assert not Play.objects.exists()


def test_a_revoked_token_is_refused(client, alice):
    token, raw = token_create(user=alice, name="old phone")
    assert submit(client, {"listen_type": "single", "payload": [listen()]}, raw)[0] == 200
    token_revoke(user=alice, token_id=token.pk)
    status, body = submit(client, {"listen_type": "single", "payload": [listen(listened_at=ago(hours=2))]}, raw)
    assert (status, body) == (401, {"code": 401, "error": "Invalid authorization token."})
    assert Play.objects.count() == 1
    response = client.get(VALIDATE_URL, headers={"Authorization": f"Token {raw}"})
    assert response.json()["valid"] is False


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("{not json", "Cannot parse JSON"),
        (b"\xff\xfe", "Cannot parse JSON"),
        ([{"listen_type": "single"}], "Invalid JSON document"),
        ({"listen_type": "scrobble", "payload": [listen()]}, "listen_type"),
        ({"listen_type": {"single": 1}, "payload": [listen()]}, "listen_type"),
        ({"listen_type": ["single"], "payload": [listen()]}, "listen_type"),
        ({"listen_type": "single", "payload": []}, "non-empty list"),
        ({"listen_type": "single", "payload": [listen(), listen(listened_at=ago(hours=3))]}, "exactly one listen"),
        ({"listen_type": "playing_now", "payload": [listen(), listen()]}, "exactly one listen"),
        ({"listen_type": "single", "payload": [{"track_metadata": {"artist_name": "Björk", "track_name": "Jóga"}}]},
         "listened_at"),
        ({"listen_type": "single", "payload": [listen(listened_at="1700000000")]}, "listened_at"),
        ({"listen_type": "import", "payload": [listen(), listen(track_metadata={"artist_name": "Björk"})]},
         "Listen 1: track_metadata needs artist_name and track_name"),
        ({"listen_type": "import", "payload": [listen(listened_at=1_700_000_000 + i) for i in range(1001)]},
         "at most 1000"),
    ],
    ids=["bad_json", "not_utf8", "not_an_object", "unknown_listen_type", "listen_type_an_object",
         "listen_type_a_list", "empty_payload", "single_with_two",
         "playing_now_with_two", "listened_at_missing", "listened_at_a_string", "one_bad_listen_of_an_import",
         "over_1000_listens"],
)
def test_a_bad_submission_is_refused_with_400_and_records_nothing(client, alice_token, joga, body,
                                                                  needle):
    status, answer = submit(client, body, alice_token)

    assert status == 400
    assert answer["code"] == 400
    assert needle in answer["error"]
    assert not Play.objects.exists()
    assert nowplaying.now_playing_list() == []
    joga.refresh_from_db()
    assert joga.play_count == 0


def test_validate_token_without_a_token_is_a_400(client):
    response = client.get(VALIDATE_URL)
    assert response.status_code == 400
    assert response.json()["code"] == 400


# --- big bodies, wrong types, wrong methods (ListenBrainz-style JSON answers throughout) --------


def rich_listen(index: int) -> dict:
    """A listen as a rich client sends it (MusicBrainz ids, tags, player details): ~3 kB."""
    info = {"recording_mbid": MBID, "release_mbid": MBID, "artist_mbids": [MBID] * 3, "tracknumber": index % 12 + 1,
            "tags": [f"tag-{index}-{n}" for n in range(40)], "media_player": "mpv", "submission_client": "rich",
            "spotify_id": "https://open.spotify.com/track/" + "x" * 22, "duration_ms": 305000,
            "comment": "é" * 1500}
    return {"listened_at": ago(days=5) + 300 * index,
            "track_metadata": {"artist_name": "Björk", "track_name": f"Song {index}", "release_name": "Homogenic",
                               "additional_info": info}}


def test_a_1000_listen_import_over_djangos_upload_limit_is_accepted(asgi_server, alice, alice_token, settings):
    document = json.dumps({"listen_type": "import", "payload": [rich_listen(i) for i in range(1000)]}).encode()
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE < len(document) < 10_240_000  # about 3 MB

    answer = requests.post(asgi_server.url + SUBMIT_URL, data=document, timeout=60,
                           headers={"Authorization": f"Token {alice_token}", "Content-Type": "application/json"})

    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
    assert Play.objects.filter(user=alice).count() == 1000


def test_a_body_over_what_listenbrainz_accepts_is_a_json_413(client, alice_token, caplog):
    document = json.dumps({"listen_type": "import", "payload": [listen()], "padding": "x" * 10_240_000})
    status, answer = submit(client, document, alice_token)
    assert (status, answer["code"]) == (413, 413)
    assert "10240000 bytes" in answer["error"]
    assert not Play.objects.exists()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_big_import_through_the_test_client_logs_no_error(client, alice, alice_token, caplog):
    document = json.dumps({"listen_type": "import", "payload": [rich_listen(i) for i in range(1000)]})
    assert submit(client, document, alice_token) == (200, {"status": "ok"})
    assert Play.objects.filter(user=alice).count() == 1000
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(("value", "needle"), [
    ("1700000000", "listened_at must be a whole number of Unix seconds, not a string"),
    ([1700000000], "listened_at must be a whole number of Unix seconds, not a list"),
    (None, "listened_at is required"),
    (1_000_000_000, "listened_at is before 2002-10-01"),
    (4_000_000_000, "listened_at is more than an hour in the future"),
])
def test_listened_at_errors_name_listened_at_and_say_what_is_wrong(client, alice_token, value, needle):
    status, answer = submit(client, {"listen_type": "single", "payload": [listen(listened_at=value)]}, alice_token)
    assert (status, answer["code"]) == (400, 400)
    assert needle in answer["error"]
    assert "played_at" not in answer["error"]
    assert not Play.objects.exists()


@pytest.mark.parametrize("body", [
    '{"listen_type": "single", "payload": [{"listened_at": NaN, "track_metadata": {}}]}',
    '{"listen_type": "single", "payload": [{"listened_at": 1e400, "track_metadata": {}}]}',
    '{"listen_type": "single", "payload": [{"listened_at": ' + "9" * 400 + ', "track_metadata": {}}]}',
    "[" * 20000,
    '{"listen_type": "single", "payload": ' + "[" * 5000 + "]" * 5000 + "}",
], ids=["nan", "infinity", "huge_integer", "deeply_nested", "nested_payload"])
def test_hostile_json_is_a_400_not_a_500(client, alice_token, body, caplog):
    status, answer = submit(client, body, alice_token)
    assert (status, answer["code"]) == (400, 400)
    assert answer["error"].startswith("Cannot parse JSON document")
    assert not Play.objects.exists()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_wrong_methods_trailing_slashes_and_unknown_paths_get_listenbrainz_json(client, alice_token):
    response = client.get(SUBMIT_URL, headers={"Authorization": f"Token {alice_token}"})
    assert (response.status_code, response.json()["code"], response["Allow"]) == (405, 405, "POST")
    response = client.post(VALIDATE_URL, headers={"Authorization": f"Token {alice_token}"})
    assert (response.status_code, response.json()["code"]) == (405, 405)

    body = json.dumps({"listen_type": "single", "payload": [listen()]})  # one listen, sent twice
    for path in (SUBMIT_URL + "/", "/1/submit-listens/"):
        response = client.post(path, data=body,
                               content_type="application/json", headers={"Authorization": f"Token {alice_token}"})
        assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert client.get(VALIDATE_URL + "/", headers={"Authorization": f"Token {alice_token}"}).json()["valid"] is True

    response = client.get(f"{PREFIX}/1/user/alice/listens")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == 404
    assert Play.objects.count() == 1


# --- playing_now for a track that is not in the library ---------------------------------------


@pytest.fixture
def eager_celery():
    from project.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


def test_playing_now_for_a_track_not_in_the_library_is_shown_and_sent_on(
    eager_celery, client, alice, alice_token, fake_listenbrainz, django_capture_on_commit_callbacks
):
    ScrobblerLink.objects.create(user=alice, service="listenbrainz", account_name="alice_lb",
                                 secret=fake_listenbrainz.add_user("alice_lb"))
    playing = {"track_metadata": {"artist_name": "Sigur Rós", "track_name": "Hoppípolla", "release_name": "Takk...",
                                  "additional_info": {"duration_ms": 268000}}}

    with django_capture_on_commit_callbacks(execute=True):
        assert submit(client, {"listen_type": "playing_now", "payload": [playing]}, alice_token) == (
            200, {"status": "ok"})

    [entry] = nowplaying.now_playing_list()
    assert (entry["username"], entry["track_id"], entry["title"], entry["artist"], entry["duration_s"]) == (
        "alice", None, "Hoppípolla", "Sigur Rós", 268.0)
    forwarded = fake_listenbrainz.playing_now["alice_lb"]["track_metadata"]
    assert (forwarded["track_name"], forwarded["artist_name"], forwarded["release_name"]) == (
        "Hoppípolla", "Sigur Rós", "Takk...")
    assert forwarded["additional_info"]["duration"] == 268
    client.force_login(alice)
    home = client.get("/listening-now")
    assert home.status_code == 200
    assert "Hoppípolla" in home.content.decode()
    assert not Play.objects.exists()
