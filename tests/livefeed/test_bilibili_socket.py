"""The Bilibili live socket over real websockets against the local fake: auth, heartbeats,
every command, compressed bodies, malformed packets, stalls, drops, the end of the broadcast
and host rotation."""

from __future__ import annotations

import asyncio
import time
import zlib

import pytest

from livefeed import messages as m
from livefeed.clients import Blocked, RetryLater, RoomInfo
from livefeed.messages import Malformed, Message
from tests.livefeed import bilibili_fake as fake_cmds
from tests.livefeed.bilibili_fake import packet
from tests.livefeed.bilibili_fixtures import bilibili_client_fixture, bilibili_fixture, client_for  # noqa: F401


async def open_socket(fake, bilibili_client, *, stall_s: float = 5.0):
    info = await bilibili_client.room_info("3")
    connection = await bilibili_client.connect(info, stall_s=stall_s)
    await fake.wait_for_socket()
    return connection, aiter(connection)


async def next_batch(frames, timeout_s: float = 5.0) -> list[Message | Malformed]:
    return await asyncio.wait_for(anext(frames), timeout_s)


async def wait_until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_auth_packet_carries_the_token_and_the_real_room_id(bilibili, bilibili_client):
    connection, _frames = await open_socket(bilibili, bilibili_client)
    assert bilibili.auths == [{"uid": 0, "roomid": 5440, "protover": 3, "platform": "web", "type": 2,
                               "key": bilibili.token}]
    await connection.close()


async def test_a_refused_token_is_a_clear_error(bilibili, bilibili_client):
    info = await bilibili_client.room_info("3")
    info.internal["danmu"]["token"] = "expired-token"
    with pytest.raises(Blocked, match=r"refused to join room 5440.*token"):
        await bilibili_client.connect(info, stall_s=5)
    assert bilibili.auths[-1]["key"] == "expired-token"


async def test_an_auth_answer_other_than_zero_is_blocked(bilibili, bilibili_client):
    bilibili.auth_code = -101
    info = await bilibili_client.room_info("3")
    with pytest.raises(Blocked, match=r"-101"):
        await bilibili_client.connect(info, stall_s=5)


async def test_heartbeats_go_out_every_interval_and_their_replies_are_read(bilibili):
    beating = client_for(bilibili, heartbeat_s=0.1)
    started = time.monotonic()
    connection, frames = await open_socket(bilibili, beating)
    await wait_until(lambda: bilibili.heartbeats >= 5)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.35  # the first at once, then one per 0.1 s: not a burst
    await bilibili.push([fake_cmds.danmu("在吗")])
    batch = await next_batch(frames)
    assert [item.content for item in batch] == ["在吗"]
    assert connection.heartbeat_replies >= 4
    assert connection.popularity == bilibili.popularity
    assert connection.heartbeats_sent == bilibili.heartbeats or connection.heartbeats_sent == bilibili.heartbeats + 1
    await connection.close()
    await beating.aclose()


async def test_a_quiet_room_whose_heartbeats_are_answered_is_not_stalled(bilibili, bilibili_client):
    # heartbeat_s is 30, but a stall limit of 1 s makes the heartbeat go out every 0.5 s.
    connection, frames = await open_socket(bilibili, bilibili_client, stall_s=1.0)
    await asyncio.sleep(2.5)
    await bilibili.push([fake_cmds.danmu("还在")])
    batch = await next_batch(frames)
    assert batch[0].content == "还在"
    assert bilibili.heartbeats >= 4
    await connection.close()


async def test_a_silent_socket_is_a_stall(bilibili, bilibili_client):
    bilibili.answer_heartbeats = False
    connection, frames = await open_socket(bilibili, bilibili_client, stall_s=0.5)
    started = time.monotonic()
    with pytest.raises(RetryLater, match=r"sent nothing for 0.5s"):
        await next_batch(frames)
    assert 0.4 <= time.monotonic() - started < 3
    await connection.close()


async def test_a_drop_is_retry_later(bilibili, bilibili_client):
    connection, frames = await open_socket(bilibili, bilibili_client)
    await bilibili.drop()
    with pytest.raises(RetryLater, match="live socket closed"):
        await next_batch(frames)
    await connection.close()


@pytest.mark.parametrize("version", [0, 2, 3])
async def test_several_packets_in_one_body_arrive_in_order(bilibili, bilibili_client, version):
    connection, frames = await open_socket(bilibili, bilibili_client)
    texts = ["第一", "第二", "第三"]
    await bilibili.push([fake_cmds.danmu(text, id_str=f"id{n}") for n, text in enumerate(texts)], version=version)
    batch = await next_batch(frames)
    assert [(item.type, item.content, item.platform_msg_id) for item in batch] == [
        (m.CHAT, text, f"DANMU_MSG:id{n}") for n, text in enumerate(texts)]
    await connection.close()


async def test_every_command_is_mapped(bilibili, bilibili_client):
    connection, frames = await open_socket(bilibili, bilibili_client)
    sticker = {"emoticon_unique": "official_147", "url": "https://i0.hdslb.com/sticker.png", "width": 60}
    commands = [fake_cmds.danmu("主播好[比心]"), fake_cmds.danmu("赞", id_str="s1", sticker=sticker),
                fake_cmds.send_gift(), fake_cmds.guard_buy(), fake_cmds.super_chat(price=30),
                fake_cmds.interact(1), fake_cmds.interact(2), fake_cmds.interact(3), fake_cmds.like_click(),
                fake_cmds.watched(17903), fake_cmds.online_count(42), fake_cmds.live(),
                {"cmd": "NOTICE_MSG", "msg_type": 2, "msg_common": "全区广播"}]
    await bilibili.push(commands, version=3)
    chat, emoji, gift, guard, sc, member, follow, share, like, watched, online, live, unknown = await next_batch(frames)

    assert (chat.type, chat.content, chat.user.id, chat.user.name, chat.ts_ms) == (
        m.CHAT, "主播好[比心]", "6088969", "tim1997", 1723979200123)
    assert chat.extra["medal"] == {"level": 21, "name": "ASAKI"}
    assert (emoji.type, emoji.extra["emoticon_id"], emoji.extra["emoticon_url"]) == (
        m.EMOJI_CHAT, "official_147", "https://i0.hdslb.com/sticker.png")
    assert (gift.type, gift.platform_msg_id, gift.user.name) == (m.GIFT, "SEND_GIFT:1673622464121900003", "送礼人")
    assert {k: gift.extra[k] for k in ("gift_id", "gift_name", "count", "unit_value", "total_value", "value_unit")} == {
        "gift_id": 31036, "gift_name": "小花花", "count": 1, "unit_value": 100, "total_value": 100,
        "value_unit": m.BILIBILI_GOLD}
    assert gift.extra["combo_id"] == gift.platform_msg_id  # a single gift is its own combo
    assert (guard.type, guard.extra["guard_level"], guard.extra["total_value"], guard.user.name) == (
        m.GUARD, 3, 198000, "上舰人")
    assert (sc.type, sc.content, sc.extra["price_cny"], sc.extra["total_value"], sc.platform_msg_id) == (
        m.SUPER_CHAT, "主播加油", 30.0, 30000, "SUPER_CHAT_MESSAGE:6522809")
    assert [member.type, follow.type, share.type] == [m.MEMBER, m.FOLLOW, m.SHARE]
    assert member.user.name == "TIM_Init"
    assert member.ts_ms == 1644563948000
    assert (like.type, like.extra["count"], like.user.id) == (m.LIKE, 1, "32174213")
    assert (watched.type, watched.extra) == (m.VIEWERS, {"cumulative": 17903})
    assert (online.type, online.extra) == (m.VIEWERS, {"current": 42})
    assert (live.type, live.extra["status"]) == (m.CONTROL, m.RESUMED)
    assert (unknown.type, unknown.extra["method"]) == (m.UNKNOWN, "NOTICE_MSG")
    assert unknown.extra["size"] > 20
    assert len({item.platform_msg_id for item in (chat, emoji, gift, guard, sc, member, follow, share)}) == 8
    await connection.close()


async def test_a_gift_combo_keeps_one_combo_id_and_a_rising_count(bilibili, bilibili_client):
    connection, frames = await open_socket(bilibili, bilibili_client)
    combo = "batch:gift:combo_id:510149209:36047134:31036:1673622464.8445"
    await bilibili.push([fake_cmds.send_gift(batch_combo_id=combo, super_batch_gift_num=1, combo_total_coin=100)])
    await bilibili.push([fake_cmds.combo_send(batch_combo_id=combo, count=2, msg_id="c2")], version=2)
    await bilibili.push([fake_cmds.combo_send(batch_combo_id=combo, count=3, msg_id="c3")], version=3)
    steps = [(await next_batch(frames))[0] for _ in range(3)]
    assert [(s.type, s.extra["combo_id"], s.extra["count"], s.extra["total_value"]) for s in steps] == [
        (m.GIFT, combo, 1, 100), (m.GIFT, combo, 2, 200), (m.GIFT, combo, 3, 300)]
    assert len({s.platform_msg_id for s in steps}) == 3
    await connection.close()


async def test_malformed_packets_are_reported_and_the_socket_goes_on(bilibili, bilibili_client):
    connection, frames = await open_socket(bilibili, bilibili_client)
    await bilibili.push_raw(packet(5, b"\x78\x9cnot zlib at all", version=2))
    await bilibili.push_raw(packet(5, b"\x0bnot brotli", version=3))
    await bilibili.push_raw(packet(5, b'{"cmd": "DANMU_MSG", "info": '))
    await bilibili.push_raw(b"\x00\x00\x00\xff\x00\x10\x00\x00")
    await bilibili.push_raw(packet(5, zlib.compress(b"\x00" * (9 * 1024 * 1024)), version=2))
    await bilibili.push([fake_cmds.danmu("好的")])
    kinds = [[item.kind for item in await next_batch(frames)] for _ in range(5)]
    assert kinds == [["zlib"], ["brotli"], ["json"], ["header"], ["oversized"]]
    assert (await next_batch(frames))[0].content == "好的"
    await connection.close()


async def test_preparing_ends_the_broadcast_and_the_iteration(bilibili, bilibili_client):
    connection, frames = await open_socket(bilibili, bilibili_client)
    await bilibili.push([fake_cmds.danmu("拜拜"), fake_cmds.preparing()], version=2)
    batch = await next_batch(frames)
    assert [item.type for item in batch] == [m.CHAT, m.CONTROL]
    assert batch[1].extra["status"] == m.ENDED
    assert batch[1].ts_ms == 1740129398337
    with pytest.raises(StopAsyncIteration):
        await next_batch(frames)
    await connection.close()


async def test_each_reconnect_goes_to_the_next_host(bilibili):
    rotating = client_for(bilibili, ws_url=bilibili.ws_template)
    info = await rotating.room_info("3")
    for _ in range(3):
        connection = await rotating.connect(info, stall_s=5)
        await bilibili.wait_for_socket()
        await connection.close()
    assert bilibili.connections == ["127.0.0.1", "127.0.0.2", "127.0.0.1"]
    await rotating.aclose()


async def test_a_fixed_socket_url_is_always_used(bilibili, bilibili_client):
    info = await bilibili_client.room_info("3")
    for _ in range(2):
        connection = await bilibili_client.connect(info, stall_s=5)
        await bilibili.wait_for_socket()
        await connection.close()
    assert bilibili.connections == ["127.0.0.1", "127.0.0.1"]


async def test_an_unreachable_socket_is_retry_later(bilibili):
    nowhere = client_for(bilibili, ws_url="ws://127.0.0.1:9/sub")
    info = await nowhere.room_info("3")
    with pytest.raises(RetryLater, match="live socket"):
        await nowhere.connect(info, stall_s=5)
    await nowhere.aclose()


async def test_close_ends_the_iteration_within_a_second(bilibili, bilibili_client):
    connection, frames = await open_socket(bilibili, bilibili_client)
    waiting = asyncio.create_task(anext(frames))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await connection.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 2)
    assert time.monotonic() - started < 1.0
    await connection.close()  # idempotent


async def test_the_default_wss_template_verifies_the_hosts_certificate(tmp_path):
    """With no LIVEFEED_BILIBILI_WS_URL the socket URL is wss://{host}:{wss_port}/sub over the
    room's host list, and the certificate is verified (project.outbound.wss_context): a host
    on a self-signed certificate is a RetryLater naming that host and the failure, and the
    same host trusted explicitly opens (the refusal is the certificate, not the server)."""
    from livefeed.clients.bilibili import BilibiliClient
    from tests.project.test_outbound import _assert_opens_when_trusted, _wss_server

    async with _wss_server(tmp_path) as (port, cert_path):
        client = BilibiliClient(api_root="http://127.0.0.1:9", nav_url="http://127.0.0.1:9/nav", ws_url="",
                                cookie="", heartbeat_s=30.0, timeout_s=5.0)
        hosts = [{"host": "localhost", "port": 2243, "wss_port": port, "ws_port": 2244}]
        info = RoomInfo(ref="3", live=True, internal={
            "room_id": 5440, "danmu": {"token": "t", "uid": 0, "hosts": hosts, "fetched_at": time.time()}})
        with pytest.raises(RetryLater, match=r"localhost.*CERTIFICATE_VERIFY_FAILED"):
            await client.connect(info, stall_s=5)
        assert client.last_url == f"wss://localhost:{port}/sub"
        await _assert_opens_when_trusted(client.last_url, cert_path)
        await client.aclose()
