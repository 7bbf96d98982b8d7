"""Test environment defaults, loaded before Django (pytest -p tests.env).

Real PostgreSQL and Redis: DATABASE_URL and REDIS_URL win when set; otherwise the local
servers on their standard ports. Tests use their own Redis database number.

CHORUS_TEST_DB=sqlite runs the suite on SQLite instead, the database `make run` ships: a
file in a private temporary folder (never in memory, so that live servers, other processes,
can open it), whatever DATABASE_URL says. Tests marked `postgres_only` are left out there,
and with CHORUS_TEST_DATABASE_TESTS_ONLY=1 (make test's run after the first database) the
tests that never touch the database (see tests/conftest.py).
"""

import os
import tempfile
from pathlib import Path

DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/chorus",
    "REDIS_URL": "redis://127.0.0.1:6379/13",
    "SECRET_KEY": "test-only-" + "x7Kp2qLm9vB4nR8sT1wY5zC3dF6gH0jA" * 2,
    "DEBUG": "0",
    "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
    "SECURE_SSL_REDIRECT": "0",
    "SESSION_COOKIE_SECURE": "0",
    "CSRF_COOKIE_SECURE": "0",
    "LOG_LEVEL": "WARNING",
    "STATIC_MANIFEST": "0",
}
DATABASES = {"postgres", "sqlite"}

DATABASE = os.environ.get("CHORUS_TEST_DB", "").strip().lower() or "postgres"
if DATABASE not in DATABASES:
    raise SystemExit(f"CHORUS_TEST_DB={DATABASE!r} is not one of {', '.join(sorted(DATABASES))}")
if DATABASE == "sqlite":
    # One folder per test database name, so that parallel runs with their own
    # TEST_DATABASE_NAME never share a file; owner-only like var/.
    _folder = Path(tempfile.gettempdir()) / f"chorus-{os.environ.get('TEST_DATABASE_NAME') or 'test'}-{os.getuid()}"
    _folder.mkdir(mode=0o700, exist_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{_folder / 'chorus.sqlite3'}"

for key, value in DEFAULTS.items():
    os.environ.setdefault(key, value)
# Never read a developer's .env into the test run.
os.environ["CHORUS_ENV_FILE"] = os.devnull
