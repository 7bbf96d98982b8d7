"""decode_frame on frames the simulator makes: every Douyin message Chorus reads becomes the
normalised shape, gift streaks keep one combo id, the ack carries the frame's logId and
internalExt, and broken frames become Malformed reports, never exceptions."""

from __future__ import annotations

import gzip
import random

import pytest

from livefeed import messages as m
from livefeed.clients.douyin import ack_frame, decode_frame, heartbeat_frame
from livefeed.clients.douyin_frames import MAX_FRAME_BYTES
from livefeed.messages import Malformed, Message
from livefeed.proto import douyin_pb2 as pb
from livefeed.simulator.room import MALFORMED_KINDS, SimRoom, Streak


@pytest.fixture(name="room")
def room_fixture():
    return SimRoom("7001", rate=0, seed=3)


def one(room: SimRoom, kind: str) -> Message:
    items, _ = decode_frame(room.frame([room.one(kind)])[0])
    assert len(items) == 1, items
    assert isinstance(items[0], Message), items
    return items[0]


def test_chat_keeps_text_user_and_platform_ids(room):
    source = room.one("chat")
    chat = pb.ChatMessage.FromString(source.payload)
    [message], _ = decode_frame(room.frame([source])[0], received_ms=123)
    assert message.type == m.CHAT
    assert message.content
    assert message.content == chat.content
    assert message.platform_msg_id == str(source.msgId)
    assert message.ts_ms == chat.common.createTime
    assert message.received_ms == 123
    assert message.user.id == str(chat.user.id)
    assert message.user.name == chat.user.nickName
    assert message.user.display_id == chat.user.displayId
    assert message.user.level == (chat.user.payGrade.level or None)


@pytest.mark.parametrize(("kind", "type_", "keys"), [
    ("emoji_chat", m.EMOJI_CHAT, {"emoji_id"}),
    ("like", m.LIKE, {"count", "total"}),
    ("member", m.MEMBER, {"member_count"}),
    ("follow", m.FOLLOW, {"follow_count"}),
    ("share", m.SHARE, {"share_type"}),
    ("fansclub", m.FANSCLUB, {"action"}),
    ("viewers", m.VIEWERS, {"current", "cumulative"}),
    ("room_stats", m.ROOM_STATS, {"display_value", "total"}),
    ("rank", m.RANK, {"ranks"}),
    ("unknown", m.UNKNOWN, {"method", "size"}),
])
def test_every_kind_maps_to_its_type(room, kind, type_, keys):
    message = one(room, kind)
    assert message.type == type_
    assert keys <= set(message.extra), message.extra


def test_like_counts_and_room_total(room):
    first, second = one(room, "like"), one(room, "like")
    assert 1 <= first.extra["count"] <= 15
    assert second.extra["total"] == first.extra["total"] + second.extra["count"]


def test_viewers_carry_current_and_cumulative(room):
    message = one(room, "viewers")
    assert message.extra["current"] == room.viewers
    assert message.extra["cumulative"] == room.viewers_total
    assert message.user is None


def test_unknown_method_keeps_its_name_and_size(room):
    source = room.one("unknown")
    [message], _ = decode_frame(room.frame([source])[0])
    assert message.extra == {"method": source.method, "size": len(source.payload)}


def test_end_of_broadcast_is_an_ended_control_message(room):
    [message], _ = decode_frame(room.frame([room.end_message()])[0])
    assert message.type == m.CONTROL
    assert message.extra["status"] == m.ENDED


def test_gift_streak_steps_share_a_combo_id_and_count_up_to_the_end(room):
    streak = Streak(user=room._users[0], gift=(2002, "玫瑰", 1, True), group_id=1_700_000_000_000_123, target=10)
    gifts = []
    while streak.count < streak.target:
        [message], _ = decode_frame(room.frame([room.gift_step(streak, 10_000 + len(gifts), 1_700_000_000_000)])[0])
        gifts.append(message)
    assert len(gifts) >= 2
    assert {g.extra["combo_id"] for g in gifts} == {f"{streak.user.id}:{streak.group_id}"}
    counts = [g.extra["count"] for g in gifts]
    assert counts == sorted(set(counts))
    assert counts[-1] == 10
    assert [g.extra["combo_end"] for g in gifts] == [False] * (len(gifts) - 1) + [True]
    last = gifts[-1].extra
    assert (last["gift_id"], last["gift_name"], last["unit_value"], last["total_value"], last["value_unit"]) == (
        2002, "玫瑰", 1, 10, m.DOUYIN_DIAMOND)


def test_a_gift_that_cannot_streak_is_a_combo_of_one(room):
    streak = Streak(user=room._users[1], gift=(3081, "跑车", 1200, False), group_id=55, target=1)
    [message], _ = decode_frame(room.frame([room.gift_step(streak, 42, 1_700_000_000_000)])[0])
    assert message.extra["combo_end"] is True
    assert (message.extra["count"], message.extra["total_value"]) == (1, 1200)


def test_a_frame_that_asks_for_an_ack_gets_one_with_its_log_id_and_internal_ext(room):
    frame, log_id, internal_ext = room.frame([room.one("chat")])
    _, ack = decode_frame(frame)
    assert ack == ack_frame(log_id, internal_ext)
    parsed = pb.PushFrame.FromString(ack)
    assert (parsed.payloadType, parsed.logId, parsed.payload.decode()) == ("ack", log_id, internal_ext)
    _, no_ack = decode_frame(room.frame([room.one("chat")], need_ack=False)[0])
    assert no_ack is None


def test_a_heartbeat_answer_holds_nothing():
    assert decode_frame(heartbeat_frame()) == ([], None)


@pytest.mark.parametrize("kind", [kind for kind in MALFORMED_KINDS if kind != "text"])
def test_each_kind_of_broken_frame_is_reported_not_raised(room, kind):
    expected = {"gzip": "gzip", "protobuf": "protobuf", "response": "protobuf", "payload": "protobuf",
                "oversized": "oversized"}[kind]
    items, ack = decode_frame(room.malformed(kind))
    assert [type(item) for item in items] == [Malformed]
    assert items[0].kind == expected
    assert items[0].detail
    assert ack is None
    assert len(items[0].sample) <= 64


def test_a_payload_that_inflates_past_the_limit_is_oversized():
    bomb = gzip.compress(b"\0" * (MAX_FRAME_BYTES + 1))
    frame = pb.PushFrame(payloadType="msg", headersList=[pb.HeadersList(key="compress_type", value="gzip")],
                         payload=bomb).SerializeToString()
    [item], _ = decode_frame(frame)
    assert isinstance(item, Malformed)
    assert item.kind == "oversized"


def test_one_broken_message_leaves_the_rest_of_the_frame(room):
    broken = pb.Message(method="WebcastGiftMessage", payload=b"\x0a\x05\x0a", msgId=9)
    items, ack = decode_frame(room.frame([room.one("chat"), broken, room.one("like")])[0])
    assert [getattr(item, "type", "malformed") for item in items] == [m.CHAT, "malformed", m.LIKE]
    assert "WebcastGiftMessage" in items[1].detail
    assert ack is not None


def test_random_and_damaged_bytes_never_raise(room):
    rng = random.Random(5)
    good = [room.frame(room.next_messages(rng.randint(1, 20)))[0] for _ in range(20)]
    corpus = [rng.randbytes(rng.randint(0, 300)) for _ in range(500)]
    for frame in good:
        for _ in range(25):
            damaged = bytearray(frame)
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            corpus.append(bytes(damaged))
            corpus.append(frame[: rng.randrange(len(frame))])
    for data in corpus:
        items, ack = decode_frame(data)
        assert all(isinstance(item, Message | Malformed) for item in items)
        assert ack is None or pb.PushFrame.FromString(ack).payloadType == "ack"
