"""The local Douyin simulator itself: its control endpoint over HTTP, the thread runner for
code with its own loop, `manage.py live_simulator`, and chat that looks like a Chinese room."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from livefeed import messages as m
from livefeed.proto import douyin_pb2 as pb
from livefeed.simulator import SimRoom, running_simulator
from livefeed.simulator.content import EMOJI
from tests.livefeed.douyin_fixtures import LIVE_ID, client_for, collect, simulator_fixture  # noqa: F401 - fixture


async def test_the_control_endpoint_changes_the_room_and_reports_its_counters(simulator):
    async with httpx.AsyncClient(base_url=simulator.root) as http:
        changed = await http.post(f"/_sim/{LIVE_ID}/rate", params={"value": "12.5"})
        assert changed.status_code == 200
        assert changed.json()["rate"] == 12.5
        assert (await http.post(f"/_sim/{LIVE_ID}/page", params={"mode": "antibot"})).json()["page"] == "antibot"
        status = (await http.get(f"/_sim/{LIVE_ID}")).json()
        assert status["room_id"] == simulator.room(LIVE_ID).room_id
        assert status["counters"]["connections"] == 0
        assert {room["live_id"] for room in (await http.get("/_sim/")).json()["rooms"]} == {LIVE_ID}
        ended = await http.post(f"/_sim/{LIVE_ID}/end")
        assert ended.json()["live"] is False
        enter = await http.get("/webcast/room/web/enter/", params={"web_rid": LIVE_ID}, headers={"Cookie": "ttwid=x"})
        assert "验证码" in enter.text  # the anti-bot page set above


async def test_bad_commands_are_clear_4xx_answers(simulator):
    async with httpx.AsyncClient(base_url=simulator.root) as http:
        unknown = await http.post(f"/_sim/{LIVE_ID}/explode")
        assert unknown.status_code == 400
        assert "unknown command 'explode'" in unknown.json()["error"]
        bad_rate = await http.post(f"/_sim/{LIVE_ID}/rate", params={"value": "fast"})
        assert bad_rate.status_code == 400
        assert "value must be a number" in bad_rate.json()["error"]
        bad_kind = await http.post(f"/_sim/{LIVE_ID}/malformed", params={"kind": "weird"})
        assert bad_kind.status_code == 400
        assert (await http.get(f"/_sim/{LIVE_ID}/drop")).status_code == 405
        assert (await http.get("/nothing/here")).status_code == 404


async def test_the_room_page_needs_the_cookie_and_embeds_the_escaped_room_id(simulator):
    async with httpx.AsyncClient(base_url=simulator.root) as http:
        home = await http.get("/")
        assert home.cookies.get("ttwid")
        page = await http.get(f"/{LIVE_ID}")  # the jar sends ttwid
        assert f'\\"roomId\\":\\"{simulator.room(LIVE_ID).room_id}\\"' in page.text
        http.cookies.clear()
        assert "roomId" not in (await http.get(f"/{LIVE_ID}")).text


def test_the_thread_runner_serves_code_without_an_event_loop():
    with running_simulator(rate=0) as sim:
        status = httpx.post(f"{sim.root}/_sim/{LIVE_ID}/rate", params={"value": "3"}).json()
        assert status["rate"] == 3
        assert sim.command(LIVE_ID, "stall")["stalled"] is True
        root = sim.root
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{root}/_sim/", timeout=2)


def test_manage_py_live_simulator_serves_until_stopped():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "manage.py", "live_simulator", "--port", "0", "--rate", "5"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = process.stdout.readline()
        found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        assert found, line
        deadline = time.monotonic() + 10
        while True:
            try:
                status = httpx.get(f"{found.group(1)}/_sim/7001", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the simulator did not answer"
                time.sleep(0.1)
        assert status["rate"] == 5
    finally:
        process.terminate()
        process.wait(10)


def test_chat_reads_like_a_chinese_room_with_emoji_tokens():
    room = SimRoom(LIVE_ID, rate=0, seed=11)
    lines = [pb.ChatMessage.FromString(room.one("chat").payload).content for _ in range(2000)]
    assert len(set(lines)) > 300
    assert all(re.search(r"[\u4e00-\u9fff]|\[|666", line) for line in lines)
    assert sum(bool(re.search(r"[\u4e00-\u9fff]", line)) for line in lines) > 1800
    assert sum(any(token in line for token in EMOJI) for line in lines) > 200


async def test_the_socket_counts_wrong_acks_and_garbage(simulator):
    room = simulator.room(LIVE_ID)
    url = f"{simulator.webcast_url}?room_id={room.room_id}"
    async with connect(url, additional_headers={"Cookie": "ttwid=x"}) as ws:
        await simulator.command(LIVE_ID, "send", kind="chat")
        frame = pb.PushFrame.FromString(await ws.recv())
        await ws.send(pb.PushFrame(payloadType="ack", logId=frame.logId, payload=b"not the internalExt").SerializeToString())
        await ws.send(pb.PushFrame(payloadType="ack", logId=12345, payload=b"").SerializeToString())
        await ws.send(b"\xff\xff\xff")
        await ws.send(pb.PushFrame(payloadType="hb").SerializeToString())
        answer = pb.PushFrame.FromString(await ws.recv())
    assert answer.payloadType == "hb"
    counters = room.counters
    assert (counters.acks_expected, counters.acks_ok, counters.acks_bad) == (1, 0, 2)
    assert counters.client_garbage == 1
    assert counters.heartbeats == 1


async def test_a_socket_without_the_cookie_or_for_no_room_is_refused(simulator):
    room = simulator.room(LIVE_ID)
    with pytest.raises(InvalidStatus) as no_cookie:
        async with connect(f"{simulator.webcast_url}?room_id={room.room_id}"):
            pass
    assert no_cookie.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as no_room:
        async with connect(f"{simulator.webcast_url}?room_id=12", additional_headers={"Cookie": "ttwid=x"}):
            pass
    assert no_room.value.response.status_code == 404
    assert room.counters.refused == 1


async def test_a_quiet_room_still_reports_viewers_every_two_seconds(simulator):
    await simulator.command(LIVE_ID, "rate", value="0.5")
    client = client_for(simulator)
    try:
        info = await client.room_info(LIVE_ID)
        async with await client.connect(info, stall_s=10) as connection:
            items = await collect(connection, timeout_s=10,
                                  until=lambda got: len([i for i in got if i.type == m.VIEWERS]) >= 2)
    finally:
        await client.aclose()
    viewers = [item for item in items if item.type == m.VIEWERS]
    assert viewers[1].received_ms - viewers[0].received_ms >= 1500
    assert all(item.extra["current"] > 0 for item in viewers)
