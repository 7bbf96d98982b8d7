import pytest

from rooms.models import Membership, PlaybackState, QueueEntry, Room

pytestmark = pytest.mark.django_db(transaction=True)


def login(client, user):
    client.force_login(user)
    return client


def test_room_list_shows_public_rooms_and_mine(client, room, people):
    from rooms import services

    secret = services.room_create(owner=people["out"], name="Secret", visibility="private")
    body = login(client, people["lis"]).get("/rooms/").content.decode()
    assert "Friday Mix" in body
    assert "Secret" not in body
    assert "Secret" in login(client, people["out"]).get("/rooms/").content.decode()
    assert secret.slug == "secret"


def test_create_room_form_makes_the_creator_host(client, people):
    response = login(client, people["out"]).post("/rooms/new", {"name": "Late Night", "visibility": "public", "control_policy": "everyone"})
    room = Room.objects.get(name="Late Night")
    assert response.status_code == 302
    assert response["Location"] == f"/rooms/{room.slug}/"
    assert Membership.objects.get(room=room, user=people["out"]).role == "host"
    assert PlaybackState.objects.get(room=room).version == 0


def test_create_room_form_keeps_input_on_error(client, people):
    response = login(client, people["out"]).post("/rooms/new", {"name": "Late", "visibility": "secretive", "control_policy": "djs"})
    assert response.status_code == 400
    assert 'value="Late"' in response.content.decode()


def test_room_page_renders_for_host_with_controls_and_settings(client, room, people):
    body = login(client, people["hana"]).get(f"/rooms/{room.slug}/").content.decode()
    assert 'data-control="toggle"' in body
    assert "Room settings" in body
    assert f"/ws/rooms/{room.slug}/" in body


def test_listener_page_has_no_controls_in_a_djs_room(client, room, people):
    body = login(client, people["lis"]).get(f"/rooms/{room.slug}/").content.decode()
    assert 'data-control="toggle"' not in body
    assert "Room settings" not in body


def test_private_room_needs_the_invite_link(client, people):
    from rooms import services

    private = services.room_create(owner=people["hana"], name="Inner Circle", visibility="private")
    login(client, people["out"])
    response = client.get(f"/rooms/{private.slug}/")
    assert response.status_code == 403
    assert "private" in response.content.decode()
    assert client.get(f"/rooms/{private.slug}/invite/wrong-code").status_code == 403
    response = client.get(f"/rooms/{private.slug}/invite/{private.invite_code}")
    assert response.status_code == 302
    assert client.get(f"/rooms/{private.slug}/").status_code == 200


def test_unknown_room_is_a_404_page(client, people):
    assert login(client, people["out"]).get("/rooms/nowhere/").status_code == 404


def test_queue_search_and_add(client, room, people, tracks):
    login(client, people["hana"])
    body = client.get(f"/rooms/{room.slug}/queue/search", {"q": "flac"}).content.decode()
    flac = next(t for t in tracks if t.title == "Flac Tone")
    assert f'data-add-track="{flac.pk}"' in body
    response = client.post(f"/rooms/{room.slug}/queue", {"op": "add", "track_id": flac.pk}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response.json()["entries"][-1]["track"]["title"] == "Flac Tone"


def test_listener_cannot_edit_the_queue_in_a_djs_room(client, room, people, tracks):
    response = login(client, people["lis"]).post(
        f"/rooms/{room.slug}/queue", {"op": "add", "track_id": tracks[0].pk}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 403
    assert "host and DJs" in response.json()["message"]
    assert QueueEntry.objects.filter(room=room).count() == 3


def test_only_the_host_changes_policy(client, room, people):
    login(client, people["dj"]).post(f"/rooms/{room.slug}/settings", {"name": "X", "visibility": "public", "control_policy": "everyone"})
    room.refresh_from_db()
    assert room.control_policy == "djs"
    login(client, people["hana"]).post(f"/rooms/{room.slug}/settings", {"name": "Friday Mix", "visibility": "private", "control_policy": "host_only"})
    room.refresh_from_db()
    assert (room.visibility, room.control_policy) == ("private", "host_only")


def test_host_sets_roles(client, room, people):
    login(client, people["hana"]).post(f"/rooms/{room.slug}/role", {"user_id": people["lis"].pk, "role": "dj"})
    assert Membership.objects.get(room=room, user=people["lis"]).role == "dj"


def bearer(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_http_api_create_queue_control_and_read(client, people, tokens, tracks):
    response = client.post("/api/rooms", {"name": "API Room"}, content_type="application/json", **bearer(tokens["out"]))
    assert response.status_code == 201
    slug = response.json()["slug"]
    response = client.post(f"/api/rooms/{slug}/queue", {"track_id": tracks[0].pk}, content_type="application/json", **bearer(tokens["out"]))
    assert response.status_code == 201
    response = client.post(f"/api/rooms/{slug}/control", {"action": "play"}, content_type="application/json", **bearer(tokens["out"]))
    assert response.status_code == 200
    # nobody is connected to wait for: the room loads the first entry and starts at once
    assert response.json()["status"] == "playing"
    assert response.json()["version"] == 2
    room = client.get(f"/api/rooms/{slug}", **bearer(tokens["lis"])).json()
    assert room["state"]["version"] == 2
    assert room["queue"]["entries"][0]["track"]["id"] == tracks[0].pk


def test_http_api_applies_the_same_rules(client, room, tokens, tracks):
    response = client.post(f"/api/rooms/{room.slug}/control", {"action": "play"}, content_type="application/json", **bearer(tokens["out"]))
    assert response.status_code == 403
    response = client.post(f"/api/rooms/{room.slug}/control", {"action": "seek"}, content_type="application/json", **bearer(tokens["hana"]))
    assert response.status_code == 400
    assert response.json() == {"error": "invalid", "message": "seek needs position_s.", "field": "position_s",
                               "state": None}
    response = client.post(f"/api/rooms/{room.slug}/control", {"action": "pause", "version": 99}, content_type="application/json", **bearer(tokens["hana"]))
    assert response.status_code == 409
    assert response.json()["state"]["version"] == 0
    assert client.post(f"/api/rooms/{room.slug}/join", {}, content_type="application/json", **bearer(tokens["out"])).json()["role"] == "listener"
    assert client.get("/api/rooms/nowhere", **bearer(tokens["out"])).status_code == 404


def test_boosted_navigation_into_a_room_becomes_a_full_page_load(client, room, people):
    response = login(client, people["lis"]).get(f"/rooms/{room.slug}/", HTTP_HX_REQUEST="true", HTTP_HX_BOOSTED="true")
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/rooms/{room.slug}/"
