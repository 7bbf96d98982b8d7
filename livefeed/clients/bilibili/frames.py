"""Bilibili's live socket packets, decoded: `decode_frame(bytes)` turns one websocket frame
into normalised `Message`s and `Malformed` reports and never raises (docs/protocol.md, "Live
feed: Bilibili", lists the packet layout and what each command becomes).

A packet is a 16-byte big-endian header (total length u32, header length u16 = 16, version u16,
operation u32, sequence u32) and a body. An operation-5 body of version 2 (zlib) or 3 (brotli)
is itself a run of packets; version 0 is one JSON command.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import brotli

from livefeed import messages as m
from livefeed.messages import LiveUser, Malformed, Message

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


def _varint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(data) or shift > 63:
            raise ValueError("a truncated protobuf varint")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, offset


def _pb_fields(data: bytes) -> dict[int, int | bytes]:
    """The top-level fields of a protobuf message (the first of each number), by wire format:
    varints as ints, length-delimited as bytes, fixed 32/64-bit skipped."""
    fields: dict[int, int | bytes] = {}
    offset = 0
    while offset < len(data):
        key, offset = _varint(data, offset)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, offset = _varint(data, offset)
        elif wire == 2:
            length, offset = _varint(data, offset)
            if offset + length > len(data):
                raise ValueError("a protobuf field longer than the message")
            value, offset = data[offset:offset + length], offset + length
        elif wire in (1, 5):
            offset += 8 if wire == 1 else 4
            if offset > len(data):
                raise ValueError("a truncated fixed-size protobuf field")
            continue
        else:
            raise ValueError(f"protobuf wire type {wire}")
        fields.setdefault(number, value)
    return fields


def _interact_word_v2(doc: dict, body: bytes, received_ms: int) -> Message:
    """INTERACT_WORD_V2: the same event as INTERACT_WORD, as base64 protobuf in data.pb
    (1 uid, 2 uname, 5 msg_type, 7 timestamp in seconds)."""
    fields = _pb_fields(base64.b64decode(doc["data"]["pb"], validate=True))
    data = {"uid": fields.get(1, 0), "uname": _text(fields.get(2)),
            "msg_type": fields.get(5, 0), "timestamp": fields.get(7, 0)}
    return _interact_word({"cmd": "INTERACT_WORD", "data": data}, body, received_ms)


def _text(value: int | bytes | None) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def _send_gift_v2(doc: dict, body: bytes, received_ms: int) -> Message:
    """SEND_GIFT_V2 (rolled out in 2026): SEND_GIFT as base64 protobuf in data.pb, 1 uid,
    2 uname, 10 the gift (1 id, 2 name, 3 num, 5 price, 6 total_coin, 8 coin_type, 9 tid,
    10 timestamp, 12 rnd, 18 action). It carries no combo id: each is a gift of its own."""
    fields = _pb_fields(base64.b64decode(doc["data"]["pb"], validate=True))
    gift_bytes = fields.get(10, b"")
    gift = _pb_fields(gift_bytes) if isinstance(gift_bytes, bytes) else {}
    if not gift:
        raise ValueError("SEND_GIFT_V2 without its gift")
    data = {"uid": fields.get(1, 0), "uname": _text(fields.get(2)), "giftId": gift.get(1, 0),
            "giftName": _text(gift.get(2)), "num": gift.get(3, 1), "price": gift.get(5, 0),
            "total_coin": gift.get(6), "coin_type": _text(gift.get(8)) or "gold", "tid": _text(gift.get(9)),
            "rnd": _text(gift.get(12)), "timestamp": gift.get(10, 0), "action": _text(gift.get(18))}
    return _send_gift({"cmd": "SEND_GIFT", "data": data}, body, received_ms)


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
    "SEND_GIFT_V2": _send_gift_v2,
    "COMBO_SEND": _combo_send,
    "GUARD_BUY": _guard_buy,
    "SUPER_CHAT_MESSAGE": _super_chat,
    "INTERACT_WORD": _interact_word,
    "INTERACT_WORD_V2": _interact_word_v2,
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
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        return Malformed("message", f"{cmd} without the fields Chorus reads ({type(exc).__name__}: {exc})",
                         body[:SAMPLE_BYTES])
