"""Hostile input against every JSON API endpoint and every rooms websocket message type.

Endpoints are found by walking the API's OpenAPI schema (a new endpoint is fuzzed without
being listed here), plus the ListenBrainz-compatible routes outside it. Each value at each
place: wrong types, huge and non-finite numbers, deep nesting, a ~10 MB body, NUL, a lone
surrogate (escaped, and as raw bytes), right-to-left marks. What must hold for every case:

- no 500 and no close 1011, no ERROR line (traceback) in the log;
- every error answer is JSON with `error` and `message` (under /api/ and /apis/);
- a refused value is named: in `message`, in `field`, or in a 422's `detail` location;
- a refused request changes nothing (row counts of every table and the room state).

Values are fixed and the one random choice is seeded, so a failure repeats.
"""

from __future__ import annotations

import json
import logging
import random

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.db import connection
from django.test import Client

from project.api import api
from rooms import presence
from rooms.models import PlaybackState, QueueEntry
from tests.rooms.conftest import clean_redis, connect, people, room, tokens, tracks  # noqa: F401 - fixtures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.long]

SEED = 8
DEEP = "[" * 60 + "]" * 60

# Body values: (name, JSON text). Each replaces one property of an otherwise valid body.
BODY_VALUES = [
    ("null", "null"), ("true", "true"), ("list", "[]"), ("object", "{}"), ("text", '"x"'), ("empty", '""'),
    ("minus_one", "-1"), ("zero", "0"), ("int_2_63", str(2**63)), ("int_10_30", "1" + "0" * 30),
    ("int_10_400", "1" + "0" * 400), ("float_1e400", "1e400"), ("nan", "NaN"), ("minus_inf", "-Infinity"),
    ("nan_text", '"NaN"'), ("inf_text", '"inf"'), ("nul", '"a\\u0000b"'), ("surrogate", '"\\ud800x"'),
    ("rtl", '"\\u202eevil\\u200f"'), ("deep", DEEP), ("long_text", json.dumps("x" * 100_000)),
]
# Whole bodies, each sent as the request body.
WHOLE_BODIES = [
    ("brackets_20000", b"[" * 20000), ("deep_object", b'{"a":' * 5000 + b"1" + b"}" * 5000),
    ("not_json", b"{not json"), ("json_null", b"null"), ("json_list", b"[]"), ("json_number", b"1e400"),
    ("raw_surrogate", b'{"x": "\xed\xa0\x80"}'), ("bad_utf8", b'{"x": "\xff\xfe"}'), ("nul_byte", b'{"x"\x00: 1}'),
    ("ten_megabytes", b'{"pad": "' + b"x" * 10_000_000 + b'"}'),
]
# Path and query values (percent-encoded as sent).
URL_VALUES = ["0", "-1", "1" + "0" * 30, "1e400", "NaN", "%00", "a%00b", "%E2%80%AE%E2%80%8F", "x" * 3000,
              "..%2F..%2Fetc", "%ED%A0%80", "%FF"]

# ListenBrainz-compatible routes (plain Django views, not in the OpenAPI schema).
LISTENBRAINZ_ROUTES = ["/apis/listenbrainz/1/submit-listens", "/1/submit-listens"]


def fingerprint(room_id: int) -> tuple:
    """Rows of every table of the project's apps (each model's `objects.count()`), and the
    room's playback version, read in one query: the test takes it twice for each of its
    thousands of cases, and a query per table made PostgreSQL's round trips most of its time."""
    models = [model for model in apps.get_models()
              if model._meta.app_label in {"catalog", "rooms", "scrobbling", "accounts", "livefeed"}]
    parts, params = [], []
    for index, queryset in enumerate([*(model.objects.all() for model in models),
                                      PlaybackState.objects.filter(room_id=room_id).values("version")]):
        sql, part_params = queryset.query.sql_with_params()
        # The ORM's own SQL for each queryset, so nothing from outside is in it.
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) AS q{index})" if index < len(models) else f"({sql})")  # noqa: S608
        params.extend(part_params)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        *counts, version = cursor.fetchone()
    return tuple(counts), version


def error_records(caplog) -> list[str]:
    """Tracebacks and errors; Django's own line for a 502/503 answer (an outside service that
    cannot be reached) is not one: the status is checked on its own."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.ERROR and (r.exc_info or r.name != "django.request")]


def resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "oneOf" in schema:  # a play or a list of plays: fuzz the single object
        schema = next(s for s in schema["oneOf"] if s.get("type") != "array")
        return resolve(schema, spec)
    return schema


def valid_value(name: str, prop: dict, context: dict):
    """A value that passes validation, so the case reaches the property being fuzzed."""
    if name in context:
        return context[name]
    kinds = {prop.get("type")} | {option.get("type") for option in prop.get("anyOf", [])}
    if "integer" in kinds:
        return 1
    if "number" in kinds:
        return 1.0
    if "boolean" in kinds:
        return False
    return "x"


def named(answer: dict, field: str) -> bool:
    """The answer names `field`: as `field`, in its sentence (`message`, or `error` in
    ListenBrainz's own error format), or in a 422's `detail` locations."""
    if str(answer.get("field") or "").startswith(field):
        return True
    if any(field in str(answer.get(key) or "") for key in ("message", "error")):
        return True
    return any(field in [str(part) for part in item.get("loc", ())] for item in answer.get("detail") or [])


def http_cases(context: dict):
    """(method, url, body bytes | None, field | None, label) for every endpoint and value."""
    spec = api.get_openapi_schema()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            path_params = {p["name"]: str(context.get(p["name"], 1)) for p in params if p["in"] == "path"}
            url = path.format(**path_params)
            body_schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            properties = resolve(body_schema, spec).get("properties", {}) if body_schema else {}
            base = {name: valid_value(name, prop, context) for name, prop in properties.items()}
            for name in path_params:
                for value in URL_VALUES:
                    yield method, path.format(**{**path_params, name: value}), _dump(base) if body_schema else None, \
                        None, f"path {name}={value[:20]}"
            for param in (p for p in params if p["in"] == "query"):
                for value in URL_VALUES:
                    yield method, f"{url}?{param['name']}={value}", None, param["name"], f"query {param['name']}"
            if body_schema is None:
                continue
            for name in properties:
                for label, text in BODY_VALUES:
                    body = _dump(base, replace=(name, text))
                    yield method, url, body, name, f"body {name}={label}"
            for label, body in WHOLE_BODIES:
                yield method, url, body, None, f"body {label}"
    listen = {"listened_at": 1_700_000_000, "track_metadata": {"artist_name": "A", "track_name": "T"}}
    for url in LISTENBRAINZ_ROUTES:
        for label, text in BODY_VALUES:
            yield "post", url, _dump({"listen_type": "import", "payload": [listen]}, replace=("listen_type", text)), \
                "listen_type", f"listenbrainz listen_type={label}"
            body = json.dumps({"listen_type": "single", "payload": [{**listen, "listened_at": "@@"}]})
            yield "post", url, body.replace('"@@"', text).encode(), "listened_at", f"listenbrainz listened_at={label}"
        for label, body in WHOLE_BODIES:
            yield "post", url, body, None, f"listenbrainz {label}"


def base_requests(context: dict):
    """(method, url, body) of each endpoint with only valid values."""
    spec = api.get_openapi_schema()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            url = path.format(**{p["name"]: str(context.get(p["name"], 1)) for p in params if p["in"] == "path"})
            body_schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            properties = resolve(body_schema, spec).get("properties", {}) if body_schema else {}
            base = {name: valid_value(name, prop, context) for name, prop in properties.items()}
            yield method, url, _dump(base) if body_schema else None
    listen = {"listened_at": 1_700_000_000, "track_metadata": {"artist_name": "A", "track_name": "T"}}
    for url in LISTENBRAINZ_ROUTES:
        yield "post", url, _dump({"listen_type": "single", "payload": [listen]})


def _dump(base: dict, replace: tuple[str, str] | None = None) -> bytes:
    """`base` as JSON, with one property's value replaced by raw JSON text (which may be
    something json.dumps would never write: NaN, 1e400, a lone surrogate escape)."""
    if replace is None:
        return json.dumps(base).encode()
    name, text = replace
    rest = json.dumps({k: v for k, v in base.items() if k != name})
    inner = rest[1:-1]
    return ("{" + json.dumps(name) + ": " + text + (", " + inner if inner else "") + "}").encode()


def accepts(client, method: str, url: str, body: bytes | None, headers: dict) -> bool:
    """Whether the request without any hostile value is accepted: only then must a refusal
    of one value name that value (otherwise the refusal is about something else)."""
    kwargs = {"data": body, "content_type": "application/json"} if body is not None else {}
    return getattr(client, method)(url, **kwargs, **headers).status_code < 400


def headers_for(url: str, token: str) -> dict:
    scheme = "Token" if url.startswith(("/apis/", "/1/")) else "Bearer"  # ListenBrainz's own scheme
    return {"HTTP_AUTHORIZATION": f"{scheme} {token}"}


def test_every_api_endpoint_survives_hostile_input(room, people, tokens, tracks, settings, caplog):  # noqa: F811
    settings.LISTENBRAINZ_API_ROOT = "http://127.0.0.1:9"  # nothing is sent out of the machine
    people["hana"].is_staff = True
    people["hana"].save()
    from catalog.services import import_job_create

    job = import_job_create(path=str(settings.LIBRARY_DIR), user=people["hana"], enqueue=False)
    context = {"slug": room.slug, "track_id": tracks[0].pk, "job_id": job.pk, "service": "listenbrainz",
               "user_id": people["lis"].pk, "action": "pause", "name": "Fuzz", "path": str(settings.LIBRARY_DIR),
               "played_at": "2026-01-01T00:00:00Z", "token": "x" * 36, "visibility": "public",
               "control_policy": "djs", "api_root": ""}
    client = Client(raise_request_exception=False)  # a crash is a 500 answer here, checked like any other
    cases = list(http_cases(context))
    valid = {(method, url): accepts(client, method, url, base, headers_for(url, tokens["hana"]))
             for method, url, base in base_requests(context)}
    random.Random(SEED).shuffle(cases)  # endpoints interleaved, in the same order every run
    failures = []
    caplog.set_level(logging.WARNING)
    for method, url, body, field, label in cases:
        caplog.clear()
        before = fingerprint(room.pk)
        kwargs = {"data": body, "content_type": "application/json"} if body is not None else {}
        response = getattr(client, method)(url, **kwargs, **headers_for(url, tokens["hana"]))
        must_name = field if valid.get((method, url.partition("?")[0]), False) else None
        problem = check_answer(response, must_name, before, room.pk, error_records(caplog))
        if problem:
            failures.append(f"{method.upper()} {url[:80]} [{label}]: {problem}")
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures[:60])


def check_answer(response, field, before, room_id, errors) -> str | None:
    if errors:
        return f"logged {errors[0][:200]}"
    if response.status_code >= 500 and response.status_code not in (502, 503):  # 502/503: an outside service
        return f"{response.status_code} {response.content[:200]!r}"
    if response.status_code == 204:
        return None
    if not response.get("Content-Type", "").startswith("application/json"):
        return f"{response.status_code} answered {response.get('Content-Type')}: {response.content[:100]!r}"
    if response.status_code < 400:
        return None
    answer = response.json()
    if not isinstance(answer, dict) or not ("error" in answer or "code" in answer) or not (
        "message" in answer or "error" in answer
    ):
        return f"{response.status_code} error without error/message: {str(answer)[:200]}"
    if response.status_code in (400, 422) and field is not None and not named(answer, field):
        return f"{response.status_code} does not name {field}: {str(answer)[:200]}"
    if fingerprint(room_id) != before:
        return f"{response.status_code} but something changed"
    return None


# --- the rooms websocket -------------------------------------------------------------------

WS_VALUES = ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400, "1" + "0" * 30, '"12"', "[]", "{}", "true",
             '"\\u0000"', '"\\ud800"', DEEP]
# (message type, fixed fields, fuzzed field): every field of every client message.
WS_FIELDS = [
    ("time.ping", {}, "t0"),
    ("control", {"action": "seek"}, "position_s"),
    ("control", {"action": "volume"}, "volume"),
    ("control", {"action": "select"}, "entry_id"),
    ("control", {"action": "pause"}, "version"),
    ("control", {}, "action"),
    ("ready", {}, "entry_id"),
    ("report", {"offset_ms": 0, "rtt_ms": 10, "drift_ms": 0}, "offset_ms"),
    ("report", {"offset_ms": 0, "rtt_ms": 10, "drift_ms": 0}, "rtt_ms"),
    ("report", {"offset_ms": 0, "rtt_ms": 10, "drift_ms": 0}, "drift_ms"),
    ("report", {"offset_ms": 0, "rtt_ms": 10, "drift_ms": 0}, "sound_blocked"),
]
WS_VALID = {("sound_blocked", "true")}
WS_WHOLE = ["[" * 20000, '{"type": "control", "action": ' + "[" * 5000 + "]" * 5000 + "}", "null", "123", '"text"',
            "\ud800", '{"type": ' + DEEP + "}", '{"type": "buffering", "extra": ' + DEEP + "}", "{not json"]


def ws_message(kind: str, fixed: dict, field: str, text: str) -> str:
    rest = json.dumps({"type": kind, **{k: v for k, v in fixed.items() if k != field}})
    return rest[:-1] + ", " + json.dumps(field) + ": " + text + "}"


async def test_every_websocket_message_type_survives_hostile_input(room, tokens, connect, settings, caplog,  # noqa: F811
                                                                  people):  # noqa: F811
    settings.ROOMS_CONTROLS_PER_SECOND = 1_000_000  # the rate limit is tested elsewhere; here every case counts
    caplog.set_level(logging.WARNING)
    host = await connect(room.slug, token=tokens["hana"])
    entry = await sync_to_async(lambda: QueueEntry.objects.filter(room=room).order_by("position").first().pk)()
    await host.send({"type": "control", "action": "select", "entry_id": entry})
    await host.expect("room.state", reason="change")
    version = await sync_to_async(lambda: PlaybackState.objects.get(room=room).version)()
    failures = []
    for kind, fixed, field in WS_FIELDS:
        for text in WS_VALUES:
            if (field, text) in WS_VALID:
                continue
            await host.send(ws_message(kind, fixed, field, text))
            error = await host.expect("error")
            if error["code"] != "invalid" or (error.get("field") != field and field not in error["message"]):
                failures.append(f"{kind} {field}={text[:20]}: {error}")
    for text in WS_WHOLE:
        await host.send(text)
        error = await host.expect("error")
        if error["code"] != "invalid":
            failures.append(f"{text[:30]}: {error}")
    await host.ws.send_to(bytes_data=b"\xff" * 100)
    await host.expect("error")
    await host.send({"type": "time.ping", "t0": 1})
    await host.expect("time.pong")  # the socket is still open: nothing closed it with 1011
    assert not failures, "\n".join(failures)
    assert not error_records(caplog)
    assert await sync_to_async(lambda: PlaybackState.objects.get(room=room).version)() == version
    assert people["hana"].pk not in await sync_to_async(presence.reports)(room.pk)
    await host.send('{"type": "time.ping", "t0": 1, "pad": "' + "x" * 10_000_000 + '"}')  # ~10 MB
    assert await host.closed_with() == 1009


def test_every_api_endpoint_answers_401_without_valid_credentials(alice):
    """Reads and writes alike, anonymous or with a revoked token: a JSON 401, never a CSRF 403."""
    from project.accounts.models import ApiToken
    from project.accounts.services import token_create

    _, revoked = token_create(user=alice, name="old")
    ApiToken.objects.filter(user=alice).update(revoked_at="2026-01-01T00:00:00Z")
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    spec = api.get_openapi_schema()
    answers = {}
    for path, operations in spec["paths"].items():
        url = path.replace("{", "").replace("}", "")  # any value: credentials are checked first
        for method in operations:
            for label, headers in (("anonymous", {}), ("revoked", {"HTTP_AUTHORIZATION": f"Bearer {revoked}"})):
                body = {} if method == "get" else {"data": b"{}", "content_type": "application/json"}
                response = getattr(client, method)(url, **body, **headers)
                body = response.json() if response.get("Content-Type", "").startswith("application/json") else None
                answers[f"{label} {method.upper()} {path}"] = (response.status_code, (body or {}).get("error"))
    wrong = {case: answer for case, answer in answers.items() if answer != (401, "not_authenticated")}
    assert not wrong, wrong
    assert len(answers) >= 2 * 20  # every endpoint was asked (the schema has them all)
