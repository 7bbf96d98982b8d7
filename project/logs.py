"""Request ids and JSON log lines.

Every HTTP request gets an id: the client's `X-Request-ID` when it is sane, else a
new one. It is echoed in the response, stored in a context variable and added to
every log line written while the request (or a Celery task it enqueued) runs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER = "X-Request-ID"
access_logger = logging.getLogger("chorus.access")


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str:
    """The client's id when it is a short token, else a fresh one (no log injection)."""
    if value and _SAFE_ID.match(value):
        return value
    return new_request_id()


class RequestIdMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def _start(self, request) -> contextvars.Token:
        request.id = clean_request_id(request.headers.get(HEADER))
        request._started = time.perf_counter()
        return request_id_var.set(request.id)

    def _finish(self, request, response):
        response[HEADER] = request.id
        access_logger.info(
            "%s %s %s", request.method, request.path, response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - request._started) * 1000, 1),
                "streaming": response.streaming,
            },
        )
        return response

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        token = self._start(request)
        try:
            return self._finish(request, self.get_response(request))
        finally:
            request_id_var.reset(token)

    async def __acall__(self, request):
        token = self._start(request)
        try:
            return self._finish(request, await self.get_response(request))
        finally:
            request_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            # django.request logs after the middleware has returned, but passes the request.
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "id", None) or request_id_var.get()
        return True


_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}
# Never write these record attributes: a request object or a secret has no place in a log.
_DROP_ATTRS = {"request", "scope", "password", "token", "secret", "session_key"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRS or key in _DROP_ATTRS or key.startswith("_"):
                continue
            entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
