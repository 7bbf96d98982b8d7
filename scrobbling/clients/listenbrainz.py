"""ListenBrainz API client (https://listenbrainz.readthedocs.io/en/latest/users/api/core.html).

The user's token goes in `Authorization: Token <token>`. Errors come back as
`{"code": <status>, "error": "..."}`; 429 answers carry `X-RateLimit-Reset-In`.
"""

from __future__ import annotations

from typing import Any, Self

import httpx
from django.conf import settings

from project import outside
from scrobbling.clients import (
    ACCEPTED,
    AuthExpired,
    GiveUp,
    ItemResult,
    Listen,
    ScrobblingClient,
    answer_text,
    registry,
    unix_s,
)

MAX_LISTENS = 1000  # per submit-listens request
SUBMISSION_CLIENT = "Chorus"
SUBMISSION_CLIENT_VERSION = "1"


@registry.register
class ListenBrainzClient(ScrobblingClient):
    """The ListenBrainz API, or a compatible server of the user's (Maloja, Koito...); the
    user's token is passed per call."""

    name = "listenbrainz"
    label = "ListenBrainz"
    auth = "token"
    max_batch = MAX_LISTENS
    batch_setting = "SCROBBLING_LISTENBRAINZ_BATCH"
    resend_one_by_one = True

    def __init__(self, *, api_root: str, timeout_s: float = 10.0, http: httpx.Client | None = None,
                 user_chosen: bool = False):
        super().__init__(api_root=api_root.rstrip("/"), timeout_s=timeout_s, http=http, user_chosen=user_chosen)

    @classmethod
    def build(cls, *, api_root: str = "") -> Self:
        """The client for a user's own server (`api_root`, called only through the outbound
        guard) or for LISTENBRAINZ_API_ROOT, which the operator chose."""
        return cls(api_root=api_root or settings.LISTENBRAINZ_API_ROOT, timeout_s=settings.SCROBBLING_HTTP_TIMEOUT_S,
                   user_chosen=bool(api_root))

    def check(self, secret: str) -> str:
        return self.validate_token(secret)

    def scrobble_batch(self, secret: str, listens: list[Listen]) -> list[ItemResult]:
        self.submit(secret, listens)
        return [ACCEPTED] * len(listens)

    def now_playing(self, secret: str, listen: Listen) -> None:
        self.playing_now(secret, listen)

    def validate_token(self, token: str) -> str:
        """The user name the token belongs to; AuthExpired when ListenBrainz says it is not valid."""
        body, answer = self._request("GET", "validate-token", token)
        if body.get("valid") is not True:
            raise AuthExpired("ListenBrainz validate-token: token is not valid", status=200, answer=answer)
        user_name = body.get("user_name")
        if not isinstance(user_name, str) or not user_name:
            raise GiveUp("ListenBrainz validate-token: answer has no user_name", status=200, answer=answer)
        return user_name

    def playing_now(self, token: str, listen: Listen) -> None:
        """submit-listens with listen_type "playing_now" (no listened_at)."""
        self._submit(token, "playing_now", [_listen_json(listen, timed=False)])

    def submit(self, token: str, listens: list[Listen]) -> None:
        """submit-listens: "single" for one listen, "import" for 2..1000."""
        if not listens or len(listens) > MAX_LISTENS:
            raise ValueError(f"submit-listens takes 1 to {MAX_LISTENS} listens, not {len(listens)}")
        listen_type = "single" if len(listens) == 1 else "import"
        self._submit(token, listen_type, [_listen_json(listen, timed=True) for listen in listens])

    def _submit(self, token: str, listen_type: str, payload: list[dict[str, Any]]) -> None:
        body, answer = self._request("POST", "submit-listens", token, {"listen_type": listen_type, "payload": payload})
        if body.get("status") != "ok":
            raise GiveUp("ListenBrainz submit-listens: answer is not status ok", status=200, answer=answer)

    def _request(self, method: str, endpoint: str, token: str,
                 document: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
        url = f"{self.api_root}/1/{endpoint}"
        headers = {"Authorization": f"Token {token.strip()}"}
        try:
            response = outside.send(self._http, method, url, what=f"ListenBrainz {endpoint}",
                                    timeout_s=self.timeout_s, headers=headers, json=document)
        except UnicodeEncodeError as exc:  # a token saved before tokens were checked
            raise AuthExpired(f"ListenBrainz {endpoint}: the saved token has characters a token cannot have") \
                from exc
        return _parse(endpoint, response)


def _listen_json(listen: Listen, *, timed: bool) -> dict[str, Any]:
    info: dict[str, Any] = {
        "submission_client": SUBMISSION_CLIENT,
        "submission_client_version": SUBMISSION_CLIENT_VERSION,
    }
    if listen.duration_s is not None and listen.duration_s >= 0.5:
        # Whole seconds as `duration`: ListenBrainz takes it (and refuses a listen carrying
        # both duration and duration_ms), Maloja reads only this one.
        info["duration"] = round(listen.duration_s)
    if listen.mbid:
        info["recording_mbid"] = listen.mbid
    if listen.track_number is not None and listen.track_number > 0:
        info["tracknumber"] = listen.track_number
    metadata: dict[str, Any] = {"artist_name": listen.artist, "track_name": listen.title}
    if listen.album:
        metadata["release_name"] = listen.album
    metadata["additional_info"] = info
    if not timed:
        return {"track_metadata": metadata}
    return {"listened_at": unix_s(listen.played_at), "track_metadata": metadata}


def _parse(endpoint: str, response: httpx.Response) -> tuple[dict[str, Any], str]:
    """The JSON answer and its raw text, or the error class its status calls for."""
    status = response.status_code
    answer = answer_text(response)
    body = outside.json_or_none(response)
    error = str(body.get("error", ""))[:200] if isinstance(body, dict) else ""
    message = f"ListenBrainz {endpoint}: HTTP {status}" + (f": {error}" if error else "")
    if status == 401:
        raise AuthExpired(message, status=status, answer=answer)
    outside.raise_if_busy(response, message)
    if status != 200:
        raise GiveUp(message, status=status, answer=answer)
    if not isinstance(body, dict):
        raise GiveUp(f"ListenBrainz {endpoint}: answer is not a JSON object", status=status, answer=answer)
    return body, answer

