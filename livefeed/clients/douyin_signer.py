"""Douyin's `signature` for the push socket, made by whatever LIVEFEED_DOUYIN_SIGNER names.

Douyin computes it with obfuscated JavaScript that changes often, so Chorus ships none and
asks a signer (docs/protocol.md, "Live feed: Douyin", has the contract):
- empty: no signer; the socket is opened unsigned (Douyin may refuse it: `SignerNeeded`).
- `http://...` or `https://...`: a signing service. Chorus POSTs
  `{"kind": "signature", "stub": <X-MS-STUB>, "params": <the string it digests>,
  "user_agent": ...}` and expects `{"signature": "..."}` (200, JSON). For the `a_bogus`
  parameter of the room API it POSTs `{"kind": "a_bogus", "params": <the query string>,
  "user_agent": ...}`; a service that does not make those answers 404 (no a_bogus is sent).
- a path to a `.js` file: run in an embedded V8 (the optional `mini-racer` package); the
  script defines `get_sign(stub)` returning the signature, and may define
  `get_a_bogus(query, userAgent)`.

The string to sign is the web client's: the MD5 hex digest ("X-MS-STUB") of
`live_id=1,aid=6383,version_code=...,webcast_sdk_version=...,room_id=<room id>,sub_room_id=,
sub_channel_id=,did_rule=3,user_unique_id=<id>,device_platform=web,device_type=,ac=,
identity=audience` (`signature_params`).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx

from livefeed.clients import SignerNeeded
from project import outbound
from project.outside import answer_text, asend, raise_if_busy

SIGNER_TIMEOUT_S = 5.0
MINI_RACER_PACKAGE = "mini-racer"

# The keys of the signed string, in the web client's order.
SIGNED_KEYS = ("live_id", "aid", "version_code", "webcast_sdk_version", "room_id", "sub_room_id", "sub_channel_id",
               "did_rule", "user_unique_id", "device_platform", "device_type", "ac", "identity")


def signature_params(query: dict[str, str]) -> str:
    """The string whose digest is signed, from the socket's query parameters."""
    return ",".join(f"{key}={query.get(key, '')}" for key in SIGNED_KEYS)


def signature_stub(params: str) -> str:
    return hashlib.md5(params.encode(), usedforsecurity=False).hexdigest()


class Signer:
    async def sign(self, *, stub: str, params: str, user_agent: str) -> str:
        raise NotImplementedError

    async def a_bogus(self, *, query: str, user_agent: str) -> str | None:
        """The `a_bogus` parameter for an HTTP call with this query string, or None when
        this signer does not make it."""
        return None


class ServiceSigner(Signer):
    """A signing service reached over HTTP (the URL is an operator's setting, not a user's)."""

    def __init__(self, url: str):
        self.url = url

    def __repr__(self) -> str:
        return f"ServiceSigner({self.url.split('?')[0]!r})"

    async def sign(self, *, stub: str, params: str, user_agent: str) -> str:
        body = {"kind": "signature", "stub": stub, "params": params, "user_agent": user_agent}
        return self._signature(await self._post(body))

    async def a_bogus(self, *, query: str, user_agent: str) -> str | None:
        response = await self._post({"kind": "a_bogus", "params": query, "user_agent": user_agent})
        if response.status_code == 404:
            return None  # this service signs the socket only
        return self._signature(response)

    async def _post(self, body: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(verify=outbound.tls_context()) as http:
            response = await asend(http, "POST", self.url, what="Douyin signer", timeout_s=SIGNER_TIMEOUT_S, json=body)
        raise_if_busy(response, f"The Douyin signer at {self.url.split('?')[0]} is busy (HTTP {response.status_code}).")
        return response

    def _signature(self, response: httpx.Response) -> str:
        try:
            answer = response.json()
        except ValueError:
            answer = None
        signature = answer.get("signature") if isinstance(answer, dict) else None
        if response.status_code != 200 or not isinstance(signature, str) or not signature:
            raise SignerNeeded(f"The Douyin signer at {self.url.split('?')[0]} gave no signature "
                               f"(HTTP {response.status_code}); it must answer {{\"signature\": \"...\"}}.",
                               status=response.status_code, answer=answer_text(response))
        return signature


class ScriptSigner(Signer):
    """A JavaScript file defining `get_sign(stub)`, run in an embedded V8 (mini-racer)."""

    def __init__(self, path: Path):
        self.path = path

    def __repr__(self) -> str:
        return f"ScriptSigner({str(self.path)!r})"

    async def sign(self, *, stub: str, params: str, user_agent: str) -> str:
        signature = await self._run("get_sign", stub)
        if signature is None:
            raise SignerNeeded(f"LIVEFEED_DOUYIN_SIGNER: {self.path} defines no get_sign(stub)")
        return signature

    async def a_bogus(self, *, query: str, user_agent: str) -> str | None:
        return await self._run("get_a_bogus", query, user_agent)

    async def _run(self, function: str, *args: str) -> str | None:
        try:
            from py_mini_racer import MiniRacer
        except ImportError:
            raise SignerNeeded(f"LIVEFEED_DOUYIN_SIGNER names a JavaScript file, which needs the optional package "
                               f"{MINI_RACER_PACKAGE!r}: pip install {MINI_RACER_PACKAGE}") from None
        try:
            source = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SignerNeeded(f"LIVEFEED_DOUYIN_SIGNER: cannot read {self.path}: {exc}") from exc
        return await asyncio.to_thread(_run_script, MiniRacer, source, str(self.path), function, args)


def _run_script(engine, source: str, name: str, function: str, args: tuple[str, ...]) -> str | None:
    """`function(*args)` of the script, or None when the script does not define it."""
    try:
        with engine() as context:
            context.eval(source)
            if context.eval(f"typeof {function}") != "function":
                return None
            value = context.call(function, *args)
    except Exception as exc:  # the engine's errors (syntax, a throw) have no common base
        raise SignerNeeded(f"LIVEFEED_DOUYIN_SIGNER: {name} failed: {type(exc).__name__}: {str(exc)[:200]}") from exc
    if not isinstance(value, str) or not value:
        raise SignerNeeded(f"LIVEFEED_DOUYIN_SIGNER: {function}() in {name} returned {type(value).__name__}, not a string")
    return value


def signer_from_setting(value: str) -> Signer | None:
    """The signer LIVEFEED_DOUYIN_SIGNER names, or None for an empty setting."""
    value = (value or "").strip()
    if not value:
        return None
    if value.startswith(("http://", "https://")):
        return ServiceSigner(value)
    return ScriptSigner(Path(value).expanduser())


__all__ = ["ScriptSigner", "ServiceSigner", "Signer", "SignerNeeded", "signature_params",
           "signature_stub", "signer_from_setting"]
