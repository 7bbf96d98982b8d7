"""project/accounts: who may see each page, who may change what, and what happens with
an id that belongs to someone else (the cases not covered in test_tokens / test_signup)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from project.accounts import services
from project.accounts.models import ApiToken

pytestmark = pytest.mark.django_db


def test_settings_page_lists_only_your_own_tokens(alice_client, alice, bob):
    services.token_create(user=alice, name="alice-phone")
    services.token_create(user=bob, name="bob-laptop")
    body = alice_client.get("/accounts/settings/").content.decode()
    assert "alice-phone" in body
    assert "bob-laptop" not in body


def test_anonymous_cannot_revoke_a_token(client, alice):
    token, _ = services.token_create(user=alice, name="mine")
    response = client.post(f"/accounts/tokens/{token.pk}/revoke")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    token.refresh_from_db()
    assert token.revoked_at is None


def test_revoking_needs_post_and_an_unknown_id_is_explained(alice_client, alice):
    token, _ = services.token_create(user=alice, name="mine")
    assert alice_client.get(f"/accounts/tokens/{token.pk}/revoke").status_code == 405
    response = alice_client.post("/accounts/tokens/987654/revoke", follow=True)
    assert "No such token among yours" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is None


def test_the_api_me_is_the_token_owner_and_needs_a_credential(client, alice, bob):
    _, raw = services.token_create(user=alice, name="mine")
    assert client.get("/api/me").status_code == 401
    me = client.get("/api/me", HTTP_AUTHORIZATION=f"Bearer {raw}").json()
    assert (me["id"], me["username"]) == (alice.pk, "alice")


def test_a_logged_in_user_is_sent_home_from_signup(alice_client, settings):
    settings.SIGNUP = "open"
    response = alice_client.get("/accounts/signup/")
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_tokens_cannot_be_added_in_the_admin_and_revoking_there_revokes(client, alice):
    admin = get_user_model().objects.create_superuser(username="root", password="an-admin-password-77")
    client.force_login(admin)
    assert client.get("/admin/accounts/apitoken/add/").status_code == 403
    token, raw = services.token_create(user=alice, name="mine")
    response = client.post("/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert services.token_authenticate(raw) is None


def test_staff_who_are_not_superusers_cannot_open_the_admin_pages_of_other_models(client, staff):
    client.force_login(staff)
    assert client.get("/admin/accounts/apitoken/").status_code == 403
    assert client.get("/admin/accounts/invite/").status_code == 403


def test_non_staff_cannot_reach_the_admin(alice_client):
    response = alice_client.get("/admin/accounts/invite/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    assert ApiToken.objects.count() == 0
