"""Douyin live (https://live.douyin.com/<live_id>): room info over the web pages and API, and
the push socket, as described in docs/protocol.md ("Live feed: Douyin").

HTTP (base `LIVEFEED_DOUYIN_ROOT`, every call with a timeout):
- `GET {root}/`: sets the `ttwid` cookie every later call carries.
- `GET {root}/<live_id>`: the room page; its embedded JSON holds the numeric room id as the
  escaped `\\"roomId\\":\\"<digits>\\"`. No match: an anti-bot page (`Blocked`) or no such
  room (`RoomNotFound`).
- `GET {root}/webcast/room/web/enter/?web_rid=<live_id>&...`: title, streamer, viewers,
  `room_status` (0 live, 2 ended) and the stream's pull URLs (FLV and HLS).

The socket (`LIVEFEED_DOUYIN_WEBCAST_URL`) takes the web client's query parameters plus
`signature` from the signer LIVEFEED_DOUYIN_SIGNER names (livefeed/clients/douyin_signer.py).
Frames are decoded by livefeed/clients/douyin_frames.py; `DouyinConnection` sends the acks
it asks for, a heartbeat every `heartbeat_s`, and counts a socket that sends nothing for
`stall_s` as dropped.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

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
    SignerNeeded,
    SocketConnection,
    registry,
)
from livefeed.clients.douyin_frames import (
    MAX_FRAME_BYTES,
    SAMPLE_BYTES,
    ack_frame,
    decode_frame,
    heartbeat_frame,
)
from livefeed.clients.douyin_signer import signature_params, signature_stub, signer_from_setting
from livefeed.messages import Malformed, Message
from project import outbound
from project.outside import answer_text, asend, raise_if_busy

__all__ = ["DouyinClient", "DouyinConnection", "ack_frame", "decode_frame", "heartbeat_frame"]

HTTP_TIMEOUT_S = 10.0
OPEN_TIMEOUT_S = 10.0
HEARTBEAT_S = 10.0
SOCKET_MAX_BYTES = 4 * MAX_FRAME_BYTES  # larger frames than MAX_FRAME_BYTES still arrive, to be reported as oversized
USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0.0.0 Safari/537.36")
VERSION_CODE = "180800"
SDK_VERSION = "1.0.14-beta.0"

ROOM_ID = re.compile(r'\\"roomId\\":\\"(\d+)\\"')
ANTI_BOT = ("验证码", "captcha", "verify_", "byted_acrawler", "_wafchallengeid", "middle_page_loading")
LIVE_ID = re.compile(r"^[0-9A-Za-z_]{1,40}$")


def _escaped_room_id(page: str) -> str | None:
    found = ROOM_ID.search(page)
    return found.group(1) if found else None


@registry.register
class DouyinClient(LiveClient):
    name: ClassVar[str] = "douyin"
    label: ClassVar[str] = "Douyin"
    URL = re.compile(r"^(?:https?://)?live\.douyin\.com/([^/?#]+)/?(?:[?#].*)?$", re.IGNORECASE)

    def __init__(self, *, root: str | None = None, webcast_url: str | None = None, signer: str | None = None,
                 heartbeat_s: float = HEARTBEAT_S):
        self.root = (root or self.default_root()).rstrip("/")
        self.heartbeat_s = heartbeat_s
        self.webcast_url = webcast_url or self.default_webcast_url()
        self.signer = signer_from_setting(settings.LIVEFEED_DOUYIN_SIGNER if signer is None else signer)
        self._http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.root}>"

    @classmethod
    def default_root(cls) -> str:
        return settings.LIVEFEED_DOUYIN_ROOT

    @classmethod
    def default_webcast_url(cls) -> str:
        return settings.LIVEFEED_DOUYIN_WEBCAST_URL

    @classmethod
    def parse_url(cls, url: str) -> str | None:
        found = cls.URL.match((url or "").strip())
        if not found or not LIVE_ID.match(found.group(1)):
            return None
        return found.group(1)

    @classmethod
    def room_url(cls, ref: str) -> str:
        return f"https://live.douyin.com/{ref}"

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(headers={"User-Agent": USER_AGENT, "Accept-Language": "zh-CN,zh;q=0.9"},
                                           follow_redirects=True, verify=outbound.tls_context())
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _get(self, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
        response = await asend(self._client(), "GET", url, what=what, timeout_s=HTTP_TIMEOUT_S, **kwargs)
        raise_if_busy(response, f"{what}: Douyin is busy (HTTP {response.status_code})")
        return response

    async def _ttwid(self) -> str:
        response = await self._get(f"{self.root}/", what="Douyin home page")
        ttwid = response.cookies.get("ttwid")  # the client's cookie jar keeps it for the later calls
        if not ttwid:
            raise Blocked(f"Douyin's home page {self.root}/ set no ttwid cookie (HTTP {response.status_code}): "
                          "it may be showing an anti-bot check to this server", status=response.status_code,
                          answer=answer_text(response))
        return ttwid

    async def _room_id(self, ref: str) -> str:
        self._client().cookies.set("__ac_nonce", secrets.token_hex(11)[:21])
        response = await self._get(f"{self.root}/{ref}", what="Douyin room page")
        if response.status_code == 404:
            raise RoomNotFound(f"Douyin has no live room {ref} (HTTP 404 for {self.room_url(ref)}).", status=404)
        page = answer_text(response) if response.status_code >= 400 else response.text
        room_id = _escaped_room_id(page)
        if room_id:
            return room_id
        lowered = page.lower()
        if response.status_code in (401, 403) or any(marker in lowered for marker in ANTI_BOT):
            raise Blocked(f"Douyin answered the room page of {ref} with its anti-bot check (HTTP "
                          f"{response.status_code}); try again later, or from another address",
                          status=response.status_code, answer=page[:2000])
        raise RoomNotFound(f"Douyin's page for {ref} names no room (no roomId in it): the live id is wrong or "
                           "the room no longer exists.", status=response.status_code, answer=page[:2000])

    async def _enter(self, ref: str) -> dict[str, Any]:
        params = {"aid": "6383", "app_name": "douyin_web", "live_id": "1", "device_platform": "web",
                  "language": "zh-CN", "enter_from": "web_live", "cookie_enabled": "true", "screen_width": "1920",
                  "screen_height": "1080", "browser_language": "zh-CN", "browser_platform": "Win32",
                  "browser_name": "Chrome", "browser_version": "124.0.0.0", "web_rid": ref}
        if self.signer is not None:
            a_bogus = await self.signer.a_bogus(query=urlencode(params), user_agent=USER_AGENT)
            if a_bogus:
                params["a_bogus"] = a_bogus
        response = await self._get(f"{self.root}/webcast/room/web/enter/", what="Douyin room enter API",
                                   params=params)
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            body = None
        if not response.content.strip() and response.status_code == 200:
            # Douyin answers an unsigned (or badly signed) call with an empty 200.
            if "a_bogus" not in params:
                raise SignerNeeded(f"Douyin's room API answered {ref} with nothing: it wants an a_bogus signature, "
                                   "see LIVEFEED_DOUYIN_SIGNER", status=200)
            raise Blocked(f"Douyin's room API answered {ref} with nothing although signed: the signer "
                          f"{self.signer!r} may be out of date", status=200)
        if not isinstance(body, dict):
            raise Blocked(f"Douyin's room API answered {ref} with something that is not JSON (HTTP "
                          f"{response.status_code}): probably its anti-bot check", status=response.status_code,
                          answer=answer_text(response))
        code = body.get("status_code")
        if code not in (0, None):
            message = str((body.get("data") or {}).get("prompts") or body.get("status_message") or "")[:200]
            raise GiveUp(f"Douyin's room API refused {ref}: status_code {code} {message}".strip(),
                         code=code if isinstance(code, int) else None, answer=answer_text(response))
        data = body.get("data")
        if not isinstance(data, dict):
            raise RoomNotFound(f"Douyin's room API knows no room {ref}.", answer=answer_text(response))
        return data

    async def room_info(self, ref: str) -> RoomInfo:
        ttwid = await self._ttwid()
        room_id = await self._room_id(ref)
        data = await self._enter(ref)
        rooms = data.get("data") or []
        room = rooms[0] if rooms and isinstance(rooms[0], dict) else {}
        if not room and data.get("room_status") is None:
            raise RoomNotFound(f"Douyin's room API knows no room {ref}.")
        user = data.get("user") if isinstance(data.get("user"), dict) else room.get("owner") or {}
        avatar = ((user.get("avatar_thumb") or {}).get("url_list") or [""])[0]
        return RoomInfo(
            ref=ref, live=_live(data, room), title=str(room.get("title") or ""),
            streamer_name=str(user.get("nickname") or ""), streamer_id=str(user.get("id_str") or user.get("id") or ""),
            avatar_url=str(avatar), viewers=_viewers(room), stream_urls=_stream_urls(room.get("stream_url") or {}),
            internal={"room_id": str(room.get("id_str") or room_id), "ttwid": ttwid,
                      "user_unique_id": str(7_300_000_000_000_000_000 + secrets.randbelow(10**17))})

    def socket_query(self, info: RoomInfo) -> dict[str, str]:
        """The query parameters the web client opens the push socket with (signature not included)."""
        room_id = info.internal["room_id"]
        uid = info.internal["user_unique_id"]
        now = int(time.time() * 1000)
        return {
            "app_name": "douyin_web", "version_code": VERSION_CODE, "webcast_sdk_version": SDK_VERSION,
            "update_version_code": SDK_VERSION, "compress": "gzip", "device_platform": "web",
            "cookie_enabled": "true", "screen_width": "1920", "screen_height": "1080", "browser_language": "zh-CN",
            "browser_platform": "Win32", "browser_name": "Mozilla", "browser_version": USER_AGENT.split("/", 1)[1],
            "browser_online": "true", "tz_name": "Asia/Shanghai",
            "cursor": f"d-1_u-1_fh-{now}_t-{now}_r-1",
            "internal_ext": f"internal_src:dim|wss_push_room_id:{room_id}|wss_push_did:{uid}|first_req_ms:{now}"
                            f"|fetch_time:{now}|seq:1|wss_info:0-{now}-0-0|wrds_v:0",
            "host": "https://live.douyin.com", "aid": "6383", "live_id": "1", "did_rule": "3", "endpoint": "live_pc",
            "support_wrds": "1", "user_unique_id": uid, "im_path": "/webcast/im/fetch/", "identity": "audience",
            "need_persist_msg_count": "15", "insert_task_id": "", "live_reason": "", "room_id": room_id,
            "heartbeatDuration": "0", "sub_room_id": "", "sub_channel_id": "", "device_type": "", "ac": "",
        }

    async def signed_url(self, info: RoomInfo) -> str:
        query = self.socket_query(info)
        if self.signer is not None:
            params = signature_params(query)
            query["signature"] = await self.signer.sign(stub=signature_stub(params), params=params,
                                                        user_agent=USER_AGENT)
        return f"{self.webcast_url}?{urlencode(query)}"

    async def connect(self, info: RoomInfo, *, stall_s: float) -> DouyinConnection:
        url = await self.signed_url(info)
        headers = {"Cookie": f"ttwid={info.internal['ttwid']}", "User-Agent": USER_AGENT,
                   "Origin": "https://live.douyin.com"}
        try:
            ws = await ws_connect(url, additional_headers=headers, max_size=SOCKET_MAX_BYTES, open_timeout=OPEN_TIMEOUT_S,
                                  ping_interval=None, close_timeout=1.0, compression=None, ssl=outbound.wss_context(url))
        except websockets.InvalidStatus as exc:
            raise self._refused(exc.response.status_code, exc.response.body or b"") from None
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            raise RetryLater(f"Douyin's push socket {urlsplit(self.webcast_url).hostname}: {type(exc).__name__}: "
                             f"{exc}") from None
        connection = DouyinConnection(ws, room_id=info.internal["room_id"], stall_s=stall_s,
                                      heartbeat_s=self.heartbeat_s)
        connection.start()
        return connection

    def _refused(self, status: int, body: bytes) -> Exception:
        answer = body[:2000].decode("utf-8", "replace")
        if status >= 500 or status == 429:
            return RetryLater(f"Douyin's push socket is busy (HTTP {status})", status=status, answer=answer)
        if self.signer is None:
            return SignerNeeded(f"Douyin refused the connection (HTTP {status}): a signer is needed, see "
                                "LIVEFEED_DOUYIN_SIGNER", status=status, answer=answer)
        return Blocked(f"Douyin refused the signed connection (HTTP {status}): the signer "
                       f"{self.signer!r} may be out of date", status=status, answer=answer)


def _live(data: dict[str, Any], room: dict[str, Any]) -> bool:
    """`room_status` 0 is live, 2 ended; without it, the room's own `status` (2 live, 4 ended)."""
    if data.get("room_status") is not None:
        return data["room_status"] == 0
    return room.get("status") == 2


def _viewers(room: dict[str, Any]) -> int | None:
    stats = room.get("room_view_stats") or {}
    for value in (stats.get("display_value"), (room.get("stats") or {}).get("user_count"), room.get("user_count_str")):
        with contextlib.suppress(TypeError, ValueError):
            return int(value)
    return None


def _stream_urls(stream: dict[str, Any]) -> dict[str, str]:
    urls: dict[str, str] = {}
    for quality, url in (stream.get("flv_pull_url") or {}).items():
        if isinstance(url, str) and url:
            urls[f"flv:{quality}"] = url
    for quality, url in (stream.get("hls_pull_url_map") or {}).items():
        if isinstance(url, str) and url:
            urls[f"hls:{quality}"] = url
    if isinstance(stream.get("hls_pull_url"), str) and stream["hls_pull_url"]:
        urls.setdefault("hls:default", stream["hls_pull_url"])
    return urls


class DouyinConnection(SocketConnection):
    """One open push socket (the read loop, stall and close are SocketConnection's): answers
    every frame that asks for an ack and sends a heartbeat every `heartbeat_s`, the first at
    once."""

    label: ClassVar[str] = "Douyin's push socket"

    def __init__(self, ws: ClientConnection, *, room_id: str, stall_s: float, heartbeat_s: float = HEARTBEAT_S):
        super().__init__(ws, stall_s=stall_s)
        self.room_id = room_id
        self.heartbeat_s = min(heartbeat_s, max(stall_s / 2, 0.05))
        self.heartbeats_sent = 0
        self.acks_sent = 0

    def __repr__(self) -> str:
        return f"<DouyinConnection room {self.room_id}>"

    def start(self) -> None:
        self.every(self.heartbeat_s, self._heartbeat, name=f"douyin-heartbeat-{self.room_id}", now=True)

    async def _heartbeat(self) -> None:
        await self._ws.send(heartbeat_frame())
        self.heartbeats_sent += 1

    async def read(self, frame: bytes | str) -> list[Message | Malformed]:
        if isinstance(frame, str):
            return [Malformed("text", "a text frame where protobuf was expected", frame[:SAMPLE_BYTES].encode())]
        items, ack = decode_frame(frame)
        if ack is not None:
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._ws.send(ack)
                self.acks_sent += 1
        return items
