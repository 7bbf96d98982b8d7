"""The Douyin client against the local simulator over real HTTP: room URLs, room info (title,
streamer, viewers, live or ended, pull URLs), clear errors for anti-bot pages and unknown
rooms, and the signer (a local signing service, a JavaScript file) called with the string
Douyin's web client signs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from urllib.parse import urlencode, urlsplit

import pytest

from livefeed.clients import Blocked, RetryLater, RoomNotFound, SignerNeeded, client_for_url
from livefeed.clients.douyin import DouyinClient
from livefeed.clients.douyin_signer import signature_params
from livefeed.clients.simulator import SimulatorClient
from tests.livefeed.douyin_fixtures import (  # noqa: F401 - fixtures
    LIVE_ID,
    client_for,
    sim_client_fixture,
    simulator_fixture,
)


@pytest.mark.parametrize(("url", "ref"), [
    ("https://live.douyin.com/123456789", "123456789"),
    ("https://live.douyin.com/123456789?enter_from_merge=web_search&action_type=click", "123456789"),
    ("http://live.douyin.com/42/", "42"),
    ("live.douyin.com/987", "987"),
    ("  https://LIVE.douyin.com/555#x ", "555"),
    ("https://live.douyin.com/", None),
    ("https://www.douyin.com/video/123", None),
    ("https://live.douyin.com.evil.example/123", None),
    ("https://live.douyin.com/12/34", None),
    ("ftp://live.douyin.com/12", None),
    ("", None),
])
def test_douyin_room_urls(url, ref):
    assert DouyinClient.parse_url(url) == ref


def test_simulator_room_urls(settings):
    settings.LIVEFEED_SIMULATOR_ROOT = "http://127.0.0.1:8765"
    assert SimulatorClient.parse_url("http://127.0.0.1:8765/7001") == "7001"
    assert SimulatorClient.parse_url("simulator:7002") == "7002"
    assert SimulatorClient.parse_url("http://127.0.0.1:9999/7001") is None
    assert SimulatorClient.parse_url("http://127.0.0.1:8765/") is None
    assert client_for_url("simulator:7003") == (SimulatorClient, "7003")
    assert client_for_url("https://live.douyin.com/7003") == (DouyinClient, "7003")
    assert SimulatorClient().webcast_url == "ws://127.0.0.1:8765/webcast/im/push/v2/"


async def test_room_info_of_a_live_room(simulator, sim_client):
    info = await sim_client.room_info(LIVE_ID)
    room = simulator.room(LIVE_ID)
    assert info.live is True
    assert info.ref == LIVE_ID
    assert info.title == room.title
    assert info.streamer_name == room.streamer.nickName
    assert info.viewers == room.viewers
    assert info.internal["room_id"] == room.room_id
    assert info.internal["ttwid"]
    # Signed CDN URLs, as Douyin's: the file name, then ?expire=..&sign=..
    assert any(key.startswith("flv:") and urlsplit(url).path.endswith(".flv") and "sign=" in url
               for key, url in info.stream_urls.items())
    assert any(key.startswith("hls:") and urlsplit(url).path.endswith(".m3u8") for key, url in info.stream_urls.items())


async def test_an_ended_broadcast_is_not_live(simulator, sim_client):
    await simulator.command(LIVE_ID, "end")
    info = await sim_client.room_info(LIVE_ID)
    assert info.live is False
    assert info.stream_urls == {}


async def test_an_anti_bot_page_is_blocked_with_a_clear_message(simulator, sim_client):
    await simulator.command(LIVE_ID, "page", mode="antibot")
    with pytest.raises(Blocked, match="anti-bot"):
        await sim_client.room_info(LIVE_ID)


async def test_a_page_without_a_room_id_is_room_not_found(simulator, sim_client):
    await simulator.command(LIVE_ID, "page", mode="missing")
    with pytest.raises(RoomNotFound, match="names no room"):
        await sim_client.room_info(LIVE_ID)


async def test_a_server_that_is_down_is_retry_later(simulator):
    client = client_for(simulator)
    await simulator.stop()
    try:
        with pytest.raises(RetryLater):
            await client.room_info(LIVE_ID)
    finally:
        await client.aclose()


class SigningService:
    """A tiny HTTP signing service on 127.0.0.1: records each request, answers `answer`."""

    def __init__(self, *, status: int = 200, answer: object | None = None, a_bogus_status: int = 200):
        self.status = status
        self.answer = answer
        self.a_bogus_status = a_bogus_status
        self.requests: list[dict] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/sign"

    async def start(self) -> SigningService:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
        body = json.loads(await reader.readexactly(length))
        self.requests.append(body)
        status = self.status
        if body["kind"] == "a_bogus":
            status, answer = self.a_bogus_status, {"signature": f"ab-{len(body['params'])}"}
        else:
            answer = self.answer if self.answer is not None else {"signature": "sig-" + body["stub"][:10]}
        payload = json.dumps(answer).encode()
        writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % (status, len(payload)) + payload)
        await writer.drain()
        writer.close()


async def test_the_signing_service_gets_the_string_the_web_client_signs(simulator):
    await simulator.command(LIVE_ID, "signature", required="1")
    service = await SigningService().start()
    client = client_for(simulator, signer=service.url)
    try:
        info = await client.room_info(LIVE_ID)
        async with await client.connect(info, stall_s=5):
            pass
    finally:
        await client.aclose()
        await service.stop()
    query = simulator.room(LIVE_ID).counters.last_query
    [a_bogus, request] = service.requests
    assert a_bogus["kind"] == "a_bogus"
    assert simulator.room(LIVE_ID).counters.last_enter_query["a_bogus"] == f"ab-{len(a_bogus['params'])}"
    expected = (f"live_id=1,aid=6383,version_code=180800,webcast_sdk_version=1.0.14-beta.0,room_id={info.internal['room_id']},"
                f"sub_room_id=,sub_channel_id=,did_rule=3,user_unique_id={info.internal['user_unique_id']},"
                "device_platform=web,device_type=,ac=,identity=audience")
    assert request["params"] == expected == signature_params(query)
    assert request["stub"] == hashlib.md5(expected.encode(), usedforsecurity=False).hexdigest()
    assert request["kind"] == "signature"
    assert request["user_agent"]
    assert query["signature"] == "sig-" + request["stub"][:10]


async def test_a_refused_unsigned_socket_says_a_signer_is_needed(simulator, sim_client):
    await simulator.command(LIVE_ID, "signature", required="1")
    info = await sim_client.room_info(LIVE_ID)
    with pytest.raises(SignerNeeded, match="LIVEFEED_DOUYIN_SIGNER"):
        await sim_client.connect(info, stall_s=5)
    assert simulator.room(LIVE_ID).counters.refused == 1


async def test_the_room_api_gets_a_bogus_from_the_signer_that_makes_it(simulator):
    await simulator.command(LIVE_ID, "a_bogus", required="1")
    service = await SigningService().start()
    client = client_for(simulator, signer=service.url)
    try:
        info = await client.room_info(LIVE_ID)
    finally:
        await client.aclose()
        await service.stop()
    assert info.live is True
    [request] = service.requests
    enter_query = dict(simulator.room(LIVE_ID).counters.last_enter_query)
    signed = enter_query.pop("a_bogus")
    assert request["params"] == urlencode(enter_query)  # the query as sent, without a_bogus
    assert signed == f"ab-{len(request['params'])}"


async def test_a_room_api_that_wants_a_bogus_says_a_signer_is_needed(simulator, sim_client):
    await simulator.command(LIVE_ID, "a_bogus", required="1")
    with pytest.raises(SignerNeeded, match=r"a_bogus.*LIVEFEED_DOUYIN_SIGNER"):
        await sim_client.room_info(LIVE_ID)


async def test_a_signing_service_that_does_not_make_a_bogus_still_signs_the_socket(simulator):
    service = await SigningService(a_bogus_status=404).start()
    client = client_for(simulator, signer=service.url)
    try:
        info = await client.room_info(LIVE_ID)
        async with await client.connect(info, stall_s=5):
            pass
    finally:
        await client.aclose()
        await service.stop()
    assert "a_bogus" not in simulator.room(LIVE_ID).counters.last_enter_query
    assert simulator.room(LIVE_ID).counters.last_query["signature"].startswith("sig-")


@pytest.mark.parametrize(("status", "answer", "error"), [
    (200, {"nope": 1}, SignerNeeded),
    (400, {"error": "bad"}, SignerNeeded),
    (503, {"error": "busy"}, RetryLater),
])
async def test_a_signing_service_that_fails_is_a_clear_error(simulator, status, answer, error):
    service = await SigningService(status=status, answer=answer).start()
    client = client_for(simulator, signer=service.url)
    try:
        info = await client.room_info(LIVE_ID)
        with pytest.raises(error, match="signer"):
            await client.connect(info, stall_s=5)
    finally:
        await client.aclose()
        await service.stop()


async def test_a_javascript_signer_runs_in_the_embedded_engine(simulator, tmp_path):
    script = tmp_path / "sign.js"
    script.write_text("function get_sign(stub) { return 'js-' + stub.split('').reverse().join(''); }\n"
                      "function get_a_bogus(query, ua) { return 'ab' + query.length + (ua.length > 0); }")
    await simulator.command(LIVE_ID, "signature", required="1")
    await simulator.command(LIVE_ID, "a_bogus", required="1")
    client = client_for(simulator, signer=str(script))
    try:
        info = await client.room_info(LIVE_ID)
        async with await client.connect(info, stall_s=5):
            pass
    finally:
        await client.aclose()
    query = simulator.room(LIVE_ID).counters.last_query
    stub = hashlib.md5(signature_params(query).encode(), usedforsecurity=False).hexdigest()
    assert query["signature"] == "js-" + stub[::-1]
    enter_query = dict(simulator.room(LIVE_ID).counters.last_enter_query)
    assert enter_query.pop("a_bogus") == f"ab{len(urlencode(enter_query))}true"


async def test_a_javascript_signer_without_get_a_bogus_signs_the_socket_only(simulator, tmp_path):
    script = tmp_path / "sign.js"
    script.write_text("function get_sign(stub) { return 'only-' + stub; }")
    client = client_for(simulator, signer=str(script))
    try:
        info = await client.room_info(LIVE_ID)
        async with await client.connect(info, stall_s=5):
            pass
    finally:
        await client.aclose()
    assert "a_bogus" not in simulator.room(LIVE_ID).counters.last_enter_query
    assert simulator.room(LIVE_ID).counters.last_query["signature"].startswith("only-")


async def test_a_javascript_signer_without_the_engine_names_the_package(simulator, tmp_path, monkeypatch):
    script = tmp_path / "sign.js"
    script.write_text("function get_sign(stub) { return stub; }")
    monkeypatch.setitem(sys.modules, "py_mini_racer", None)  # as if mini-racer were not installed
    client = client_for(simulator, signer=str(script))
    try:
        with pytest.raises(SignerNeeded, match="mini-racer"):  # at the first signed call: a_bogus of the room API
            await client.room_info(LIVE_ID)
    finally:
        await client.aclose()


async def test_a_broken_javascript_signer_is_a_clear_error(simulator, tmp_path):
    script = tmp_path / "sign.js"
    script.write_text("function get_sign(stub) { throw new Error('no luck'); }")
    client = client_for(simulator, signer=str(script))
    try:
        info = await client.room_info(LIVE_ID)
        with pytest.raises(SignerNeeded, match=r"sign\.js failed"):
            await client.connect(info, stall_s=5)
    finally:
        await client.aclose()
