"""Who may see it, who may change it, and what if the id belongs to someone else: for every
page, API endpoint and stream of catalog/, rooms/ and scrobbling/ (and API tokens), the
answers that the tests next to each app do not already give.

- Anonymous: a page sends the visitor to the login page (staff pages: the admin's); the API
  and streams answer 401 JSON, writes included (never a CSRF 403), and nothing changes.
- Someone else's room (private, or where they are not host): 403/404 and nothing changes.
- An id that belongs to another room or another user: 404 (or an error naming it), and the
  other room's or user's data is untouched.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from catalog.models import ImportJob
from project.accounts.models import ApiToken
from project.accounts.services import token_create
from rooms import services as rooms
from rooms.models import Membership, QueueEntry, Room
from scrobbling import inputs, nowplaying, recording
from scrobbling.models import BufferEntry, DeadLetter, Play, ScrobblerLink
from tests.factories import UserFactory, make_track

pytestmark = pytest.mark.django_db


@pytest.fixture
def carol(db):
    return UserFactory(username="carol")


@pytest.fixture
def song(db):
    return make_track("Windowlicker", "Aphex Twin", "Windowlicker", duration_s=366.0)


@pytest.fixture
def other_song(db):
    return make_track("Jóga", "Björk", "Homogenic", duration_s=305.0)


@pytest.fixture
def private_room(alice, carol, song, other_song):
    """alice's private room; carol is a listener in it; bob is not a member."""
    room = rooms.room_create(owner=alice, name="Alice Secret Room", visibility=Room.Visibility.PRIVATE)
    rooms.room_join(room=room, user=carol, invite_code=room.invite_code)
    for track in (song, other_song):
        rooms.queue_add(room=room, actor=alice, track_id=track.pk)
    return room


@pytest.fixture
def public_room(bob, song):
    """bob's public room (host-only control) with one track queued."""
    room = rooms.room_create(owner=bob, name="Bob Public Room", visibility=Room.Visibility.PUBLIC,
                             control_policy=Room.ControlPolicy.HOST_ONLY)
    rooms.queue_add(room=room, actor=bob, track_id=song.pk)
    return room


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def bearer(user) -> dict:
    return {"Authorization": f"Bearer {token_create(user=user, name='test')[1]}"}


def snapshot(room: Room) -> tuple:
    room.refresh_from_db()
    return (room.name, room.visibility, room.control_policy, room.invite_code,
            sorted(Membership.objects.filter(room=room).values_list("user__username", "role")),
            list(QueueEntry.objects.filter(room=room).order_by("position").values_list("track_id", flat=True)),
            room.playback.version)


def error_of(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    return response.json()


# --- anonymous ---------------------------------------------------------------------------

PAGES = ["/library/", "/library/tracks/", "/library/tracks/{track}/", "/library/artists/",
         "/library/artists/{artist}/", "/library/albums/", "/library/albums/{album}/", "/catalog/",
         "/rooms/", "/rooms/new", "/rooms/{room}/", "/rooms/{room}/queue/search?q=a",
         "/rooms/{room}/invite/{code}", "/accounts/settings/"]


def _fill(url: str, *, song, room) -> str:
    return url.format(track=song.pk, artist=song.artist_id, album=song.album_id, room=room.slug,
                      code=room.invite_code)


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_visitors_of_a_page_are_sent_to_the_login_page(client, url, song, private_room):
    path = _fill(url, song=song, room=private_room)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("url", ["/library/import/", "/library/import/{job}/", "/admin/",
                                 "/admin/catalog/track/", "/admin/rooms/room/"])
def test_staff_pages_send_others_to_the_admin_login(client, alice, url, library_dir):
    job = ImportJob.objects.create(path=str(library_dir))
    path = url.format(job=job.pk)
    for visitor in (client, logged_in(alice)):
        response = visitor.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/?next=")


def test_only_staff_upload_or_import(alice, library_dir, audio_source):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("mine.mp3", (audio_source / "tagged.mp3").read_bytes(), content_type="audio/mpeg")
    client = logged_in(alice)
    for data in ({"action": "upload", "files": [upload]}, {"action": "import", "path": str(library_dir)}):
        response = client.post("/library/import/", data)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert not ImportJob.objects.exists()
    assert not any(path.name == "mine.mp3" for path in library_dir.rglob("*"))


@pytest.mark.parametrize(("method", "url", "body"), [
    ("get", "/api/library/tracks", None), ("get", "/api/library/tracks/{track}", None), ("get", "/api/library/artists", None),
    ("get", "/api/library/albums", None), ("get", "/api/library/imports/{job}", None),
    ("post", "/api/library/imports", {"path": "/music"}),
    ("post", "/api/rooms", {"name": "Mine now"}), ("get", "/api/rooms/{room}", None),
    ("post", "/api/rooms/{room}/join", {"invite_code": "{code}"}),
    ("post", "/api/rooms/{room}/queue", {"track_id": "{track}"}),
    ("post", "/api/rooms/{room}/control", {"action": "play"}),
    ("delete", "/api/rooms/{room}/members/{member}", None),
    ("post", "/api/scrobbling/now-playing", {"track_id": "{track}"}),
    ("delete", "/api/scrobbling/now-playing", None), ("get", "/api/scrobbling/now-playing", None),
    ("post", "/api/scrobbling/scrobbles", {"track_id": "{track}", "played_at": "2026-01-01T10:00:00Z"}),
    ("get", "/api/scrobbling/scrobbles", None), ("get", "/api/scrobbling/links", None),
    ("post", "/api/scrobbling/links/listenbrainz", {"token": "t"}),
    ("delete", "/api/scrobbling/links/lastfm", None),
])
def test_anonymous_api_calls_are_401_json_and_change_nothing(method, url, body, song, private_room, carol,
                                                            library_dir):
    job = ImportJob.objects.create(path=str(library_dir))
    client = Client(enforce_csrf_checks=True)  # as a script or a browser without a session would
    values = {"track": song.pk, "job": job.pk, "room": private_room.slug, "code": private_room.invite_code,
              "member": carol.pk}
    path = url.format(**values)
    data = json.loads(json.dumps(body).replace('"{track}"', str(song.pk)).replace("{code}", private_room.invite_code)) \
        if body is not None else None
    before = (snapshot(private_room), Room.objects.count(), ImportJob.objects.count(), Play.objects.count())

    response = getattr(client, method)(path, data=json.dumps(data) if data is not None else None,
                                       content_type="application/json")

    assert response.status_code == 401, response.content[:300]
    assert error_of(response)["error"] == "not_authenticated"
    assert (snapshot(private_room), Room.objects.count(), ImportJob.objects.count(), Play.objects.count()) == before


@pytest.mark.parametrize("url", ["/rooms/{room}/radio", "/rooms/{room}/playlist.m3u", "/library/tracks/{track}/stream",
                                 "/library/albums/{album}/playlist.m3u", "/library/tracks/playlist.m3u?q=a"])
def test_anonymous_streams_and_playlists_are_401(client, url, song, private_room):
    response = client.get(_fill(url, song=song, room=private_room))
    assert response.status_code == 401
    assert error_of(response)["error"] == "not_authenticated"


@pytest.mark.parametrize(("url", "data"), [
    ("/rooms/{room}/settings", {"name": "Taken", "visibility": "public", "control_policy": "everyone"}),
    ("/rooms/{room}/role", {"user_id": "{carol}", "role": "host"}),
    ("/rooms/{room}/members/remove", {"user_id": "{carol}"}),
    ("/rooms/{room}/queue", {"op": "add", "track_id": "{track}"}),
    ("/rooms/new", {"name": "Anonymous room"}),
])
def test_anonymous_room_forms_change_nothing(client, url, data, private_room, carol, song):
    before = (snapshot(private_room), Room.objects.count())
    fields = {k: str(v).format(carol=carol.pk, track=song.pk) for k, v in data.items()}
    response = client.post(url.format(room=private_room.slug), fields)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert (snapshot(private_room), Room.objects.count()) == before


# --- someone else's room -----------------------------------------------------------------


@pytest.mark.parametrize("url", ["/rooms/{room}/", "/rooms/{room}/queue/search?q=Windowlicker"])
def test_a_private_room_page_is_refused_to_someone_outside_it(bob, url, private_room):
    response = logged_in(bob).get(url.format(room=private_room.slug))
    assert response.status_code == 403
    assert "Windowlicker" not in response.content.decode()
    assert not Membership.objects.filter(room=private_room, user=bob).exists()


@pytest.mark.django_db(transaction=True)  # the radio is an async view: its queries run in another thread
@pytest.mark.parametrize("url", ["/rooms/{room}/radio", "/rooms/{room}/playlist.m3u"])
def test_the_radio_and_playlist_of_a_private_room_are_refused_to_someone_outside_it(bob, url, private_room):
    response = Client().get(url.format(room=private_room.slug), headers=bearer(bob))
    assert response.status_code == 403
    assert error_of(response)["error"] == "forbidden"
    assert "Windowlicker" not in response.content.decode()


def test_the_room_list_hides_private_rooms_of_others(bob, private_room, public_room):
    page = logged_in(bob).get("/rooms/").content.decode()
    assert public_room.name in page
    assert private_room.name not in page


@pytest.mark.parametrize(("method", "url", "body"), [
    ("get", "/api/rooms/{room}", None),
    ("post", "/api/rooms/{room}/queue", {"track_id": 0}),
    ("post", "/api/rooms/{room}/control", {"action": "next"}),
    ("delete", "/api/rooms/{room}/members/{carol}", None),
])
def test_the_api_refuses_a_private_room_to_someone_outside_it(bob, method, url, body, private_room, carol, song):
    before = snapshot(private_room)
    path = url.format(room=private_room.slug, carol=carol.pk)
    if body is not None and "track_id" in body:
        body = {"track_id": song.pk}
    response = getattr(Client(), method)(path, data=json.dumps(body) if body else None,
                                         content_type="application/json", headers=bearer(bob))
    assert response.status_code == 403
    assert error_of(response)["error"] == "forbidden"
    assert "Windowlicker" not in response.content.decode()
    assert snapshot(private_room) == before


def test_joining_a_private_room_with_a_wrong_code_is_refused(bob, private_room):
    before = snapshot(private_room)
    api = Client().post(f"/api/rooms/{private_room.slug}/join", data={"invite_code": "guessed"},
                        content_type="application/json", headers=bearer(bob))
    assert api.status_code == 403
    page = logged_in(bob).get(f"/rooms/{private_room.slug}/invite/guessed")
    assert page.status_code == 403
    assert "That invite link is not valid" in page.content.decode()
    assert snapshot(private_room) == before


@pytest.mark.parametrize("who", ["bob", "carol"])
@pytest.mark.parametrize(("url", "data"), [
    ("/rooms/{room}/settings", {"name": "Taken over", "visibility": "public", "control_policy": "everyone"}),
    ("/rooms/{room}/role", {"user_id": "{who}", "role": "host"}),
    ("/rooms/{room}/members/remove", {"user_id": "{alice}"}),
    ("/rooms/{room}/queue", {"op": "add", "track_id": "{track}"}),
    ("/rooms/{room}/queue", {"op": "remove", "entry_id": "{entry}"}),
])
def test_only_the_host_changes_a_room_whatever_the_form_says(who, url, data, private_room, alice, bob, carol, song):
    """bob is not a member; carol is a listener (the room's policy: host only)."""
    user = {"bob": bob, "carol": carol}[who]
    entry = QueueEntry.objects.filter(room=private_room).first()
    fields = {k: str(v).format(who=user.pk, alice=alice.pk, track=song.pk, entry=entry.pk) for k, v in data.items()}
    before = snapshot(private_room)
    logged_in(user).post(url.format(room=private_room.slug), fields)
    assert snapshot(private_room) == before


def test_someone_who_is_not_a_member_of_a_public_room_cannot_control_it(alice, public_room, song):
    """Anyone may look at a public room; changing it needs the room's rules, not just its address."""
    before = snapshot(public_room)
    client = Client()
    assert client.get(f"/api/rooms/{public_room.slug}", headers=bearer(alice)).status_code == 200
    for path, body in [("control", {"action": "play"}), ("queue", {"track_id": song.pk})]:
        response = client.post(f"/api/rooms/{public_room.slug}/{path}", data=body, content_type="application/json",
                               headers=bearer(alice))
        assert response.status_code == 403
        assert error_of(response)["error"] == "forbidden"
    logged_in(alice).post(f"/rooms/{public_room.slug}/settings",
                          {"name": "Mine", "visibility": "private", "control_policy": "everyone"})
    assert snapshot(public_room) == before


def test_a_listener_may_leave_but_not_remove_others(private_room, alice, carol):
    client = Client()
    refused = client.delete(f"/api/rooms/{private_room.slug}/members/{alice.pk}", headers=bearer(carol))
    assert refused.status_code == 403
    left = client.delete(f"/api/rooms/{private_room.slug}/members/{carol.pk}", headers=bearer(carol))
    assert left.status_code == 204
    assert list(Membership.objects.filter(room=private_room).values_list("user__username", flat=True)) == ["alice"]


# --- ids that belong to another room or user ---------------------------------------------


def test_queue_entries_of_another_room_cannot_be_removed_moved_or_selected(private_room, public_room, bob):
    """bob hosts his public room and sends ids of entries in alice's private room."""
    theirs = QueueEntry.objects.filter(room=private_room).first()
    before = snapshot(private_room)
    client = logged_in(bob)
    for op in ({"op": "remove", "entry_id": theirs.pk}, {"op": "move", "entry_id": theirs.pk, "to_index": 0}):
        response = client.post(f"/rooms/{public_room.slug}/queue", op, headers={"HX-Request": "true"})
        assert response.status_code == 404
        assert error_of(response) == {"error": "not_found", "message": f"Entry {theirs.pk} is not in this room's queue."}
    selected = Client().post(f"/api/rooms/{public_room.slug}/control", data={"action": "select", "entry_id": theirs.pk},
                             content_type="application/json", headers=bearer(bob))
    assert selected.status_code == 404
    assert error_of(selected)["error"] == "not_found"
    assert snapshot(private_room) == before
    assert public_room.playback.entry_id is None


def test_roles_and_removals_name_only_members_of_this_room(private_room, public_room, bob, carol):
    """carol is a member of alice's room, not of bob's: bob cannot touch her through his room."""
    before = snapshot(private_room)
    api = Client().delete(f"/api/rooms/{public_room.slug}/members/{carol.pk}", headers=bearer(bob))
    assert api.status_code == 404
    assert error_of(api)["error"] == "not_found"
    logged_in(bob).post(f"/rooms/{public_room.slug}/role", {"user_id": carol.pk, "role": "dj"})
    assert not Membership.objects.filter(room=public_room, user=carol).exists()
    assert snapshot(private_room) == before


def test_an_import_job_is_not_shown_to_someone_who_is_not_staff(alice, library_dir):
    job = ImportJob.objects.create(path=str(library_dir))
    response = Client().get(f"/api/library/imports/{job.pk}", headers=bearer(alice))
    assert response.status_code == 403
    assert str(library_dir) not in response.content.decode()


def test_plays_and_links_of_another_user_are_never_shown(alice, bob, song):
    when = timezone.now() - timedelta(minutes=10)
    recording.plays_record(user=bob, plays=[inputs.PlayInput.of_track(song, played_at=when,
                                                                           source=Play.Source.LIBRARY)])
    ScrobblerLink.objects.create(user=bob, service="listenbrainz", account_name="bobs-account", secret="t")
    client = Client()
    history = client.get("/api/scrobbling/scrobbles", headers=bearer(alice)).json()
    assert history["plays"] == []
    links = client.get("/api/scrobbling/links", headers=bearer(alice)).json()
    assert "bobs-account" not in json.dumps(links)
    pages = logged_in(alice)
    for url in ("/scrobbles/", "/scrobbles/recent", "/scrobbles/services/", "/scrobbles/services/status"):
        page = pages.get(url).content.decode()
        assert "Windowlicker" not in page, url
        assert "bobs-account" not in page, url


def test_unlink_and_discard_touch_only_your_own_links_and_plays(alice, bob, song):
    ScrobblerLink.objects.create(user=bob, service="lastfm", account_name="bob-fm", secret="sk")
    play = recording.plays_record(user=bob, plays=[inputs.PlayInput.of_track(
        song, played_at=timezone.now() - timedelta(minutes=5), source=Play.Source.LIBRARY)]).created[0]
    DeadLetter.objects.create(user=bob, service="lastfm", play=play, payload={}, reason="Timestamp too old")
    waiting = BufferEntry.objects.filter(user=bob).count()
    assert waiting == 1
    client = logged_in(alice)

    client.post("/scrobbles/services/lastfm/unlink")
    client.post("/scrobbles/services/lastfm/discard")
    api = Client().delete("/api/scrobbling/links/lastfm", headers=bearer(alice))

    assert api.status_code == 404
    assert ScrobblerLink.objects.filter(user=bob, service="lastfm").exists()
    assert BufferEntry.objects.filter(user=bob).count() == waiting
    assert DeadLetter.objects.filter(user=bob).count() == 1


def test_clearing_now_playing_clears_only_your_own(alice, bob, song, redis_client):
    redis_client.flushdb()
    Client().post("/api/scrobbling/now-playing", data={"track_id": song.pk}, content_type="application/json",
                  headers=bearer(bob))
    assert Client().delete("/api/scrobbling/now-playing", headers=bearer(alice)).status_code == 204
    assert [entry["username"] for entry in nowplaying.now_playing_list()] == ["bob"]


def test_the_settings_page_lists_only_your_own_tokens(alice, bob):
    token_create(user=bob, name="bobs-phone")
    token_create(user=alice, name="alices-laptop")
    page = logged_in(alice).get("/accounts/settings/").content.decode()
    assert "alices-laptop" in page
    assert "bobs-phone" not in page
    assert ApiToken.objects.filter(user=bob, revoked_at=None).count() == 1


def test_a_listenbrainz_client_sees_only_its_own_account(alice, bob):
    _, raw = token_create(user=bob, name="scrobbler")
    answer = Client().get("/apis/listenbrainz/1/validate-token", headers={"Authorization": f"Token {raw}"}).json()
    assert (answer["valid"], answer["user_name"]) == (True, "bob")
    nobody = Client().get("/apis/listenbrainz/1/validate-token", headers={"Authorization": "Token guessed"})
    assert nobody.json()["valid"] is False
    refused = Client().post("/apis/listenbrainz/1/submit-listens", data={"listen_type": "single", "payload": []},
                            content_type="application/json")
    assert refused.status_code == 401
    assert not Play.objects.exists()


def test_a_logged_in_session_is_not_a_listenbrainz_credential(alice, song):
    """The ListenBrainz-compatible endpoint takes no CSRF token, so it must never take cookies."""
    response = logged_in(alice).post("/apis/listenbrainz/1/submit-listens", content_type="application/json", data={
        "listen_type": "single",
        "payload": [{"listened_at": 1_700_000_000, "track_metadata": {"artist_name": "Aphex Twin",
                                                                       "track_name": "Windowlicker"}}]})
    assert response.status_code == 401
    assert not Play.objects.exists()


def test_an_inactive_users_token_submits_nothing(alice, song):
    headers = {"Authorization": f"Token {token_create(user=alice, name='scrobbler')[1]}"}
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    response = Client().post("/apis/listenbrainz/1/submit-listens", headers=headers, content_type="application/json",
                             data={"listen_type": "playing_now", "payload": [{"track_metadata": {
                                 "artist_name": "Aphex Twin", "track_name": "Windowlicker"}}]})
    assert response.status_code == 401
    assert Client().get("/api/scrobbling/links", headers={"Authorization": headers["Authorization"].replace(
        "Token", "Bearer")}).status_code == 401


def test_a_forged_api_write_from_another_site_is_refused(private_room, alice):
    """alice is logged in; another site makes her browser post to the API without the CSRF token."""
    before = snapshot(private_room)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    for content_type in ("application/json", "text/plain"):  # text/plain needs no CORS preflight
        response = browser.post(f"/api/rooms/{private_room.slug}/control", data='{"action": "next"}',
                                content_type=content_type)
        assert response.status_code == 403, content_type
        assert response["Content-Type"].startswith("application/json")
    assert snapshot(private_room) == before


def test_a_playlists_stream_token_plays_music_but_is_not_an_api_token(alice, song):
    playlist = logged_in(alice).get(f"/library/albums/{song.album_id}/playlist.m3u").content.decode()
    url = next(line for line in playlist.splitlines() if line.startswith("http"))
    token = url.split("token=", 1)[1].split("&")[0]
    client = Client()
    assert client.head(f"/library/tracks/{song.pk}/stream?token={token}").status_code in {200, 410}  # no file here
    for method, path in [("get", "/api/scrobbling/scrobbles"), ("get", "/api/me"),
                         ("post", "/api/scrobbling/now-playing")]:
        response = getattr(client, method)(path, data={"track_id": song.pk} if method == "post" else None,
                                           content_type="application/json", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, path
