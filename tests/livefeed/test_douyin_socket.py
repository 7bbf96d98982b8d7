"""The Douyin push socket against the local simulator over a real websocket: every message
type arrives mapped, acks and heartbeats reach the platform as it expects, gift streaks
keep one combo id, broken frames are reported without ending the connection, a silent or
dropped socket is RetryLater, the end of the broadcast ends the iterator, and close() is
quick."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest

from livefeed import messages as m
from livefeed.clients import RetryLater
from livefeed.messages import Malformed, Message
from livefeed.simulator import MALFORMED_KINDS
from tests.livefeed.douyin_fixtures import (  # noqa: F401 - fixtures
    LIVE_ID,
    client_for,
    collect,
    eventually,
    sim_client_fixture,
    simulator_fixture,
)

KINDS = {"chat": m.CHAT, "emoji_chat": m.EMOJI_CHAT, "gift": m.GIFT, "like": m.LIKE, "member": m.MEMBER,
         "follow": m.FOLLOW, "share": m.SHARE, "fansclub": m.FANSCLUB, "viewers": m.VIEWERS,
         "room_stats": m.ROOM_STATS, "rank": m.RANK, "unknown": m.UNKNOWN}


async def drain(connection) -> None:
    async for _ in connection:
        pass


def of_type(items, type_):
    return [item for item in items if isinstance(item, Message) and item.type == type_]


async def test_every_message_type_arrives_mapped_and_every_frame_is_acked(simulator, sim_client):
    info = await sim_client.room_info(LIVE_ID)
    async with await sim_client.connect(info, stall_s=5) as connection:
        await eventually(lambda: simulator.room(LIVE_ID).sockets, what="the socket to open")
        for kind in KINDS:
            await simulator.command(LIVE_ID, "send", kind=kind, count="2")
        items = await collect(connection, until=lambda got: {i.type for i in got if isinstance(i, Message)}
                              >= set(KINDS.values()))
        counters = simulator.room(LIVE_ID).counters
        await eventually(lambda: counters.acks_ok == counters.acks_expected, what="every frame acked")
    assert not [item for item in items if isinstance(item, Malformed)]
    assert len(items) == 2 * len(KINDS)
    assert counters.acks_ok == len(KINDS)  # one frame per command, each acked with its logId and internalExt
    assert counters.acks_bad == 0
    assert connection.acks_sent == len(KINDS)
    assert counters.connections == 1
    assert counters.last_query["room_id"] == info.internal["room_id"]


async def test_heartbeats_reach_the_platform_on_schedule(simulator):
    client = client_for(simulator, heartbeat_s=0.2)
    try:
        info = await client.room_info(LIVE_ID)
        async with await client.connect(info, stall_s=5) as connection:
            started = time.monotonic()
            await eventually(lambda: simulator.room(LIVE_ID).counters.heartbeats >= 4, what="4 heartbeats")
            elapsed = time.monotonic() - started
    finally:
        await client.aclose()
    assert elapsed >= 0.5  # one at once, then one every 0.2 s: not a burst
    assert connection.heartbeats_sent >= simulator.room(LIVE_ID).counters.heartbeats >= 4
    assert simulator.room(LIVE_ID).counters.client_garbage == 0


async def test_a_quiet_room_is_not_stalled_while_heartbeats_are_answered(simulator):
    client = client_for(simulator, heartbeat_s=0.2)
    try:
        info = await client.room_info(LIVE_ID)
        async with await client.connect(info, stall_s=1.0) as connection:
            await simulator.command(LIVE_ID, "send", kind="chat")
            iterator = aiter(connection)
            first = await anext(iterator)  # nothing else comes for a while; heartbeat answers keep it alive
            await eventually(lambda: simulator.room(LIVE_ID).counters.heartbeats >= 8, timeout_s=5)
            await simulator.command(LIVE_ID, "send", kind="like")
            second = await anext(iterator)
    finally:
        await client.aclose()
    assert [item.type for item in first] == [m.CHAT]
    assert [item.type for item in second] == [m.LIKE]


async def test_gift_streaks_keep_one_combo_id_and_count_up(simulator, sim_client):
    await simulator.command(LIVE_ID, "rate", value="400")
    info = await sim_client.room_info(LIVE_ID)
    async with await sim_client.connect(info, stall_s=5) as connection:
        items = await collect(connection, timeout_s=20,
                              until=lambda got: len([g for g in of_type(got, m.GIFT) if g.extra["combo_end"]]) >= 15)
    steps = defaultdict(list)
    for gift in of_type(items, m.GIFT):
        steps[gift.extra["combo_id"]].append(gift)
    ended = [combo for combo in steps.values() if combo[-1].extra["combo_end"]]
    assert len(ended) >= 15
    assert any(len(combo) > 1 for combo in ended)  # real streaks, not only single gifts
    for combo in steps.values():
        counts = [gift.extra["count"] for gift in combo]
        assert counts == sorted(counts)
        assert [gift.extra["combo_end"] for gift in combo[:-1]] == [False] * (len(combo) - 1)
        assert {(g.extra["gift_id"], g.user.id) for g in combo} == {(combo[0].extra["gift_id"], combo[0].user.id)}
        last = combo[-1].extra
        assert last["total_value"] == last["unit_value"] * last["count"]


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
async def test_a_broken_frame_is_reported_and_the_connection_goes_on(simulator, sim_client, kind):
    expected = {"gzip": "gzip", "protobuf": "protobuf", "response": "protobuf", "payload": "protobuf",
                "oversized": "oversized", "text": "text"}[kind]
    info = await sim_client.room_info(LIVE_ID)
    async with await sim_client.connect(info, stall_s=5) as connection:
        await eventually(lambda: simulator.room(LIVE_ID).sockets, what="the socket to open")
        await simulator.command(LIVE_ID, "malformed", kind=kind)
        await simulator.command(LIVE_ID, "send", kind="chat")
        items = await collect(connection, until=lambda got: of_type(got, m.CHAT))
    [report] = [item for item in items if isinstance(item, Malformed)]
    assert report.kind == expected
    assert len(of_type(items, m.CHAT)) == 1


async def test_a_silent_socket_is_a_stall(simulator, sim_client):
    info = await sim_client.room_info(LIVE_ID)
    await simulator.command(LIVE_ID, "stall")
    started = time.monotonic()
    async with await sim_client.connect(info, stall_s=0.5) as connection:
        with pytest.raises(RetryLater, match=r"sent nothing for 0\.5s"):
            await drain(connection)
    assert time.monotonic() - started < 3


async def test_a_dropped_socket_is_retry_later_and_the_reconnect_gets_recent_messages_again(simulator, sim_client):
    await simulator.command(LIVE_ID, "resend", count="5")
    info = await sim_client.room_info(LIVE_ID)
    async with await sim_client.connect(info, stall_s=5) as connection:
        await eventually(lambda: simulator.room(LIVE_ID).sockets, what="the socket to open")
        await simulator.command(LIVE_ID, "send", kind="chat", count="8")
        before = await collect(connection, until=lambda got: len(got) >= 8)
        await simulator.command(LIVE_ID, "drop")
        with pytest.raises(RetryLater, match="push socket closed"):
            await drain(connection)
    async with await sim_client.connect(info, stall_s=5) as connection:
        again = await collect(connection, until=lambda got: len(got) >= 5)
    assert [item.platform_msg_id for item in again] == [item.platform_msg_id for item in before[-5:]]
    assert simulator.room(LIVE_ID).counters.resent == 5


async def test_the_end_of_the_broadcast_ends_the_iterator(simulator, sim_client):
    info = await sim_client.room_info(LIVE_ID)
    async with await sim_client.connect(info, stall_s=5) as connection:
        await eventually(lambda: simulator.room(LIVE_ID).sockets, what="the socket to open")
        await simulator.command(LIVE_ID, "send", kind="chat")
        await simulator.command(LIVE_ID, "end")
        items = []
        async for batch in connection:  # ends by itself: no RetryLater, no hang
            items.extend(batch)
    assert [item.type for item in items] == [m.CHAT, m.CONTROL]
    assert items[-1].extra["status"] == m.ENDED
    assert (await sim_client.room_info(LIVE_ID)).live is False


async def test_close_returns_within_a_second(simulator, sim_client):
    await simulator.command(LIVE_ID, "rate", value="200")
    info = await sim_client.room_info(LIVE_ID)
    connection = await sim_client.connect(info, stall_s=5)
    await collect(connection, until=lambda got: len(got) >= 20)
    started = time.monotonic()
    await connection.close()
    await connection.close()  # idempotent
    assert time.monotonic() - started < 1.5
    await eventually(lambda: not simulator.room(LIVE_ID).sockets, what="the simulator to see the close")


async def test_close_from_another_task_ends_the_iteration_quietly(simulator, sim_client):
    info = await sim_client.room_info(LIVE_ID)
    connection = await sim_client.connect(info, stall_s=30)
    batches = []

    async def follow():
        async for batch in connection:
            batches.append(batch)

    task = asyncio.create_task(follow())
    await eventually(lambda: simulator.room(LIVE_ID).sockets, what="the socket to open")
    await simulator.command(LIVE_ID, "send", kind="chat")
    await eventually(lambda: batches, what="the first batch")
    started = time.monotonic()
    await connection.close()
    await asyncio.wait_for(task, 2)  # ends, no RetryLater: a stop is not a drop
    assert time.monotonic() - started < 1.5


async def test_a_push_socket_whose_certificate_no_authority_signed_is_refused(tmp_path):
    """The push socket over wss:// verifies its certificate (through the process's shared
    context, project.outbound.wss_context): one on a self-signed certificate is a RetryLater
    naming the verification failure, and the same socket trusted explicitly opens (the
    refusal is the certificate, not the server)."""
    from livefeed.clients import RoomInfo
    from livefeed.clients.douyin import DouyinClient
    from tests.project.test_outbound import _assert_opens_when_trusted, _wss_server

    async with _wss_server(tmp_path) as (port, cert_path):
        url = f"wss://localhost:{port}/webcast/im/push/v2/"
        client = DouyinClient(root="http://127.0.0.1:9", webcast_url=url, signer="")
        info = RoomInfo(ref="7", live=True, internal={"room_id": "7", "user_unique_id": "8", "ttwid": "t"})
        with pytest.raises(RetryLater, match="CERTIFICATE_VERIFY_FAILED"):
            await client.connect(info, stall_s=5)
        await _assert_opens_when_trusted(url, cert_path)
        await client.aclose()
