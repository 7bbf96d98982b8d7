"""Sign-up as SIGNUP says (closed | invite | open, default invite), and invite links."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone

from project import config
from project.accounts import services
from project.accounts.models import Invite
from tests.project.test_settings import run_manage

pytestmark = pytest.mark.django_db
User = get_user_model()
PASSWORD = "a-long-unusual-pass"


def _signup(client, invite: str | None, username: str = "carol", password2: str = PASSWORD):
    url = "/accounts/signup/" + (f"?invite={invite}" if invite is not None else "")
    return client.post(url, {"username": username, "password1": PASSWORD, "password2": password2})


def _invite_from_page(staff_client, **fields) -> str:
    data = {"max_uses": 1, "expires_in_days": 7, "note": "for carol", **fields}
    response = staff_client.post("/accounts/invites/", data)
    assert response.status_code == 200, response.content.decode()[:2000]
    link = re.search(r'id="new-invite">([^<]+)<', response.content.decode()).group(1)
    assert link.startswith("http://testserver/accounts/signup/?invite=")
    return link.split("?invite=", 1)[1]


# --- the setting --------------------------------------------------------------------


def test_signup_is_by_invite_unless_configured():
    result = run_manage("shell", "-c", "from django.conf import settings; print(settings.SIGNUP)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "invite"


def test_a_bad_signup_mode_stops_start_up_naming_the_setting():
    result = run_manage("check", SIGNUP="maybe")
    assert result.returncode == 2
    assert "SIGNUP='maybe' is not one of closed, invite, open" in result.stderr


def test_signup_mode_is_read_case_insensitively(monkeypatch):
    monkeypatch.setenv("SIGNUP", " Open ")
    assert config.get_choice("SIGNUP", "invite", choices=("closed", "invite", "open")) == "open"


# --- invite mode (the default) --------------------------------------------------------


def test_without_an_invite_there_is_no_form_and_nobody_is_created(client, settings):
    settings.SIGNUP = "invite"
    page = client.get("/accounts/signup/")
    assert page.status_code == 403
    body = page.content.decode()
    assert "needs an invite link" in body
    assert 'name="password1"' not in body
    assert _signup(client, None).status_code == 403
    assert not User.objects.filter(username="carol").exists()


def test_staff_invite_link_signs_up_once(client, staff_client, settings):
    settings.SIGNUP = "invite"
    raw = _invite_from_page(staff_client)
    invite = Invite.objects.get()
    assert raw not in (invite.digest, invite.prefix)
    assert invite.digest != raw
    assert invite.note == "for carol"
    assert invite.max_uses == 1
    assert invite.expires_at - timezone.now() > timedelta(days=6, hours=23)

    staff_client.logout()
    form = client.get(f"/accounts/signup/?invite={raw}")
    assert form.status_code == 200
    assert f'action="/accounts/signup/?invite={raw}"' in form.content.decode()
    response = _signup(client, raw)
    assert response.status_code == 302
    assert client.get("/").context["user"].username == "carol"
    invite.refresh_from_db()
    assert invite.uses == 1

    client.logout()
    again = _signup(client, raw, username="dave")
    assert again.status_code == 403
    assert "already been used" in again.content.decode()
    assert not User.objects.filter(username="dave").exists()


def test_an_invite_with_several_uses_signs_up_that_many(client, staff, settings):
    settings.SIGNUP = "invite"
    invite, raw = services.invite_create(created_by=staff, max_uses=2)
    for name in ("carol", "dave"):
        assert _signup(client, raw, username=name).status_code == 302
        client.logout()
    assert _signup(client, raw, username="erin").status_code == 403
    invite.refresh_from_db()
    assert invite.uses == 2
    assert set(User.objects.filter(username__in=["carol", "dave", "erin"]).values_list("username", flat=True)) == {
        "carol", "dave"}


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda invite: Invite.objects.filter(pk=invite.pk).update(expires_at=timezone.now() - timedelta(seconds=1)),
         "This invite link has expired"),
        (lambda invite: Invite.objects.filter(pk=invite.pk).update(revoked_at=timezone.now()),
         "This invite link was withdrawn"),
        (lambda invite: Invite.objects.filter(pk=invite.pk).update(uses=1), "already been used"),
        (lambda invite: Invite.objects.filter(pk=invite.pk).delete(), "This invite link is not valid"),
    ],
    ids=["expired", "withdrawn", "used", "unknown"],
)
def test_an_unusable_invite_says_why(client, staff, settings, spoil, message):
    settings.SIGNUP = "invite"
    invite, raw = services.invite_create(created_by=staff, expires_in_days=1)
    spoil(invite)
    for response in (client.get(f"/accounts/signup/?invite={raw}"), _signup(client, raw)):
        assert response.status_code == 403
        assert message in response.content.decode()
    assert not User.objects.filter(username="carol").exists()


def test_a_form_error_keeps_the_input_and_the_invite_unused(client, staff, settings):
    settings.SIGNUP = "invite"
    invite, raw = services.invite_create(created_by=staff)
    response = _signup(client, raw, password2="something-else-entirely")
    assert response.status_code == 400
    body = response.content.decode()
    assert 'value="carol"' in body
    assert f"?invite={raw}" in body
    invite.refresh_from_db()
    assert invite.uses == 0
    assert _signup(client, raw).status_code == 302


def test_a_taken_username_does_not_use_the_invite(client, staff, alice, settings):
    settings.SIGNUP = "invite"
    invite, raw = services.invite_create(created_by=staff)
    response = _signup(client, raw, username="alice")
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    invite.refresh_from_db()
    assert invite.uses == 0


@pytest.mark.django_db(transaction=True)
def test_two_signups_at_once_cannot_overuse_an_invite(settings):
    settings.SIGNUP = "invite"
    staff = User.objects.create_user(username="sam", password=PASSWORD, is_staff=True)
    invite, raw = services.invite_create(created_by=staff, max_uses=1)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def sign_up(name: str) -> None:
        try:
            barrier.wait()
            services.account_signup(username=name, password=PASSWORD, invite_token=raw)
            outcomes.append("created")
        except ValidationError as exc:
            outcomes.append(exc.messages[0])
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_up, args=(f"racer{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes.count("created") == 1, outcomes
    assert all("already been used" in outcome for outcome in outcomes if outcome != "created"), outcomes
    invite.refresh_from_db()
    assert invite.uses == 1
    assert User.objects.filter(username__startswith="racer").count() == 1


def test_login_page_says_how_to_get_an_account(client, settings):
    expected = {
        "invite": "Accounts here are by invitation: ask the staff of this server for an invite link.",
        "closed": "The staff of this server create accounts: ask them for one.",
        "open": 'No account yet? <a href="/accounts/signup/">Sign up</a>.',
    }
    for mode, text in expected.items():
        settings.SIGNUP = mode
        body = client.get("/accounts/login/").content.decode()
        assert text in body, mode
        assert ('class="button small">Sign up</a>' in body) == (mode == "open"), mode


# --- closed and open ------------------------------------------------------------------


def test_closed_signup_has_no_form_even_with_an_invite(client, staff, settings):
    settings.SIGNUP = "invite"
    _, raw = services.invite_create(created_by=staff)
    settings.SIGNUP = "closed"
    page = client.get(f"/accounts/signup/?invite={raw}")
    assert page.status_code == 403
    assert "Sign-up is closed on this server" in page.content.decode()
    assert _signup(client, raw).status_code == 403
    assert not User.objects.filter(username="carol").exists()
    with pytest.raises(PermissionDenied):
        services.account_signup(username="carol", password=PASSWORD, invite_token=raw)


def test_open_signup_needs_no_invite(client, settings):
    settings.SIGNUP = "open"
    assert _signup(client, None).status_code == 302
    assert User.objects.filter(username="carol").exists()


# --- the invites page and the admin -------------------------------------------------------


def test_only_staff_see_or_change_invites(client, alice_client, alice, staff, settings):
    invite, _ = services.invite_create(created_by=staff)
    assert alice_client.get("/accounts/invites/").status_code == 403
    assert alice_client.post("/accounts/invites/", {"max_uses": 1}).status_code == 403
    assert alice_client.post(f"/accounts/invites/{invite.pk}/revoke").status_code == 403
    assert Invite.objects.count() == 1
    invite.refresh_from_db()
    assert invite.revoked_at is None
    with pytest.raises(PermissionDenied):
        services.invite_create(created_by=alice)
    alice_client.logout()
    anonymous = client.get("/accounts/invites/")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")


def test_staff_withdraw_an_invite_and_see_its_state(staff_client, staff, settings):
    used, _ = services.invite_create(created_by=staff, note="used one")
    Invite.objects.filter(pk=used.pk).update(uses=1)
    invite, raw = services.invite_create(created_by=staff, note="withdraw me")
    response = staff_client.post(f"/accounts/invites/{invite.pk}/revoke", follow=True)
    assert "withdrawn: its link no longer works" in response.content.decode()
    body = staff_client.get("/accounts/invites/").content.decode()
    assert re.search(rf'data-invite="{invite.pk}".*?badge bad">revoked<', body, re.S)
    assert re.search(rf'data-invite="{used.pk}".*?badge">used<', body, re.S)
    assert raw not in body
    assert staff_client.post("/accounts/invites/987654/revoke", follow=True).status_code == 200


def test_invite_form_errors_keep_the_input(staff_client):
    response = staff_client.post("/accounts/invites/", {"max_uses": 0, "expires_in_days": 400, "note": "group"})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'value="group"' in body
    assert "greater than or equal to 1" in body
    assert "less than or equal to 365" in body
    assert not Invite.objects.exists()


@pytest.mark.parametrize("fields", [{"max_uses": 0}, {"max_uses": True}, {"max_uses": 1001},
                                    {"expires_in_days": 0}, {"note": "x" * 101}])
def test_invite_create_refuses_out_of_range_values(staff, fields):
    with pytest.raises(ValidationError):
        services.invite_create(created_by=staff, **fields)


def test_staff_create_an_invite_in_the_admin(client, settings):
    settings.SIGNUP = "invite"
    admin = User.objects.create_superuser(username="root", password=PASSWORD)
    client.force_login(admin)
    response = client.post("/admin/accounts/invite/add/", {"note": "from the admin", "max_uses": 3,
                                                            "expires_at_0": "", "expires_at_1": ""}, follow=True)
    assert response.status_code == 200
    body = response.content.decode()
    link = re.search(r"http://testserver/accounts/signup/\?invite=([\w-]+)", body)
    assert link, body[:3000]
    invite = Invite.objects.get()
    assert (invite.note, invite.max_uses, invite.created_by) == ("from the admin", 3, admin)
    client.logout()
    assert _signup(client, link.group(1)).status_code == 302
