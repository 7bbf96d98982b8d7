"""Local fakes of Last.fm (which also stands for Libre.fm: the same API) and ListenBrainz that
speak the real protocols, for tests and benchmarks.

Each fake is a `ThreadingHTTPServer` on 127.0.0.1 (a free port) in a daemon thread:

    fake = FakeLastfm(api_key="k", api_secret="s").start()
    ... LastfmClient(api_root=fake.url, ...) ...
    fake.stop()

Every request is recorded in `fake.requests` (method, path, params, json, headers, body, and the
status answered). Scripting: `fake.fail_next(n, status=..., error_code=..., headers=..., body=...)`
makes the next n API requests answer with that instead, `fake.delay_s` delays every answer, and
`fake.redirect_to = "http://..."` answers every request with a 307 to that origin (same path).
`host` picks the loopback address the fake listens on (127.0.0.2 is another "server").
State (`tokens`, `sessions`, `scrobbles`, `listens`, ...) is plain dicts; touch it under `fake.lock`
while a client may be calling.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

logger = logging.getLogger(__name__)


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]  # query string, plus the body of a form post
    json: Any  # the body parsed as JSON, None when it is not JSON
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int | None = None  # what the fake answered


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, document: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(document).encode(), {"Content-Type": "application/json", **(headers or {})})


def text_reply(status: int, text: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, text.encode(), {"Content-Type": "text/html; charset=utf-8", **(headers or {})})


@dataclass(frozen=True)
class Failure:
    status: int | None
    error_code: int | None
    headers: dict[str, str]
    body: Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake records requests itself."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        try:
            document = json.loads(body) if body and not content_type.startswith("application/x-www-form") else None
        except ValueError:
            document = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = RecordedRequest(self.command, url.path, params, document, headers, body)
        reply = self.server.fake.handle(request)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # benchmarks open many connections at once

    def __init__(self, fake: FakeServer, host: str = "127.0.0.1"):
        self.fake = fake
        super().__init__((host, 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout tests) is not an error of the fake."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeServer:
    """Base class: the HTTP server, request recording, scripted failures and delay."""

    api_prefix = "/"  # fail_next applies to requests under this path

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.lock = threading.RLock()
        self.requests: list[RecordedRequest] = []
        self.delay_s = 0.0
        self.redirect_to: str | None = None
        self._failures: deque[Failure | None] = deque()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._stopping.clear()
        self._httpd = _Server(self, self.host)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed answers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, n: int = 1, *, status: int | None = None, error_code: int | None = None,
                  headers: dict[str, str] | None = None, body: Any = None, after: int = 0) -> None:
        """Answer the next n API requests (after `after` answered normally) with this failure
        (body: str/bytes as is, else JSON)."""
        with self.lock:
            self._failures.extend([None] * after)
            self._failures.extend(Failure(status, error_code, dict(headers or {}), body) for _ in range(n))

    def handle(self, request: RecordedRequest) -> Reply:
        with self.lock:
            self.requests.append(request)
            scripted = request.path.startswith(self.api_prefix) and bool(self._failures)
            failure = self._failures.popleft() if scripted else None
        if self.delay_s > 0:
            self._stopping.wait(self.delay_s)
        try:
            with self.lock:
                if self.redirect_to is not None:
                    reply = Reply(307, b"", {"Location": self.redirect_to.rstrip("/") + request.path})
                elif failure is not None:
                    reply = self.failure_reply(failure)
                else:
                    reply = self.route(request)
        except Exception:
            logger.exception("%s failed on %s %s", type(self).__name__, request.method, request.path)
            reply = text_reply(500, "fake server error")
        request.status = reply.status
        return reply

    def failure_reply(self, failure: Failure) -> Reply:
        raise NotImplementedError

    def route(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError


def scripted_body(failure: Failure, default: Any) -> tuple[bytes, str]:
    """The body and content type of a scripted failure."""
    body = default if failure.body is None else failure.body
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/html; charset=utf-8"
    return json.dumps(body).encode(), "application/json"


# --- Last.fm -----------------------------------------------------------------------------

LASTFM_MESSAGES = {
    3: "Invalid Method - No method with that name in this package",
    4: "Invalid authentication token supplied",
    6: "Invalid parameters - Your request is missing a required parameter",
    8: "Operation failed - Most likely the backend service failed. Please try again.",
    9: "Invalid session key - Please re-authenticate",
    10: "Invalid API key - You must be granted a valid key by last.fm",
    11: "Service Offline - This service is temporarily offline. Try again later.",
    13: "Invalid method signature supplied",
    14: "Unauthorized Token - This token has not been authorized",
    15: "This token has expired",
    16: "There was a temporary error processing your request. Please try again",
    26: "Suspended API key - Access for your account has been suspended, please contact Last.fm",
    29: "Rate limit exceeded - Your IP has made too many requests in a short period",
}
LASTFM_STATUS = {3: 400, 6: 400, 4: 403, 9: 403, 10: 403, 13: 403, 14: 403, 15: 403, 26: 403, 29: 429,
                 8: 500, 11: 503, 16: 503}
MAX_SCROBBLES = 50
TOO_OLD_S = 14 * 24 * 3600
TOO_NEW_S = 24 * 3600
INDEXED = re.compile(r"^(\w+)\[(\d+)\]$")
SCROBBLE_FIELDS = ("artist", "track", "timestamp", "album", "albumArtist", "duration", "trackNumber", "mbid",
                   "chosenByUser", "context", "streamId")


def lastfm_signature(params: dict[str, str], secret: str) -> str:
    """api_sig as Last.fm computes it: sorted name+value pairs (no format/callback/api_sig) + secret, md5."""
    signed = sorted((name, value) for name, value in params.items() if name not in ("format", "callback", "api_sig"))
    text = "".join(name + value for name, value in signed) + secret
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def lastfm_error(code: int, message: str = "") -> Reply:
    return json_reply(LASTFM_STATUS.get(code, 400), {"error": code, "message": message or LASTFM_MESSAGES.get(code, "")})


def _corrected(value: str) -> dict[str, str]:
    return {"corrected": "0", "#text": value}


class FakeLastfm(FakeServer):
    """Last.fm API 2.0 at `url` (/2.0/) and its web-auth page at `auth_url` (/api/auth/).

    tokens: web-auth token -> user name (None: issued but not authorized yet).
    sessions: session key -> user name. scrobbles: user name -> accepted scrobbles, in order.
    daily_limit: accepted scrobbles per user before items are ignored with code 5.
    """

    api_prefix = "/2.0"

    def __init__(self, api_key: str, api_secret: str, *,
                 auth_user: str = "lfm_user", daily_limit: int = 2800):
        super().__init__()
        self.api_key = api_key
        self.api_secret = api_secret
        self.auth_user = auth_user
        self.daily_limit = daily_limit
        self.tokens: dict[str, str | None] = {}
        self.sessions: dict[str, str] = {}
        self.scrobbles: dict[str, list[dict[str, Any]]] = {}
        self.now_playing: dict[str, dict[str, str]] = {}

    @property
    def url(self) -> str:
        return f"{self.origin}/2.0/"

    @property
    def auth_url(self) -> str:
        return f"{self.origin}/api/auth/"

    def add_session(self, user_name: str) -> str:
        """A new session key for user_name (as if the user had connected before)."""
        key = secrets.token_hex(16)
        with self.lock:
            self.sessions[key] = user_name
        return key

    def authorize_token(self, user_name: str | None = None) -> str:
        """A new web-auth token, authorized for user_name (default auth_user)."""
        token = secrets.token_hex(16)
        with self.lock:
            self.tokens[token] = user_name or self.auth_user
        return token

    def failure_reply(self, failure: Failure) -> Reply:
        if failure.error_code is not None:
            default: Any = {"error": failure.error_code, "message": LASTFM_MESSAGES.get(failure.error_code, "Error")}
            status = failure.status or LASTFM_STATUS.get(failure.error_code, 400)
        else:
            default, status = "<html><body>Service Temporarily Unavailable</body></html>", failure.status or 503
        body, content_type = scripted_body(failure, default)
        return Reply(status, body, {"Content-Type": content_type, **failure.headers})

    def route(self, request: RecordedRequest) -> Reply:
        if request.path == "/api/auth/" and request.method == "GET":
            return self._auth_page(request)
        if request.path in ("/2.0/", "/2.0") and request.method in ("GET", "POST"):
            return self._api(request)
        if request.path in ("/2.0/", "/2.0", "/api/auth/"):
            return text_reply(405, "Method Not Allowed")
        return text_reply(404, "Not Found")

    def _auth_page(self, request: RecordedRequest) -> Reply:
        """The user says yes at once: redirect to cb with a new authorized token appended."""
        if request.params.get("api_key") != self.api_key:
            return text_reply(400, "<p>Invalid API key</p>")
        callback = request.params.get("cb", "")
        parts = urlsplit(callback)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return text_reply(400, "<p>Invalid callback URL</p>")
        token = self.authorize_token()
        query = [*parse_qsl(parts.query, keep_blank_values=True), ("token", token)]
        location = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
        return Reply(302, b"", {"Location": location})

    def _api(self, request: RecordedRequest) -> Reply:
        params = request.params
        method = params.get("method", "")
        handlers = {"auth.getSession": self._get_session, "track.updateNowPlaying": self._update_now_playing,
                    "track.scrobble": self._scrobble, "user.getInfo": self._user_info}
        if params.get("format") != "json":
            return lastfm_error(6, "This fake answers format=json only")
        if params.get("api_key") != self.api_key:
            return lastfm_error(10)
        handler = handlers.get(method)
        if handler is None:
            return lastfm_error(3)
        if request.method != "POST" and method not in {"auth.getSession", "user.getInfo"}:
            return lastfm_error(3, "Invalid Method - write methods must be called with HTTP POST")
        if not secrets.compare_digest(params.get("api_sig", ""), lastfm_signature(params, self.api_secret)):
            return lastfm_error(13)
        return handler(params)

    def _get_session(self, params: dict[str, str]) -> Reply:
        token = params.get("token", "")
        if not token:
            return lastfm_error(6)
        if token not in self.tokens:
            return lastfm_error(4)
        user_name = self.tokens[token]
        if user_name is None:
            return lastfm_error(14)
        del self.tokens[token]  # a token is good for one session
        key = secrets.token_hex(16)
        self.sessions[key] = user_name
        return json_reply(200, {"session": {"name": user_name, "key": key, "subscriber": 0}})

    def _session_user(self, params: dict[str, str]) -> str | Reply:
        if not params.get("sk"):
            return lastfm_error(6)
        user_name = self.sessions.get(params["sk"])
        return user_name if user_name is not None else lastfm_error(9)

    def _user_info(self, params: dict[str, str]) -> Reply:
        user_name = params.get("user") or self._session_user(params)
        if isinstance(user_name, Reply):
            return user_name
        return json_reply(200, {"user": {"name": user_name, "playcount": str(len(self.scrobbles.get(user_name, [])))}})

    def _update_now_playing(self, params: dict[str, str]) -> Reply:
        user_name = self._session_user(params)
        if isinstance(user_name, Reply):
            return user_name
        if not params.get("artist") or not params.get("track"):
            return lastfm_error(6)
        fields = ("artist", "track", "album", "albumArtist", "duration", "trackNumber", "mbid")
        self.now_playing[user_name] = {name: params[name] for name in fields if name in params}
        answer = {name: _corrected(params.get(name, "")) for name in ("artist", "track", "album", "albumArtist")}
        return json_reply(200, {"nowplaying": {**answer, "ignoredMessage": {"code": "0", "#text": ""}}})

    def _scrobble(self, params: dict[str, str]) -> Reply:
        user_name = self._session_user(params)
        if isinstance(user_name, Reply):
            return user_name
        items = scrobble_items(params)
        if isinstance(items, Reply):
            return items
        accepted = self.scrobbles.setdefault(user_name, [])
        answers = []
        for item in items:
            code, text = self._verdict(int(item["timestamp"]), len(accepted))
            if code == 0:
                accepted.append({**item, "timestamp": int(item["timestamp"])})
            answers.append({**{name: _corrected(item.get(name, "")) for name in ("artist", "track", "album", "albumArtist")},
                            "timestamp": item["timestamp"], "ignoredMessage": {"code": str(code), "#text": text}})
        ignored = sum(1 for answer in answers if answer["ignoredMessage"]["code"] != "0")
        scrobble: Any = answers[0] if len(answers) == 1 else answers
        return json_reply(200, {"scrobbles": {"scrobble": scrobble,
                                              "@attr": {"accepted": len(answers) - ignored, "ignored": ignored}}})

    def _verdict(self, timestamp: int, accepted_count: int) -> tuple[int, str]:
        now = time.time()
        if timestamp < now - TOO_OLD_S:
            return 3, "Timestamp was too old"
        if timestamp > now + TOO_NEW_S:
            return 4, "Timestamp was too new"
        if accepted_count >= self.daily_limit:
            return 5, "Daily scrobble limit exceeded"
        return 0, ""


def scrobble_items(params: dict[str, str]) -> list[dict[str, str]] | Reply:
    """track.scrobble's items from `name[i]` params (or unindexed ones for a single scrobble)."""
    by_index: dict[int, dict[str, str]] = {}
    for name, value in params.items():
        match = INDEXED.match(name)
        if match and match.group(1) in SCROBBLE_FIELDS:
            by_index.setdefault(int(match.group(2)), {})[match.group(1)] = value
    if not by_index and "artist" in params:
        by_index[0] = {name: params[name] for name in SCROBBLE_FIELDS if name in params}
    if len(by_index) > MAX_SCROBBLES or any(index >= MAX_SCROBBLES for index in by_index):
        return lastfm_error(6, f"Invalid parameters - at most {MAX_SCROBBLES} scrobbles per request")
    items = [by_index[index] for index in sorted(by_index)]
    for item in items:
        if not item.get("artist") or not item.get("track") or not item.get("timestamp", "").isdigit():
            return lastfm_error(6)
    return items or lastfm_error(6)


# --- ListenBrainz ------------------------------------------------------------------------

MAX_LISTENS = 1000
LISTENED_AT_SKEW_S = 3600  # listened_at may be this far in the future
LISTEN_MINIMUM_TS = 1033430400  # 2002-10-01, the oldest listened_at ListenBrainz takes
LISTEN_TYPES = ("single", "import", "playing_now")


def lb_error(status: int, error: str, headers: dict[str, str] | None = None) -> Reply:
    return json_reply(status, {"code": status, "error": error}, headers)


class FakeListenBrainz(FakeServer):
    """ListenBrainz API at `url` (the root; endpoints under /1/).

    tokens: token -> user name. listens: user name -> accepted listens, in order (exact resubmits
    of listened_at + track_name + artist_name are dropped). playing_now: user name -> listen.
    refuse_titles: a submission with a listen of one of these track names is refused as a
    whole with 400 (as ListenBrainz refuses a document for one bad listen).
    """

    api_prefix = "/1/"

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.tokens: dict[str, str] = {}
        self.listens: dict[str, list[dict[str, Any]]] = {}
        self.playing_now: dict[str, dict[str, Any]] = {}
        self.refuse_titles: set[str] = set()

    @property
    def url(self) -> str:
        return self.origin

    def add_user(self, user_name: str) -> str:
        """A new token for user_name."""
        token = str(uuid.uuid4())
        with self.lock:
            self.tokens[token] = user_name
        return token

    def fail_next(self, n: int = 1, *, status: int | None = None, error_code: int | None = None,
                  headers: dict[str, str] | None = None, body: Any = None, after: int = 0) -> None:
        if error_code is not None:
            raise ValueError("ListenBrainz errors have no codes of their own; script a status")
        super().fail_next(n, status=status, headers=headers, body=body, after=after)

    def failure_reply(self, failure: Failure) -> Reply:
        status = failure.status or 503
        body, content_type = scripted_body(failure, {"code": status, "error": "Scripted failure."})
        return Reply(status, body, {"Content-Type": content_type, **failure.headers})

    def route(self, request: RecordedRequest) -> Reply:
        endpoints = {"/1/validate-token": ("GET", self._validate_token),
                     "/1/submit-listens": ("POST", self._submit_listens)}
        if request.path not in endpoints:
            return lb_error(404, "Not Found")
        method, handler = endpoints[request.path]
        if request.method != method:
            return lb_error(405, "The method is not allowed for the requested URL.")
        return handler(request)

    def _validate_token(self, request: RecordedRequest) -> Reply:
        token = _auth_token(request) or request.params.get("token", "")
        if not token:
            return lb_error(400, "You need to provide an Authorization token.")
        user_name = self.tokens.get(token)
        if user_name is None:
            return json_reply(200, {"code": 200, "message": "Token invalid.", "valid": False})
        return json_reply(200, {"code": 200, "message": "Token valid.", "valid": True, "user_name": user_name})

    INVALID_TOKEN = "Invalid authorization token."  # the answer to a token it does not know

    def bad_json(self, exc: ValueError) -> str:
        return f"Cannot parse JSON document: {exc}"

    def _authorised(self, request: RecordedRequest) -> tuple[str, Any] | Reply:
        """The user a submit's Authorization header names and its JSON body, or the answer
        refusing it (401, or 400 for a body that is not JSON)."""
        token = _auth_token(request)
        if not token:
            return lb_error(401, "You need to provide an Authorization header.")
        user_name = self.tokens.get(token)
        if user_name is None:
            return lb_error(401, self.INVALID_TOKEN)
        try:
            return user_name, json.loads(request.body.decode("utf-8"))
        except ValueError as exc:
            return lb_error(400, self.bad_json(exc))

    def _submit_listens(self, request: RecordedRequest) -> Reply:
        answer = self._authorised(request)
        if isinstance(answer, Reply):
            return answer
        user_name, document = answer
        problem = submission_problem(document)
        if not problem and any(listen["track_metadata"]["track_name"] in self.refuse_titles
                               for listen in document["payload"]):
            problem = "Scripted refusal of a listen."
        if problem:
            return lb_error(400, problem)
        if document["listen_type"] == "playing_now":
            self.playing_now[user_name] = document["payload"][0]
            return json_reply(200, {"status": "ok"})
        stored = self.listens.setdefault(user_name, [])
        seen = {_listen_key(listen) for listen in stored}
        for listen in document["payload"]:
            if _listen_key(listen) not in seen:
                seen.add(_listen_key(listen))
                stored.append(listen)
        return json_reply(200, {"status": "ok"})


def _auth_token(request: RecordedRequest) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "token" else ""


def _listen_key(listen: dict[str, Any]) -> tuple[Any, str, str]:
    metadata = listen["track_metadata"]
    return listen["listened_at"], metadata["track_name"], metadata["artist_name"]


def submission_problem(document: Any) -> str:
    """Why ListenBrainz would refuse this submit-listens document with a 400 ("" when it is fine)."""
    if not isinstance(document, dict) or "listen_type" not in document or "payload" not in document:
        return "Invalid JSON document submitted."
    listen_type, payload = document["listen_type"], document["payload"]
    if listen_type not in LISTEN_TYPES:
        return "JSON document requires a valid listen_type key."
    if not isinstance(payload, list):
        return "The payload in the JSON document should be a list of listens."
    if not payload:
        return "JSON document does not contain any listens."
    if len(payload) > MAX_LISTENS:
        return f"Too many listens. You may not submit more than {MAX_LISTENS} listens at once."
    if listen_type != "import" and len(payload) != 1:
        return "JSON document should contain exactly one listen when submitting a single listen or playing_now."
    for listen in payload:
        problem = listen_problem(listen, listen_type)
        if problem:
            return problem
    return ""


def listen_problem(listen: Any, listen_type: str) -> str:
    """Why ListenBrainz would refuse this one listen ("" when it is fine)."""
    if not isinstance(listen, dict):
        return "JSON document must contain listens as objects."
    if listen_type == "playing_now":
        if "listened_at" in listen:
            return "JSON document must not contain listened_at while submitting playing_now."
        if set(listen) - {"track_metadata"}:
            return "JSON document may only contain track_metadata as top level key when submitting playing_now."
    else:
        listened_at = listen.get("listened_at")
        if listened_at is None:
            return "JSON document must contain the key listened_at at the top level."
        if not isinstance(listened_at, int) or isinstance(listened_at, bool):
            return "JSON document must contain an int value for listened_at."
        if set(listen) - {"listened_at", "track_metadata"}:
            return "JSON document may only contain listened_at and track_metadata top level keys"
        if listened_at > time.time() + LISTENED_AT_SKEW_S:
            return "Value for key listened_at is too high."
        if listened_at < LISTEN_MINIMUM_TS:
            return "Value for key listened_at is too low."
    return metadata_problem(listen.get("track_metadata"))


def metadata_problem(metadata: Any) -> str:
    if not isinstance(metadata, dict):
        return "JSON document does not contain a valid metadata.track_name and/or track_metadata.artist_name."
    for key in ("track_name", "artist_name"):
        if not isinstance(metadata.get(key), str) or not metadata[key].strip():
            return f"JSON document does not contain required track_metadata.{key}."
    info = metadata.get("additional_info", {})
    if not isinstance(info, dict):
        return "additional_info must be an object."
    if "duration" in info and "duration_ms" in info:
        return "JSON document should not contain both duration and duration_ms."
    for key in ("duration", "duration_ms"):
        if key in info and (not isinstance(info[key], int) or isinstance(info[key], bool) or info[key] <= 0):
            return f"Value for {key} is invalid, should be a positive integer."
    for key in ("recording_mbid", "release_mbid", "release_group_mbid", "track_mbid"):
        if key in info and not _is_uuid(info[key]):
            return f"{key} MBID format invalid."
    return ""


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


# --- Maloja (its ListenBrainz-compatible API) -----------------------------------------------


class FakeMaloja(FakeListenBrainz):
    """Maloja's ListenBrainz API (maloja/apis/listenbrainz.py) at `url` (the root; endpoints
    under /1/). Maloja keeps one scrobble per second and goes through a submission in order,
    keeping each listen as it goes:

    - a listen it already has (same second, same track) ends the request with 200 ok, and
      the rest of the request is ignored;
    - a listen in a second it already has for another track ends it with 409
      (`{"error": "Scrobble with the same timestamp already exists."}`), the listens before
      it kept; Maloja 3.2.3 (what pip installs today) answers that with 500 instead:
      `FakeMaloja(duplicate_timestamp_status=500)`;
    - playing_now is answered ok and forgotten; the length is read from
      additional_info.duration (seconds) only.
    """

    INVALID_TOKEN = "Incorrect Authorization"

    def __init__(self, *, host: str = "127.0.0.1", duplicate_timestamp_status: int = 409) -> None:
        super().__init__(host=host)
        self.duplicate_timestamp_status = duplicate_timestamp_status

    BAD_JSON = "Invalid JSON document submitted."

    def bad_json(self, exc: ValueError) -> str:
        return self.BAD_JSON

    def _submit_listens(self, request: RecordedRequest) -> Reply:
        answer = self._authorised(request)
        if isinstance(answer, Reply):
            return answer
        user_name, document = answer
        try:
            listen_type, payload = document["listen_type"], document["payload"]
        except (KeyError, TypeError):
            return lb_error(400, self.BAD_JSON)
        if listen_type == "playing_now":
            return json_reply(200, {"status": "ok"})
        stored = self.listens.setdefault(user_name, [])
        by_second = {listen["listened_at"]: listen for listen in stored}
        for listen in payload:
            metadata = listen["track_metadata"]
            second = int(listen["listened_at"])
            kept = by_second.get(second)
            if kept is not None:
                same = (kept["track_name"], kept["artist_name"]) == (metadata["track_name"], metadata["artist_name"])
                if same:
                    return json_reply(200, {"status": "ok"})
                if self.duplicate_timestamp_status == 500:
                    return lb_error(500, "Unspecified server error.")
                return json_reply(409, {"error": "Scrobble with the same timestamp already exists."})
            info = metadata.get("additional_info") or {}
            scrobble = {"listened_at": second, "track_name": metadata["track_name"],
                        "artist_name": metadata["artist_name"], "album": metadata.get("release_name"),
                        "length_s": info.get("duration")}
            stored.append(scrobble)
            by_second[second] = scrobble
        return json_reply(200, {"status": "ok"})
