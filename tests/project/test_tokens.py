import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from project.accounts import services
from project.accounts.models import ApiToken

pytestmark = pytest.mark.django_db


def bearer(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_token_is_stored_only_as_a_hash(alice):
    token, raw = services.token_create(user=alice, name="laptop")
    assert raw.startswith("chorus_")
    assert raw not in token.digest
    assert not ApiToken.objects.filter(digest=raw).exists()
    assert len(token.digest) == 64


def test_api_accepts_a_valid_token(client, alice):
    _, raw = services.token_create(user=alice, name="script")
    response = client.get("/api/me", **bearer(raw))
    assert response.status_code == 200
    assert response.json()["username"] == "alice"
    assert ApiToken.objects.get(user=alice).last_used_at is not None


def test_api_refuses_a_revoked_token(client, alice):
    token, raw = services.token_create(user=alice, name="old phone")
    services.token_revoke(user=alice, token_id=token.pk)
    response = client.get("/api/me", **bearer(raw))
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer chorus_not-a-real-token", "Basic YWxpY2U6cHc=", "Token abc"])
def test_api_refuses_missing_or_unknown_tokens(client, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/api/me", **extra)
    assert response.status_code == 401
    assert "message" in response.json()


def test_inactive_users_token_is_refused(client, alice):
    _, raw = services.token_create(user=alice, name="script")
    alice.is_active = False
    alice.save()
    assert client.get("/api/me", **bearer(raw)).status_code == 401


def test_browser_session_works_for_the_api(alice_client):
    assert alice_client.get("/api/me").json()["username"] == "alice"


def test_nobody_revokes_someone_elses_token(alice, bob):
    token, _ = services.token_create(user=alice, name="mine")
    with pytest.raises(PermissionDenied):
        services.token_revoke(user=bob, token_id=token.pk)
    token.refresh_from_db()
    assert token.revoked_at is None


def test_token_needs_a_name(alice):
    with pytest.raises(ValidationError):
        services.token_create(user=alice, name="   ")


def test_settings_page_creates_shows_once_and_revokes(alice_client, alice):
    response = alice_client.post("/accounts/settings/", {"name": "phone"}, follow=True)
    assert response.status_code == 200
    raw = response.context["new_token"]
    assert raw.startswith("chorus_")
    assert raw in response.content.decode()
    assert raw not in alice_client.get("/accounts/settings/").content.decode()
    token = ApiToken.objects.get(user=alice)
    response = alice_client.post(f"/accounts/tokens/{token.pk}/revoke", follow=True)
    assert "revoked" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_settings_page_keeps_input_and_explains_an_empty_name(alice_client):
    response = alice_client.post("/accounts/settings/", {"name": ""})
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()


def test_revoking_a_token_of_someone_else_from_the_page_fails_cleanly(client, alice, bob):
    token, _ = services.token_create(user=alice, name="mine")
    client.force_login(bob)
    response = client.post(f"/accounts/tokens/{token.pk}/revoke", follow=True)
    assert "No such token" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is None


def test_create_api_token_command_prints_a_working_token(client, alice, capsys):
    call_command("create_api_token", "alice")
    raw = capsys.readouterr().out.strip()
    assert client.get("/api/me", **bearer(raw)).status_code == 200


def test_create_api_token_command_names_an_unknown_user(db):
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("create_api_token", "ghost")
