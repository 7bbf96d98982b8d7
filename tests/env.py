"""Test environment defaults, loaded before Django (pytest -p tests.env).

Real PostgreSQL and Redis: DATABASE_URL and REDIS_URL win when set; otherwise the local
servers on their standard ports. Tests use their own Redis database number.
"""

import os

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
for key, value in DEFAULTS.items():
    os.environ.setdefault(key, value)
# Never read a developer's .env into the test run.
os.environ["CHORUS_ENV_FILE"] = os.devnull
