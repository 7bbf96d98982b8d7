"""Errors of the JSON API: always JSON, 401 for writes without credentials, a 500 without its
traceback, bounded list offsets, import paths that cannot be used, NUL in addresses."""

import logging

import pytest
from django.test import Client

from project.accounts.models import ApiToken
from project.accounts.services import token_create

pytestmark = pytest.mark.django_db


def test_an_anonymous_write_is_401_not_a_csrf_403(client):
    response = Client(enforce_csrf_checks=True).post("/api/rooms", {"name": "x"}, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_a_write_with_a_revoked_token_is_401(alice):
    _, raw = token_create(user=alice, name="cli")
    ApiToken.objects.filter(user=alice).update(revoked_at="2026-01-01T00:00:00Z")
    response = Client(enforce_csrf_checks=True).post(
        "/api/rooms", {"name": "x"}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_a_session_write_still_needs_the_csrf_token(alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    response = browser.post("/api/rooms", {"name": "x"}, content_type="application/json")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json")
    assert "CSRF" in response.json()["message"]


def test_a_crash_is_a_json_500_with_the_request_id_and_the_traceback_only_in_the_log(alice, monkeypatch, caplog):
    from catalog import selectors

    def broken(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(selectors, "track_search", broken)
    browser = Client(raise_request_exception=False)
    browser.force_login(alice)
    with caplog.at_level(logging.ERROR):
        response = browser.get("/api/library/tracks")
    assert response.status_code == 500
    answer = response.json()
    assert answer["error"] == "server_error"
    assert answer["request_id"] == response["X-Request-ID"]
    assert "secret internals" not in response.content.decode()
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.parametrize("kind", ["tracks", "artists", "albums"])
def test_a_huge_offset_is_a_422_naming_offset(alice_client, kind):
    response = alice_client.get(f"/api/library/{kind}?offset={10**28}")
    assert response.status_code == 422
    answer = response.json()
    assert answer["field"] == "offset"
    assert "offset" in answer["message"]


def test_an_unparseable_body_is_a_json_400(alice_client):
    response = alice_client.post("/api/rooms", b"{not json", content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["message"]


def test_a_body_over_the_upload_limit_is_a_json_413(alice_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = alice_client.post("/api/rooms", b'{"name": "' + b"x" * 2000 + b'"}', content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


@pytest.mark.parametrize(
    ("path", "fragment"),
    [("x" * 5000, "too long"), ("music\x00/etc", "NUL"), ("music/" + "a" * 300, "Cannot use that path")],
)
def test_an_import_path_that_cannot_be_used_is_a_400(staff_client, library_dir, path, fragment):
    response = staff_client.post("/api/library/imports", {"path": path}, content_type="application/json")
    assert response.status_code == 400, response.content
    answer = response.json()
    assert (answer["error"], answer["field"]) == ("invalid", "path")
    assert fragment in answer["message"]


def test_the_import_form_refuses_a_nul_byte_too(staff_client, library_dir):
    from django.core.exceptions import ValidationError

    from catalog.services import validate_import_path

    with pytest.raises(ValidationError, match="NUL"):
        validate_import_path("music\x00", restrict_to_library=True)


@pytest.mark.parametrize("url", ["/api/rooms/%00", "/api/library/tracks?q=a%00b", "/rooms/%00/"])
def test_a_nul_in_the_address_is_a_400_not_a_500(alice_client, url):
    response = alice_client.get(url)
    assert response.status_code == 400
    if url.startswith("/api/"):
        assert response.json()["error"] == "invalid"


def test_an_unknown_api_address_is_json(alice_client):
    response = alice_client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_a_method_an_endpoint_does_not_take_is_a_json_405(alice_client):
    response = alice_client.put("/api/rooms", {}, content_type="application/json")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert "POST" in response["Allow"]
