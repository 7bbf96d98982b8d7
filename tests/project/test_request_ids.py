import json
import logging

import pytest

from project.logs import JsonFormatter, RequestIdFilter, request_id_var


@pytest.mark.django_db
def test_a_request_id_is_generated_and_echoed(client):
    response = client.get("/healthz")
    assert len(response["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_the_clients_request_id_is_kept(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="edge-42.a")
    assert response["X-Request-ID"] == "edge-42.a"


@pytest.mark.django_db
def test_an_unsafe_request_id_is_replaced(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nINJECTED")
    assert "INJECTED" not in response["X-Request-ID"]
    assert len(response["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_every_log_line_of_a_request_carries_its_id(client, caplog):
    caplog.set_level(logging.INFO, logger="chorus.access")
    response = client.get("/healthz", HTTP_X_REQUEST_ID="trace-me")
    assert response.status_code == 200
    records = [r for r in caplog.records if r.name == "chorus.access"]
    assert records
    RequestIdFilter().filter(records[-1])
    line = json.loads(JsonFormatter().format(records[-1]))
    assert line["request_id"] == "trace-me"
    assert line["path"] == "/healthz"
    assert line["status"] == 200


def test_json_log_lines_never_carry_request_objects_or_secrets():
    record = logging.makeLogRecord({"msg": "hello %s", "args": ("world",), "password": "hunter2", "track_id": 7})
    token = request_id_var.set("rid-1")
    try:
        RequestIdFilter().filter(record)
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello world"
    assert line["request_id"] == "rid-1"
    assert line["track_id"] == 7
    assert "password" not in line


def test_celery_tasks_carry_the_request_id():
    from project.celery import _attach_request_id, _restore_request_id

    headers = {}
    token = request_id_var.set("from-web")
    try:
        _attach_request_id(headers=headers)
    finally:
        request_id_var.reset(token)
    assert headers["request_id"] == "from-web"

    class Task:
        class request:
            request_id = "from-web"

    _restore_request_id(task=Task)
    assert request_id_var.get() == "from-web"
