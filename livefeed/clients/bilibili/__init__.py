"""Bilibili live (https://live.bilibili.com/<room id>): room info over the web API and the
live message socket ("danmaku" stream), as described in docs/protocol.md ("Live feed: Bilibili").

HTTP (base `LIVEFEED_BILIBILI_API_ROOT`, every call with a timeout, answers `{"code": 0,
"message": ..., "data": ...}`; a non-zero code is the platform's error):
- `room/v1/Room/room_init?id=<id>`: the real room id for a short one, the streamer's uid and
  `live_status` (1 = live; 0 offline, 2 replaying videos: not live).
- `xlive/web-room/v1/index/getRoomBaseInfo?req_biz=web_room_componet&room_ids=<real id>`:
  title, streamer name, viewers; `live_user/v1/Master/info?uid=`: the streamer's avatar.
- `xlive/web-room/v1/index/getDanmuInfo?id=<real id>` (WBI-signed, see `wbi_sign`): the
  socket token and the list of socket hosts.
- `xlive/web-room/v2/index/getRoomPlayInfo?room_id=...&protocol=0,1&format=0,1,2&codec=0,1`:
  the pull URLs of the stream (RoomInfo.stream_urls, for recording).
The WBI keys come from the nav endpoint (`LIVEFEED_BILIBILI_NAV_URL`), cached for an hour.

The socket carries packets with a 16-byte big-endian header (total length u32, header length
u16 = 16, protocol version u16, operation u32, sequence u32). Operation 7 authenticates (JSON
body with the token), 8 answers it (`{"code": 0}`), 2 is our heartbeat (sent every
`LIVEFEED_BILIBILI_HEARTBEAT_S`), 3 answers it with the popularity (u32), 5 carries one JSON
command. A version-2 (zlib) or version-3 (brotli) operation-5 body is itself a run of packets.

`frames.decode_frame(bytes)` turns one websocket frame into `Message`s and `Malformed` reports
and never raises; `wbi.wbi_sign` signs getDanmuInfo; `BilibiliConnection` (here) adds the auth
handshake and heartbeats to the shared `SocketConnection` (stalls, drops, the end of the
broadcast at `PREPARING`, a close within a second). The cookie (`LIVEFEED_BILIBILI_COOKIE`) is a secret:
it is sent in the Cookie header and nowhere else, never logged and never in a repr.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import websockets
from django.conf import settings
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from livefeed.clients import (
    Blocked,
    GiveUp,
    LiveClient,
    RetryLater,
    RoomInfo,
    RoomNotFound,
    SocketConnection,
    closed_text,
    registry,
)
from livefeed.clients.bilibili.frames import (
    MAX_FRAME_BYTES,
    OP_AUTH,
    OP_HEARTBEAT,
    SAMPLE_BYTES,
    _decode,
    _int,
    decode_frame,
    pack,
)
from livefeed.clients.bilibili.wbi import mixin_key, wbi_sign
from livefeed.messages import Malformed, Message
from project import outbound, outside

__all__ = ["MAX_FRAME_BYTES", "BilibiliClient", "BilibiliConnection", "decode_frame", "mixin_key", "pack",
           "wbi_sign"]

logger = logging.getLogger(__name__)


class _HideCookie(logging.Filter):
    """The websockets library logs the handshake's headers at DEBUG: never the Cookie."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "cookie" in str(record.msg).lower() or any("cookie" in str(arg).lower() for arg in record.args or ()):
            record.msg, record.args = "> Cookie: (hidden)", ()
        return True


socket_logger = logging.getLogger(f"{__name__}.socket")  # the websockets library's logger for our sockets
socket_logger.addFilter(_HideCookie())

HEARTBEAT_BODY = b"[object Object]"  # what the web client sends; the server echoes it
AUTH_TIMEOUT_S = 10.0
DANMU_INFO_MAX_AGE_S = 300.0  # a token older than this is fetched again before connecting
WBI_KEYS_MAX_AGE_S = 3600.0
DEFAULT_WS_TEMPLATE = "wss://{host}:{wss_port}/sub"
FALLBACK_HOST = {"host": "broadcastlv.chat.bilibili.com", "port": 2243, "wss_port": 443, "ws_port": 2244}
USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0 Safari/537.36")
PLAY_QN = 10000  # "original" quality

ROOM_NOT_FOUND_CODES = {60004, 19002000, 1}  # room_init, getRoomPlayInfo, get_info
BLOCKED_CODES = {-352, -412, -403, 65530, -101}  # risk control, request intercepted, forbidden, token, login
_ROOM_PATH = re.compile(r"^/(?:h5/|blanc/)?(\d{1,20})/?$")


# (nav URL, digest of the cookie) -> (fetched, img_key, sub_key, logged-in mid)
_wbi_cache: dict[tuple[str, str], tuple[float, str, str, int]] = {}


def _key_from_url(url: Any) -> str:
    if not isinstance(url, str):
        return ""
    return urlsplit(url).path.rsplit("/", 1)[-1].split(".", 1)[0]


def _cookie_value(cookie: str, name: str) -> str:
    for part in cookie.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip()
    return ""


# --- Client ----------------------------------------------------------------------------------

@registry.register
class BilibiliClient(LiveClient):
    name = "bilibili"
    label = "Bilibili"

    def __init__(self, *, api_root: str | None = None, ws_url: str | None = None, cookie: str | None = None,
                 nav_url: str | None = None, heartbeat_s: float | None = None, timeout_s: float | None = None):
        self.api_root = (api_root if api_root is not None else settings.LIVEFEED_BILIBILI_API_ROOT).rstrip("/")
        self.ws_url = ws_url if ws_url is not None else settings.LIVEFEED_BILIBILI_WS_URL
        self.nav_url = nav_url if nav_url is not None else settings.LIVEFEED_BILIBILI_NAV_URL
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else settings.LIVEFEED_BILIBILI_HEARTBEAT_S
        self.timeout_s = timeout_s if timeout_s is not None else settings.LIVEFEED_BILIBILI_HTTP_TIMEOUT_S
        self._cookie = cookie if cookie is not None else settings.LIVEFEED_BILIBILI_COOKIE
        self._wbi_cache_key = (self.nav_url, hashlib.sha256(self._cookie.encode()).hexdigest()[:16])
        self._http: httpx.AsyncClient | None = None
        self._turns: dict[int, int] = {}  # real room id -> how many connects so far (host rotation)
        self._avatars: dict[str, str] = {}  # streamer uid -> avatar URL
        self.last_url = ""

    def __repr__(self) -> str:
        return f"<BilibiliClient {self.api_root} cookie={'set' if self._cookie else 'unset'}>"

    @classmethod
    def parse_url(cls, url: str) -> str | None:
        text = (url or "").strip()
        if not text or len(text) > 2000:
            return None
        if "://" not in text:
            text = "https://" + text
        try:
            parts = urlsplit(text)
        except ValueError:
            return None
        if parts.scheme not in ("http", "https") or (parts.hostname or "").lower() != "live.bilibili.com":
            return None
        match = _ROOM_PATH.match(parts.path)
        return match.group(1) if match else None

    @classmethod
    def room_url(cls, ref: str) -> str:
        return f"https://live.bilibili.com/{ref}"

    # HTTP

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            headers = {"User-Agent": USER_AGENT, "Referer": "https://live.bilibili.com/",
                       "Origin": "https://live.bilibili.com"}
            if self._cookie:
                headers["Cookie"] = self._cookie
            self._http = httpx.AsyncClient(timeout=self.timeout_s, headers=headers, verify=outbound.tls_context())
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _get(self, url: str, params: dict[str, Any], *, what: str) -> dict:
        """The answer's JSON object; HTTP errors mapped (429/5xx RetryLater, 412 Blocked, other 4xx GiveUp)."""
        response = await outside.asend(self._client(), "GET", url, what=what, timeout_s=self.timeout_s, params=params)
        outside.raise_if_busy(response, f"{what}: Bilibili answered HTTP {response.status_code}")
        if response.status_code in (403, 412):
            raise Blocked(f"{what}: Bilibili refused the request (HTTP {response.status_code}, its anti-crawler "
                          "check); try again later, or set LIVEFEED_BILIBILI_COOKIE",
                          status=response.status_code, answer=outside.answer_text(response))
        if response.status_code >= 400:
            raise GiveUp(f"{what}: Bilibili answered HTTP {response.status_code}", status=response.status_code,
                         answer=outside.answer_text(response))
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise GiveUp(f"{what}: Bilibili's answer is not a JSON object", status=response.status_code,
                         answer=outside.answer_text(response))
        return body

    async def _api(self, path: str, params: dict[str, Any], *, what: str, ref: str = "") -> dict:
        """`data` of a live API call whose `code` is 0; other codes mapped to RoomNotFound/Blocked/GiveUp."""
        body = await self._get(f"{self.api_root}{path}", params, what=what)
        code = _int(body.get("code"), -1)
        if code == 0:
            data = body.get("data")
            if not isinstance(data, dict):
                raise GiveUp(f"{what}: Bilibili's answer has no data", answer=json.dumps(body)[:500])
            return data
        message = str(body.get("message") or body.get("msg") or "")[:200]
        answer = json.dumps(body, ensure_ascii=False)[:500]
        if ref and (code in ROOM_NOT_FOUND_CODES or code == -400):
            raise RoomNotFound(f"Bilibili has no live room {ref} (code {code}: {message})", code=code, answer=answer)
        if code in BLOCKED_CODES:
            raise Blocked(f"{what}: Bilibili refused the request (code {code}: {message}); try again later, or set "
                          "LIVEFEED_BILIBILI_COOKIE to a logged-in browser's cookie", code=code, answer=answer)
        raise GiveUp(f"{what}: Bilibili answered code {code}: {message}", code=code, answer=answer)

    async def _wbi_keys(self, *, refresh: bool = False) -> tuple[str, str, int]:
        """(img_key, sub_key, logged-in user's mid or 0) from the nav endpoint, cached for an hour."""
        cached = _wbi_cache.get(self._wbi_cache_key)
        if cached and not refresh and time.monotonic() - cached[0] < WBI_KEYS_MAX_AGE_S:
            return cached[1], cached[2], cached[3]
        body = await self._get(self.nav_url, {}, what="Bilibili nav (WBI keys)")
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        images = data.get("wbi_img") if isinstance(data.get("wbi_img"), dict) else {}
        img_key, sub_key = _key_from_url(images.get("img_url")), _key_from_url(images.get("sub_url"))
        if len(img_key + sub_key) < 64:
            raise GiveUp("Bilibili nav (WBI keys): the answer has no wbi_img keys, so getDanmuInfo cannot be "
                         "signed (the signing scheme may have changed)", answer=json.dumps(body)[:500])
        mid = _int(data.get("mid")) if data.get("isLogin") else 0
        _wbi_cache[self._wbi_cache_key] = (time.monotonic(), img_key, sub_key, mid)
        return img_key, sub_key, mid

    async def _danmu_info(self, room_id: int) -> dict[str, Any]:
        img_key, sub_key, mid = await self._wbi_keys()
        params = wbi_sign({"id": room_id, "type": 0, "web_location": "444.8"}, img_key=img_key, sub_key=sub_key)
        try:
            data = await self._api("/xlive/web-room/v1/index/getDanmuInfo", params, what="Bilibili getDanmuInfo")
        except Blocked:
            _wbi_cache.pop(self._wbi_cache_key, None)  # the keys change daily: fetch them again next time
            raise
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise GiveUp("Bilibili getDanmuInfo: the answer has no socket token")
        hosts = [{"host": str(h["host"]), "port": _int(h.get("port"), 2243), "wss_port": _int(h.get("wss_port"), 443),
                  "ws_port": _int(h.get("ws_port"), 2244)}
                 for h in (data.get("host_list") if isinstance(data.get("host_list"), list) else [])
                 if isinstance(h, dict) and h.get("host")]
        uid = (mid or _int(_cookie_value(self._cookie, "DedeUserID"))) if self._cookie else 0
        return {"token": token, "hosts": hosts, "uid": uid, "fetched_at": time.time()}

    async def _stream_urls(self, room_id: int) -> dict[str, str]:
        params = {"room_id": room_id, "protocol": "0,1", "format": "0,1,2", "codec": "0,1", "qn": PLAY_QN,
                  "platform": "web", "ptype": 8}
        data = await self._api("/xlive/web-room/v2/index/getRoomPlayInfo", params, what="Bilibili getRoomPlayInfo")
        urls: dict[str, str] = {}
        try:
            playurl = ((data.get("playurl_info") or {}).get("playurl") or {})
            for stream in playurl.get("stream") or []:
                for fmt in stream.get("format") or []:
                    for codec in fmt.get("codec") or []:
                        url_info = codec.get("url_info") or []
                        if not url_info or not codec.get("base_url"):
                            continue
                        first = url_info[0]
                        key = f"{stream.get('protocol_name')}_{fmt.get('format_name')}_{codec.get('codec_name')}"
                        urls.setdefault(key, f"{first.get('host', '')}{codec['base_url']}{first.get('extra', '')}")
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise GiveUp(f"Bilibili getRoomPlayInfo: an answer of an unexpected shape ({exc})") from None
        return urls

    async def _avatar(self, uid: str) -> str:
        """The streamer's avatar (live_user/v1/Master/info); "" when Bilibili does not say."""
        if not uid.isdigit():
            return ""
        if uid in self._avatars:  # asked once per client: every reconnect reads the room info again
            return self._avatars[uid]
        try:
            data = await self._api("/live_user/v1/Master/info", {"uid": uid}, what="Bilibili Master/info")
        except (RetryLater, GiveUp) as exc:  # a picture is not worth failing the room for
            logger.info("bilibili streamer %s: no avatar: %s", uid, exc)
            return ""
        face = (data.get("info") or {}).get("face") if isinstance(data.get("info"), dict) else ""
        self._avatars[uid] = face if isinstance(face, str) and face.startswith(("https://", "http://")) else ""
        return self._avatars[uid]

    async def room_info(self, ref: str) -> RoomInfo:
        if not str(ref).isdigit():
            raise RoomNotFound(f"{str(ref)[:40]!r} is not a Bilibili room id (digits, as in https://live.bilibili.com/<id>)")
        init = await self._api("/room/v1/Room/room_init", {"id": ref}, what="Bilibili room_init", ref=ref)
        room_id = _int(init.get("room_id"))
        if room_id <= 0:
            raise RoomNotFound(f"Bilibili has no live room {ref}")
        if init.get("is_locked"):
            raise Blocked(f"Bilibili has locked room {ref}")
        live = _int(init.get("live_status")) == 1
        base = await self._api("/xlive/web-room/v1/index/getRoomBaseInfo",
                               {"req_biz": "web_room_componet", "room_ids": room_id}, what="Bilibili getRoomBaseInfo")
        rooms = base.get("by_room_ids") if isinstance(base.get("by_room_ids"), dict) else {}
        room = rooms.get(str(room_id)) or next(iter(rooms.values()), {}) if rooms else {}
        if not isinstance(room, dict):
            room = {}
        info = RoomInfo(ref=str(ref), live=live, title=str(room.get("title") or ""),
                        streamer_name=str(room.get("uname") or ""),
                        streamer_id=str(init.get("uid") or room.get("uid") or ""),
                        viewers=_int(room["online"]) if room.get("online") is not None else None,
                        internal={"room_id": room_id, "short_id": _int(init.get("short_id"))})
        info.avatar_url = await self._avatar(info.streamer_id)
        if live:
            info.internal["danmu"] = await self._danmu_info(room_id)
            try:
                info.stream_urls = await self._stream_urls(room_id)
            except (RetryLater, GiveUp) as exc:  # the chat does not need them; recording tries again
                logger.warning("bilibili room %s: no stream URLs: %s", room_id, exc)
        return info

    # Socket

    def _next_url(self, room_id: int, hosts: list[dict[str, Any]]) -> str:
        """LIVEFEED_BILIBILI_WS_URL when it is a plain URL; else its template (default
        wss://{host}:{wss_port}/sub) over the room's host list, the next host at every connect."""
        template = self.ws_url or DEFAULT_WS_TEMPLATE
        if "{" not in template:
            return template
        hosts = hosts or [FALLBACK_HOST]
        turn = self._turns.get(room_id, 0)
        self._turns[room_id] = turn + 1
        host = hosts[turn % len(hosts)]
        try:
            return template.format(**host)
        except (KeyError, IndexError, ValueError) as exc:
            raise GiveUp(f"LIVEFEED_BILIBILI_WS_URL={template!r} is not a URL or a template with {{host}}, "
                         f"{{wss_port}}, {{ws_port}} or {{port}} ({exc})") from None

    async def connect(self, info: RoomInfo, *, stall_s: float) -> BilibiliConnection:
        room_id = _int(info.internal.get("room_id"))
        if room_id <= 0:
            raise GiveUp("Bilibili connect: the room info has no real room id (call room_info first)")
        danmu = info.internal.get("danmu")
        if not danmu or time.time() - float(danmu.get("fetched_at", 0)) > DANMU_INFO_MAX_AGE_S:
            danmu = info.internal["danmu"] = await self._danmu_info(room_id)
        url = self.last_url = self._next_url(room_id, danmu.get("hosts") or [])
        headers = {"Origin": "https://live.bilibili.com"}
        if self._cookie:
            headers["Cookie"] = self._cookie
        try:
            ws = await ws_connect(url, open_timeout=self.timeout_s, close_timeout=1, ping_interval=None,
                                  max_size=MAX_FRAME_BYTES * 4, compression=None, user_agent_header=USER_AGENT,
                                  additional_headers=headers, logger=socket_logger, ssl=outbound.wss_context(url))
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            if status in (403, 412):
                raise Blocked(f"Bilibili refused the live socket at {urlsplit(url).hostname} (HTTP {status})",
                              status=status) from None
            raise RetryLater(f"Bilibili live socket at {urlsplit(url).hostname}: HTTP {status}", status=status) from None
        except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
            raise RetryLater(f"Bilibili live socket at {urlsplit(url).hostname}: {type(exc).__name__}: {exc}") from None
        auth = {"uid": _int(danmu.get("uid")), "roomid": room_id, "protover": 3, "platform": "web", "type": 2,
                "key": danmu["token"]}
        buvid = _cookie_value(self._cookie, "buvid3") if self._cookie else ""
        if buvid:
            auth["buvid"] = buvid
        connection = BilibiliConnection(ws, url=url, room_id=room_id, stall_s=stall_s,
                                        heartbeat_s=min(self.heartbeat_s, max(stall_s / 2, 0.05)))
        try:
            await connection.authenticate(json.dumps(auth, separators=(",", ":")).encode())
        except BaseException:
            await connection.close()
            raise
        return connection


class BilibiliConnection(SocketConnection):
    """One authenticated live socket. Yields a list per frame that carried messages or
    malformed packets; heartbeats go out every `heartbeat_s` (at most half of `stall_s`, so a
    quiet room's heartbeat replies keep it from counting as stalled)."""

    label = "Bilibili's live socket"

    def __init__(self, ws: ClientConnection, *, url: str, room_id: int, stall_s: float, heartbeat_s: float):
        super().__init__(ws, stall_s=stall_s)
        self.url = url
        self.room_id = room_id
        self.heartbeat_s = heartbeat_s
        self.heartbeats_sent = 0
        self.heartbeat_replies = 0
        self.popularity: int | None = None

    def __repr__(self) -> str:
        return f"<BilibiliConnection room {self.room_id} {urlsplit(self.url).hostname}>"

    async def authenticate(self, auth_body: bytes) -> None:
        try:
            await self._ws.send(pack(OP_AUTH, auth_body))
            async with asyncio.timeout(AUTH_TIMEOUT_S):
                while True:
                    frame = await self._ws.recv()
                    if isinstance(frame, str):
                        continue
                    decoded = _decode(frame)
                    self._pending.extend(decoded.items)
                    if decoded.auth_code is not None:
                        break
        except TimeoutError:
            raise RetryLater(f"{self.label}: no answer to the auth packet within {AUTH_TIMEOUT_S:g}s") from None
        except websockets.ConnectionClosed as exc:
            raise RetryLater(f"{self.label} closed after the auth packet ({closed_text(exc)}); "
                             "the token may have expired") from None
        if decoded.auth_code != 0:
            raise Blocked(f"Bilibili refused to join room {self.room_id} on the live socket (auth answer "
                          f"{decoded.auth_answer[:100]}): the token from getDanmuInfo was not accepted; set "
                          "LIVEFEED_BILIBILI_COOKIE if this keeps happening", code=decoded.auth_code)
        await self._send_heartbeat()
        self.every(self.heartbeat_s, self._send_heartbeat, name=f"bilibili-heartbeat-{self.room_id}")

    async def _send_heartbeat(self) -> None:
        await self._ws.send(pack(OP_HEARTBEAT, HEARTBEAT_BODY, sequence=self.heartbeats_sent + 1))
        self.heartbeats_sent += 1

    async def read(self, frame: bytes | str) -> list[Message | Malformed]:
        if isinstance(frame, str):
            return [Malformed("header", "a text frame where binary packets were expected",
                              frame[:SAMPLE_BYTES].encode())]
        decoded = _decode(frame)
        if decoded.popularity is not None:
            self.heartbeat_replies += 1
            self.popularity = decoded.popularity
        return decoded.items
