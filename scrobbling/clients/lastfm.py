"""Last.fm API 2.0 client (https://www.last.fm/api): web auth, now playing and scrobbles.

Every call is a signed, form-encoded POST to the API root with `format=json`. Errors come
back as `{"error": <code>, "message": "..."}`, often with an HTTP 4xx/5xx status:
https://www.last.fm/api/errorcodes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, ClassVar, Self
from urllib.parse import urlencode

import httpx
from django.conf import settings

from project import outside
from scrobbling.clients import (
    ANSWER_MAX_CHARS,
    AuthExpired,
    GiveUp,
    ItemResult,
    Listen,
    RetryLater,
    ScrobblingClient,
    answer_text,
    registry,
    retry_after_s,
    unix_s,
)

MAX_BATCH = 50
logger = logging.getLogger(__name__)
UNSIGNED_PARAMS = {"format", "callback"}
RETRY_CODES = {11, 16, 29}  # service offline, temporarily unavailable, rate limit exceeded
# Invalid or suspended API key: this server's set-up, not the plays. Retried (with back-off)
# until the operator fixes LASTFM_API_KEY, instead of dead-lettering every user's plays.
SERVER_KEY_CODES = {10, 26}
SESSION_CODES = {9}  # invalid session key: the user revoked access
TOKEN_CODES = {4, 9, 14, 15}  # auth.getSession: invalid, unauthorized or expired token
DAILY_LIMIT_CODE = 5  # ignoredMessage code: daily scrobble limit exceeded
DAILY_LIMIT_RETRY_S = 3600.0  # how long the caller waits before retrying code-5 items


@registry.register
class LastfmClient(ScrobblingClient):
    """One Last.fm API account (api_key + api_secret); session keys are passed per call.

    A service that speaks the Last.fm API (Libre.fm) is a subclass with its own `name`,
    `label` and `settings_prefix` (<PREFIX>_API_ROOT, _API_KEY, _API_SECRET, _AUTH_URL)."""

    name = "lastfm"
    label = "Last.fm"
    auth = "web"
    max_batch = MAX_BATCH
    batch_setting = "SCROBBLING_LASTFM_BATCH"
    settings_prefix: ClassVar[str] = "LASTFM"

    def __init__(self, *, api_root: str, api_key: str, api_secret: str, timeout_s: float = 10.0,
                 http: httpx.Client | None = None):
        super().__init__(api_root=api_root, timeout_s=timeout_s, http=http)
        self.api_key = api_key
        self._api_secret = api_secret

    @classmethod
    def _setting(cls, suffix: str) -> str:
        return getattr(settings, f"{cls.settings_prefix}_{suffix}", "")

    @classmethod
    def configured(cls) -> bool:
        return bool(cls._setting("API_KEY") and cls._setting("API_SECRET"))

    @classmethod
    def required_settings(cls) -> tuple[str, ...]:
        return (f"{cls.settings_prefix}_API_KEY", f"{cls.settings_prefix}_API_SECRET")

    @classmethod
    def not_configured_message(cls) -> str:
        return f"{cls.label} is not set up on this server ({' and '.join(cls.required_settings())})."

    @classmethod
    def build(cls, *, api_root: str = "") -> Self:
        """The client of this server's API account (`api_root` is always the operator's)."""
        return cls(api_root=cls._setting("API_ROOT"), api_key=cls._setting("API_KEY"),
                   api_secret=cls._setting("API_SECRET"), timeout_s=settings.SCROBBLING_HTTP_TIMEOUT_S)

    @classmethod
    def connect_url(cls, *, callback_url: str) -> str:
        """Where to send the user to allow this server (web auth); back at `callback_url` with a token."""
        return f"{cls._setting('AUTH_URL')}?{urlencode({'api_key': cls._setting('API_KEY'), 'cb': callback_url})}"

    def link_token(self, token: str) -> tuple[str, str]:
        """(account name, session key) for the token web auth sent back."""
        return self.get_session(token)

    def check(self, secret: str) -> str:
        return self.user_name(secret)

    def scrobble_batch(self, secret: str, listens: list[Listen]) -> list[ItemResult]:
        return self.scrobble(secret, listens)

    def now_playing(self, secret: str, listen: Listen) -> None:
        self.update_now_playing(secret, listen)

    def sign(self, params: dict[str, str]) -> str:
        """api_sig: md5 of name+value for every param sorted by name, then the secret (utf-8, hex)."""
        text = "".join(f"{name}{value}" for name, value in sorted(params.items()) if name not in UNSIGNED_PARAMS)
        return hashlib.md5((text + self._api_secret).encode("utf-8"), usedforsecurity=False).hexdigest()

    def user_name(self, session_key: str) -> str:
        """user.getInfo for the session's own user: checks a session key obtained elsewhere."""
        body = self._call("user.getInfo", {"sk": session_key}, auth_codes=SESSION_CODES)
        user = body.get("user")
        name = user.get("name") if isinstance(user, dict) else None
        if not (isinstance(name, str) and name):
            raise GiveUp(f"{self.label} user.getInfo: answer has no user name", status=200)
        return name

    def get_session(self, token: str) -> tuple[str, str]:
        """auth.getSession: exchange an authorized web-auth token for (user name, session key)."""
        body = self._call("auth.getSession", {"token": token}, auth_codes=TOKEN_CODES)
        session = body.get("session")
        name = session.get("name") if isinstance(session, dict) else None
        key = session.get("key") if isinstance(session, dict) else None
        if not (isinstance(name, str) and name and isinstance(key, str) and key):
            # The answer would hold the session key: keep it out of the report.
            raise GiveUp(f"{self.label} auth.getSession: answer has no session name and key", status=200)
        return name, key

    def update_now_playing(self, session_key: str, listen: Listen) -> None:
        """track.updateNowPlaying for the listen that just started."""
        body = self._call("track.updateNowPlaying", {"sk": session_key, **_listen_params(listen)},
                          auth_codes=SESSION_CODES)
        if not isinstance(body.get("nowplaying"), dict):
            raise GiveUp(f"{self.label} track.updateNowPlaying: answer has no nowplaying", status=200,
                         answer=json.dumps(body)[:ANSWER_MAX_CHARS])

    def scrobble(self, session_key: str, listens: list[Listen]) -> list[ItemResult]:
        """track.scrobble for 1..50 listens; one ItemResult per listen, in order."""
        if not listens or len(listens) > MAX_BATCH:
            raise ValueError(f"track.scrobble takes 1 to {MAX_BATCH} listens, not {len(listens)}")
        params = {"sk": session_key}
        for index, listen in enumerate(listens):
            params.update(_listen_params(listen, f"[{index}]"))
            params[f"timestamp[{index}]"] = str(unix_s(listen.played_at))
        body = self._call("track.scrobble", params, auth_codes=SESSION_CODES)
        # Items refused for the daily limit (code 5) come back as such: the caller retries
        # just those later, and the accepted ones of the batch are not sent twice.
        return _scrobble_results(body, len(listens), label=self.label)

    def _call(self, method: str, params: dict[str, str], *, auth_codes: set[int]) -> dict[str, Any]:
        form = {**params, "method": method, "api_key": self.api_key}
        form["api_sig"] = self.sign(form)
        form["format"] = "json"
        response = outside.send(self._http, "POST", self.api_root, what=f"{self.label} {method}",
                                timeout_s=self.timeout_s, data=form)
        return _parse(f"{self.label} {method}", response, auth_codes, key_setting=f"{self.settings_prefix}_API_KEY")


def _listen_params(listen: Listen, suffix: str = "") -> dict[str, str]:
    fields = {
        "artist": listen.artist,
        "track": listen.title,
        "album": listen.album,
        "duration": str(round(listen.duration_s)) if listen.duration_s and listen.duration_s >= 1 else "",
        "trackNumber": str(listen.track_number) if listen.track_number and listen.track_number > 0 else "",
        "mbid": listen.mbid,
    }
    return {f"{name}{suffix}": value for name, value in fields.items() if value}


def _parse(what: str, response: httpx.Response, auth_codes: set[int], *, key_setting: str) -> dict[str, Any]:
    """The JSON answer, or the error class its status and Last.fm error code call for."""
    status = response.status_code
    answer = answer_text(response)
    body = outside.json_or_none(response)
    code = _int(body.get("error")) if isinstance(body, dict) else None
    if code is not None:
        message = f"{what}: error {code}: {str(body.get('message', ''))[:200]}"
        if code in auth_codes:
            raise AuthExpired(message, status=status, code=code, answer=answer)
        if code in SERVER_KEY_CODES:
            logger.error("%s refuses this server's API key (error %s): check %s", what, code, key_setting)
        if code in RETRY_CODES or code in SERVER_KEY_CODES or status >= 500:
            raise RetryLater(message, retry_after_s=retry_after_s(response), status=status, answer=answer)
        raise GiveUp(message, status=status, code=code, answer=answer)
    outside.raise_if_busy(response, f"{what}: HTTP {status}")
    if status != 200 or not isinstance(body, dict):
        raise GiveUp(f"{what}: unexpected answer (HTTP {status})", status=status, answer=answer)
    return body


def _scrobble_results(body: dict[str, Any], count: int, *, label: str) -> list[ItemResult]:
    scrobbles = body.get("scrobbles")
    items = scrobbles.get("scrobble") if isinstance(scrobbles, dict) else None
    if isinstance(items, dict):  # one scrobble comes back as an object, several as a list
        items = [items]
    results = [_item_result(item) for item in items] if isinstance(items, list) else []
    if len(results) == count and None not in results:
        return results
    attr = scrobbles.get("@attr") if isinstance(scrobbles, dict) else None
    accepted = _int(attr.get("accepted")) if isinstance(attr, dict) else None
    ignored = _int(attr.get("ignored", 0)) if isinstance(attr, dict) else None
    if accepted == count and ignored == 0:
        # Every scrobble accepted, but not listed one by one: trust the counts (refusing
        # them here would dead-letter plays Last.fm has, and a resend would count them twice).
        return [ItemResult(accepted=True)] * count
    detail = f"accepted {accepted} of {count} without saying which" if accepted is not None \
        else f"does not list {count} scrobbles"
    raise GiveUp(f"{label} track.scrobble: answer {detail}", status=200, answer=json.dumps(body)[:ANSWER_MAX_CHARS])


def _item_result(item: Any) -> ItemResult | None:
    ignored = item.get("ignoredMessage") if isinstance(item, dict) else None
    if not isinstance(ignored, dict):
        return None
    code = _int(ignored.get("code", "0"))
    if code is None:
        return None
    if code == 0:
        return ItemResult(accepted=True)
    if code == DAILY_LIMIT_CODE:  # not refused for good: sent again in an hour
        return ItemResult(accepted=False, code=code, message="daily scrobble limit", retry_after_s=DAILY_LIMIT_RETRY_S)
    return ItemResult(accepted=False, code=code, message=str(ignored.get("#text", "")))


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None
