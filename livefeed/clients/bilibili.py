"""Bilibili live (https://live.bilibili.com/<room id>): room info over the web API and the
live message socket ("danmaku" stream), as described in docs/protocol.md ("Live feed: Bilibili").

HTTP (base `LIVEFEED_BILIBILI_API_ROOT`, every call with a timeout, answers `{"code": 0,
"message": ..., "data": ...}`; a non-zero code is the platform's error):
- `room/v1/Room/room_init?id=<id>`: the real room id for a short one, the streamer's uid and
  `live_status` (1 = live; 0 offline, 2 replaying videos: not live).
- `xlive/web-room/v1/index/getRoomBaseInfo?req_biz=web_room_componet&room_ids=<real id>`:
  title, streamer name, viewers, cover.
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

`decode_frame(bytes)` turns one websocket frame into `Message`s and `Malformed` reports and
never raises; `BilibiliConnection` adds the auth handshake, heartbeats, stall detection and
the end of the broadcast (`PREPARING`). The cookie (`LIVEFEED_BILIBILI_COOKIE`) is a secret:
it is sent in the Cookie header and nowhere else, never logged and never in a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import brotli
import httpx
import websockets
from django.conf import settings
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from livefeed import messages as m
from livefeed.clients import (
    Blocked,
    Connection,
    GiveUp,
    LiveClient,
    RetryLater,
    RoomInfo,
    RoomNotFound,
    registry,
)
from livefeed.messages import LiveUser, Malformed, Message
from project import outside

logger = logging.getLogger(__name__)


class _HideCookie(logging.Filter):
    """The websockets library logs the handshake's headers at DEBUG: never the Cookie."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "cookie" in str(record.msg).lower() or any("cookie" in str(arg).lower() for arg in record.args or ()):
            record.msg, record.args = "> Cookie: (hidden)", ()
        return True


socket_logger = logging.getLogger(f"{__name__}.socket")  # the websockets library's logger for our sockets
socket_logger.addFilter(_HideCookie())

HEADER = struct.Struct(">IHHII")  # packet length, header length, version, operation, sequence
HEADER_BYTES = HEADER.size  # 16
OP_HEARTBEAT = 2
OP_HEARTBEAT_REPLY = 3
OP_MESSAGE = 5
OP_AUTH = 7
OP_AUTH_REPLY = 8
VERSION_PLAIN = 0
VERSION_INT = 1  # heartbeat and auth packets
VERSION_ZLIB = 2
VERSION_BROTLI = 3

MAX_FRAME_BYTES = 2 * 1024 * 1024  # a bigger websocket frame is reported as `oversized`
MAX_INFLATED_BYTES = 8 * 1024 * 1024  # what one compressed body may inflate to
SAMPLE_BYTES = 64
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
MIXIN_KEY_ENC_TAB = (
    46, 47, 18, 2, 53, 8, 23, 32, 15, 50, 10, 31, 58, 3, 45, 35, 27, 43, 5, 49, 33, 9, 42, 19, 29, 28, 14,
    39, 12, 38, 41, 13, 37, 48, 7, 16, 24, 55, 40, 61, 26, 17, 0, 1, 60, 51, 30, 4, 22, 25, 54, 21, 56, 59,
    6, 63, 57, 62, 11, 36, 20, 34, 44, 52,
)

_ROOM_PATH = re.compile(r"^/(?:h5/|blanc/)?(\d{1,20})/?$")


# --- Packets ---------------------------------------------------------------------------------

def pack(operation: int, body: bytes = b"", *, version: int = VERSION_INT, sequence: int = 1) -> bytes:
    """One packet: the 16-byte header and the body."""
    return HEADER.pack(HEADER_BYTES + len(body), HEADER_BYTES, version, operation, sequence) + body


class _TooBig(Exception):
    pass


def _inflate(version: int, body: bytes) -> bytes:
    if version == VERSION_ZLIB:
        inflater = zlib.decompressobj()
        out = inflater.decompress(body, MAX_INFLATED_BYTES + 1)
        if len(out) > MAX_INFLATED_BYTES or inflater.unconsumed_tail:
            raise _TooBig
        if not inflater.eof:
            raise zlib.error("the zlib stream is truncated")
        return out
    decompressor = brotli.Decompressor()
    out = decompressor.process(body, output_buffer_limit=MAX_INFLATED_BYTES + 1)
    if len(out) > MAX_INFLATED_BYTES:
        raise _TooBig
    if not decompressor.is_finished():
        raise brotli.error("the brotli stream is truncated")
    return out


def _packets(data: bytes, *, nested: bool = False) -> list[tuple[int, int, bytes] | Malformed]:
    """(operation, version, body) of every packet in `data`, compressed bodies unpacked; what
    cannot be read becomes a Malformed and ends the walk of that buffer."""
    out: list[tuple[int, int, bytes] | Malformed] = []
    offset, size = 0, len(data)
    while offset < size:
        left = size - offset
        if left < HEADER_BYTES:
            out.append(Malformed("header", f"{left} bytes left over, shorter than a packet header",
                                 data[offset:offset + SAMPLE_BYTES]))
            break
        length, header_len, version, operation, _sequence = HEADER.unpack_from(data, offset)
        if header_len < HEADER_BYTES or length < header_len or length > left:
            out.append(Malformed("header", f"packet length {length} with header length {header_len} "
                                           f"does not fit the {left} bytes left", data[offset:offset + SAMPLE_BYTES]))
            break
        body = data[offset + header_len:offset + length]
        offset += length
        if operation == OP_MESSAGE and version in (VERSION_ZLIB, VERSION_BROTLI):
            kind = "zlib" if version == VERSION_ZLIB else "brotli"
            if nested:
                out.append(Malformed("header", f"a {kind} body inside a compressed body", body[:SAMPLE_BYTES]))
                continue
            try:
                inner = _inflate(version, body)
            except _TooBig:
                out.append(Malformed("oversized", f"a {kind} body inflates past {MAX_INFLATED_BYTES} bytes",
                                     body[:SAMPLE_BYTES]))
                continue
            except (zlib.error, brotli.error) as exc:
                out.append(Malformed(kind, f"bad {kind} body: {exc}", body[:SAMPLE_BYTES]))
                continue
            out.extend(_packets(inner, nested=True))
        else:
            out.append((operation, version, body))
    return out


@dataclass(slots=True)
class Decoded:
    items: list[Message | Malformed] = field(default_factory=list)
    popularity: int | None = None  # from a heartbeat reply
    auth_code: int | None = None  # from an auth reply
    auth_answer: str = ""


def _decode(data: bytes, received_ms: int | None = None) -> Decoded:
    decoded = Decoded()
    received_ms = m.now_ms() if received_ms is None else received_ms
    if len(data) > MAX_FRAME_BYTES:
        decoded.items.append(Malformed("oversized", f"a {len(data)}-byte frame (at most {MAX_FRAME_BYTES})",
                                       data[:SAMPLE_BYTES]))
        return decoded
    for packet in _packets(data):
        if isinstance(packet, Malformed):
            decoded.items.append(packet)
            continue
        operation, _version, body = packet
        if operation == OP_MESSAGE:
            decoded.items.append(_command(body, received_ms))
        elif operation == OP_HEARTBEAT_REPLY:
            if len(body) < 4:
                decoded.items.append(Malformed("header", "a heartbeat reply shorter than 4 bytes", body))
            else:
                decoded.popularity = int.from_bytes(body[:4], "big")
        elif operation == OP_AUTH_REPLY:
            decoded.auth_answer = body[:200].decode("utf-8", "replace")
            try:
                answer = json.loads(body)
                decoded.auth_code = int(answer["code"])
            except (ValueError, TypeError, KeyError):
                decoded.auth_code = -1
        else:
            decoded.items.append(Malformed("header", f"unknown operation {operation}", body[:SAMPLE_BYTES]))
    return decoded


def decode_frame(data: bytes, *, received_ms: int | None = None) -> list[Message | Malformed]:
    """The messages and malformed reports in one websocket frame (never raises)."""
    return _decode(data, received_ms).items


# --- Commands --------------------------------------------------------------------------------

def _digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=12).hexdigest()


def _ms_from_s(value: Any, default: int) -> int:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    return int(seconds * 1000) if seconds > 0 else default


def _ms(value: Any, default: int) -> int:
    try:
        ms = int(value)
    except (TypeError, ValueError):
        return default
    return ms if ms > 0 else default


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _user(uid: Any, name: Any, *, level: int | None = None) -> LiveUser | None:
    if uid is None and not name:
        return None
    return LiveUser(id=str(_int(uid)), name=str(name or ""), level=level)


def _msg_id(cmd: str, own_id: Any, doc: dict, body: bytes, *, timed: bool = False, received_ms: int = 0) -> str:
    """The platform's id when it gives one (the command's own id, else the packet's `msg_id`),
    else a digest of the packet; state messages (viewer counts, ...) add the second they arrived,
    since the same count sent again later is a new reading."""
    if own_id not in (None, "", 0):
        return f"{cmd}:{own_id}"
    if doc.get("msg_id"):
        return f"{cmd}:{doc['msg_id']}"
    if timed:
        return f"{cmd}:{received_ms // 1000}:{_digest(body)}"
    return f"{cmd}:{_digest(body)}"


def _danmu(doc: dict, body: bytes, received_ms: int) -> Message:
    info = doc["info"]
    meta, content, sender = info[0], str(info[1]), info[2]
    extra_json: dict = {}
    if len(meta) > 15 and isinstance(meta[15], dict) and isinstance(meta[15].get("extra"), str):
        with contextlib.suppress(ValueError):
            extra_json = json.loads(meta[15]["extra"]) or {}
    ts_ms = _ms(meta[4], received_ms) if len(meta) > 4 else received_ms
    own_id = extra_json.get("id_str") if isinstance(extra_json, dict) else None
    if not own_id and len(info) > 9 and isinstance(info[9], dict) and info[9].get("ct"):
        own_id = f"{sender[0]}:{info[9].get('ts')}:{info[9]['ct']}"
    level = None
    if len(info) > 4 and isinstance(info[4], list) and info[4]:
        level = _int(info[4][0], 0) or None
    extra: dict[str, Any] = {}
    if len(meta) > 3:
        extra["color"] = _int(meta[3])
    if len(info) > 3 and isinstance(info[3], list) and len(info[3]) > 1:
        extra["medal"] = {"level": _int(info[3][0]), "name": str(info[3][1])}
    emots = extra_json.get("emots") if isinstance(extra_json, dict) else None
    if isinstance(emots, dict) and emots:
        extra["emots"] = sorted(emots)
    kind = m.CHAT
    dm_type = _int(meta[12]) if len(meta) > 12 else _int(extra_json.get("dm_type") if isinstance(extra_json, dict) else 0)
    sticker = meta[13] if len(meta) > 13 and isinstance(meta[13], dict) else None
    if dm_type == 1 or sticker:
        kind = m.EMOJI_CHAT
        sticker = sticker or {}
        extra["emoticon_id"] = str(sticker.get("emoticon_unique") or extra_json.get("emoticon_unique") or "")
        extra["emoticon_url"] = str(sticker.get("url") or "")
    return Message(type=kind, platform_msg_id=_msg_id("DANMU_MSG", own_id, doc, body), ts_ms=ts_ms,
                   user=_user(sender[0], sender[1], level=level), content=content, extra=extra,
                   received_ms=received_ms)


def _gift_values(unit: int, count: int, total: int | None, coin_type: str) -> dict[str, Any]:
    if coin_type == "silver":  # free gifts: worth nothing in money
        return {"unit_value": 0, "total_value": 0, "value_unit": "silver",
                "silver_value": total if total is not None else unit * count}
    return {"unit_value": unit, "total_value": total if total is not None else unit * count,
            "value_unit": m.BILIBILI_GOLD}


def _send_gift(doc: dict, body: bytes, received_ms: int) -> Message:
    data = doc["data"]
    tid = data.get("tid") or data.get("rnd")
    msg_id = _msg_id("SEND_GIFT", tid, doc, body)
    num = _int(data.get("num"), 1)
    batch = data.get("batch_combo_send") if isinstance(data.get("batch_combo_send"), dict) else {}
    combo_id = str(data.get("batch_combo_id") or batch.get("batch_combo_id") or "")
    if combo_id:
        count = max(num, _int(data.get("super_batch_gift_num")), _int(batch.get("batch_combo_num")))
        total = _int(data["combo_total_coin"]) if data.get("combo_total_coin") else None
    else:
        combo_id, count = msg_id, num
        total = _int(data["total_coin"]) if data.get("total_coin") is not None else None
    coin_type = str(data.get("coin_type") or "gold")
    extra = {"gift_id": _int(data.get("giftId")), "gift_name": str(data.get("giftName") or ""), "count": count,
             "combo_id": combo_id, "combo_end": False, "action": str(data.get("action") or ""),
             **_gift_values(_int(data.get("price")), count, total, coin_type)}
    return Message(type=m.GIFT, platform_msg_id=msg_id, ts_ms=_ms_from_s(data.get("timestamp"), received_ms),
                   user=_user(data.get("uid"), data.get("uname")), content=extra["gift_name"], extra=extra,
                   received_ms=received_ms)


def _combo_send(doc: dict, body: bytes, received_ms: int) -> Message:
    data = doc["data"]
    combo_id = str(data.get("batch_combo_id") or data.get("combo_id") or "")
    if not combo_id:
        raise ValueError("COMBO_SEND without a combo id")
    count = max(_int(data.get("batch_combo_num")), _int(data.get("total_num")), _int(data.get("combo_num")), 1)
    total = _int(data.get("combo_total_coin"))
    extra = {"gift_id": _int(data.get("gift_id")), "gift_name": str(data.get("gift_name") or ""), "count": count,
             "combo_id": combo_id, "combo_end": False, "action": str(data.get("action") or ""),
             **_gift_values(total // count if total else 0, count, total, str(data.get("coin_type") or "gold"))}
    return Message(type=m.GIFT, platform_msg_id=_msg_id("COMBO_SEND", None, doc, body),
                   ts_ms=_ms(doc.get("send_time"), received_ms), user=_user(data.get("uid"), data.get("uname")),
                   content=extra["gift_name"], extra=extra, received_ms=received_ms)


GUARD_NAMES = {1: "总督", 2: "提督", 3: "舰长"}


def _guard_buy(doc: dict, body: bytes, received_ms: int) -> Message:
    data = doc["data"]
    level, count, price = _int(data.get("guard_level")), _int(data.get("num"), 1), _int(data.get("price"))
    name = str(data.get("gift_name") or GUARD_NAMES.get(level, ""))
    extra = {"guard_level": level, "gift_id": _int(data.get("gift_id")), "gift_name": name, "count": count,
             "unit_value": price, "total_value": price * count, "value_unit": m.BILIBILI_GOLD}
    return Message(type=m.GUARD, platform_msg_id=_msg_id("GUARD_BUY", data.get("payflow_id"), doc, body),
                   ts_ms=_ms_from_s(data.get("start_time"), received_ms),
                   user=_user(data.get("uid"), data.get("username")), content=name, extra=extra,
                   received_ms=received_ms)


def _super_chat(doc: dict, body: bytes, received_ms: int) -> Message:
    data = doc["data"]
    user_info = data.get("user_info") if isinstance(data.get("user_info"), dict) else {}
    price_cny = float(data.get("price") or 0)
    gold = round(price_cny * 1000)
    extra = {"price_cny": price_cny, "count": 1, "unit_value": gold, "total_value": gold,
             "value_unit": m.BILIBILI_GOLD, "duration_s": _int(data.get("time"))}
    return Message(type=m.SUPER_CHAT, platform_msg_id=_msg_id("SUPER_CHAT_MESSAGE", data.get("id"), doc, body),
                   ts_ms=_ms_from_s(data.get("start_time") or data.get("ts"), received_ms),
                   user=_user(data.get("uid"), user_info.get("uname"), level=_int(user_info.get("user_level")) or None),
                   content=str(data.get("message") or ""), extra=extra, received_ms=received_ms)


INTERACT_TYPES = {1: m.MEMBER, 2: m.FOLLOW, 3: m.SHARE, 4: m.FOLLOW, 5: m.FOLLOW}  # 4 special, 5 mutual follow


def _interact_word(doc: dict, body: bytes, received_ms: int) -> Message:
    data = doc["data"]
    msg_type = _int(data.get("msg_type"))
    kind = INTERACT_TYPES.get(msg_type)
    if kind is None:
        return _unknown(f"INTERACT_WORD:{msg_type}", body, received_ms)
    own_id = f"{data.get('uid')}:{data['trigger_time']}" if data.get("trigger_time") else None
    return Message(type=kind, platform_msg_id=_msg_id(f"INTERACT_WORD:{msg_type}", own_id, doc, body),
                   ts_ms=_ms_from_s(data.get("timestamp"), received_ms), user=_user(data.get("uid"), data.get("uname")),
                   extra={"msg_type": msg_type}, received_ms=received_ms)


def _like_click(doc: dict, body: bytes, received_ms: int) -> Message:
    data = doc["data"]
    return Message(type=m.LIKE, platform_msg_id=_msg_id("LIKE_INFO_V3_CLICK", None, doc, body),
                   ts_ms=_ms(doc.get("send_time"), received_ms), user=_user(data.get("uid"), data.get("uname")),
                   content=str(data.get("like_text") or ""), extra={"count": 1}, received_ms=received_ms)


def _like_update(doc: dict, body: bytes, received_ms: int) -> Message:
    return Message(type=m.ROOM_STATS, received_ms=received_ms, ts_ms=_ms(doc.get("send_time"), received_ms),
                   platform_msg_id=_msg_id("LIKE_INFO_V3_UPDATE", None, doc, body, timed=True, received_ms=received_ms),
                   extra={"likes_total": _int(doc["data"]["click_count"])})


def _watched(doc: dict, body: bytes, received_ms: int) -> Message:
    return Message(type=m.VIEWERS, received_ms=received_ms, ts_ms=_ms(doc.get("send_time"), received_ms),
                   platform_msg_id=_msg_id("WATCHED_CHANGE", None, doc, body, timed=True, received_ms=received_ms),
                   extra={"cumulative": _int(doc["data"]["num"])})


def _online_count(doc: dict, body: bytes, received_ms: int) -> Message:
    data = doc["data"]
    current = data.get("online_count", data.get("count"))
    if current is None:
        raise KeyError("count")
    return Message(type=m.VIEWERS, received_ms=received_ms, ts_ms=_ms(doc.get("send_time"), received_ms),
                   platform_msg_id=_msg_id("ONLINE_RANK_COUNT", None, doc, body, timed=True, received_ms=received_ms),
                   extra={"current": _int(current)})


def _live(doc: dict, body: bytes, received_ms: int) -> Message:
    return Message(type=m.CONTROL, received_ms=received_ms, ts_ms=_ms_from_s(doc.get("live_time"), received_ms),
                   platform_msg_id=_msg_id("LIVE", doc.get("live_key") and f"{doc['live_key']}:{received_ms // 1000}",
                                           doc, body, timed=True, received_ms=received_ms),
                   extra={"status": m.RESUMED, "live_key": str(doc.get("live_key") or "")})


def _preparing(doc: dict, body: bytes, received_ms: int) -> Message:
    return Message(type=m.CONTROL, received_ms=received_ms, ts_ms=_ms(doc.get("send_time"), received_ms),
                   platform_msg_id=_msg_id("PREPARING", None, doc, body, timed=True, received_ms=received_ms),
                   extra={"status": m.ENDED, "round": _int(doc.get("round"))})


def _unknown(cmd: str, body: bytes, received_ms: int) -> Message:
    return Message(type=m.UNKNOWN, platform_msg_id=f"{cmd}:{_digest(body)}", ts_ms=received_ms,
                   extra={"method": cmd, "size": len(body)}, received_ms=received_ms)


COMMANDS = {
    "DANMU_MSG": _danmu,
    "SEND_GIFT": _send_gift,
    "COMBO_SEND": _combo_send,
    "GUARD_BUY": _guard_buy,
    "SUPER_CHAT_MESSAGE": _super_chat,
    "INTERACT_WORD": _interact_word,
    "LIKE_INFO_V3_CLICK": _like_click,
    "LIKE_INFO_V3_UPDATE": _like_update,
    "WATCHED_CHANGE": _watched,
    "ONLINE_RANK_COUNT": _online_count,
    "LIVE": _live,
    "PREPARING": _preparing,
}


def _command(body: bytes, received_ms: int) -> Message | Malformed:
    try:
        doc = json.loads(body)
    except ValueError as exc:  # includes UnicodeDecodeError
        return Malformed("json", f"a command that is not JSON: {exc}", body[:SAMPLE_BYTES])
    if not isinstance(doc, dict) or not isinstance(doc.get("cmd"), str):
        return Malformed("json", "a command without a \"cmd\" name", body[:SAMPLE_BYTES])
    cmd = doc["cmd"].split(":", 1)[0]  # DANMU_MSG:4:0:2:2:2:0 on some rooms
    handler = COMMANDS.get(cmd)
    if handler is None:
        return _unknown(cmd[:100], body, received_ms)
    try:
        return handler(doc, body, received_ms)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        return Malformed("message", f"{cmd} without the fields Chorus reads ({type(exc).__name__}: {exc})",
                         body[:SAMPLE_BYTES])


# --- WBI signature ---------------------------------------------------------------------------

def mixin_key(img_key: str, sub_key: str) -> str:
    raw = img_key + sub_key
    return "".join(raw[i] for i in MIXIN_KEY_ENC_TAB if i < len(raw))[:32]


def wbi_sign(params: dict[str, Any], *, img_key: str, sub_key: str, wts: int | None = None) -> dict[str, str]:
    """`params` plus `wts` (unix seconds) and `w_rid`: md5 of the query sorted by name (values
    without !'()*, percent-encoded with upper-case hex and %20 for spaces) followed by the
    mixin key."""
    signed = {name: "".join(c for c in str(value) if c not in "!'()*") for name, value in params.items()}
    signed["wts"] = str(int(time.time()) if wts is None else wts)
    query = "&".join(f"{quote(name, safe='')}={quote(signed[name], safe='')}" for name in sorted(signed))
    digest = hashlib.md5((query + mixin_key(img_key, sub_key)).encode(), usedforsecurity=False).hexdigest()
    return {**signed, "w_rid": digest}


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
            self._http = httpx.AsyncClient(timeout=self.timeout_s, headers=headers)
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
        try:
            data = await self._api("/live_user/v1/Master/info", {"uid": uid}, what="Bilibili Master/info")
        except (RetryLater, GiveUp) as exc:  # a picture is not worth failing the room for
            logger.info("bilibili streamer %s: no avatar: %s", uid, exc)
            return ""
        face = (data.get("info") or {}).get("face") if isinstance(data.get("info"), dict) else ""
        return face if isinstance(face, str) and face.startswith(("https://", "http://")) else ""

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
                                  additional_headers=headers, logger=socket_logger)
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


class BilibiliConnection(Connection):
    """One authenticated live socket. Yields a list per frame that carried messages or
    malformed packets; heartbeats go out every `heartbeat_s` (at most half of `stall_s`, so a
    quiet room's heartbeat replies keep it from counting as stalled)."""

    def __init__(self, ws: ClientConnection, *, url: str, room_id: int, stall_s: float, heartbeat_s: float):
        self._ws = ws
        self.url = url
        self.room_id = room_id
        self.stall_s = stall_s
        self.heartbeat_s = heartbeat_s
        self.heartbeats_sent = 0
        self.heartbeat_replies = 0
        self.popularity: int | None = None
        self._pending: list[Message | Malformed] = []
        self._heartbeat: asyncio.Task | None = None
        self._closed = False
        self._ended = False

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
            raise RetryLater(f"Bilibili live socket: no answer to the auth packet within {AUTH_TIMEOUT_S:g}s") from None
        except websockets.ConnectionClosed as exc:
            raise RetryLater(f"Bilibili closed the live socket after the auth packet ({_closed_text(exc)}); "
                             "the token may have expired") from None
        if decoded.auth_code != 0:
            raise Blocked(f"Bilibili refused to join room {self.room_id} on the live socket (auth answer "
                          f"{decoded.auth_answer[:100]}): the token from getDanmuInfo was not accepted; set "
                          "LIVEFEED_BILIBILI_COOKIE if this keeps happening", code=decoded.auth_code)
        await self._send_heartbeat()
        self._heartbeat = asyncio.create_task(self._beat(), name=f"bilibili-heartbeat-{self.room_id}")

    async def _send_heartbeat(self) -> None:
        await self._ws.send(pack(OP_HEARTBEAT, HEARTBEAT_BODY, sequence=self.heartbeats_sent + 1))
        self.heartbeats_sent += 1

    async def _beat(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(self.heartbeat_s)
                await self._send_heartbeat()

    def __aiter__(self):
        return self._frames()

    async def _frames(self):
        if self._pending:
            batch, self._pending = self._pending, []
            yield batch
            if _ends(batch):
                return
        while not self._closed:
            try:
                frame = await asyncio.wait_for(self._ws.recv(), timeout=self.stall_s)
            except TimeoutError:
                raise RetryLater(f"Bilibili's live socket sent nothing for {self.stall_s:g}s (stalled)") from None
            except websockets.ConnectionClosed as exc:
                if self._closed:
                    return
                raise RetryLater(f"Bilibili closed the live socket ({_closed_text(exc)})") from None
            if isinstance(frame, str):
                yield [Malformed("header", "a text frame where binary packets were expected",
                                 frame[:SAMPLE_BYTES].encode())]
                continue
            decoded = _decode(frame)
            if decoded.popularity is not None:
                self.heartbeat_replies += 1
                self.popularity = decoded.popularity
            if decoded.items:
                yield decoded.items
                if _ends(decoded.items):
                    self._ended = True
                    return

    async def close(self) -> None:
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._heartbeat
            self._heartbeat = None
        try:
            async with asyncio.timeout(1.0):
                await self._ws.close()
        except (TimeoutError, OSError):
            self._ws.transport.abort()


def _ends(batch: list[Message | Malformed]) -> bool:
    return any(isinstance(item, Message) and item.type == m.CONTROL and item.extra.get("status") == m.ENDED
               for item in batch)


def _closed_text(exc: websockets.ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return "no close frame"
    return f"code {frame.code}{': ' + frame.reason if frame.reason else ''}"
