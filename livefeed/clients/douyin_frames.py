"""Douyin's push frames, both ways, with no I/O: `decode_frame` turns one websocket message
into normalised `Message`s (and `Malformed` reports) plus the ack frame to send back, and
`ack_frame` / `heartbeat_frame` build what the client sends. The socket side is in
livefeed/clients/douyin.py; the layout is docs/protocol.md ("Live feed: Douyin").

A frame is a protobuf `PushFrame`. With payloadType "msg" its payload is a `Response`
(gzip-compressed when the header `compress_type` is "gzip") whose `messagesList` holds one
`Message` per event, each naming its payload's type in `method` ("WebcastChatMessage", ...).
When the Response has `needAck`, the client answers with a PushFrame of payloadType "ack",
the frame's `logId` and payload = the Response's `internalExt`.

Nothing here raises on bad input: a frame that is too large, not gzip, not protobuf, or a
message whose payload does not parse becomes a `Malformed`; a message of a method Chorus does
not know becomes a message of type `unknown` with its method and size. Decoding uses the
protobuf runtime's upb backend (see tests/livefeed/test_douyin_proto.py).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError

from livefeed import messages as m
from livefeed.messages import LiveUser, Malformed, Message, now_ms
from livefeed.proto import douyin_pb2 as pb

MAX_FRAME_BYTES = 4 * 1024 * 1024  # a frame, and a Response once decompressed, larger than this is "oversized"
SAMPLE_BYTES = 64

CONTROL_STATUS = {1: m.PAUSED, 2: m.RESUMED, 3: m.ENDED}  # WebcastControlMessage.status
SOCIAL_FOLLOW = 1  # WebcastSocialMessage.action
SOCIAL_SHARE = 3
FANSCLUB_ACTION = {1: "level_up", 2: "join"}  # WebcastFansclubMessage.type


def heartbeat_frame() -> bytes:
    return pb.PushFrame(payloadType="hb").SerializeToString()


def ack_frame(log_id: int, internal_ext: str) -> bytes:
    return pb.PushFrame(logId=log_id, payloadType="ack", payload=internal_ext.encode()).SerializeToString()


def decode_frame(data: bytes, *, received_ms: int | None = None) -> tuple[list[Message | Malformed], bytes | None]:
    """(what the frame held, the ack frame to send back or None). Never raises."""
    if len(data) > MAX_FRAME_BYTES:
        return [Malformed("oversized", f"frame of {len(data)} bytes (limit {MAX_FRAME_BYTES})", bytes(data[:SAMPLE_BYTES]))], None
    try:
        frame = pb.PushFrame.FromString(data)
    except DecodeError as exc:
        return [Malformed("protobuf", f"PushFrame: {exc}", bytes(data[:SAMPLE_BYTES]))], None
    if frame.payloadType != "msg":
        return [], None  # "hb" answers, "close": nothing to read
    payload = frame.payload
    if _compressed(frame):
        payload = _gunzip(payload)
        if isinstance(payload, Malformed):
            return [payload], None
    try:
        response = pb.Response.FromString(payload)
    except DecodeError as exc:
        return [Malformed("protobuf", f"Response: {exc}", bytes(payload[:SAMPLE_BYTES]))], None
    ack = ack_frame(frame.logId, response.internalExt) if response.needAck else None
    when = received_ms if received_ms is not None else now_ms()
    return [_message(item, when) for item in response.messagesList], ack


def _compressed(frame: pb.PushFrame) -> bool:
    if frame.payloadEncoding == "gzip":
        return True
    return any(header.key == "compress_type" and header.value == "gzip" for header in frame.headersList)


def _gunzip(payload: bytes) -> bytes | Malformed:
    inflater = zlib.decompressobj(wbits=31)  # gzip container
    try:
        out = inflater.decompress(payload, MAX_FRAME_BYTES)
    except zlib.error as exc:
        return Malformed("gzip", str(exc), bytes(payload[:SAMPLE_BYTES]))
    if inflater.unconsumed_tail:
        return Malformed("oversized", f"payload inflates past {MAX_FRAME_BYTES} bytes", bytes(payload[:SAMPLE_BYTES]))
    if not inflater.eof:
        return Malformed("gzip", "truncated gzip stream", bytes(payload[:SAMPLE_BYTES]))
    return out


def _message(item: pb.Message, received_ms: int) -> Message | Malformed:
    handler = HANDLERS.get(item.method)
    if handler is None:
        return Message(type=m.UNKNOWN, platform_msg_id=_msg_id(item, 0), ts_ms=received_ms, received_ms=received_ms,
                       extra={"method": item.method, "size": len(item.payload)})
    parser, build = handler
    try:
        payload = parser(item.payload)
    except DecodeError as exc:
        return Malformed("protobuf", f"{item.method}: {exc}", bytes(item.payload[:SAMPLE_BYTES]))
    return build(item, payload, received_ms)


def _msg_id(item: pb.Message, common_id: int) -> str:
    if item.msgId:
        return str(item.msgId)
    if common_id:
        return str(common_id)
    return "sha1:" + hashlib.sha1(item.method.encode() + item.payload, usedforsecurity=False).hexdigest()


def _ts_ms(common: pb.Common, received_ms: int) -> int:
    created = common.createTime
    if not created:
        return received_ms
    return created * 1000 if created < 100_000_000_000 else created  # seconds on some messages, ms on most


def _user(user: pb.User) -> LiveUser | None:
    uid = user.id or user.idStr
    name = user.nickName
    if not uid and not name:
        return None
    # Positional arguments: this runs once per message (bench/livefeed_decode.py).
    return LiveUser(str(uid), name, user.displayId, user.gender or None, user.payGrade.level or None)


def _base(kind: str, item: pb.Message, common: pb.Common, user: pb.User | None, received_ms: int, *,
          content: str = "", extra: dict[str, Any] | None = None) -> Message:
    msg_id = item.msgId
    created = common.createTime
    if not created:
        ts = received_ms
    elif created < 100_000_000_000:
        ts = created * 1000  # seconds on some messages, ms on most
    else:
        ts = created
    return Message(kind, str(msg_id) if msg_id else _msg_id(item, common.msgId), ts,
                   _user(user) if user is not None else None, content, {} if extra is None else extra, received_ms)


def _chat(item, p: pb.ChatMessage, received_ms):
    return _base(m.CHAT, item, p.common, p.user, received_ms, content=p.content)


def _emoji_chat(item, p: pb.EmojiChatMessage, received_ms):
    content = p.defaultContent or p.emojiContent.defaultPattern
    return _base(m.EMOJI_CHAT, item, p.common, p.user, received_ms, content=content, extra={"emoji_id": p.emojiId})


def _gift(item, p: pb.GiftMessage, received_ms):
    count = max(p.repeatCount, p.comboCount, 1) * max(p.groupCount, 1)
    unit = p.gift.diamondCount
    uid = p.user.id or p.user.idStr
    # groupId names the streak; two senders could start one in the same millisecond, so the
    # sender is part of the combo's name. A gift sent on its own is a combo of one.
    combo_id = f"{uid}:{p.groupId}" if p.groupId else _msg_id(item, p.common.msgId)
    extra = {"gift_id": p.giftId or p.gift.id, "gift_name": p.gift.name, "count": count, "unit_value": unit,
             "total_value": unit * count, "value_unit": m.DOUYIN_DIAMOND, "combo_id": combo_id,
             "combo_end": bool(p.repeatEnd) or not p.gift.combo}
    if p.toUser.id:
        extra["to_user"] = {"id": str(p.toUser.id), "name": p.toUser.nickName}
    return _base(m.GIFT, item, p.common, p.user, received_ms, content=p.gift.name, extra=extra)


def _like(item, p: pb.LikeMessage, received_ms):
    return _base(m.LIKE, item, p.common, p.user, received_ms, extra={"count": p.count, "total": p.total})


def _member(item, p: pb.MemberMessage, received_ms):
    return _base(m.MEMBER, item, p.common, p.user, received_ms,
                 extra={"member_count": p.memberCount, "enter_type": p.enterType})


def _social(item, p: pb.SocialMessage, received_ms):
    if p.action == SOCIAL_FOLLOW:
        return _base(m.FOLLOW, item, p.common, p.user, received_ms, extra={"follow_count": p.followCount})
    if p.action == SOCIAL_SHARE or p.shareType:
        return _base(m.SHARE, item, p.common, p.user, received_ms,
                     extra={"share_type": p.shareType, "share_target": p.shareTarget})
    return Message(type=m.UNKNOWN, platform_msg_id=_msg_id(item, p.common.msgId), ts_ms=_ts_ms(p.common, received_ms),
                   received_ms=received_ms, extra={"method": item.method, "size": len(item.payload), "action": p.action})


def _viewers(item, p: pb.RoomUserSeqMessage, received_ms):
    return _base(m.VIEWERS, item, p.common, None, received_ms,
                 extra={"current": p.total, "cumulative": p.totalUser, "online_for_anchor": p.onlineUserForAnchor,
                        "total_pv": p.totalPvForAnchor})


def _fansclub(item, p: pb.FansclubMessage, received_ms):
    return _base(m.FANSCLUB, item, p.commonInfo, p.user, received_ms, content=p.content,
                 extra={"action": FANSCLUB_ACTION.get(p.type, "other"), "code": p.type})


def _room_stats(item, p: pb.RoomStatsMessage, received_ms):
    return _base(m.ROOM_STATS, item, p.common, None, received_ms, content=p.displayLong,
                 extra={"display_value": p.displayValue, "total": p.total, "display_short": p.displayShort})


def _rank(item, p: pb.RoomRankMessage, received_ms):
    ranks = []
    for position, entry in enumerate(p.ranksList, 1):
        user = _user(entry.user)
        ranks.append({"rank": position, "user": user.as_json() if user else None, "score": entry.scoreStr})
    return _base(m.RANK, item, p.common, None, received_ms, extra={"ranks": ranks})


def _control(item, p: pb.ControlMessage, received_ms):
    status = CONTROL_STATUS.get(p.status)
    if status is None:
        return Message(type=m.UNKNOWN, platform_msg_id=_msg_id(item, p.common.msgId),
                       ts_ms=_ts_ms(p.common, received_ms), received_ms=received_ms,
                       extra={"method": item.method, "size": len(item.payload), "status": p.status})
    return _base(m.CONTROL, item, p.common, None, received_ms, extra={"status": status, "code": p.status})


HANDLERS: dict[str, tuple[Callable[[bytes], Any], Callable[[pb.Message, Any, int], Message]]] = {
    "WebcastChatMessage": (pb.ChatMessage.FromString, _chat),
    "WebcastEmojiChatMessage": (pb.EmojiChatMessage.FromString, _emoji_chat),
    "WebcastGiftMessage": (pb.GiftMessage.FromString, _gift),
    "WebcastLikeMessage": (pb.LikeMessage.FromString, _like),
    "WebcastMemberMessage": (pb.MemberMessage.FromString, _member),
    "WebcastSocialMessage": (pb.SocialMessage.FromString, _social),
    "WebcastRoomUserSeqMessage": (pb.RoomUserSeqMessage.FromString, _viewers),
    "WebcastFansclubMessage": (pb.FansclubMessage.FromString, _fansclub),
    "WebcastRoomStatsMessage": (pb.RoomStatsMessage.FromString, _room_stats),
    "WebcastRoomRankMessage": (pb.RoomRankMessage.FromString, _rank),
    "WebcastControlMessage": (pb.ControlMessage.FromString, _control),
}
