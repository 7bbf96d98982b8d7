"""Test environment defaults, loaded before Django (pytest -p tests.env).

Real PostgreSQL and Redis: DATABASE_URL and REDIS_URL win when set; otherwise the local
servers on their standard ports. Tests use their own Redis database number.

CHORUS_TEST_DB=sqlite runs the suite on SQLite instead, the database `make run` ships: a
file in a private temporary folder (never in memory, so that live servers, other processes,
can open it), whatever DATABASE_URL says. Tests marked `postgres_only` are left out there,
and with CHORUS_TEST_DATABASE_TESTS_ONLY=1 (make test's run after the first database) the
tests that never touch the database (see tests/conftest.py).

Under pytest-xdist (`pytest -n N`, as make test runs) each worker process gwK is a test run
of its own: PostgreSQL test database suffixed `_gwK` (pytest-django), SQLite file in a folder
of its own, and Redis database number REDIS_URL's minus K (13, 12, 11, ... by default), so
that workers never see each other's keys, queues or pub/sub channels.
"""

import os
import re
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

# "gwK" in a pytest-xdist worker; "" otherwise.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")

DATABASE = os.environ.get("CHORUS_TEST_DB", "").strip().lower() or "postgres"
if DATABASE not in DATABASES:
    raise SystemExit(f"CHORUS_TEST_DB={DATABASE!r} is not one of {', '.join(sorted(DATABASES))}")
if DATABASE == "sqlite":
    # One folder per test database name, so that parallel runs with their own
    # TEST_DATABASE_NAME never share a file; owner-only like var/.
    _name = (os.environ.get("TEST_DATABASE_NAME") or "test") + (f"_{WORKER}" if WORKER else "")
    _folder = Path(tempfile.gettempdir()) / f"chorus-{_name}-{os.getuid()}"
    _folder.mkdir(mode=0o700, exist_ok=True)
    os.environ["DATABASE_URL"] = f"sqlite:///{_folder / 'chorus.sqlite3'}"

for key, value in DEFAULTS.items():
    os.environ.setdefault(key, value)


def _worker_redis_url(url: str, worker: str) -> str:
    """REDIS_URL with its database number minus the worker's index (gw0 keeps it)."""
    index = int(worker.removeprefix("gw"))
    match = re.fullmatch(r"(rediss?://[^/?#]+)(?:/(\d*))?", url)
    number = int(match.group(2) or 0) if match else -1
    if number - index < 0:
        raise SystemExit(f"REDIS_URL={url!r} leaves no Redis database for xdist worker {worker}: under"
                         f" pytest -n, REDIS_URL must be redis://HOST:PORT/N with N at least {index}")
    return f"{match.group(1)}/{number - index}"


# Once per worker: a test that starts pytest again (tests/project/test_test_databases.py)
# passes the worker's variables on, and its run must not move to yet another database.
if WORKER and os.environ.get("CHORUS_TEST_WORKER") != WORKER:
    os.environ["CHORUS_TEST_WORKER"] = WORKER
    os.environ["REDIS_URL"] = _worker_redis_url(os.environ["REDIS_URL"], WORKER)
# Never read a developer's .env into the test run.
os.environ["CHORUS_ENV_FILE"] = os.devnull
