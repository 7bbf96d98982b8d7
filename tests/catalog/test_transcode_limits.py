"""Concurrent ?format= transcodes are capped per user and for the whole server (every Daphne
process together), past the cap the answer is 429 / 503 with Retry-After, and a slot comes
back when its stream ends, its client stalls for too long, or its process dies.

Real ffmpeg, real Daphne processes on the test database and Redis, slow clients that read
the first bytes and then nothing.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from catalog.transcode_slots import SERVER_KEY, user_key
from project.accounts.services import token_create
from tests.catalog.test_stream import FETCH_TIMEOUT_S, ffmpeg_children, ffmpeg_children_once_gone
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_S = 20


@pytest.fixture(autouse=True)
def no_slots_left_over(redis_client, alice, bob):
    """Leases of an earlier run (a killed server's) must not count against this test."""
    keys = [SERVER_KEY, user_key(alice.pk), user_key(bob.pk)]
    redis_client.delete(*keys)
    yield
    redis_client.delete(*keys)


class Stream:
    """One GET of a transcode that reads the head and the first bytes, then stops reading."""

    def __init__(self, server, track, token: str, query: str = "format=mp3&bitrate=64"):
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=FETCH_TIMEOUT_S)
        self.connection.request("GET", f"{track.get_stream_url()}?{query}", headers={"Authorization": f"Bearer {token}"})
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.first = self.response.read1(16 * 1024) if self.status == 200 else self.response.read()

    def error(self) -> dict:
        assert self.response.getheader("Content-Type") == "application/json"
        return json.loads(self.first)

    def close(self) -> None:
        self.connection.close()


def wait_for(predicate, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout_s} s")


def test_past_the_users_cap_is_429_and_past_the_servers_cap_is_503_across_processes(alice, bob, long_track, asgi_server_factory):
    first, second = asgi_server_factory(2, env={"TRANSCODE_MAX_PER_USER": "2", "TRANSCODE_MAX": "3"})
    _, alice_token = token_create(user=alice, name="player")
    _, bob_token = token_create(user=bob, name="player")
    streams = []
    try:
        streams += [Stream(first, long_track, alice_token), Stream(second, long_track, alice_token)]
        assert [s.status for s in streams] == [200, 200]
        refused = Stream(first, long_track, alice_token)
        assert refused.status == 429
        assert refused.response.getheader("Retry-After") == "10"
        assert refused.error()["error"] == "too_many_transcodes"
        assert "2 converted streams" in refused.error()["message"]

        streams.append(Stream(second, long_track, bob_token))  # the third slot of the server
        assert streams[-1].status == 200
        busy = Stream(first, long_track, bob_token)  # bob is under his own cap, the server is full
        assert busy.status == 503
        assert busy.response.getheader("Retry-After") == "10"
        assert busy.error()["error"] == "busy"
        assert len(ffmpeg_children(first.process.pid)) + len(ffmpeg_children(second.process.pid)) == 3

        # An original file is never refused: it starts no ffmpeg.
        original = Stream(first, long_track, bob_token, query="")
        assert original.status == 200
        original.close()

        streams.pop(0).close()  # alice leaves one: its slot comes back
        again = wait_for(lambda: (s := Stream(first, long_track, bob_token)).status == 200 and s, "a freed slot")
        streams.append(again)
    finally:
        for stream in streams:
            stream.close()
    for server in (first, second):
        assert ffmpeg_children_once_gone(server.process.pid) == []


def test_many_slow_readers_at_once_with_one_token_start_only_the_users_cap_of_ffmpegs(alice, long_track, asgi_server_factory):
    servers = asgi_server_factory(2)
    _, token = token_create(user=alice, name="player")
    with concurrent.futures.ThreadPoolExecutor(12) as pool:  # all at once, over two processes
        streams = list(pool.map(lambda i: Stream(servers[i % 2], long_track, token), range(12)))
    try:
        statuses = [s.status for s in streams]
        assert statuses.count(200) == 3, statuses  # TRANSCODE_MAX_PER_USER's default
        assert statuses.count(429) == 9, statuses
        assert sum(len(ffmpeg_children(server.process.pid)) for server in servers) == 3
    finally:
        for stream in streams:
            stream.close()
    for server in servers:
        assert ffmpeg_children_once_gone(server.process.pid) == []
    # All three slots came back.
    again = [wait_for(lambda: (s := Stream(servers[0], long_track, token)).status == 200 and s, "a slot") for _ in range(3)]
    for stream in again:
        stream.close()


def wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


def test_a_stalled_client_pauses_ffmpeg_then_loses_it_and_its_slot(alice, long_track, asgi_server_factory):
    server = asgi_server_factory(1, env={"TRANSCODE_MAX_PER_USER": "1", "TRANSCODE_IDLE_S": "3"})[0]
    _, token = token_create(user=alice, name="player")
    stalled = Stream(server, long_track, token)
    try:
        assert stalled.status == 200
        (ffmpeg,) = ffmpeg_children(server.process.pid)
        # The client reads nothing: ffmpeg waits on its full pipe instead of encoding into memory...
        wait_for(lambda: "pipe_write" in wchan(ffmpeg), "ffmpeg blocking on its pipe")
        # ...and after TRANSCODE_IDLE_S it is stopped and the slot is free for the next stream.
        assert ffmpeg_children_once_gone(server.process.pid) == []
        assert wait_for(lambda: (s := Stream(server, long_track, token)).status == 200 and (s.close() or True), "the slot")
        # What was encoded before the stop still arrives, then the end of the body: a few MB
        # (the pipe, and the kernel's socket buffers on loopback), not the 29 MB of the track.
        received = len(stalled.first) + len(stalled.response.read())
        assert 0 < received < long_track.duration_s * 64_000 / 8 / 4
    finally:
        stalled.close()


def test_slots_of_a_killed_process_come_back_when_their_leases_end(alice, long_track, asgi_server_factory):
    env = {"TRANSCODE_MAX": "1", "TRANSCODE_LEASE_S": "2"}
    doomed, survivor = asgi_server_factory(2, env=env)
    _, token = token_create(user=alice, name="player")
    held = Stream(doomed, long_track, token)
    try:
        assert held.status == 200
        assert Stream(survivor, long_track, token).status == 503
        os.kill(doomed.process.pid, signal.SIGKILL)  # no chance to release anything
        doomed.process.wait()
        started = time.monotonic()
        assert wait_for(lambda: (s := Stream(survivor, long_track, token)).status == 200 and (s.close() or True), "the lease's end")
        assert time.monotonic() - started < 2 + 6  # the lease, plus requests on a busy machine
    finally:
        held.close()


def test_a_transcode_that_ends_gives_its_slot_back(alice, track, asgi_server_factory):
    server = asgi_server_factory(1, env={"TRANSCODE_MAX_PER_USER": "1"})[0]
    _, token = token_create(user=alice, name="player")
    for _ in range(3):  # each read to its end: the next one is let in
        stream = Stream(server, track, token)
        assert stream.status == 200
        stream.response.read()
        stream.close()


def test_a_user_over_the_cap_can_still_fetch_the_original(alice, long_track, asgi_server_factory):
    server = asgi_server_factory(1, env={"TRANSCODE_MAX_PER_USER": "1"})[0]
    _, token = token_create(user=alice, name="player")
    held = Stream(server, long_track, token)
    try:
        assert held.status == 200
        assert Stream(server, long_track, token).status == 429
        assert Stream(server, long_track, token, query="").status == 200
    finally:
        held.close()


def test_another_user_is_not_held_up_by_someone_elses_cap(alice, long_track, asgi_server_factory):
    server = asgi_server_factory(1, env={"TRANSCODE_MAX_PER_USER": "1"})[0]
    _, alice_token = token_create(user=alice, name="player")
    _, carol_token = token_create(user=UserFactory(username="carol"), name="player")
    held = Stream(server, long_track, alice_token)
    try:
        assert held.status == 200
        other = Stream(server, long_track, carol_token)
        other.close()
        assert other.status == 200
    finally:
        held.close()


async def test_without_redis_each_process_counts_its_own_slots(settings, alice):
    from catalog import transcode_slots
    from catalog.transcode_slots import TranscodeBusy

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        settings.REDIS_URL = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    settings.TRANSCODE_MAX_PER_USER = 1
    slot = await transcode_slots.acquire(user_id=alice.pk)
    with pytest.raises(TranscodeBusy) as refused:
        await transcode_slots.acquire(user_id=alice.pk)
    assert refused.value.status == 429
    await slot.release()
    await slot.release()  # twice is harmless
    await (await transcode_slots.acquire(user_id=alice.pk)).release()


def test_a_transcode_that_fails_gives_its_slot_back(settings, alice, track):
    from django.test import AsyncClient

    from tests.catalog.test_stream import fetch

    settings.TRANSCODE_MAX_PER_USER = 1
    Path(track.file_path).write_bytes(b"this is not audio\n" * 100)
    client = AsyncClient()
    client.force_login(alice)
    for _ in range(2):  # the second is not refused as over the cap: the first freed its slot
        response, _ = fetch(client, f"{track.get_stream_url()}?format=opus")
        assert response.status_code == 500
        assert json.loads(response.content)["error"] == "transcode_failed"
