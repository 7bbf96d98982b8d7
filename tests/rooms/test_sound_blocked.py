"""A member whose browser blocked sound is shown as such to everyone, not as "in sync"."""

import asyncio

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

REPORT = {"type": "report", "offset_ms": 1.5, "rtt_ms": 12.0, "drift_ms": 0.0}


async def _member_until(client, user: str, predicate, timeout: float = 5) -> dict:
    """The entry of `user` in the first room.members for which `predicate` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = []
    while (remaining := deadline - loop.time()) > 0:
        event = await client.expect("room.members", timeout=remaining)
        member = next(m for m in event["members"] if m["user"] == user)
        if predicate(member):
            return member
        seen.append(member)
    raise AssertionError(f"no room.members with {user} as wanted within {timeout} s; saw {seen}")


async def test_a_blocked_player_shows_as_sound_blocked_to_the_others_and_clears(room, tokens, connect):
    host = await connect(room.slug, token=tokens["hana"])
    lis = await connect(room.slug, token=tokens["lis"])
    await host.expect("room.state", reason="join")

    await lis.send(dict(REPORT, sound_blocked=True))
    member = await _member_until(host, "lis", lambda m: m.get("sound_blocked"))
    assert "drift_ms" not in member  # it plays nothing: no drift (left out), never "0 ms, in sync"
    assert member["online"] is True

    await lis.send(dict(REPORT, drift_ms=4.0, sound_blocked=False))  # they clicked to listen
    member = await _member_until(host, "lis", lambda m: "sound_blocked" not in m)  # false, the default: left out
    assert member["drift_ms"] == 4.0


async def test_a_report_without_sound_blocked_is_a_player_that_plays(room, tokens, connect):
    host = await connect(room.slug, token=tokens["hana"])
    lis = await connect(room.slug, token=tokens["lis"])
    await lis.send(dict(REPORT, drift_ms=7.0))
    member = await _member_until(host, "lis", lambda m: m.get("drift_ms") == 7.0, timeout=8)
    assert "sound_blocked" not in member  # false, the default: left out


@pytest.mark.parametrize("value", ["yes", 1, None, [True], {"a": 1}])
async def test_sound_blocked_must_be_true_or_false(room, tokens, connect, value):
    lis = await connect(room.slug, token=tokens["lis"])
    await lis.send(dict(REPORT, sound_blocked=value, request_id="r"))
    error = await lis.expect("error", request_id="r")
    assert error["code"] == "invalid"
    assert "sound_blocked" in error["message"]
