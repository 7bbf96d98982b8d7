"""The live-feed admin: every model has a page that opens; its actions go through the services."""

from __future__ import annotations

import pytest

from livefeed.models import LiveChannel, LiveMessage, LiveStateChange
from livefeed.storage import messages_store
from tests.livefeed.conftest import chat, gift

pytestmark = pytest.mark.django_db

MODELS = ["livechannel", "livesession", "livemessage", "liveuserstat", "liveminute", "livewordminute",
          "livesessionword", "livestatechange"]


@pytest.mark.parametrize("model", MODELS)
def test_every_live_model_has_an_admin_page(admin_client, session, model):
    messages_store(channel_id=session.channel_id, session_id=session.pk,
                   messages=[chat("主播好 [比心]"), gift(combo="c", count=2)])
    response = admin_client.get(f"/admin/livefeed/{model}/")
    assert response.status_code == 200


def test_messages_are_read_only_in_the_admin(admin_client, session):
    result = messages_store(channel_id=session.channel_id, session_id=session.pk, messages=[chat("hi")])
    row_id = result.stored[0]["id"]
    page = admin_client.get(f"/admin/livefeed/livemessage/{row_id}/change/")
    assert page.status_code == 200
    assert b'name="content"' not in page.content
    assert admin_client.get("/admin/livefeed/livemessage/add/").status_code == 403


def test_the_follow_action_sets_the_wish_through_the_service(admin_client, channel, published):
    with published.on_commit():
        response = admin_client.post("/admin/livefeed/livechannel/", {
            "action": "follow", "_selected_action": [channel.pk]})
    assert response.status_code == 302
    assert LiveChannel.objects.get(pk=channel.pk).desired == "follow"
    assert [event["desired"] for _, event in published.of_type("live.status")] == ["follow"]


def test_deleting_a_channel_in_the_admin_removes_its_messages(admin_client, session):
    messages_store(channel_id=session.channel_id, session_id=session.pk, messages=[chat("bye")])
    LiveStateChange.objects.create(channel_id=session.channel_id, from_state="idle", to_state="starting")
    response = admin_client.post(f"/admin/livefeed/livechannel/{session.channel_id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not LiveChannel.objects.exists()
    assert not LiveMessage.objects.exists()


def test_the_delete_confirmation_does_not_list_every_message(admin_client, session, django_assert_max_num_queries):
    messages_store(channel_id=session.channel_id, session_id=session.pk, messages=[chat(f"m{n}") for n in range(300)])
    with django_assert_max_num_queries(15):
        page = admin_client.get(f"/admin/livefeed/livechannel/{session.channel_id}/delete/")
    assert page.status_code == 200
    assert b"its sessions, messages and statistics" in page.content
