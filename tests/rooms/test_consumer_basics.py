import pytest

pytestmark = pytest.mark.django_db(transaction=True)


async def test_joining_sends_state_queue_members_and_settings(room, tokens, connect):
    client = await connect(room.slug, token=tokens["lis"])
    state = await client.expect("room.state")
    assert state["reason"] == "join"
    assert state["status"] == "stopped"
    assert state["version"] == 0
    queue = await client.expect("room.queue")
    assert len(queue["entries"]) == 3
    members = await client.expect("room.members")
    online = {m["user"] for m in members["members"] if m.get("online")}
    assert online == {"lis"}
    await client.expect("room.settings", control_policy="djs")
    await client.close()


async def test_time_ping_is_answered_with_server_timestamps(room, tokens, connect):
    client = await connect(room.slug, token=tokens["lis"])
    await client.send({"type": "time.ping", "t0": 123.5})
    pong = await client.expect("time.pong")
    assert pong["t0"] == 123.5
    assert pong["t1"] <= pong["t2"]
    await client.close()


async def test_play_reaches_every_member(room, tokens, connect):
    host = await connect(room.slug, token=tokens["hana"])
    listener = await connect(room.slug, token=tokens["lis"])
    await host.send({"type": "control", "action": "play", "request_id": "r1"})
    ack = await host.expect("ack", request_id="r1")
    assert ack["version"] == 1
    for client in (host, listener):
        state = await client.expect("room.state", reason="change")
        assert state["status"] == "waiting"
        assert state["track"]["stream_url"].endswith("/stream")
    await host.close()
    await listener.close()
