"""How well the room clock sync works on loopback, where the true offset is 0.

One client runs the exchange the browser player runs (docs/protocol.md, "Rooms
websocket": `time.ping` -> `time.pong`; round trip (t3-t0)-(t2-t1), offset
((t1-t0)+(t2-t3))/2; keep the sample with the smallest round trip of the last 8), PINGS
times, one ping in flight at a time, every INTERVAL ms. Reported: |estimated offset|
(the min-RTT pick of the last 8, as the player uses it), |offset| of single samples,
|offset| of the pick of each 6-ping burst (what the player has right after connecting),
and the round trip. Each against Daphne and against the floor (the same exchange with a
minimal `websockets` server), first idle, then while the server fans a room out to
BUSY_CLIENTS other sockets (a separate load process sends BUSY_RATE volume changes a
second). Run by hand (about 3 minutes):

    .venv/bin/python bench/clock_offset.py
    .venv/bin/python bench/clock_offset.py --pings 300 --no-busy      # smoke

Scratch state: PostgreSQL database chorus_bench_clock (created and dropped here) and
Redis db 11 (flushed first and after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

WINDOW = 8  # samples the player keeps
BURST = 6  # pings the player sends on connect


def now_ms() -> float:
    return time.time() * 1000  # the clock the server stamps t1 and t2 with


async def exchange(url: str, token: str | None, *, pings: int, interval_s: float) -> dict:
    ws = await h.ws_connect(url, token)
    pongs: asyncio.Queue = asyncio.Queue()

    async def read() -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                t3 = now_ms()
                if raw.startswith('{"type":"time.pong"'):
                    await pongs.put((json.loads(raw), t3))

    reader = asyncio.create_task(read())
    await asyncio.sleep(1)  # let the join events pass
    window: deque = deque(maxlen=WINDOW)
    estimates, singles, rtts, bursts, burst = [], [], [], [], []
    for _ in range(pings):
        t0 = now_ms()
        await ws.send(json.dumps({"type": "time.ping", "t0": t0}))
        pong, t3 = await asyncio.wait_for(pongs.get(), 10)
        assert pong["t0"] == t0
        rtt = (t3 - t0) - (pong["t2"] - pong["t1"])
        offset = ((pong["t1"] - t0) + (pong["t2"] - t3)) / 2
        rtts.append(rtt)
        singles.append(abs(offset))
        window.append((rtt, offset))
        if len(window) == WINDOW:
            estimates.append(abs(min(window)[1]))
        burst.append((rtt, offset))
        if len(burst) == BURST:
            bursts.append(abs(min(burst)[1]))
            burst = []
        await asyncio.sleep(interval_s)
    reader.cancel()
    await ws.close()
    return {"estimate": h.summary(estimates), "single": h.summary(singles), "burst6": h.summary(bursts),
            "rtt": h.summary(rtts)}


class Load:
    """`python bench/_harness.py load ...` in its own process: BUSY_CLIENTS sockets."""

    def __init__(self, url: str, tokens_file: str, count: int, rate_hz: float, kind: str):
        self.command = [h.PYTHON, str(Path(h.__file__)), "load", url, tokens_file, str(count), str(rate_hz), "3600", kind]
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Load:
        self.process = await asyncio.create_subprocess_exec(*self.command, stdout=asyncio.subprocess.PIPE)
        line = await asyncio.wait_for(self.process.stdout.readline(), 300)
        if line.strip() != b"ready":
            raise RuntimeError(f"load generator: {line!r}")
        return self

    async def __aexit__(self, *exc) -> None:
        self.process.terminate()
        await self.process.wait()


async def phase(label: str, url: str, token: str | None, args, server_pid: int, load: Load | None) -> dict:
    async with contextlib.AsyncExitStack() as stack:
        if load is not None:
            await stack.enter_async_context(load)
        cpu = h.tree_cpu_s(server_pid)
        started = time.perf_counter()
        result = await exchange(url, token, pings=args.pings, interval_s=args.interval_ms / 1000)
        wall = time.perf_counter() - started
        result["server_cpu_per_s"] = (h.tree_cpu_s(server_pid) - cpu) / wall
    result["label"] = label
    e, s, b, r = result["estimate"], result["single"], result["burst6"], result["rtt"]
    print(f"{label:28} |offset| est p50 {e['p50']:.3f} p99 {e['p99']:.3f} max {e['max']:.3f} ms; "
          f"single p99 {s['p99']:.3f}; burst6 p99 {b['p99']:.3f}; rtt p50 {r['p50']:.3f} p99 {r['p99']:.3f} "
          f"max {r['max']:.3f} ms; server CPU {result['server_cpu_per_s']:.2f} s/s; load {h.loadavg()}", flush=True)
    return result


def setup(count: int) -> tuple[list[str], str]:
    h.django_setup()
    from rooms import services
    from rooms.models import Room

    people = h.create_users(count)
    track = h.import_track(h.make_audio(h.SCRATCH / "audio" / "tone-10s.mp3", seconds=10))
    host = people[0][0]
    room = services.room_create(owner=host, name="Clock", control_policy=Room.ControlPolicy.EVERYONE)
    entry = services.queue_add(room=room, actor=host, track_id=track.pk)
    services.playback_control(room=room, actor=host, control=services.Control(action="select", entry_id=entry.pk))
    services.start_if_ready(room_id=room.pk, force=True)
    services.playback_control(room=room, actor=host, control=services.Control(action="pause"))
    from django.db import connections

    connections.close_all()
    return [token for _, token in people], room.slug


async def run_all(args, bench_env: h.BenchEnv, tokens: list[str], slug: str) -> list[dict]:
    tokens_file = h.SCRATCH / "clock-tokens.json"
    tokens_file.write_text(json.dumps(tokens[1:]))
    results = []
    with h.Server.daphne(bench_env) as daphne:
        url = f"ws://127.0.0.1:{daphne.port}/ws/rooms/{slug}/"
        results.append(await phase("daphne, idle", url, tokens[0], args, daphne.pid, None))
        if args.busy:
            load = Load(url, str(tokens_file), args.busy_clients, args.busy_rate, "daphne")
            results.append(await phase(f"daphne, busy ({args.busy_clients} sockets)", url, tokens[0], args,
                                       daphne.pid, load))
    with h.Server.floor_ws() as floor:
        url = f"ws://127.0.0.1:{floor.port}/"
        results.append(await phase("floor, idle", url, None, args, floor.pid, None))
        if args.busy:
            load = Load(url, "-", args.busy_clients, args.busy_rate, "floor")
            results.append(await phase(f"floor, busy ({args.busy_clients} sockets)", url, None, args, floor.pid, load))
    return results


def table(results: list[dict]) -> str:
    lines = ["| run | est. \\|offset\\| p50 ms | p99 ms | max ms | single-sample \\|offset\\| p99 ms | "
             "6-ping burst \\|offset\\| p99 ms | RTT p50 ms | RTT p99 ms | server CPU s/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        e = r["estimate"]
        lines.append(f"| {r['label']} | {e['p50']:.3f} | {e['p99']:.3f} | {e['max']:.3f} | {r['single']['p99']:.3f} | "
                     f"{r['burst6']['p99']:.3f} | {r['rtt']['p50']:.3f} | {r['rtt']['p99']:.3f} | "
                     f"{r['server_cpu_per_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--no-busy", dest="busy", action="store_false")
    parser.add_argument("--busy-clients", type=int, default=500)
    parser.add_argument("--busy-rate", type=float, default=10.0, help="room changes a second while busy")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--json", default=str(h.SCRATCH / "clock_offset.json"))
    args = parser.parse_args()
    h.raise_open_files()
    started = time.monotonic()
    bench_env = h.BenchEnv("clock", db=args.db, redis_db=args.redis_db)
    with bench_env.created():
        tokens, slug = setup(1 + (args.busy_clients if args.busy else 0))
        results = asyncio.run(run_all(args, bench_env, tokens, slug))
    h.report(results, table=table(results), json_path=args.json, started=started)


if __name__ == "__main__":
    main()
