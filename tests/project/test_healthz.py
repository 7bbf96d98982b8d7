import shutil
import socket
import subprocess
import time

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own, so that it can be stopped."""
    port = _free_port()
    process = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield process, f"redis://127.0.0.1:{port}/0"
    if process.poll() is None:
        process.kill()
    process.wait()


def test_healthz_is_ok_when_database_and_redis_answer(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_healthz_is_public_and_not_cached(client, db):
    response = client.get("/healthz")
    assert "no-cache" in response["Cache-Control"]


def test_healthz_reports_a_stopped_redis_as_503(client, db, settings, private_redis):
    process, url = private_redis
    settings.REDIS_URL = url
    assert client.get("/healthz").status_code == 200
    process.terminate()
    process.wait(timeout=10)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["down"] == ["redis"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("down")


def test_healthz_reports_a_broken_database_as_503(client, db, monkeypatch):
    from django.db import connection

    class RefusingConnection:
        def cursor(self):
            raise connection.Database.OperationalError("connection refused")

    monkeypatch.setattr("project.health.connection", RefusingConnection())
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["database"]
