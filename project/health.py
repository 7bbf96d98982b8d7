"""GET /healthz: is the database up, is Redis up."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down"
        return exc.__class__.__name__
    return None


def _check_redis() -> str | None:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        return exc.__class__.__name__
    finally:
        client.close()
    return None


@never_cache
@require_safe
def healthz(request):
    checks = {"database": _check_database(), "redis": _check_redis()}
    down = [name for name, error in checks.items() if error]
    body = {
        "status": "ok" if not down else "down",
        "checks": {name: ("ok" if error is None else f"down: {error}") for name, error in checks.items()},
    }
    if down:
        body["down"] = down
    return JsonResponse(body, status=503 if down else 200)
