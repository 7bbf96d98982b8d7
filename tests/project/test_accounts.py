import pytest
from django.contrib.auth import get_user_model

from tests.factories import DEFAULT_PASSWORD

pytestmark = pytest.mark.django_db


def test_signup_creates_the_account_and_logs_in(client, settings):
    settings.SIGNUP = "open"
    response = client.post(
        "/accounts/signup/", {"username": "carol", "password1": "a-long-unusual-pass", "password2": "a-long-unusual-pass"}, follow=True
    )
    assert response.status_code == 200
    assert response.context["user"].username == "carol"
    assert "Welcome to Chorus, carol" in response.content.decode()


def test_signup_with_mismatched_passwords_keeps_the_username(client, settings):
    settings.SIGNUP = "open"
    response = client.post("/accounts/signup/", {"username": "carol", "password1": "a-long-unusual-pass", "password2": "other"})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'value="carol"' in body
    assert "didn’t match" in body or "didn't match" in body
    assert not get_user_model().objects.filter(username="carol").exists()


def test_login_and_logout(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": DEFAULT_PASSWORD}, follow=True)
    assert response.context["user"].is_authenticated
    response = client.post("/accounts/logout/", follow=True)
    assert not response.context["user"].is_authenticated


def test_wrong_password_is_explained_and_username_kept(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    body = response.content.decode()
    assert "Please enter a correct username and password" in body
    assert 'value="alice"' in body


def test_password_change(alice_client, alice):
    response = alice_client.post(
        "/accounts/password/",
        {"old_password": DEFAULT_PASSWORD, "new_password1": "brand-new-secret-77", "new_password2": "brand-new-secret-77"},
        follow=True,
    )
    assert response.status_code == 200
    alice.refresh_from_db()
    assert alice.check_password("brand-new-secret-77")


@pytest.mark.parametrize("path", ["/library/", "/library/tracks/", "/rooms/", "/scrobbles/", "/catalog/", "/live/", "/accounts/settings/"])
def test_pages_require_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_forms_are_csrf_protected(alice):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post("/accounts/settings/", {"name": "x"}).status_code == 403


def test_navigation_marks_the_current_section(alice_client):
    body = alice_client.get("/rooms/").content.decode()
    assert 'href="/rooms/" class="active" aria-current="page"' in body
    for label in ("Library", "Rooms", "Scrobbles", "Catalog", "Live"):
        assert f">{label}</a>" in body


def test_unknown_page_is_a_404_in_the_site_layout(alice_client):
    response = alice_client.get("/no/such/page")
    assert response.status_code == 404
    body = response.content.decode()
    assert "Nothing here" in body
    assert 'class="mainnav"' in body


def test_server_error_page_uses_the_layout_and_shows_the_request_id(rf):
    from project.views import server_error

    request = rf.get("/")
    request.id = "abc123"
    response = server_error(request)
    assert response.status_code == 500
    assert "abc123" in response.content.decode()
    assert "Something went wrong" in response.content.decode()
