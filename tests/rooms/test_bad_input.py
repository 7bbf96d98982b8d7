"""Hostile numbers and documents on the rooms socket and API: refused with an error naming the
field, never stored, never sent on, never a 500 or a close with 1011."""

import asyncio
import json

import pytest
import websockets
from asgiref.sync import sync_to_async

from rooms import presence
from rooms.models import PlaybackState, QueueEntry

pytestmark = pytest.mark.django_db(transaction=True)


def version_of(room) -> int:
    return PlaybackState.objects.get(room=room).version


def first_entry(room) -> int:
    return QueueEntry.objects.filter(room=room).order_by("position").values_list("id", flat=True)[0]


def bearer(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def assert_finite_json(frame: str) -> None:
    """A frame a browser can parse: no NaN / Infinity anywhere."""
    json.loads(frame, parse_constant=lambda name: pytest.fail(f"{name} in {frame[:200]}"))


async def still_open(client) -> None:
    await client.send({"type": "time.ping", "t0": 1})
    await client.expect("time.pong")


async def test_a_report_with_nan_rtt_is_refused_and_the_room_still_starts_and_pauses(room, tokens, connect, people):
    host = await connect(room.slug, token=tokens["hana"])
    listener = await connect(room.slug, token=tokens["lis"])
    await listener.send('{"type": "report", "offset_ms": 0, "rtt_ms": NaN, "drift_ms": 0}')
    error = await listener.expect("error")
    assert (error["code"], error["field"]) == ("invalid", "rtt_ms")
    assert "rtt_ms" in error["message"]
    assert people["lis"].pk not in await sync_to_async(presence.reports)(room.pk)  # nothing kept
    # The host's next play starts with the usual lead, and pause still answers.
    await host.send({"type": "control", "action": "play"})
    waiting = await host.expect("room.state", reason="change", status="waiting")
    await host.send({"type": "ready", "entry_id": waiting["entry_id"]})
    await listener.send({"type": "ready", "entry_id": waiting["entry_id"]})
    playing = await host.expect("room.state", reason="change", status="playing")
    assert 300 <= playing["anchor_ms"] - playing["server_ms"] <= 3100
    await host.send({"type": "control", "action": "pause", "request_id": "p"})
    assert (await host.expect("ack", request_id="p"))["version"] == playing["version"] + 1


async def test_a_nan_report_kept_from_before_reads_as_no_figure(room, tokens, connect, people, redis_client):
    """Reports were not checked before: one stored then must not freeze the room now."""
    host = await connect(room.slug, token=tokens["hana"])
    lis = await connect(room.slug, token=tokens["lis"])
    await sync_to_async(redis_client.hset)(presence._key(room.pk, "reports"), str(people["lis"].pk),
                                           '{"offset_ms": NaN, "rtt_ms": NaN, "drift_ms": Infinity, "at_ms": 1}')
    members = await sync_to_async(presence.reports)(room.pk)
    assert members[people["lis"].pk]["rtt_ms"] is None
    await host.send({"type": "control", "action": "play"})
    waiting = await host.expect("room.state", reason="change", status="waiting")
    for client in (host, lis):
        await client.send({"type": "ready", "entry_id": waiting["entry_id"]})
    playing = await host.expect("room.state", reason="change", status="playing")
    assert 300 <= playing["anchor_ms"] - playing["server_ms"] <= 3100


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
@pytest.mark.parametrize("field", ["offset_ms", "rtt_ms", "drift_ms"])
async def test_non_finite_report_figures_are_refused(room, tokens, connect, field, text):
    figures = {"offset_ms": "0", "rtt_ms": "5", "drift_ms": "0", field: text}
    lis = await connect(room.slug, token=tokens["lis"])
    await lis.send('{"type": "report", ' + ", ".join(f'"{k}": {v}' for k, v in figures.items()) + "}")
    error = await lis.expect("error")
    assert error["field"] == field
    assert await sync_to_async(presence.reports)(room.pk) == {}
    await still_open(lis)


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ('{"type": "control", "action": "seek", "position_s": NaN}', "position_s"),
        ('{"type": "control", "action": "seek", "position_s": Infinity}', "position_s"),
        ('{"type": "control", "action": "seek", "position_s": 1%s}' % ("0" * 400), "position_s"),
        ('{"type": "control", "action": "seek", "position_s": 1e400}', "position_s"),
        ('{"type": "control", "action": "volume", "volume": NaN}', "volume"),
        ('{"type": "control", "action": "volume", "volume": 1%s}' % ("0" * 400), "volume"),
        ('{"type": "control", "action": "volume", "volume": -Infinity}', "volume"),
        ('{"type": "control", "action": "select", "entry_id": 1%s}' % ("0" * 30), "entry_id"),
        ('{"type": "control", "action": "pause", "version": 1%s}' % ("0" * 400), "version"),
        ('{"type": "control", "action": ["play"]}', "action"),
        ('{"type": "ready", "entry_id": 1%s}' % ("0" * 30), "entry_id"),
        ('{"type": "ready", "entry_id": NaN}', "entry_id"),
        ('{"type": "time.ping", "t0": NaN}', "t0"),
        ('{"type": "time.ping", "t0": 1e400}', "t0"),
        ('{"type": "time.ping", "t0": 1%s}' % ("0" * 400), "t0"),
        ('{"type": "time.ping", "t0": 1e300}', "t0"),
        ('{"type": "control", "action": "play", "request_id": "\\ud800"}', "request_id"),
        ('{"type": "control", "action": "play", "request_id": "a\\u0000b"}', "request_id"),
    ],
)
async def test_bad_numbers_are_refused_naming_the_field_and_change_nothing(room, tokens, connect, message, field):
    host = await connect(room.slug, token=tokens["hana"])
    await host.send({"type": "control", "action": "select", "entry_id": await sync_to_async(first_entry)(room)})
    await host.expect("room.state", reason="change")
    version = await sync_to_async(version_of)(room)
    await host.send(message)
    error = await host.expect("error")
    assert error["code"] == "invalid"
    assert error["field"] == field
    assert field in error["message"]
    await still_open(host)
    assert await sync_to_async(version_of)(room) == version


@pytest.mark.parametrize("text", ["[" * 20000, "{\"a\":" * 10000, "[" * 33 + "]" * 33, '{"type": "control", "x": ' + "[" * 500 + "]" * 500 + "}"])
async def test_deeply_nested_json_gets_an_error_not_a_crash(room, tokens, connect, text):
    host = await connect(room.slug, token=tokens["hana"])
    await host.send(text)
    error = await host.expect("error")
    assert "nested too deeply" in error["message"]
    await still_open(host)


async def test_the_size_limit_counts_utf8_bytes(room, tokens, connect):
    host = await connect(room.slug, token=tokens["hana"])
    # 60,000 characters that fit (ASCII): answered as usual.
    await host.send({"type": "time.ping", "t0": 1, "pad": "x" * 60_000})
    await host.expect("time.pong")
    # 30,000 characters of three bytes each: 90,000 bytes, over the 64 KiB limit.
    await host.send({"type": "time.ping", "t0": 1, "pad": "€" * 30_000})
    assert await host.closed_with() == 1009


async def test_room_frames_never_carry_non_finite_numbers(room, tokens, connect, settings):
    settings.ROOMS_TICK_S = 0.3
    host = await connect(room.slug, token=tokens["hana"])
    for message in ('{"type": "report", "offset_ms": NaN, "rtt_ms": Infinity, "drift_ms": -Infinity}',
                    '{"type": "control", "action": "volume", "volume": NaN}',
                    '{"type": "control", "action": "seek", "position_s": 1e400}'):
        await host.send(message)
    await host.send({"type": "control", "action": "volume", "volume": 0.5})
    kinds = []
    while kinds.count("tick") < 2:  # raw frames up to the second tick after the changes
        frame = await asyncio.wait_for(host.ws.output_queue.get(), 5)
        assert_finite_json(frame["text"])
        event = json.loads(frame["text"])
        kinds.append(event.get("reason") if event["type"] == "room.state" else event["type"])
    assert kinds.count("error") == 3
    assert "change" in kinds


async def test_a_server_fault_in_a_message_is_an_error_event_not_a_closed_socket(room, tokens, connect, monkeypatch,
                                                                                 caplog):
    from rooms import services

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(services, "save_report", broken)
    host = await connect(room.slug, token=tokens["hana"])
    await host.send({"type": "report", "offset_ms": 0, "rtt_ms": 5, "drift_ms": 0, "request_id": 7})
    error = await host.expect("error")
    assert (error["code"], error["request_id"]) == ("server_error", 7)
    assert "a bug" not in error["message"]
    await still_open(host)
    assert any(record.exc_info and "a bug" in str(record.exc_info[1]) for record in caplog.records)


def test_a_real_server_closes_an_oversized_message_with_1009(asgi_server, room, tokens):
    """Under Daphne, not only the test communicator: the close code reaches the client."""

    async def scenario():
        async with websockets.connect(f"{asgi_server.ws_url}/ws/rooms/{room.slug}/", open_timeout=10,
                                      additional_headers={"Authorization": f"Bearer {tokens['hana']}"}) as socket:
            await socket.send(json.dumps({"type": "time.ping", "t0": 1, "pad": "é" * 40_000}))  # 80,000 bytes
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(drain(socket), 10)
            return closed.value.rcvd.code if closed.value.rcvd else None

    async def drain(socket):
        while True:
            await socket.recv()

    assert asyncio.run(scenario()) == 1009


# --- the same over HTTP ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"action": "seek", "position_s": NaN}', "position_s"),
        ('{"action": "seek", "position_s": "NaN"}', "position_s"),
        ('{"action": "seek", "position_s": "Infinity"}', "position_s"),
        ('{"action": "seek", "position_s": 1e400}', "position_s"),
        ('{"action": "volume", "volume": 1%s}' % ("0" * 400), "volume"),
        ('{"action": "volume", "volume": "-inf"}', "volume"),
        ('{"action": "select", "entry_id": 1%s}' % ("0" * 30), "entry_id"),
        ('{"action": "pause", "version": 1%s}' % ("0" * 30), "version"),
    ],
)
def test_http_controls_refuse_bad_numbers_naming_the_field(client, room, tokens, body, field):
    version = version_of(room)
    response = client.post(f"/api/rooms/{room.slug}/control", body, content_type="application/json",
                           **bearer(tokens["hana"]))
    assert response.status_code == 400, response.content
    answer = response.json()
    assert (answer["error"], answer["field"]) == ("invalid", field)
    assert field in answer["message"]
    assert version_of(room) == version


def test_http_queue_add_of_a_huge_track_id_is_refused(client, room, tokens):
    entries = QueueEntry.objects.filter(room=room).count()
    response = client.post(f"/api/rooms/{room.slug}/queue", '{"track_id": 1%s}' % ("0" * 30),
                           content_type="application/json", **bearer(tokens["hana"]))
    assert response.status_code == 400
    assert response.json()["field"] == "track_id"
    assert QueueEntry.objects.filter(room=room).count() == entries


@pytest.mark.parametrize("body", ["[" * 20000, '{"action": ' + "[" * 100 + "]" * 100 + "}"])
def test_http_deeply_nested_bodies_are_a_400(client, room, tokens, body):
    response = client.post(f"/api/rooms/{room.slug}/control", body, content_type="application/json",
                           **bearer(tokens["hana"]))
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["message"]
