"""How long a room takes to hear again after Redis is killed (-9) and started again.

N websocket clients (bearer tokens, no Origin) join one room on a live Daphne that uses a
private redis-server (its own port, no persistence: a restart loses every key, presence
included). Each round: wait until the room is quiet, kill -9 redis-server, keep it down
DOWN seconds, start it again on the same port, and note when it first answers PING. For
every client the figure is the time from that moment to its first `room.state` with
reason "resync" (the state read again from the database after the hub subscribed again).
Then one member changes the volume and the time until every client has that change is
noted too (the room works again, not only its resync), and PUBSUB NUMSUB must show the
room's channel subscribed by every server process again.

    .venv/bin/python bench/redis_restart.py                     # 200 clients, 5 rounds, 1 s down
    .venv/bin/python bench/redis_restart.py --clients 50 --rounds 2 --processes 2

Scratch state: a PostgreSQL database chorus_bench_redisrestart (created and dropped here)
and the private redis-server in /tmp/chorus-bench/redis-restart (never the shared Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

from tests.private_redis import PrivateRedis

ROUND_TIMEOUT_S = 30.0
QUIET_S = 1.5


@dataclass
class Clients:
    """What every client received: (monotonic time, type, reason, version) per frame."""

    n: int
    frames: list[list[tuple[float, str, str | None, int | None]]] = field(default_factory=list)
    joined: set[int] = field(default_factory=set)
    last_frame_at: float = 0.0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.frames = [[] for _ in range(self.n)]
        self.all_joined = asyncio.Event()

    async def read(self, index: int, ws) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                now = time.monotonic()
                event = json.loads(raw)
                kind = event["type"]
                self.frames[index].append((now, kind, event.get("reason"), event.get("version")))
                if kind != "room.state" or event.get("reason") != "tick":
                    self.last_frame_at = now
                if kind == "room.settings" and index not in self.joined:
                    self.joined.add(index)
                    if len(self.joined) == self.n:
                        self.all_joined.set()
                elif kind == "error":
                    self.errors.append(raw[:200])

    def first(self, index: int, since: float, kind: str, reason: str | None = None,
              version: int | None = None) -> float | None:
        for at, k, r, v in self.frames[index]:
            if at >= since and k == kind and (reason is None or r == reason) and (version is None or v == version):
                return at
        return None

    def latest_version(self) -> int:
        return max((v for at, k, r, v in self.frames[0] if k == "room.state" and v is not None), default=0)

    async def wait_all(self, since: float, kind: str, reason: str | None = None, version: int | None = None,
                       timeout: float = ROUND_TIMEOUT_S) -> list[float | None]:
        deadline = time.monotonic() + timeout
        while True:
            found = [self.first(i, since, kind, reason, version) for i in range(self.n)]
            if all(at is not None for at in found) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.02)

    async def quiet(self, seconds: float = QUIET_S, limit_s: float = 60) -> None:
        """Until no frame but ticks has arrived for `seconds` (joins and announcements settled)."""
        started = time.monotonic()
        while time.monotonic() - self.last_frame_at < seconds and time.monotonic() - started < limit_s:
            await asyncio.sleep(0.1)


def setup(n: int) -> tuple[list[str], str, int]:
    """N users with tokens and a room paused on a long track (nothing changes by itself)."""
    h.django_setup()
    from rooms import services
    from rooms.models import Room
    from tests.factories import make_track

    people = h.create_users(n, prefix="restart")
    host = people[0][0]
    track = make_track("Bench tone", "Chorus bench", "Bench", duration_s=3600.0)
    room = services.room_create(owner=host, name="Redis restart", control_policy=Room.ControlPolicy.EVERYONE)
    entry = services.queue_add(room=room, actor=host, track_id=track.pk)
    services.playback_control(room=room, actor=host, control=services.Control(action="select", entry_id=entry.pk))
    services.start_if_ready(room_id=room.pk, force=True)
    services.playback_control(room=room, actor=host, control=services.Control(action="pause"))
    from django.db import connections

    connections.close_all()
    return [token for _, token in people], room.slug, room.pk


def numsub(redis_server: PrivateRedis, channel: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_server.url(0))
    try:
        return client.pubsub_numsub(channel)[0][1]
    finally:
        client.close()


async def one_round(clients: Clients, sockets: list, redis_server: PrivateRedis, channel: str, *, down_s: float,
                    processes: int, volume: float) -> dict:
    await clients.quiet()
    killed_at = time.monotonic()
    redis_server.kill()
    await asyncio.sleep(down_s)
    await asyncio.to_thread(redis_server.start)
    answered_at = redis_server.answered_at
    resynced = await clients.wait_all(answered_at, "room.state", "resync")
    got = [at - answered_at for at in resynced if at is not None]
    subscribed = numsub(redis_server, channel)
    # The room works again: a change reaches everyone.
    expected = clients.latest_version() + 1
    sent_at = time.monotonic()
    await sockets[0].send(json.dumps({"type": "control", "action": "volume", "volume": volume}))
    changed = await clients.wait_all(sent_at, "room.state", "change", expected, timeout=15)
    change_ms = [(at - sent_at) * 1000 for at in changed if at is not None]
    return {
        "down_s": round(answered_at - killed_at, 3),
        "resync_missing": clients.n - len(got),
        "resync_first_ms": round(min(got) * 1000, 1) if got else None,
        "resync_p50_ms": round(statistics.median(got) * 1000, 1) if got else None,
        "resync_last_ms": round(max(got) * 1000, 1) if got else None,
        "numsub": subscribed,
        "numsub_ok": subscribed == processes,
        "change_missing": clients.n - len(change_ms),
        "change_last_ms": round(max(change_ms), 1) if change_ms else None,
    }


async def run(args, bench_env: h.PrivateRedisEnv, redis_server: PrivateRedis, tokens: list[str], slug: str,
              room_id: int) -> dict:
    servers = [h.Server.daphne(bench_env, gc_log=False).start() for _ in range(args.processes)]
    sockets: list = []
    readers: list[asyncio.Task] = []
    try:
        urls = [f"ws://127.0.0.1:{server.port}/ws/rooms/{slug}/" for server in servers]
        clients = Clients(args.clients)
        started = time.monotonic()
        stats = h.ConnectStats()
        sockets = await h.connect_all([(urls[i % len(urls)], tokens[i]) for i in range(args.clients)],
                                      concurrency=10, stats=stats)
        if stats.gave_up:
            raise RuntimeError(f"{stats.gave_up} clients could not connect: {stats.failures[:3]}")
        readers = [asyncio.create_task(clients.read(i, ws)) for i, ws in enumerate(sockets)]
        await asyncio.wait_for(clients.all_joined.wait(), 300)
        print(f"{args.clients} clients joined in {time.monotonic() - started:.1f} s "
              f"over {args.processes} process(es)", flush=True)
        from project.realtime import channel_prefix

        channel = channel_prefix() + f"room.{room_id}"
        rounds = []
        for r in range(args.rounds):
            result = await one_round(clients, sockets, redis_server, channel, down_s=args.down,
                                     processes=args.processes, volume=round(0.30 + 0.05 * r, 2))
            rounds.append(result)
            print(f"round {r + 1}: Redis away {result['down_s']:.2f} s; resync first {result['resync_first_ms']} ms, "
                  f"p50 {result['resync_p50_ms']} ms, last {result['resync_last_ms']} ms, "
                  f"missing {result['resync_missing']}; NUMSUB {result['numsub']}; a change afterwards reached "
                  f"all but {result['change_missing']} in {result['change_last_ms']} ms  (load {h.loadavg()})",
                  flush=True)
    finally:
        for task in readers:
            task.cancel()
        await h.close_all(sockets)
        for server in servers:
            server.stop()
    lasts = [r["resync_last_ms"] for r in rounds if r["resync_last_ms"] is not None]
    return {
        "clients": args.clients, "processes": args.processes, "rounds": rounds, "errors": clients.errors[:5],
        "last_client_median_ms": statistics.median(lasts) if lasts else None,
        "last_client_max_ms": max(lasts) if lasts else None,
        "missing_total": sum(r["resync_missing"] + r["change_missing"] for r in rounds),
        "numsub_ok": all(r["numsub_ok"] for r in rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--down", type=float, default=1.0, help="seconds Redis stays killed each round")
    parser.add_argument("--processes", type=int, default=1, help="Daphne processes sharing the room")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--json", default=str(h.SCRATCH / "redis_restart.json"))
    args = parser.parse_args()
    print(f"open files limit: {h.raise_open_files()}", flush=True)
    redis_server = PrivateRedis(h.SCRATCH / "redis-restart").start()
    try:
        bench_env = h.PrivateRedisEnv("redisrestart", db=args.db, private_url=redis_server.url(0))
        with bench_env.created():
            tokens, slug, room_id = setup(args.clients)
            result = asyncio.run(run(args, bench_env, redis_server, tokens, slug, room_id))
    finally:
        redis_server.stop()
    print(f"\nlast client's fresh room.state after Redis answered: median {result['last_client_median_ms']} ms, "
          f"max {result['last_client_max_ms']} ms over {args.rounds} rounds; missing {result['missing_total']}; "
          f"subscriptions restored every round: {result['numsub_ok']}")
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"(details in {args.json})")


if __name__ == "__main__":
    main()
