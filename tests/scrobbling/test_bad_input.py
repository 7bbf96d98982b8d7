"""Hostile input to the scrobbling API: every refusal is a 4xx JSON answer naming the field,
nothing is recorded, and nothing reaches a 500 or the error log."""

from __future__ import annotations

import json
import logging

import pytest

from project.accounts.services import token_create
from scrobbling import nowplaying
from scrobbling.models import Play
from tests.factories import make_track


@pytest.fixture
def song(db):
    return make_track("Windowlicker", "Aphex Twin", "Windowlicker", duration_s=366.0)


@pytest.fixture
def post(client, alice):
    _, raw = token_create(user=alice, name="player")

    def send(url, body):
        content = body if isinstance(body, str) else json.dumps(body)
        response = client.post(url, data=content, content_type="application/json",
                               headers={"Authorization": f"Bearer {raw}"})
        return response.status_code, response.json()

    return send


@pytest.fixture(autouse=True)
def no_errors_logged(caplog):
    yield
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(("body", "field"), [
    ("[" * 20000, None),
    ('{"track_id": 1, "played_at": NaN}', "played_at"),
    ('{"track_id": 1, "played_at": 1700000000, "played_s": Infinity}', "played_s"),
    ('{"track_id": 1, "played_at": 1700000000, "played_s": 1e400}', "played_s"),
    ('{"track_id": ' + "1" * 31 + ', "played_at": 1700000000}', "track_id"),
    ('[{"track_id": 1, "played_at": "2026-01-01T00:00:00\\u0000Z"}]', "[0].played_at"),
    ('{"track_id": 1, "played_at": "\\ud800"}', "played_at"),
], ids=["deeply_nested", "nan", "infinity", "overflowing_float", "huge_id", "nul", "lone_surrogate"])
def test_json_the_server_cannot_keep_is_refused_naming_the_field(post, song, body, field):
    status, answer = post("/api/scrobbling/scrobbles", body)
    assert status == 400, answer
    assert answer["error"] == "invalid"
    if field:
        assert answer["field"] == field
        assert field.lstrip("[0].") in answer["message"]
    else:
        assert "nested too deeply" in answer["message"]
    assert not Play.objects.exists()


@pytest.mark.parametrize(("played_s", "needle"), [(-1, "played_s"), (10**9, "played_s"), ("300", "played_s")])
def test_played_s_out_of_range_is_refused(post, song, played_s, needle):
    status, answer = post("/api/scrobbling/scrobbles",
                          {"track_id": song.pk, "played_at": 1_700_000_000, "played_s": played_s})
    assert status == 400
    assert needle in answer["message"]
    assert not Play.objects.exists()


@pytest.mark.parametrize("track_id", [{"id": 1}, [1], "1", 1.5, True])
def test_a_track_id_of_the_wrong_type_is_refused(post, song, track_id):
    status, answer = post("/api/scrobbling/scrobbles", [{"track_id": track_id, "played_at": 1_700_000_000}])
    assert status == 400
    assert answer["rejected"][0]["message"] == "track_id must be a whole number."
    assert not Play.objects.exists()


def test_an_id_no_row_can_have_is_not_found(post, song):
    status, answer = post("/api/scrobbling/scrobbles", [{"track_id": 2**53 - 1, "played_at": 1_700_000_000},
                                                        {"track_id": -5, "played_at": 1_700_000_000}])
    assert status == 400
    assert [r["error"] for r in answer["rejected"]] == ["not_found", "not_found"]


@pytest.mark.parametrize("body", [
    {"track_id": 10**30},
    {"track_id": 1, "position_s": "NaN"},
    '{"track_id": 1, "position_s": NaN}',
    '{"track_id": 1, "position_s": Infinity}',
])
def test_now_playing_refuses_numbers_out_of_range(post, song, body):
    if isinstance(body, dict) and body["track_id"] == 1:
        body = {**body, "track_id": song.pk}
    elif isinstance(body, str):
        body = body.replace('"track_id": 1', f'"track_id": {song.pk}')
    status, answer = post("/api/scrobbling/now-playing", body)
    assert 400 <= status < 500, answer
    assert "track_id" in json.dumps(answer) or "position_s" in json.dumps(answer)
    assert nowplaying.now_playing_list() == []


def test_a_negative_position_is_a_400_naming_it(post, song):
    status, answer = post("/api/scrobbling/now-playing", {"track_id": song.pk, "position_s": -3})
    assert (status, answer["field"]) == (400, "position_s")
