"""Start-up configuration: a missing or malformed setting stops start-up with one clear line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
GOOD_KEY = "k3Y-" + "Zq8wE2rT6yU1iO9pA4sD7fG0hJ5kL3xC" * 2


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {
        "PATH": os.environ["PATH"],
        "CHORUS_ENV_FILE": os.devnull,
        "SECRET_KEY": GOOD_KEY,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "chorus.example.org",
        "DATABASE_URL": "sqlite:///:memory:",
        "REDIS_URL": "redis://127.0.0.1:6379/13",
    }
    environment.update(env)
    environment = {key: value for key, value in environment.items() if value is not None}
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=environment, capture_output=True, text=True, timeout=120, cwd=BASE_DIR,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY is required"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be at least 50"),
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"DATABASE_URL": "mysql2://x"}, "DATABASE_URL="),
        ({"DATABASE_URL": "postgres://u:hunter2@db:notaport/x"}, "DATABASE_URL="),
        ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL='http://localhost:6379' is not a"),
        ({"REDIS_URL": "redis://localhost:port/0"}, "REDIS_URL='redis://localhost:port/0' has an invalid port"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS is required when DEBUG=0"),
        ({"DATABASE_CONN_MAX_AGE": "soon"}, "DATABASE_CONN_MAX_AGE='soon' is not a whole number"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL='LOUD'"),
        ({"DATABASE_URL": "postgres://u@127.0.0.1:5432/x", "DATABASE_CONN_MAX_AGE": "60"},
         "DATABASE_CONN_MAX_AGE must be 0 while DATABASE_POOL=1"),
        ({"ENCRYPTION_KEYS": "not-a-key"}, "ENCRYPTION_KEYS: key 1 is not a Fernet key"),
        ({"LASTFM_API_ROOT": "ftp://x"}, "LASTFM_API_ROOT="),
        ({"LIBRARY_DIR": "/etc/hostname"}, "LIBRARY_DIR='/etc/hostname' exists but is not a directory"),
    ],
)
def test_bad_setting_stops_start_up_with_one_line_naming_it(env, named):
    result = run_manage("check", **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chorus: configuration error: ")
    assert named in lines[0]
    assert "Traceback" not in result.stderr


def test_a_password_in_a_bad_database_url_is_not_printed():
    result = run_manage("check", DATABASE_URL="postgres://u:hunter2@db:notaport/x")
    assert "hunter2" not in result.stderr


def test_deploy_check_passes_with_debug_off():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_asgi_app_reports_config_errors_the_same_way():
    environment = {"PATH": os.environ["PATH"], "CHORUS_ENV_FILE": os.devnull, "DEBUG": "0"}
    result = subprocess.run(
        [sys.executable, "-c", "import project.asgi"], env=environment, capture_output=True, text=True,
        timeout=60, cwd=BASE_DIR,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "chorus: configuration error: SECRET_KEY is required but not set (see .env.example)"


def test_celery_worker_reports_config_errors_in_one_line(tmp_path):
    environment = {"PATH": os.environ["PATH"], "CHORUS_ENV_FILE": os.devnull, "DEBUG": "maybe"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "celery"), "--workdir", str(BASE_DIR), "-A", "project", "worker"],
        env=environment, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "chorus: configuration error: DEBUG='maybe' is not a boolean (use 1/0, true/false, yes/no)"
    ]
