"""The Live pages and /api/live/: adding by URL, start/stop answered at once and idempotent,
permissions, message paging, stats and export."""

from __future__ import annotations

import csv
import io
import json

import pytest

from livefeed import storage
from livefeed.models import LiveChannel, LiveMessage
from project.accounts.services import token_create
from tests.livefeed.conftest import chat

DOUYIN = "https://live.douyin.com/123456789"


@pytest.fixture
def alice_api(client, alice):
    _, raw = token_create(user=alice, name="api")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


@pytest.fixture
def bob_api(bob):
    _, raw = token_create(user=bob, name="api")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_adding_a_channel_by_url_answers_201_then_200_with_the_same_one(client, alice_api):
    first = client.post("/api/live/channels", {"url": DOUYIN}, content_type="application/json", **alice_api)
    assert first.status_code == 201, first.content
    again = client.post("/api/live/channels", {"url": DOUYIN + "?from=share"}, content_type="application/json",
                        **alice_api)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    body = first.json()
    assert body["platform"] == "douyin"
    assert body["ref"] == "123456789"
    assert body["status"]["state"] == "idle"
    assert body["websocket"] == f"/ws/live/{body['id']}/"


@pytest.mark.parametrize("url", ["https://example.com/live/1", "", "x" * 3000, "javascript:alert(1)"])
def test_a_url_that_is_not_a_live_room_is_a_400_naming_url(client, alice_api, url):
    response = client.post("/api/live/channels", {"url": url}, content_type="application/json", **alice_api)
    assert response.status_code == 400
    assert response.json()["field"] == "url"
    assert not LiveChannel.objects.exists()


def test_start_and_stop_answer_202_at_once_and_twice_change_nothing_more(client, alice_api, channel):
    for _ in range(2):
        response = client.post(f"/api/live/channels/{channel.pk}/start", **alice_api)
        assert response.status_code == 202
        assert response.json()["desired"] == "follow"
    assert LiveChannel.objects.get(pk=channel.pk).desired == "follow"
    for _ in range(2):
        response = client.post(f"/api/live/channels/{channel.pk}/stop", **alice_api)
        assert response.status_code == 202
    assert LiveChannel.objects.get(pk=channel.pk).desired == "stop"


def test_only_who_added_a_channel_or_staff_may_start_stop_or_delete_it(client, bob_api, channel):
    for method, path in (("post", "start"), ("post", "stop")):
        response = getattr(client, method)(f"/api/live/channels/{channel.pk}/{path}", **bob_api)
        assert response.status_code == 403
    assert client.delete(f"/api/live/channels/{channel.pk}", **bob_api).status_code == 403
    # ...but anyone logged in may watch it
    assert client.get(f"/api/live/channels/{channel.pk}/status", **bob_api).status_code == 200
    assert LiveChannel.objects.filter(pk=channel.pk, desired="stop").exists()


def test_the_api_needs_a_login(client, channel):
    assert client.get("/api/live/channels").status_code == 401
    assert client.post(f"/api/live/channels/{channel.pk}/start").status_code == 401


def test_unknown_channels_and_sessions_are_404(client, alice_api):
    assert client.get("/api/live/channels/999999/status", **alice_api).status_code == 404
    assert client.get("/api/live/sessions/999999/messages", **alice_api).status_code == 404


def test_messages_page_oldest_first_after_an_id(client, alice_api, channel, session):
    storage.messages_store(channel_id=channel.pk, session_id=session.pk,
                           messages=[chat(f"line {n}", by=n % 3) for n in range(7)])
    seen, after = [], None
    while True:
        query = {"limit": 3} | ({"after_id": after} if after else {})
        body = client.get(f"/api/live/sessions/{session.pk}/messages", query, **alice_api).json()
        seen += [item["content"] for item in body["items"]]
        after = body["next_after_id"]
        if after is None:
            break
    assert seen == [f"line {n}" for n in range(7)]
    item = client.get(f"/api/live/sessions/{session.pk}/messages", {"limit": 1}, **alice_api).json()["items"][0]
    assert set(item) == {"id", "session_id", "type", "platform_msg_id", "ts_ms", "received_ms", "user", "content", "extra"}


@pytest.mark.parametrize(("query", "field"), [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
                                              ({"type": "nonsense"}, "type"), ({"after_id": -1}, "after_id")])
def test_bad_message_queries_are_400_naming_the_field(client, alice_api, session, query, field):
    response = client.get(f"/api/live/sessions/{session.pk}/messages", query, **alice_api)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_session_stats_have_top_chatters_and_hot_words(client, alice_api, channel, session):
    storage.messages_store(channel_id=channel.pk, session_id=session.pk,
                           messages=[chat("主播唱得真好听", by=1), chat("真好听 [比心]", by=1), chat("好听", by=2)])
    body = client.get(f"/api/live/sessions/{session.pk}/stats", **alice_api).json()
    assert body["top_chatters"][0]["user_id"] == "u1"
    assert "[比心]" in {w["word"] for w in body["hot_words"]["session"]}


def test_the_live_page_lists_channels_and_adds_by_url_keeping_bad_input(alice_client):
    page = alice_client.get("/live/")
    assert page.status_code == 200
    assert "No live channels yet" in page.content.decode()
    bad = alice_client.post("/live/", {"url": "https://example.com/nope"})
    assert bad.status_code == 400
    html = bad.content.decode()
    assert "https://example.com/nope" in html
    assert "Not a live room" in html
    good = alice_client.post("/live/", {"url": DOUYIN})
    channel = LiveChannel.objects.get()
    assert good.status_code == 302
    assert good.url == f"/live/{channel.pk}/"
    page = alice_client.get(f"/live/{channel.pk}/").content.decode()
    assert 'id="live-config"' in page
    assert "Start" in page


def test_start_and_stop_buttons_change_what_is_wanted(alice_client, channel):
    alice_client.post(f"/live/{channel.pk}/start")
    assert LiveChannel.objects.get(pk=channel.pk).desired == "follow"
    alice_client.post(f"/live/{channel.pk}/stop")
    assert LiveChannel.objects.get(pk=channel.pk).desired == "stop"


def test_pages_need_a_login(client, channel):
    for path in ("/live/", f"/live/{channel.pk}/"):
        assert client.get(path).status_code == 302


def test_a_session_exports_every_message_as_csv_and_json(alice_client, channel, session):
    storage.messages_store(channel_id=channel.pk, session_id=session.pk,
                           messages=[chat(f"第{n}条, with a comma", by=n) for n in range(5)])
    response = alice_client.get(f"/live/sessions/{session.pk}/export.csv")
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["id", "type", "ts_ms"]
    assert len(rows) == 6
    assert rows[1][6] == "第0条, with a comma"
    response = alice_client.get(f"/live/sessions/{session.pk}/export.json")
    items = json.loads(b"".join(response.streaming_content))
    assert [item["content"] for item in items] == [f"第{n}条, with a comma" for n in range(5)]
    page = alice_client.get(f"/live/sessions/{session.pk}/", {"q": "第3"}).content.decode()
    assert "第3条" in page
    assert "第2条" not in page


def test_removing_a_channel_takes_its_messages(client, alice_api, channel, session):
    storage.messages_store(channel_id=channel.pk, session_id=session.pk, messages=[chat("hi")])
    assert client.delete(f"/api/live/channels/{channel.pk}", **alice_api).status_code == 204
    assert not LiveChannel.objects.filter(pk=channel.pk).exists()
    assert not LiveMessage.objects.exists()


def test_the_channel_page_lists_its_regulars(alice_client, channel, session):
    storage.messages_store(channel_id=channel.pk, session_id=session.pk,
                           messages=[chat("又来了", by=7), chat("hi", by=7), chat("first time", by=8)])
    page = alice_client.get(f"/live/{channel.pk}/").content.decode()
    regulars = page.split("<h2>Regulars</h2>")[1].split("</div>")[0]
    assert regulars.index("viewer 7") < regulars.index("viewer 8")
