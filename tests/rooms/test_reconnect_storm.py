"""Sockets connecting at once (a reconnect storm) are served together: each still gets
what it would have got alone."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from project.accounts import services as accounts
from project.accounts.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)


def online(members: dict) -> set[str]:
    return {m["user"] for m in members.values() if m.get("online")}


async def test_sockets_connecting_at_once_each_join_and_see_the_others_online(room, tokens, connect):
    clients = await asyncio.gather(*(connect(room.slug, token=tokens[name]) for name in ("hana", "dj", "lis")))
    for client in clients:
        state = await client.expect("room.state", reason="join")
        assert state["version"] == 0
        assert len((await client.expect("room.queue"))["entries"]) == 3
        await client.expect("room.members")
        await client.expect("room.settings", control_policy="djs")
    for client in clients:
        while online(client.members) != {"hana", "dj", "lis"}:
            await client.expect("room.members", timeout=5)


async def test_a_revoked_token_among_sockets_connecting_at_once_is_refused(room, tokens, connect, people):
    token = await sync_to_async(ApiToken.objects.get)(user=people["lis"])
    await sync_to_async(accounts.token_revoke)(user=people["lis"], token_id=token.pk)
    host, dj, revoked, outsider = await asyncio.gather(
        *(connect(room.slug, token=tokens[name]) for name in ("hana", "dj", "lis", "out")))
    assert await revoked.closed_with() == 4401
    for client in (host, dj, outsider):  # "out" is not a member: a public room lets them in
        await client.expect("room.settings")
