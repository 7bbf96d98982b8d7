"""decode_frame: one websocket frame of Bilibili packets in, messages and malformed reports
out, never an exception."""

from __future__ import annotations

import json
import zlib

import brotli
import pytest

from livefeed import messages as m
from livefeed.clients.bilibili import MAX_FRAME_BYTES, decode_frame
from livefeed.messages import Malformed, Message
from tests.livefeed import bilibili_fake as cmds
from tests.livefeed.bilibili_fake import command_packet, frame, packet


def only(items):
    assert len(items) == 1, items
    return items[0]


@pytest.mark.parametrize(("data", "kind", "detail"), [
    (b"\x00\x00\x00\x20\x00\x10", "header", "shorter than a packet header"),
    (packet(5, b"{}")[:-1], "header", "does not fit"),
    (b"\x00\x00\x00\x20\x00\x08\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00" + b"x" * 16, "header", "header length 8"),
    (packet(5, b"\x78\x9c\x01\x02\x03", version=2), "zlib", "bad zlib"),
    (packet(5, zlib.compress(command_packet({"cmd": "LIVE"}))[:-6], version=2), "zlib", "truncated"),
    (packet(5, b"\xffnot brotli", version=3), "brotli", "bad brotli"),
    (packet(5, brotli.compress(b"a" * 5000)[:-3], version=3), "brotli", ""),
    (packet(5, b"\xff\xfe not utf-8"), "json", "not JSON"),
    (packet(5, b"[1, 2, 3]"), "json", "without a \"cmd\""),
    (packet(5, json.dumps({"cmd": "DANMU_MSG", "info": []}).encode()), "message", "DANMU_MSG without the fields"),
    (packet(5, json.dumps({"cmd": "SEND_GIFT", "data": None}).encode()), "message", "SEND_GIFT"),
    (packet(5, zlib.compress(b"\x00" * (9 * 1024 * 1024)), version=2), "oversized", "inflates past"),
    (packet(5, brotli.compress(b"\x00" * (9 * 1024 * 1024)), version=3), "oversized", "inflates past"),
    (packet(5, zlib.compress(packet(5, zlib.compress(b"{}"), version=2)), version=2), "header", "inside a compressed"),
    (packet(9, b"??"), "header", "unknown operation 9"),
    (packet(3, b"\x01"), "header", "heartbeat reply shorter"),
])
def test_unreadable_packets_are_malformed_reports(data, kind, detail):
    report = only(decode_frame(data))
    assert isinstance(report, Malformed)
    assert report.kind == kind
    assert detail in report.detail
    assert len(report.sample) <= 64


def test_an_oversized_frame_is_reported_without_being_read():
    report = only(decode_frame(b"\x00" * (MAX_FRAME_BYTES + 1)))
    assert report.kind == "oversized"


def test_packets_after_a_malformed_one_in_another_body_still_arrive():
    data = packet(5, b"\x78\x9cbad", version=2) + frame([cmds.danmu("一"), cmds.danmu("二", id_str="b")], version=3)
    items = decode_frame(data)
    assert [type(item).__name__ for item in items] == ["Malformed", "Message", "Message"]
    assert [item.content for item in items[1:]] == ["一", "二"]


def test_an_unknown_command_keeps_its_name_and_size():
    body = json.dumps({"cmd": "POPULARITY_RED_POCKET_NEW", "data": {"x": 1}}).encode()
    message = only(decode_frame(packet(5, body)))
    assert (message.type, message.extra) == (m.UNKNOWN, {"method": "POPULARITY_RED_POCKET_NEW", "size": len(body)})


def test_command_names_with_a_suffix_are_the_same_command():
    doc = cmds.danmu("hi")
    doc["cmd"] = "DANMU_MSG:4:0:2:2:2:0"
    assert only(decode_frame(frame([doc]))).type == m.CHAT


def test_the_same_packet_sent_again_has_the_same_id():
    doc = cmds.danmu("重发")
    doc["info"][0][15]["extra"] = "{}"  # no id_str
    doc["info"][9] = {}  # no ct either: the id is a digest of the packet
    first = only(decode_frame(frame([doc]), received_ms=1))
    again = only(decode_frame(frame([doc], version=3), received_ms=99999))
    other = only(decode_frame(frame([cmds.danmu("别的")]), received_ms=1))
    assert first.platform_msg_id == again.platform_msg_id
    assert first.platform_msg_id != other.platform_msg_id


def test_a_viewer_count_sent_again_later_is_a_new_reading():
    first = only(decode_frame(frame([cmds.watched(10)]), received_ms=1_000))
    later = only(decode_frame(frame([cmds.watched(10)]), received_ms=61_000))
    assert first.platform_msg_id != later.platform_msg_id


def test_a_danmu_without_id_str_uses_its_ct_hash():
    doc = cmds.danmu("ct")
    doc["info"][0][15]["extra"] = "{}"
    assert only(decode_frame(frame([doc]))).platform_msg_id == "DANMU_MSG:6088969:1723979200:AFFF4206"


def test_silver_gifts_are_worth_nothing_in_money():
    gift = only(decode_frame(frame([cmds.send_gift(coin_type="silver", price=100, num=5)])))
    assert {k: gift.extra[k] for k in ("unit_value", "total_value", "value_unit", "silver_value", "count")} == {
        "unit_value": 0, "total_value": 0, "value_unit": "silver", "silver_value": 500, "count": 5}


@pytest.mark.parametrize(("msg_type", "kind"), [(1, m.MEMBER), (2, m.FOLLOW), (3, m.SHARE)])
def test_interactions_in_protobuf_are_read_like_the_json_ones(msg_type, kind):
    message = only(decode_frame(frame([cmds.interact_v2(msg_type, uid=300000000001, uname="进场的人")])))
    assert (message.type, message.user.id, message.user.name, message.ts_ms) == (
        kind, "300000000001", "进场的人", 1644563948000)


@pytest.mark.parametrize("pb", ["not base64!", "CAE=" + "x", "CP////////////8B", "Eg==", "Ff8="])
def test_a_bad_protobuf_interaction_is_malformed(pb):
    report = only(decode_frame(frame([{"cmd": "INTERACT_WORD_V2", "data": {"pb": pb}}])))
    assert (type(report), report.kind) == (Malformed, "message")


def test_a_protobuf_gift_is_read_like_send_gift():
    gift = only(decode_frame(frame([cmds.send_gift_v2(num=2, price=100)], version=3)))
    assert (gift.type, gift.platform_msg_id, gift.user.name, gift.ts_ms) == (
        m.GIFT, "SEND_GIFT:1788000000111100001", "送礼人", 1788000000000)
    assert {k: gift.extra[k] for k in ("gift_id", "gift_name", "count", "unit_value", "total_value", "value_unit",
                                       "combo_id")} == {
        "gift_id": 31036, "gift_name": "小花花", "count": 2, "unit_value": 100, "total_value": 200,
        "value_unit": m.BILIBILI_GOLD, "combo_id": "SEND_GIFT:1788000000111100001"}
    silver = only(decode_frame(frame([cmds.send_gift_v2(coin_type="silver")])))
    assert (silver.extra["total_value"], silver.extra["value_unit"]) == (0, "silver")


def test_a_protobuf_gift_without_its_gift_is_malformed():
    report = only(decode_frame(frame([{"cmd": "SEND_GIFT_V2", "data": {"pb": "CAE="}}])))
    assert (type(report), report.kind) == (Malformed, "message")


def test_an_interaction_of_an_unknown_kind_is_unknown():
    message = only(decode_frame(frame([cmds.interact(9)])))
    assert (message.type, message.extra["method"]) == (m.UNKNOWN, "INTERACT_WORD:9")


def test_a_masked_user_of_a_logged_out_socket_is_kept():
    message = only(decode_frame(frame([cmds.danmu("看不见名字", uid=0, uname="用***")])))
    assert (message.user.id, message.user.name) == ("0", "用***")


def test_heartbeat_and_auth_replies_carry_no_messages():
    assert decode_frame(packet(3, (2466).to_bytes(4, "big") + b"[object Object]", version=1)) == []
    assert decode_frame(packet(8, b'{"code":0}', version=1)) == []


def test_every_message_has_the_json_shape():
    for item in decode_frame(frame([cmds.danmu("a"), cmds.super_chat(), cmds.preparing()], version=2)):
        assert isinstance(item, Message)
        shape = item.as_json()
        assert json.loads(json.dumps(shape)) == shape
        assert isinstance(shape["ts_ms"], int)
        assert shape["platform_msg_id"]
