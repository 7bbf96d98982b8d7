"""How fast a room change reaches every member: Daphne + the realtime hub vs a minimal
`websockets` broadcast server (the floor), for N = 100, 500, 1000 sockets on loopback.

For each N: connect N clients (bearer tokens, no Origin) to one room, wait for their join
events and for the member announcements to settle, then one member sends
`{"type":"control","action":"volume",...}` ROUNDS times (one at a time, a short gap
between); for every client the latency is the time from that send to the `room.state`
with reason "change" and the new version. The same N clients then repeat it against
the floor server, with a frame of the same size. Run by hand (4 to 7 minutes; 1000
members take about a minute to connect):

    .venv/bin/python bench/rooms_fanout.py            # N = 100, 500, 1000 + 2 processes at 1000
    .venv/bin/python bench/rooms_fanout.py --sizes 100 --rounds 5 --no-two-processes   # smoke
    .venv/bin/python bench/rooms_fanout.py --storm --sizes 1000 --no-two-processes  # reconnect storm
    .venv/bin/python bench/rooms_fanout.py --storm --sizes 1000 --two-processes-n 2000 --no-single

With --storm the N clients are members of the room already and all connect at once (every
handshake in flight together, as after a server restart: Redis holds the member list as
last announced, everyone offline); the run reports the time until all are joined (have
their join events), in sync (hold the room's current room.state) and shown online to each
other (every client's member list, deltas applied, shows N online), the member-list
frames per client and their bytes, and the CPU seconds of the servers and of this client
process meanwhile, before the rounds.

Scratch state: a PostgreSQL database chorus_bench_fanout (created and dropped here;
--db sqlite for a SQLite file) and Redis db 11 (flushed first and after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

SETTLE_QUIET_S = 1.5
ROUND_TIMEOUT_S = 15.0


@dataclass
class Run:
    label: str
    n: int
    latencies_ms: list[float] = field(default_factory=list)
    per_round: list[dict] = field(default_factory=list)
    missing: int = 0
    connect_s: float = 0.0
    connect: h.ConnectStats = field(default_factory=h.ConnectStats)
    settle_s: float = 0.0
    frame_bytes: int = 0
    members_frames_per_client: float = 0.0
    members_mb_total: float = 0.0
    online_shown: int = 0
    online_after_wait: int | None = None
    storm: dict = field(default_factory=dict)
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    others_cpu_s: float = 0.0
    others_before: float = float("nan")
    rounds_wall_s: float = 0.0
    tick_rounds: list[int] = field(default_factory=list)
    gc_rounds: dict[int, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def row(self) -> dict:
        return {"label": self.label, "n": self.n, **h.summary(self.latencies_ms), "missing": self.missing,
                "connect_s": self.connect_s, "handshake_ms": h.summary(self.connect.handshake_ms),
                "connect_failures": len(self.connect.failures), "connect_gave_up": self.connect.gave_up, "connect_failure_kinds": sorted(set(self.connect.failures))[:5],
                "settle_s": self.settle_s, "frame_bytes": self.frame_bytes,
                "members_frames_per_client": self.members_frames_per_client, "members_mb_total": self.members_mb_total,
                "online_shown": self.online_shown, "online_after_wait": self.online_after_wait, "storm": self.storm,
                "server_cpu_s": self.server_cpu_s, "client_cpu_s": self.client_cpu_s,
                "others_cpu_s": self.others_cpu_s, "others_cores_before": self.others_before, "rounds_wall_s": self.rounds_wall_s, "tick_rounds": self.tick_rounds,
                "gc_rounds": self.gc_rounds,
                "per_round": self.per_round, "errors": self.errors[:5]}


class Room:
    """N sockets in one room (or on the floor server) and what each has received."""

    def __init__(self, n: int, *, expects_join: bool):
        self.n = n
        self.expects_join = expects_join
        self.recv_at: list[dict[int, float]] = [{} for _ in range(n)]
        self.counts: dict[int, int] = defaultdict(int)
        self.waiters: dict[int, asyncio.Event] = {}
        self.joined = 0
        self.all_joined = asyncio.Event()
        self.last_members = time.perf_counter()
        self.ticks: list[float] = []
        self.latest_version = 0
        self.frame_bytes = 0
        self.errors: list[str] = []
        self.acks: dict[int, float] = {}
        self.members_frames = 0
        self.online_shown = 0
        self.members_chars = 0
        self.delta_frames = 0
        # each client's member list (deltas applied) and when it showed everyone online
        self.started = time.perf_counter()
        self.views: list[dict[int, bool]] = [{} for _ in range(n)]
        self.all_online_at: list[float | None] = [None] * n
        self.joined_at: list[float | None] = [None] * n
        self.join_version: list[int | None] = [None] * n
        self.everyone_online = asyncio.Event()
        self.online_count = 0

    def fold(self, index: int, raw: str, now: float) -> None:
        event = json.loads(raw)
        view = self.views[index]
        if event["type"] == "room.members":
            view.clear()
        for member in event.get("members") or event.get("changed") or []:
            view[member["user_id"]] = member.get("online", False)  # left out: offline
        for user_id in event.get("removed", []):
            view.pop(user_id, None)
        for key, online in (("online", True), ("offline", False)):
            for user_id in event.get(key, []):
                if user_id in view:
                    view[user_id] = online
        everyone = sum(view.values()) >= self.n
        if everyone and self.all_online_at[index] is None:
            self.all_online_at[index] = now
            self.online_count += 1
            if self.online_count == self.n:
                self.everyone_online.set()
        elif not everyone and self.all_online_at[index] is not None:
            self.all_online_at[index] = None
            self.online_count -= 1

    async def read(self, index: int, ws) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                now = time.perf_counter()
                head = raw[:48]
                if head.startswith('{"type":"room.state","reason":"change"'):
                    version = json.loads(raw)["version"]
                    self.recv_at[index][version] = now
                    self.counts[version] += 1
                    if index == 0:
                        self.frame_bytes = len(raw.encode())
                        self.latest_version = max(self.latest_version, version)
                    if self.counts[version] == self.n and version in self.waiters:
                        self.waiters[version].set()
                elif head.startswith('{"type":"room.members_delta"'):
                    self.last_members = now
                    self.delta_frames += 1
                    self.members_chars += len(raw)
                    self.fold(index, raw, now)
                    if index == 0:  # how many members the room shows online
                        self.online_shown = sum(self.views[0].values())
                elif head.startswith('{"type":"room.members"'):
                    self.last_members = now
                    self.members_frames += 1
                    self.members_chars += len(raw)
                    self.fold(index, raw, now)
                    if index == 0:
                        self.online_shown = sum(self.views[0].values())
                elif head.startswith('{"type":"room.state","reason":"tick"'):
                    if index == 0:
                        self.ticks.append(now)
                elif head.startswith('{"type":"room.state","reason":"join"'):
                    version = json.loads(raw)["version"]
                    self.join_version[index] = version
                    if index == 0:
                        self.latest_version = version
                elif head.startswith('{"type":"room.settings"'):
                    if self.joined_at[index] is None:
                        self.joined_at[index] = now
                    self.joined += 1
                    if self.joined == self.n:
                        self.all_joined.set()
                elif head.startswith('{"type":"ack"'):
                    self.acks[json.loads(raw)["request_id"]] = now
                elif head.startswith('{"type":"error"'):
                    self.errors.append(raw[:200])


async def measure(label: str, urls: list[str], tokens: list[str | None], *, rounds: int, gap_s: float,
                  server_pids: list[int], floor_frame_bytes: int = 0, concurrency: int = 10,
                  on_settled=None, quiet_wait_s: float = 0, ghost_check_s: float = 0, storm_version: int | None = None) -> Run:
    n = len(tokens)
    run = Run(label, n)
    room = Room(n, expects_join=floor_frame_bytes == 0)
    cpu_at_start = (sum(h.tree_cpu_s(pid) for pid in server_pids), h.self_cpu_s())
    started = room.started = time.perf_counter()
    sockets = await h.connect_all([(urls[i % len(urls)], tokens[i]) for i in range(n)],
                                  concurrency=concurrency, stats=run.connect)
    if run.connect.gave_up:  # measure the clients that got in (the sender must be one of them)
        sockets = [ws for ws in sockets if ws is not None]
        n = run.n = len(sockets)
        room.n = n
    readers = [asyncio.create_task(room.read(i, ws)) for i, ws in enumerate(sockets)]
    if room.expects_join:
        await asyncio.wait_for(room.all_joined.wait(), 300)
    run.connect_s = time.perf_counter() - started
    if storm_version is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(room.everyone_online.wait(), 120)
        run.storm = storm_figures(room, storm_version, started)
        run.storm["cpu_s_server_client"] = [round(sum(h.tree_cpu_s(pid) for pid in server_pids) - cpu_at_start[0], 1),
                                            round(h.self_cpu_s() - cpu_at_start[1], 1)]
    # Settle: no member announcement for SETTLE_QUIET_S (joins are announced coalesced).
    settle_start = time.perf_counter()
    await asyncio.sleep(SETTLE_QUIET_S)
    while time.perf_counter() - room.last_members < SETTLE_QUIET_S and time.perf_counter() - settle_start < 120:
        await asyncio.sleep(0.1)
    run.settle_s = time.perf_counter() - settle_start
    run.members_frames_per_client = room.members_frames / n
    if storm_version is not None:
        run.storm["delta_frames_per_client"] = round(room.delta_frames / n, 1)
        run.storm["members_mb_after_settle"] = round(room.members_chars / 1e6, 1)
    run.members_mb_total = room.members_chars / 1e6
    run.online_shown = room.online_shown
    if quiet_wait_s:
        run.others_before = await asyncio.to_thread(h.wait_quiet, quiet_wait_s)
    if on_settled is not None:
        await on_settled()

    sender = sockets[0]
    cpu_server = sum(h.tree_cpu_s(pid) for pid in server_pids)
    cpu_client = h.self_cpu_s()
    cpu_all = h.system_busy_s()
    rounds_start = time.perf_counter()
    for r in range(rounds):
        expected = room.latest_version + 1
        room.waiters[expected] = asyncio.Event()
        volume = round(0.30 + 0.01 * (r % 50), 2)
        if floor_frame_bytes:
            message = {"type": "room.state", "reason": "change", "version": expected, "volume": volume, "pad": ""}
            # the floor stamps ,"server_ms":<13 digits> onto it: pad to the Daphne frame size
            message["pad"] = "x" * max(0, floor_frame_bytes - len(json.dumps(message, separators=(",", ":"))) - 25)
        else:
            message = {"type": "control", "action": "volume", "volume": volume, "request_id": r}
        sent_at, sent_wall = time.perf_counter(), time.time()
        await sender.send(json.dumps(message, separators=(",", ":")))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(room.waiters[expected].wait(), ROUND_TIMEOUT_S)
        room.latest_version = max(room.latest_version, expected)
        got = [room.recv_at[i][expected] - sent_at for i in range(n) if expected in room.recv_at[i]]
        run.missing += n - len(got)
        ms = [g * 1000 for g in got]
        run.latencies_ms.extend(ms)
        last = max(got, default=0) + sent_at
        if any(sent_at - 0.2 <= t <= last + 0.01 for t in room.ticks):
            run.tick_rounds.append(r)
        ack_ms = (room.acks[r] - sent_at) * 1000 if r in room.acks else None
        run.per_round.append({"sent_wall": sent_wall, "last_wall": sent_wall + max(got, default=0),
                              "first": round(min(ms, default=0), 2), "ack": ack_ms and round(ack_ms, 2),
                              **{k: round(v, 2) for k, v in h.summary(ms).items() if k in ("p50", "p99", "max")}})
        await asyncio.sleep(gap_s)
    run.rounds_wall_s = time.perf_counter() - rounds_start
    run.server_cpu_s = sum(h.tree_cpu_s(pid) for pid in server_pids) - cpu_server
    run.client_cpu_s = h.self_cpu_s() - cpu_client
    # Everything else on the machine (Redis, PostgreSQL, and whatever else runs there).
    run.others_cpu_s = h.system_busy_s() - cpu_all - run.server_cpu_s - run.client_cpu_s
    run.frame_bytes = room.frame_bytes
    run.errors = room.errors
    if ghost_check_s:
        run.online_after_wait = await online_after(urls[0], tokens[0], ghost_check_s)
    for task in readers:
        task.cancel()
    await h.close_all(sockets)
    return run


def storm_figures(room: Room, version: int, started: float) -> dict:
    """Seconds from the first handshake until every client was joined, in sync (its join
    state has the room's current version) and shown everyone online."""
    joined = [t for t in room.joined_at if t is not None]
    online = [t for t in room.all_online_at if t is not None]
    in_sync = sum(v == version for v in room.join_version)
    joined_s = sorted(t - started for t in joined)
    return {"all_joined_s": round(max(joined) - started, 2) if len(joined) == room.n else None,
            "joined_p50_s": round(joined_s[len(joined_s) // 2], 2) if joined_s else None,
            "joined": len(joined), "in_sync": in_sync,
            "all_online_s": round(max(online) - started, 2) if len(online) == room.n else None,
            "clients_showing_everyone_online": len(online),
            "full_lists_per_client": round(room.members_frames / room.n, 2),
            "delta_frames_per_client": round(room.delta_frames / room.n, 1),
            "members_mb": round(room.members_chars / 1e6, 1)}


async def online_after(url: str, token: str | None, wait_s: float) -> int:
    """Wait past the presence TTL, then join once more: how many members does the room
    list as online (freshly computed for a join)?"""
    await asyncio.sleep(wait_s)
    ws = await h.ws_connect(url, token)
    try:
        async with asyncio.timeout(30):
            async for raw in ws:
                if raw.startswith('{"type":"room.members"'):
                    return sum(m.get("online", False) for m in json.loads(raw)["members"])
    finally:
        await ws.close()
    return -1


def setup(max_n: int, sizes: list, storm: dict | None = None) -> tuple[list[str], dict[int, str], dict]:
    """Users with tokens, one track, one room per N (the first user hosts every room). With
    `storm` ({size: N}), the room's first N users are members already, and the room's
    version is returned for each size."""
    h.django_setup()
    from rooms import services
    from rooms.models import Room as RoomModel

    people = h.create_users(max_n)
    track = h.import_track(h.make_audio(h.SCRATCH / "audio" / "tone-10s.mp3", seconds=10))
    host = people[0][0]
    slugs, versions = {}, {}
    for n in sizes:
        room = services.room_create(owner=host, name=f"Fanout {n}", control_policy=RoomModel.ControlPolicy.EVERYONE)
        entry = services.queue_add(room=room, actor=host, track_id=track.pk)
        # Paused on the track: every frame carries the track (a realistic size) and
        # nothing changes the room by itself (no end of track, no wait timeout).
        services.playback_control(room=room, actor=host, control=services.Control(action="select", entry_id=entry.pk))
        services.start_if_ready(room_id=room.pk, force=True)
        services.playback_control(room=room, actor=host, control=services.Control(action="pause"))
        slugs[n] = room.slug
        if storm is not None:
            for user, _ in people[1:storm[n]]:
                services.room_join(room=room, user=user)
            # What Redis holds after a restart: the member list as last announced (everyone
            # offline here), so the storm's announcements are deltas from it.
            services.announce_members(room=room)
            versions[n] = services.playback_current(room_id=room.pk).version
    from django.db import connections

    connections.close_all()
    return [token for _, token in people], slugs, versions


async def run_all(args, bench_env: h.BenchEnv, tokens: list[str], slugs: dict[int, str],
                  versions: dict) -> list[Run]:
    runs = []
    storm = "storm, " if args.storm else ""
    for n in args.sizes if args.single else []:
        with h.Server.daphne(bench_env) as daphne:
            url = f"ws://127.0.0.1:{daphne.port}/ws/rooms/{slugs[n]}/"
            run = await measure(f"{storm}daphne x1, N={n}", [url], tokens[:n], rounds=args.rounds, gap_s=args.gap,
                                server_pids=[daphne.pid], concurrency=n if args.storm else args.connect_concurrency,
                                quiet_wait_s=args.quiet_wait, ghost_check_s=args.ghost_check,
                                storm_version=versions.get(n))
            annotate_gc(run, [daphne])
            runs.append(run)
            report(run)
            if args.profile and n == max(args.sizes):
                await profile(args, daphne, url, tokens[:n])
        with h.Server.floor_ws() as floor:
            url = f"ws://127.0.0.1:{floor.port}/"
            run = await measure(f"floor, N={n}", [url], [None] * n, rounds=args.rounds, gap_s=args.gap,
                                server_pids=[floor.pid], floor_frame_bytes=runs[-1].frame_bytes or 400,
                                concurrency=args.connect_concurrency, quiet_wait_s=args.quiet_wait)
            runs.append(run)
            report(run)
    if args.two_processes:
        n = args.two_processes_n or max(args.sizes)
        # A fresh room, so that its member list has the same N as the single-process run.
        with h.Server.daphne(bench_env) as first, h.Server.daphne(bench_env) as second:
            urls = [f"ws://127.0.0.1:{s.port}/ws/rooms/{slugs['two']}/" for s in (first, second)]
            run = await measure(f"{storm}daphne x2, N={n} (split)", urls, tokens[:n], rounds=args.rounds, gap_s=args.gap,
                                server_pids=[first.pid, second.pid], concurrency=n if args.storm else args.connect_concurrency,
                                quiet_wait_s=args.quiet_wait, storm_version=versions.get("two"))
            annotate_gc(run, [first, second])
            runs.append(run)
            report(run)
    return runs


async def profile(args, daphne, url, tokens) -> None:
    """py-spy the Daphne process while the same N clients connect again (one file) and
    while the room fans out again (another file)."""
    prefix = h.SCRATCH / f"fanout-profile-{len(tokens)}"
    spy = Spy(args.py_spy, daphne.pid, f"{prefix}-connect.txt")
    await spy.start()
    run = await measure(f"daphne x1 under py-spy, N={len(tokens)}", [url], tokens, rounds=args.rounds * 2,
                        gap_s=args.gap, server_pids=[daphne.pid], concurrency=args.connect_concurrency,
                        on_settled=lambda: spy.switch(f"{prefix}-rounds.txt"))
    await spy.stop()
    report(run)
    print(f"  profiles: {prefix}-connect.txt (connect + settle), {prefix}-rounds.txt (the rounds)", flush=True)


class Spy:
    """py-spy record (raw collapsed stacks, all threads) of one process."""

    def __init__(self, binary: str, pid: int, out: str):
        self.binary, self.pid, self.out = binary, pid, out
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "record", "--pid", str(self.pid), "--format", "raw", "--rate", "250", "--threads",
            "--nonblocking", "--output", self.out, "--duration", "900",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(1)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(2)  # SIGINT: py-spy writes its output and exits
            await self.process.wait()

    async def switch(self, out: str) -> None:
        await self.stop()
        self.out = out
        await self.start()


def annotate_gc(run: Run, servers: list[h.Server]) -> None:
    """Which rounds overlapped a garbage collection of over 2 ms in a server (ms of GC)."""
    pauses = [p for server in servers for p in server.gc_pauses()]
    for index, r in enumerate(run.per_round):
        overlap = sum(ms for end, _, ms in pauses if end >= r["sent_wall"] and end - ms / 1000 <= r["last_wall"])
        if overlap:
            run.gc_rounds[index] = round(overlap, 1)


def report(run: Run) -> None:
    s = h.summary(run.latencies_ms)
    print(f"{run.label:32} p50 {s['p50']:7.1f} ms  p99 {s['p99']:7.1f} ms  max {s['max']:7.1f} ms  "
          f"missing {run.missing}  frame {run.frame_bytes} B  connect {run.connect_s:5.1f} s  "
          f"settle {run.settle_s:4.1f} s  CPU s server {run.server_cpu_s:.2f} client {run.client_cpu_s:.2f} "
          f"others {run.others_cpu_s:.2f} (before: {run.others_before:.2f} cores) over {run.rounds_wall_s:.1f} s  ticks in rounds {run.tick_rounds}  "
          f"GC ms in rounds {run.gc_rounds}  "
          f"load {h.loadavg()}", flush=True)
    firsts = [r["first"] for r in run.per_round]
    acks = [r["ack"] for r in run.per_round if r["ack"] is not None]
    print(f"  per round p50: first client {h.summary(firsts)['p50']:.1f} ms, ack to the sender "
          f"{h.summary(acks)['p50']:.1f} ms; while connecting: {run.members_frames_per_client:.1f} room.members "
          f"frames per client, {run.members_mb_total:.0f} MB of them in all; the room shows {run.online_shown} online "
          f"for {run.n} connected", flush=True)
    if run.online_after_wait is not None:
        print(f"  after the rounds and a wait past the presence TTL, a new join lists {run.online_after_wait} "
              f"members online; {run.n} sockets are connected", flush=True)
    hs = h.summary(run.connect.handshake_ms)
    print(f"  handshakes p50 {hs['p50']:.0f} ms p99 {hs['p99']:.0f} ms max {hs['max']:.0f} ms, "
          f"{len(run.connect.failures)} failed (retried), {run.connect.gave_up} gave up: "
          f"{sorted(set(run.connect.failures))[:2]}", flush=True)
    if run.storm:
        print(f"  storm: {run.storm}", flush=True)
    for error in run.errors[:3]:
        print("  error:", error, flush=True)


def table(runs: list[Run]) -> str:
    floors = {r.n: r for r in runs if r.label.startswith("floor")}
    lines = ["| run | N | p50 ms | p99 ms | max ms | p99 / floor p99 | missing | server CPU s (rounds) | connect s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for run in runs:
        s = h.summary(run.latencies_ms)
        floor = floors.get(run.n)
        ratio = "" if floor is None or run is floor else f"{s['p99'] / h.summary(floor.latencies_ms)['p99']:.1f}x"
        lines.append(f"| {run.label} | {run.n} | {s['p50']:.1f} | {s['p99']:.1f} | {s['max']:.1f} | {ratio} | "
                     f"{run.missing} | {run.server_cpu_s:.2f} | {run.connect_s:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 500, 1000])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between two rounds")
    parser.add_argument("--connect-concurrency", type=int, default=10,
                        help="handshakes in flight at once (Daphne drops a handshake after 5 s)")
    parser.add_argument("--quiet-wait", type=float, default=30,
                        help="before the rounds, wait up to this many s for other processes to use under 0.3 cores")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="experiment: Daphne calls gc.freeze() after loading the app (proposed fix)")
    parser.add_argument("--gc-threshold", default="", help="experiment: Daphne calls gc.set_threshold(A,B,C)")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="experiment: an extra setting for Daphne, e.g. DATABASE_CONN_MAX_AGE=60")
    parser.add_argument("--ghost-check", type=float, default=0, metavar="S",
                        help="after the rounds wait S s (more than ROOMS_PRESENCE_TTL_MS), join once more and count "
                             "the members shown online")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--no-two-processes", dest="two_processes", action="store_false")
    parser.add_argument("--two-processes-n", type=int, default=0, help="N of the two-process run (default: the largest size)")
    parser.add_argument("--no-single", dest="single", action="store_false", help="only the two-process run")
    parser.add_argument("--storm", action="store_true",
                        help="members already; every client connects at once (a reconnect storm)")
    parser.add_argument("--profile", action="store_true", help="also py-spy Daphne at the largest N")
    parser.add_argument("--py-spy", default="/tmp/benchtools/bin/py-spy")
    parser.add_argument("--json", default=str(h.SCRATCH / "rooms_fanout.json"))
    args = parser.parse_args()
    print(f"open files limit: {h.raise_open_files()}", flush=True)
    started = time.monotonic()
    experiments = {"BENCH_GC_FREEZE": "1"} if args.gc_freeze else {}
    if args.gc_threshold:
        experiments["BENCH_GC_THRESHOLD"] = args.gc_threshold
    experiments.update(item.split("=", 1) for item in args.server_env)
    if experiments:
        print(f"experiment: {experiments}", flush=True)
    bench_env = h.BenchEnv("fanout", db=args.db, redis_db=args.redis_db, extra=experiments)
    with bench_env.created():
        sizes = list(args.sizes)
        two_n = args.two_processes_n or max(sizes)
        room_sizes = [*sizes, "two"] if args.two_processes else sizes
        storm = {**{n: n for n in sizes}, "two": two_n} if args.storm else None
        tokens, slugs, versions = setup(max(*sizes, two_n if args.two_processes else 0), room_sizes, storm)
        print(f"setup done in {time.monotonic() - started:.0f} s", flush=True)
        runs = asyncio.run(run_all(args, bench_env, tokens, slugs, versions))
    print()
    print(table(runs))
    Path(args.json).write_text(json.dumps([r.row() for r in runs], indent=1))
    print(f"\n(total {time.monotonic() - started:.0f} s; details in {args.json})")


if __name__ == "__main__":
    main()
