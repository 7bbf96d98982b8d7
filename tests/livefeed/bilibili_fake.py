"""A local Bilibili live that speaks the real protocols, for tests: the HTTP API (room_init,
getRoomBaseInfo, the nav endpoint with WBI keys, WBI-checked getDanmuInfo, getRoomPlayInfo)
and the live socket (16-byte header packets: auth checked against the token and room id,
heartbeats answered with the popularity, commands pushed as plain, zlib or brotli bodies with
several packets each), on one asyncio server per loopback host (the `websockets` server, whose
process_request answers the plain HTTP calls).

    fake = await FakeBilibili(hosts=("127.0.0.1", "127.0.0.2")).start()
    client = BilibiliClient(api_root=fake.api_root, nav_url=fake.nav_url, ws_url=fake.ws_template, ...)
    await fake.wait_for_socket()
    await fake.push([danmu(...), gift(...)], version=3)
    await fake.stop()

Misbehaviour on command: `push_raw(bytes)` (any frame, malformed ones too), `drop()` (abort
every socket), `answer_heartbeats = False` (a stalled server), `auth_code` (what the auth reply
says), `fail_next(path, status=..., code=..., message=...)`. Counters: `heartbeats`, `auths`
(every auth body seen), `connections` (the host each socket came to), `requests`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import struct
import zlib
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import parse_qsl, quote, urlsplit

import brotli
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

HEADER = struct.Struct(">IHHII")
quiet = logging.getLogger("tests.livefeed.bilibili_fake")  # the fake's own server logs (they show the cookie)
quiet.setLevel(logging.WARNING)
ENC_TAB = (46, 47, 18, 2, 53, 8, 23, 32, 15, 50, 10, 31, 58, 3, 45, 35, 27, 43, 5, 49, 33, 9, 42, 19, 29, 28,
           14, 39, 12, 38, 41, 13, 37, 48, 7, 16, 24, 55, 40, 61, 26, 17, 0, 1, 60, 51, 30, 4, 22, 25, 54, 21,
           56, 59, 6, 63, 57, 62, 11, 36, 20, 34, 44, 52)


def packet(operation: int, body: bytes, *, version: int = 0, sequence: int = 0) -> bytes:
    return HEADER.pack(16 + len(body), 16, version, operation, sequence) + body


def command_packet(doc: dict) -> bytes:
    return packet(5, json.dumps(doc, ensure_ascii=False).encode())


def frame(docs: list[dict], *, version: int = 0) -> bytes:
    """One websocket frame with every command: separate packets (version 0) or one zlib (2) or
    brotli (3) body holding them all."""
    plain = b"".join(command_packet(doc) for doc in docs)
    if version == 0:
        return plain
    compressed = zlib.compress(plain) if version == 2 else brotli.compress(plain)
    return packet(5, compressed, version=version)


@dataclass
class FakeRoom:
    room_id: int
    short_id: int = 0
    uid: int = 1000
    uname: str = "主播"
    title: str = "测试直播间"
    live_status: int = 1
    online: int = 1234


@dataclass
class Recorded:
    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeBilibili:
    hosts: tuple[str, ...] = ("127.0.0.1",)
    rooms: dict[int, FakeRoom] = field(default_factory=lambda: {
        5440: FakeRoom(room_id=5440, short_id=3, uid=9617619, uname="三号主播", title="三号直播间")})
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    img_key: str = "7cd084941338484aae1ad9425b84077c"
    sub_key: str = "4932caff0ff746eab6f01bf08b70ac45"
    sessdata: str = "fake-sessdata-value"  # the cookie value that counts as logged in
    login_mid: int = 424242
    popularity: int = 2466
    answer_heartbeats: bool = True
    auth_code: int = 0  # what a good auth packet is answered with

    def __post_init__(self) -> None:
        self.heartbeats = 0
        self.auths: list[dict[str, Any]] = []
        self.connections: list[str] = []  # the host each socket connected to, in order
        self.requests: list[Recorded] = []
        self.sockets: set[ServerConnection] = set()
        self._servers: list[Server] = []
        self.ports: list[int] = []
        self._failures: list[tuple[str, int, int, str, Any]] = []
        self._joined = asyncio.Event()

    async def start(self) -> Self:
        for host in self.hosts:
            server = await serve(self._socket, host, 0, process_request=self._http, compression=None,
                                 ping_interval=None, max_size=None, logger=quiet)
            self._servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()

    @property
    def api_root(self) -> str:
        return f"http://{self.hosts[0]}:{self.ports[0]}"

    @property
    def nav_url(self) -> str:
        return f"{self.api_root}/x/web-interface/nav"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.hosts[0]}:{self.ports[0]}/sub"

    ws_template = "ws://{host}:{ws_port}/sub"  # LIVEFEED_BILIBILI_WS_URL for the host list

    def fail_next(self, path: str, *, status: int = 200, code: int = 0, message: str = "", data: Any = None) -> None:
        """The next request under `path` answers HTTP `status` with {"code": code, "message": message,
        "data": data (default {})}."""
        self._failures.append((path, status, code, message, {} if data is None else data))

    # HTTP

    def _json(self, status: int, document: Any) -> Response:
        body = json.dumps(document, ensure_ascii=False).encode()
        headers = Headers({"Content-Type": "application/json; charset=utf-8", "Content-Length": str(len(body)),
                           "Connection": "close"})
        return Response(status, HTTPStatus(status).phrase, headers, body)

    def _room(self, value: str) -> FakeRoom | None:
        if not value.isdigit():
            return None
        number = int(value)
        return self.rooms.get(number) or next((r for r in self.rooms.values() if r.short_id == number), None)

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path == "/sub":
            return None  # the websocket handshake goes on
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        self.requests.append(Recorded(url.path, params, {k.lower(): v for k, v in request.headers.raw_items()}))
        for index, (path, status, code, message, data) in enumerate(self._failures):
            if url.path.startswith(path):
                del self._failures[index]
                return self._json(status, {"code": code, "message": message, "ttl": 1, "data": data})
        handler = {
            "/room/v1/Room/room_init": self._room_init,
            "/xlive/web-room/v1/index/getRoomBaseInfo": self._base_info,
            "/x/web-interface/nav": self._nav,
            "/xlive/web-room/v1/index/getDanmuInfo": self._danmu_info,
            "/xlive/web-room/v2/index/getRoomPlayInfo": self._play_info,
            "/live_user/v1/Master/info": self._master_info,
        }.get(url.path)
        if handler is None:
            return self._json(404, {"code": -404, "message": "啥都木有"})
        return handler(params, request)

    def _room_init(self, params: dict[str, str], request: Request) -> Response:
        room = self._room(params.get("id", ""))
        if room is None:
            return self._json(200, {"code": 60004, "msg": "直播间不存在", "message": "直播间不存在", "data": {}})
        return self._json(200, {"code": 0, "msg": "ok", "message": "ok", "data": {
            "room_id": room.room_id, "short_id": room.short_id, "uid": room.uid, "live_status": room.live_status,
            "is_hidden": False, "is_locked": False, "encrypted": False, "live_time": 1700000000}})

    def _base_info(self, params: dict[str, str], request: Request) -> Response:
        room = self._room(params.get("room_ids", ""))
        found = {str(room.room_id): {"room_id": room.room_id, "uid": room.uid, "title": room.title,
                                     "uname": room.uname, "online": room.online, "live_status": room.live_status,
                                     "short_id": room.short_id, "cover": ""}} if room else {}
        return self._json(200, {"code": 0, "message": "0", "ttl": 1, "data": {"by_uids": {}, "by_room_ids": found}})

    def _master_info(self, params: dict[str, str], request: Request) -> Response:
        room = next((r for r in self.rooms.values() if str(r.uid) == params.get("uid")), None)
        if room is None:
            return self._json(200, {"code": 1, "msg": "参数错误", "message": "参数错误", "data": {}})
        return self._json(200, {"code": 0, "msg": "", "message": "", "data": {
            "info": {"uid": room.uid, "uname": room.uname, "face": f"https://i0.hdslb.com/bfs/face/{room.uid}.jpg"},
            "follower_num": 10, "room_id": room.short_id or room.room_id}})

    def _logged_in(self, request: Request) -> bool:
        cookie = request.headers.get("Cookie", "")
        return f"SESSDATA={self.sessdata}" in cookie

    def _nav(self, params: dict[str, str], request: Request) -> Response:
        images = {"img_url": f"https://i0.hdslb.com/bfs/wbi/{self.img_key}.png",
                  "sub_url": f"https://i0.hdslb.com/bfs/wbi/{self.sub_key}.png"}
        if self._logged_in(request):
            return self._json(200, {"code": 0, "message": "0", "ttl": 1,
                                    "data": {"isLogin": True, "mid": self.login_mid, "wbi_img": images}})
        return self._json(200, {"code": -101, "message": "账号未登录", "ttl": 1,
                                "data": {"isLogin": False, "wbi_img": images}})

    def expected_w_rid(self, params: dict[str, str]) -> str:
        raw = self.img_key + self.sub_key
        mixin = "".join(raw[i] for i in ENC_TAB)[:32]
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(params.items()) if k != "w_rid")
        return hashlib.md5((query + mixin).encode(), usedforsecurity=False).hexdigest()

    def _danmu_info(self, params: dict[str, str], request: Request) -> Response:
        if "wts" not in params or params.get("w_rid") != self.expected_w_rid(params):
            return self._json(200, {"code": -352, "message": "-352", "ttl": 1, "data": {"v_voucher": "voucher_x"}})
        room = self._room(params.get("id", ""))
        if room is None or room.room_id != int(params["id"]):
            return self._json(200, {"code": 1, "message": "房间不存在", "ttl": 1, "data": {}})
        host_list = [{"host": host, "port": 2243, "wss_port": 443, "ws_port": port}
                     for host, port in zip(self.hosts, self.ports, strict=True)]
        return self._json(200, {"code": 0, "message": "0", "ttl": 1, "data": {
            "group": "live", "business_id": 0, "refresh_row_factor": 0.125, "refresh_rate": 100, "max_delay": 5000,
            "token": self.token, "host_list": host_list}})

    def _play_info(self, params: dict[str, str], request: Request) -> Response:
        room = self._room(params.get("room_id", ""))
        if room is None:
            return self._json(200, {"code": 19002000, "message": "获取房间基础信息失败", "data": {}})

        def codec(base: str) -> dict:
            return {"codec_name": "avc", "current_qn": 10000, "accept_qn": [10000, 150], "base_url": base,
                    "url_info": [{"host": "https://cn-fake.bilivideo.com", "extra": "expires=1&qn=10000",
                                  "stream_ttl": 3600}]}

        stream = [{"protocol_name": "http_stream", "format": [
                       {"format_name": "flv", "codec": [codec(f"/live-bvc/1/live_{room.uid}.flv?")]}]},
                  {"protocol_name": "http_hls", "format": [
                       {"format_name": "ts", "codec": [codec(f"/live-bvc/1/live_{room.uid}.m3u8?")]}]}]
        return self._json(200, {"code": 0, "message": "0", "ttl": 1, "data": {
            "room_id": room.room_id, "short_id": room.short_id, "uid": room.uid, "live_status": room.live_status,
            "playurl_info": {"conf_json": "{}", "playurl": {"cid": room.room_id, "stream": stream}}}})

    # Socket

    async def _socket(self, ws: ServerConnection) -> None:
        self.connections.append(ws.local_address[0])
        try:
            first = await asyncio.wait_for(ws.recv(), timeout=5)
            _length, _header, _version, operation, _seq = HEADER.unpack_from(first)
            auth = json.loads(first[16:]) if operation == 7 else {}
            self.auths.append(auth)
            good = (operation == 7 and auth.get("key") == self.token and auth.get("roomid") in self.rooms)
            code = self.auth_code if good else -101
            await ws.send(packet(8, json.dumps({"code": code}).encode(), version=1, sequence=1))
            if code != 0:
                await ws.close()
                return
            self.sockets.add(ws)
            self._joined.set()
            async for data in ws:
                _length, _header, _version, operation, _sequence = HEADER.unpack_from(data)
                if operation == 2:
                    self.heartbeats += 1
                    if self.answer_heartbeats:
                        await ws.send(packet(3, self.popularity.to_bytes(4, "big") + data[16:], version=1))
        except (ConnectionClosed, TimeoutError, struct.error, ValueError):
            pass
        finally:
            self.sockets.discard(ws)

    async def wait_for_socket(self, timeout_s: float = 10) -> None:
        """Until a socket has authenticated (since the last call)."""
        await asyncio.wait_for(self._joined.wait(), timeout_s)
        self._joined.clear()

    async def push_raw(self, data: bytes) -> None:
        for ws in list(self.sockets):
            await ws.send(data)

    async def push(self, docs: list[dict], *, version: int = 0) -> None:
        await self.push_raw(frame(docs, version=version))

    async def drop(self) -> None:
        """Cut every socket without a close frame (a network drop)."""
        for ws in list(self.sockets):
            ws.transport.abort()
        self.sockets.clear()


# Commands as the platform sends them (the fields the client reads, and a few it does not).

def danmu(text: str, *, uid: int = 6088969, uname: str = "tim1997", ts_ms: int = 1723979200123,
          id_str: str = "364b06e3c561af3d5921f1253d66c1d575", sticker: dict | None = None) -> dict:
    extra = {"send_from_me": False, "mode": 0, "color": 16777215, "dm_type": 1 if sticker else 0, "content": text,
             "emots": {}, "id_str": id_str, "emoticon_unique": sticker.get("emoticon_unique", "") if sticker else ""}
    meta = [0, 1, 25, 16777215, ts_ms, -1, 0, "c3b2", 0, 0, 0, "", 1 if sticker else 0, sticker or "{}", "{}",
            {"extra": json.dumps(extra, ensure_ascii=False), "mode": 0, "user": {"uid": uid}}, {}, 0, None]
    return {"cmd": "DANMU_MSG", "dm_v2": "", "info": [
        meta, text, [uid, uname, 0, 0, 0, 10000, 1, ""], [21, "ASAKI", "主播", 732, 0], [39, 0, 0, 0, 2], ["", ""],
        0, 0, None, {"ct": "AFFF4206", "ts": ts_ms // 1000}, 0, 0, None, None, 0, 1040, [49], None]}


def send_gift(*, tid: str = "1673622464121900003", num: int = 1, price: int = 100, coin_type: str = "gold",
              batch_combo_id: str = "", super_batch_gift_num: int = 1, combo_total_coin: int = 0,
              uid: int = 510149209, uname: str = "送礼人", gift_id: int = 31036, gift_name: str = "小花花") -> dict:
    return {"cmd": "SEND_GIFT", "data": {
        "action": "投喂", "batch_combo_id": batch_combo_id,
        "batch_combo_send": {"batch_combo_id": batch_combo_id, "batch_combo_num": super_batch_gift_num,
                             "gift_id": gift_id, "gift_num": num} if batch_combo_id else None,
        "coin_type": coin_type, "giftId": gift_id, "giftName": gift_name, "num": num, "price": price,
        "combo_total_coin": combo_total_coin, "super_batch_gift_num": super_batch_gift_num,
        "tid": tid, "rnd": tid, "timestamp": 1673622464, "total_coin": price * num, "uid": uid, "uname": uname}}


def combo_send(*, batch_combo_id: str, count: int, unit: int = 100, msg_id: str = "",
               uid: int = 510149209, uname: str = "送礼人") -> dict:
    doc = {"cmd": "COMBO_SEND", "data": {
        "action": "投喂", "batch_combo_id": batch_combo_id, "batch_combo_num": count, "combo_id": "gift:x",
        "combo_num": count, "combo_total_coin": unit * count, "gift_id": 31036, "gift_name": "小花花", "gift_num": 0,
        "total_num": count, "uid": uid, "uname": uname}}
    if msg_id:
        doc["msg_id"] = msg_id
    return doc


def guard_buy(*, level: int = 3, price: int = 198000) -> dict:
    return {"cmd": "GUARD_BUY", "data": {"uid": 14225357, "username": "上舰人", "guard_level": level, "num": 1,
                                         "price": price, "gift_id": 10003, "gift_name": "舰长",
                                         "start_time": 1677069316, "end_time": 1677069316}}


def super_chat(*, price: int = 30, message: str = "主播加油") -> dict:
    return {"cmd": "SUPER_CHAT_MESSAGE", "roomid": 5440, "data": {
        "id": 6522809, "uid": 294094150, "price": price, "message": message, "time": 60, "start_time": 1677069035,
        "ts": 1677069035, "user_info": {"uname": "界原虚", "user_level": 6}}}


def interact(msg_type: int, *, uid: int = 335979315, uname: str = "TIM_Init") -> dict:
    return {"cmd": "INTERACT_WORD", "data": {"msg_type": msg_type, "uid": uid, "uname": uname, "roomid": 5440,
                                             "timestamp": 1644563948, "trigger_time": 1644563947876475000 + msg_type}}


def _pb_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def interact_v2(msg_type: int, *, uid: int = 335979315, uname: str = "TIM_Init", timestamp: int = 1644563948) -> dict:
    """INTERACT_WORD_V2: the event as protobuf (1 uid, 2 uname, 5 msg_type, 7 timestamp, 22 user
    info), base64 in data.pb."""
    name = uname.encode()
    face = b"https://i0.hdslb.com/face.jpg"
    uinfo = b"\x12" + _pb_varint(len(face) + 2) + b"\x12" + _pb_varint(len(face)) + face
    pb = (b"\x08" + _pb_varint(uid) + b"\x12" + _pb_varint(len(name)) + name + b"\x28" + _pb_varint(msg_type)
          + b"\x38" + _pb_varint(timestamp) + b"\x45" + b"\x00\x00\x80\x3f"  # a fixed32 field 8 the client skips
          + b"\xb2\x01" + _pb_varint(len(uinfo)) + uinfo)
    return {"cmd": "INTERACT_WORD_V2", "data": {"dmscore": 4, "pb": base64.b64encode(pb).decode()}}


def _pb_bytes(number: int, value: bytes) -> bytes:
    return _pb_varint(number << 3 | 2) + _pb_varint(len(value)) + value


def _pb_int(number: int, value: int) -> bytes:
    return _pb_varint(number << 3) + _pb_varint(value)


def send_gift_v2(*, tid: str = "1788000000111100001", num: int = 2, price: int = 100, coin_type: str = "gold",
                 uid: int = 510149209, uname: str = "送礼人") -> dict:
    """SEND_GIFT_V2: the gift as protobuf (1 uid, 2 uname, 10 gift: 1 id, 2 name, 3 num, 5 price,
    6 total_coin, 8 coin_type, 9 tid, 10 timestamp, 18 action), base64 in data.pb."""
    gift = (_pb_int(1, 31036) + _pb_bytes(2, "小花花".encode()) + _pb_int(3, num) + _pb_int(5, price)
            + _pb_int(6, price * num) + _pb_bytes(8, coin_type.encode()) + _pb_bytes(9, tid.encode())
            + _pb_int(10, 1788000000) + _pb_bytes(18, "投喂".encode()))
    pb = _pb_int(1, uid) + _pb_bytes(2, uname.encode()) + _pb_bytes(3, b"https://i0.hdslb.com/face.jpg") + _pb_bytes(10, gift)
    return {"cmd": "SEND_GIFT_V2", "data": {"pb": base64.b64encode(pb).decode()}}


def like_click() -> dict:
    return {"cmd": "LIKE_INFO_V3_CLICK", "data": {"uid": 32174213, "uname": "MeiDngS", "like_text": "为主播点赞了"}}


def watched(num: int) -> dict:
    return {"cmd": "WATCHED_CHANGE", "data": {"num": num, "text_small": str(num), "text_large": f"{num}人看过"}}


def online_count(count: int) -> dict:
    return {"cmd": "ONLINE_RANK_COUNT", "data": {"count": count}}


def live() -> dict:
    return {"cmd": "LIVE", "live_key": "234304209915761953", "live_platform": "pc", "live_time": 1651036923,
            "roomid": 5440}


def preparing() -> dict:
    return {"cmd": "PREPARING", "msg_id": "27040425357932032:1000:1000", "p_is_ack": True, "p_msg_type": 1,
            "roomid": "5440", "send_time": 1740129398337}
