"""Live-feed ingest: the simulator sending N messages a second to ONE livefeed worker (the
Procfile's `python -m project.worker -Q livefeed -P solo`), through decode, storage on
PostgreSQL and the push, to 50 websocket watchers on a Daphne process.

Processes (all on loopback): the simulator (`manage.py live_simulator`, its own process),
Daphne (as the Procfile runs it), the livefeed worker, and this process (the 50 watchers,
bearer tokens, and the sampling). Phases:

1. quiet rooms (a fresh worker): its RSS with no channel, with 1 followed quiet simulator
   room, then with --rooms + 1 (51; 0.2 messages/s each, all `running`); cost per room =
   (RSS with 51 - RSS with 0) / 51, and the marginal (RSS 51 - RSS 1) / 50 without the
   one-time imports of the first follow; the worker's CPU over 10 s with none and with all;
2. rates: for each rate R (default 100, 1,000, 5,000, 20,000) and each of --runs runs, a fresh
   worker following a fresh simulator room (a backlog one run leaves does not carry into the
   next): R for --warmup-s, then a --window-s measured window, then the room goes quiet and
   the script waits (at most --drain-s) until the worker has caught up;
3. soak (a fresh worker): --soak-rate for --soak-s, RSS every 5 s.

What is measured in a window (sampled twice a second):
- sent: the simulator's messages_sent counter (`GET /_sim/<live_id>`);
- stored: every message the simulator sent up to the newest `ts_ms` in the session's latest
  stored rows is stored (the fetcher stores in order), so processed(t) = sent at that time
  (interpolated from the sent samples); the backlog is sent - processed, in messages, and
  `lag_s` is now - the newest stored ts_ms. A backlog that grows over the window means the
  worker does not keep up. Stored rows per second are reported too (a gift streak's steps are
  one row, so rows < messages);
- unacked: frames sent minus frames the worker acked (it acks each frame once read and decoded):
  a growing number means frames wait in the socket, unread;
- latency: the simulator stamps every message's createTime (the message's `ts_ms`) when it
  makes the batch, just before gzip and send; each watcher takes its receive time
  (time.time(), same clock) when the frame arrives; latency = receive - ts_ms, over every
  message x watcher whose message was made in the window. Each distinct frame is parsed once
  (the first watcher to get it), the others match it by its length and head;
- the worker's CPU (utime+stime from /proc, cores) and RSS; Daphne's CPU.

Floor (same run): the same kind of frames (SimRoom, as many messages a frame as the simulator
sends at that rate: rate x 0.05 s) through `decode_frame` only, in this process: messages/s of
one core.

    .venv/bin/python bench/livefeed_ingest.py                     # about 20 minutes
    .venv/bin/python bench/livefeed_ingest.py --rates 1000 --runs 1 --window-s 10 --soak-s 30 --rooms 10   # smoke

Scratch state: PostgreSQL database chorus_bench_ingest (--db-name; created and dropped),
Redis db 11 (--redis-db; flushed before and after), logs and JSON in /tmp/chorus-bench.
Each run also reports the worker's CPU per message processed (worker cores / processed per
second) and its ratio to the decode floor's CPU per message.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h
from worker_kill import Worker

BUSY_ID = "7001"
QUIET_BASE = 8001
QUIET_RATE = 0.2
TICK_S = 0.05  # the simulator's frame period (livefeed/simulator/server.py)
WATCHERS = 50


# --- processes ---------------------------------------------------------------------------


class Proc(Worker):
    """A subprocess in its own process group (stopped like bench/worker_kill.py's workers)."""

    def __init__(self, command: list[str], env: dict, label: str):  # not Worker.__init__: any command
        self.log = h.SCRATCH / f"ingest-{label}.log"
        h.SCRATCH.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=h.ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


def start_worker(env: h.BenchEnv, label: str) -> Proc:
    # The Procfile's livefeed line, with a name of its own and warnings only.
    return Proc([str(h.BIN / "python"), "-m", "project.worker", "-Q", "livefeed", "-P", "solo",
                 "-n", f"bench-{label}-{os.getpid()}@%h", "--loglevel=WARNING"], env.environ(), f"worker-{label}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sim:
    def __init__(self, env: h.BenchEnv, port: int):
        self.root = f"http://127.0.0.1:{port}"
        self.proc = Proc([h.PYTHON, "manage.py", "live_simulator", "--port", str(port), "--rate", "0",
                          "--resend", "0"], env.environ(), "simulator")
        deadline = time.monotonic() + 30
        while True:
            try:
                self.status(BUSY_ID)
                return
            except OSError:
                if time.monotonic() > deadline or not self.proc.alive():
                    raise RuntimeError(f"the simulator did not start; see {self.proc.log}") from None
                time.sleep(0.2)

    def status(self, live_id: str) -> dict:
        with urllib.request.urlopen(f"{self.root}/_sim/{live_id}", timeout=60) as response:
            return json.loads(response.read())

    def rate(self, live_id: str, value: float) -> None:
        request = urllib.request.Request(f"{self.root}/_sim/{live_id}/rate?value={value:g}", method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()


# --- database -----------------------------------------------------------------------------


def add_channels(user, refs: list[str]) -> list[int]:
    from livefeed import services

    ids = []
    for ref in refs:
        channel, _ = services.channel_add(user=user, url=f"simulator:{ref}")
        services.channel_follow(channel_id=channel.pk, actor=user)
        ids.append(channel.pk)
    return ids


def running_count(ids: list[int]) -> int:
    from livefeed.models import LiveChannel

    return LiveChannel.objects.filter(pk__in=ids, state="running").count()


def session_id_of(channel_id: int) -> int | None:
    from livefeed.models import LiveSession

    return LiveSession.objects.filter(channel_id=channel_id).order_by("-id").values_list("id", flat=True).first()


def stored_now(session_id: int) -> tuple[int, int]:
    """(rows stored in the session, the newest ts_ms among its latest rows)."""
    from django.db import connection

    from livefeed.models import LiveMessage, LiveSession

    table = LiveMessage._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT max(ts_ms) FROM (SELECT ts_ms FROM {table} WHERE session_id = %s "
                       "ORDER BY id DESC LIMIT 300) AS latest", [session_id])
        newest = cursor.fetchone()[0] or 0
    total = LiveSession.objects.filter(pk=session_id).values_list("messages_total", flat=True).first() or 0
    return total, newest


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(poll_s)


# --- watchers -----------------------------------------------------------------------------


@dataclass
class FrameSeen:
    ts: Counter  # ts_ms -> messages in the frame
    first_ts: int
    count: int
    receipts: list[float] = field(default_factory=list)  # one receive time (ms) per watcher


class Published(threading.Thread):
    """Counts the messages published for the channel on Redis (what every Daphne process gets)."""

    def __init__(self, channel_id: int):
        super().__init__(daemon=True, name="published-counter")
        from livefeed.services import live_group
        from project import realtime

        self.pubsub = realtime.sync_redis().pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(realtime.channel_prefix() + live_group(channel_id))
        self.messages = 0
        self.frames = 0
        self.bytes = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            message = self.pubsub.get_message(timeout=0.5)
            if message and message["type"] == "message":
                data = message["data"]
                if data.startswith(b'{"type":"live.messages"'):
                    self.frames += 1
                    self.bytes += len(data)
                    self.messages += data.count(b'"session_id":')

    def stop(self) -> None:
        self.running = False
        self.join(2)
        self.pubsub.close()


class Watchers:
    """50 sockets on /ws/live/<id>/; each live.messages frame parsed once, received by each."""

    def __init__(self):
        self.frames: dict[tuple[int, str], FrameSeen] = {}
        self.per_watcher = Counter()  # watcher -> messages received
        self.newest_id = 0
        self.frames_per_watcher = Counter()
        self.bytes_per_watcher = Counter()
        self.sockets: list = []
        self.tasks: list[asyncio.Task] = []

    async def connect(self, url: str, tokens: list[str]) -> None:
        stats = h.ConnectStats()
        self.sockets = await h.connect_all([(url, token) for token in tokens], concurrency=10, stats=stats)
        if any(ws is None for ws in self.sockets):
            raise RuntimeError(f"watchers could not connect: {stats.failures[:3]}")
        self.tasks = [asyncio.create_task(self._read(index, ws)) for index, ws in enumerate(self.sockets)]

    async def _read(self, index: int, ws) -> None:
        with contextlib.suppress(Exception):
            async for frame in ws:
                now = time.time() * 1000
                if not frame.startswith('{"type":"live.messages"') or frame.endswith('"history":true}'):
                    continue
                key = (len(frame), frame[:200])
                seen = self.frames.get(key)
                if seen is None:
                    # A gift combo whose count went up comes again with its id (and the ts_ms of
                    # its first step): only rows new to the watchers count for latency.
                    rows = [row for row in json.loads(frame)["messages"] if row["id"] > self.newest_id]
                    self.newest_id = max([self.newest_id, *(row["id"] for row in rows)])
                    ts = Counter(row["ts_ms"] for row in rows)
                    seen = self.frames[key] = FrameSeen(ts=ts, first_ts=min(ts) if ts else 0, count=len(rows))
                seen.receipts.append(now)
                self.per_watcher[index] += seen.count
                self.frames_per_watcher[index] += 1
                self.bytes_per_watcher[index] += len(frame)

    def latencies(self, start_ms: float, end_ms: float) -> dict:
        """Latency histogram (ms -> messages x watchers) of frames whose messages were made in the window."""
        histogram: Counter = Counter()
        frames = 0
        short = 0
        for seen in self.frames.values():
            if not start_ms <= seen.first_ts < end_ms:
                continue
            frames += 1
            short += WATCHERS - len(seen.receipts)
            for received in seen.receipts:
                for ts, count in seen.ts.items():
                    histogram[int(received - ts)] += count
        return {"histogram": histogram, "frames": frames, "receipts_missing": short}

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await h.close_all(self.sockets)


def histogram_summary(histogram: Counter) -> dict:
    total = sum(histogram.values())
    if not total:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(histogram.items())
    out = {"n": total, "max": ordered[-1][0]}
    for name, p in (("p50", 50), ("p99", 99)):
        rank = max(1, -(-p * total // 100))
        running = 0
        for value, count in ordered:
            running += count
            if running >= rank:
                out[name] = value
                break
    return out


# --- the floor ----------------------------------------------------------------------------


def decode_floor(rate: float, seconds: float = 2.0) -> dict:
    from livefeed.clients.douyin_frames import decode_frame
    from livefeed.simulator.room import SimRoom

    per_frame = max(1, round(rate * TICK_S))
    room = SimRoom("7999", rate=0, seed=1)
    corpus = [room.frame(room.next_messages(per_frame))[0] for _ in range(max(4, 4000 // per_frame))]
    done, started = 0, time.process_time()
    while time.process_time() - started < seconds:
        for data in corpus:
            done += len(decode_frame(data)[0])
    return {"messages_per_frame": per_frame, "messages_per_s": done / (time.process_time() - started)}


def stages(user, *, batches: int, per_batch: int) -> dict:
    """CPU and wall time per message of each step of a flush, in this process, on the same
    database: decode (decode_frame), store (storage.messages_store: one transaction), push
    (live.messages_push: the recent list and one publish). A load-independent view of where
    the worker's time goes."""
    from livefeed import live, services, storage
    from livefeed.clients.douyin_frames import decode_frame
    from livefeed.simulator.room import SimRoom

    channel, _ = services.channel_add(user=user, url="simulator:7990")
    session, _ = services.session_open(channel_id=channel.pk, title="stages")
    room = SimRoom("7990", rate=0, seed=2)
    frames = [room.frame(room.next_messages(per_batch))[0] for _ in range(batches)]
    totals = {step: [0.0, 0.0] for step in ("decode", "store", "push")}
    messages = 0

    def timed(step, fn, *args, **kwargs):
        cpu, wall = time.process_time(), time.perf_counter()
        out = fn(*args, **kwargs)
        totals[step][0] += time.process_time() - cpu
        totals[step][1] += time.perf_counter() - wall
        return out

    for data in frames:
        items, _ = timed("decode", decode_frame, data)
        messages += len(items)
        result = timed("store", storage.messages_store, channel_id=channel.pk, session_id=session.pk, messages=items)
        timed("push", live.messages_push, channel_id=channel.pk, rows=result.stored + result.updated)
    out = {"messages": messages, "per_batch": per_batch}
    for step, (cpu, wall) in totals.items():
        out[step] = {"cpu_us": cpu / messages * 1e6, "wall_us": wall / messages * 1e6}
    cpu_us = sum(out[step]["cpu_us"] for step in totals)
    wall_us = sum(out[step]["wall_us"] for step in totals)
    out["messages_per_cpu_s"] = 1e6 / cpu_us
    out["messages_per_wall_s"] = 1e6 / wall_us
    print("stages (µs a message, cpu/wall): " + ", ".join(
        f"{step} {out[step]['cpu_us']:.0f}/{out[step]['wall_us']:.0f}" for step in totals)
        + f"; {out['messages_per_cpu_s']:,.0f} messages per CPU second of this process, "
          f"{out['messages_per_wall_s']:,.0f} per wall second", flush=True)
    return out


# --- the rate phases -----------------------------------------------------------------------


def interpolate(samples: list[tuple[float, int]], at_ms: float) -> float:
    """The simulator's sent count at wall time `at_ms` from (wall ms, sent) samples."""
    times = [t for t, _ in samples]
    i = bisect.bisect_right(times, at_ms)
    if i == 0:
        return samples[0][1]
    if i == len(samples):
        return samples[-1][1]
    (t0, v0), (t1, v1) = samples[i - 1], samples[i]
    return v0 + (v1 - v0) * (at_ms - t0) / (t1 - t0) if t1 > t0 else v1


async def measure(rate: float, args, sim: Sim, worker: Proc, daphne: h.Server, watchers: Watchers,
                  session_id: int, sent_samples: list[tuple[float, int]], label: str, ref: str = BUSY_ID) -> dict:
    """One run at `rate`: warm up, a measured window, then quiet until caught up."""
    async def sample_sent() -> dict:
        status = await asyncio.to_thread(sim.status, ref)
        sent_samples.append((time.time() * 1000, status["counters"]["messages_sent"]))
        return status["counters"]

    await asyncio.to_thread(sim.rate, ref, rate)
    warm_until = time.monotonic() + args.warmup_s
    while time.monotonic() < warm_until:
        await sample_sent()
        await asyncio.sleep(0.5)
    rows: list[dict] = []
    spy = None
    if args.profile:
        out = h.SCRATCH / f"ingest-profile-{label.replace('/', '').replace(' ', '-')}.txt"
        spy = subprocess.Popen([args.profile, "record", "--pid", str(worker.pid), "--duration", str(int(args.window_s)),
                                "--rate", "50", "--format", "raw", "--threads", "--nonblocking", "-o", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu0, dcpu0, t0 = h.tree_cpu_s(worker.pid), h.tree_cpu_s(daphne.pid), time.monotonic()
    others0 = h.system_busy_s()
    mine0 = h.tree_cpu_s(os.getpid())
    start_ms = time.time() * 1000
    while time.monotonic() - t0 < args.window_s:
        counters = await sample_sent()
        now = sent_samples[-1][0]
        stored, newest = await asyncio.to_thread(stored_now, session_id)
        rows.append({"t_ms": now, "sent": counters["messages_sent"], "stored_rows": stored, "newest_ts": newest,
                     "unacked": counters["frames_sent"] - counters["acks_ok"], "rss_mb": rss_mb(worker.pid)})
        await asyncio.sleep(0.5)
    elapsed = time.monotonic() - t0
    end_ms = time.time() * 1000
    worker_cores = (h.tree_cpu_s(worker.pid) - cpu0) / elapsed
    daphne_cores = (h.tree_cpu_s(daphne.pid) - dcpu0) / elapsed
    system_cores = (h.system_busy_s() - others0) / elapsed
    bench_cores = (h.tree_cpu_s(os.getpid()) - mine0) / elapsed
    if spy is not None:
        await asyncio.to_thread(spy.wait)
    # Quiet again, and wait until the worker stored everything made in the window.
    await asyncio.to_thread(sim.rate, ref, 1)
    caught_up_s = None
    drain_started = time.monotonic()
    while time.monotonic() - drain_started < args.drain_s:
        _, newest = await asyncio.to_thread(stored_now, session_id)
        if newest >= end_ms:
            caught_up_s = time.monotonic() - drain_started
            break
        await sample_sent()
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.5)  # the last frames reach the watchers
    for row in rows:
        row["processed"] = interpolate(sent_samples, row["newest_ts"]) if row["newest_ts"] else 0
        row["backlog"] = row["sent"] - row["processed"]
        row["lag_s"] = (row["t_ms"] - row["newest_ts"]) / 1000 if row["newest_ts"] else float("nan")
    first, last = rows[0], rows[-1]
    span_s = (last["t_ms"] - first["t_ms"]) / 1000
    half = len(rows) // 2
    early = statistics.fmean(r["backlog"] for r in rows[:half])
    late = statistics.fmean(r["backlog"] for r in rows[half:])
    latency = watchers.latencies(start_ms, end_ms)
    result = {
        "label": label, "rate": rate, "window_s": round(span_s, 1),
        "sent_per_s": (last["sent"] - first["sent"]) / span_s,
        "processed_per_s": (last["processed"] - first["processed"]) / span_s,
        "stored_rows_per_s": (last["stored_rows"] - first["stored_rows"]) / span_s,
        "backlog_start": first["backlog"], "backlog_end": last["backlog"],
        "backlog_growth_per_s": (late - early) / (span_s / 2) if span_s else 0.0,
        "lag_s_start": first["lag_s"], "lag_s_end": last["lag_s"], "lag_s_max": max(r["lag_s"] for r in rows),
        "unacked_start": first["unacked"], "unacked_end": last["unacked"],
        "worker_cores": worker_cores, "daphne_cores": daphne_cores, "bench_cores": bench_cores,
        "machine_cores": system_cores, "rss_mb_end": last["rss_mb"], "rss_mb_max": max(r["rss_mb"] for r in rows),
        "caught_up_s": caught_up_s,
        "latency_ms": histogram_summary(latency["histogram"]), "latency_frames": latency["frames"],
        "receipts_missing": latency["receipts_missing"], "samples": rows,
    }
    print(f"  {label}: sent {result['sent_per_s']:.0f}/s processed {result['processed_per_s']:.0f}/s "
          f"backlog {first['backlog']:.0f}->{last['backlog']:.0f} lag {first['lag_s']:.2f}->{last['lag_s']:.2f}s "
          f"p50 {result['latency_ms']['p50']} p99 {result['latency_ms']['p99']} ms; worker "
          f"{worker_cores:.2f} cores {last['rss_mb']:.1f} MB; daphne {daphne_cores:.2f}; machine {system_cores:.2f}; "
          f"unacked {first['unacked']}->{last['unacked']}; caught up after {caught_up_s} s; "
          f"{latency['frames']} frames timed",
          flush=True)
    return result


# --- phases --------------------------------------------------------------------------------


def quiet_rooms(args, env: h.BenchEnv, sim: Sim, user) -> dict:
    worker = start_worker(env, "quiet")
    try:
        time.sleep(args.settle_s)
        rss0 = rss_mb(worker.pid)
        cpu0, t0 = h.tree_cpu_s(worker.pid), time.monotonic()
        time.sleep(10)
        cores_0 = (h.tree_cpu_s(worker.pid) - cpu0) / (time.monotonic() - t0)
        refs = [str(QUIET_BASE + i) for i in range(args.rooms + 1)]
        for ref in refs:
            sim.rate(ref, QUIET_RATE)
        first = add_channels(user, refs[:1])
        wait_for(lambda: running_count(first) == 1, 60, "the first quiet room")
        time.sleep(args.settle_s)
        rss1 = rss_mb(worker.pid)
        rest = add_channels(user, refs[1:])
        wait_for(lambda: running_count(rest) == len(rest), 120, f"{len(rest)} quiet rooms running")
        time.sleep(args.settle_s)
        rss_all = rss_mb(worker.pid)
        spy = None
        if args.profile:
            spy = subprocess.Popen([args.profile, "record", "--pid", str(worker.pid), "--duration", "10", "--rate", "100",
                                    "--format", "raw", "--threads", "--nonblocking",
                                    "-o", str(h.SCRATCH / "ingest-profile-quiet.txt")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0, t0 = h.tree_cpu_s(worker.pid), time.monotonic()
        time.sleep(10)
        if spy is not None:
            spy.wait()
        idle_cores = (h.tree_cpu_s(worker.pid) - cpu0) / (time.monotonic() - t0)
        from livefeed import services

        for channel_id in first + rest:
            services.channel_unfollow(channel_id=channel_id, actor=user)
    finally:
        worker.stop()
    n = args.rooms
    out = {"rooms": n, "rss_mb_0": rss0, "rss_mb_1": rss1, "rss_mb_all": rss_all,
           "per_room_mb": (rss_all - rss0) / (n + 1), "marginal_per_room_mb": (rss_all - rss1) / n,
           "cores_with_0": cores_0, "cores_with_all": idle_cores}
    print(f"quiet rooms: RSS {rss0:.1f} MB (0) {rss1:.1f} MB (1) {rss_all:.1f} MB ({n + 1}); "
          f"{out['per_room_mb']:.2f} MB a room, {out['marginal_per_room_mb']:.2f} MB marginal; "
          f"{cores_0:.3f} cores with none, {idle_cores:.3f} with all", flush=True)
    return out


async def one_run(args, env: h.BenchEnv, sim: Sim, daphne: h.Server, user, tokens, rate: float, ref: str,
                  label: str) -> dict:
    """One measured run on its own: a fresh worker and a fresh simulator room (so that a backlog
    a run left behind does not carry into the next), the 50 watchers on that channel."""
    from livefeed import services

    quiet = await asyncio.to_thread(h.wait_quiet, args.quiet_wait)
    print(f"{label}: others used {quiet:.2f} cores before it; load {h.loadavg()}", flush=True)
    await asyncio.to_thread(sim.rate, ref, 1)
    channel_id = (await asyncio.to_thread(add_channels, user, [ref]))[0]
    worker = start_worker(env, label.replace("/", "").replace(" ", "-"))
    watchers = Watchers()
    published = None
    try:
        session_id = await asyncio.to_thread(
            wait_for, lambda: session_id_of(channel_id), 60, "the channel's session")
        await asyncio.to_thread(wait_for, lambda: running_count([channel_id]) == 1, 60, "the channel running")
        published = Published(channel_id)
        published.start()
        await watchers.connect(f"ws://127.0.0.1:{daphne.port}/ws/live/{channel_id}/", tokens)
        await asyncio.sleep(2)
        result = await measure(rate, args, sim, worker, daphne, watchers, session_id, [], label, ref=ref)
        result["others_before"] = quiet
        # The worker's CPU per message processed, and how many times the decode floor's (the
        # same run, the same kind of frames) that is: less sensitive to a loaded machine than rates.
        processed = result["processed_per_s"]
        result["worker_cpu_us_per_message"] = result["worker_cores"] / processed * 1e6 if processed else float("nan")
        floor_us = 1e6 / args.floors[str(rate)]["messages_per_s"]
        result["floor_ratio"] = result["worker_cpu_us_per_message"] / floor_us
        print(f"  {label}: worker {result['worker_cpu_us_per_message']:.1f} µs of CPU a message, "
              f"{result['floor_ratio']:.1f} x the decode floor ({floor_us:.1f} µs)", flush=True)
        if not worker.alive():
            raise RuntimeError(f"the worker died; see {worker.log}")
        result.update({
            "watcher_new_messages_min": min(watchers.per_watcher.values(), default=0),
            "watcher_frames_min": min(watchers.frames_per_watcher.values(), default=0),
            "published_frames": published.frames, "published_messages": published.messages,
            "published_bytes": published.bytes, "daphne_log": str(daphne.log), "worker_log": str(worker.log)})
        return result
    finally:
        if published is not None:
            published.stop()
        await watchers.close()
        await asyncio.to_thread(sim.rate, ref, 0)
        await asyncio.to_thread(services.channel_unfollow, channel_id=channel_id, actor=user)
        worker.stop()


async def soak_phase(args, env, sim, daphne, user, tokens, channel_id) -> dict:
    """--soak-rate for --soak-s on a fresh worker: RSS every 5 s, one long window."""
    worker = start_worker(env, "soak")
    watchers = Watchers()
    try:
        session_id = await asyncio.to_thread(wait_for, lambda: session_id_of(channel_id), 60, "the session")
        await asyncio.to_thread(wait_for, lambda: running_count([channel_id]) == 1, 60, "the channel running")
        await watchers.connect(f"ws://127.0.0.1:{daphne.port}/ws/live/{channel_id}/", tokens)
        await asyncio.sleep(2)
        rss: list[tuple[float, float]] = []
        stop = asyncio.Event()

        async def sample_rss():
            started = time.monotonic()
            while not stop.is_set():
                rss.append((time.monotonic() - started, rss_mb(worker.pid)))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 5)

        sampler = asyncio.create_task(sample_rss())
        window = argparse.Namespace(**{**vars(args), "window_s": args.soak_s, "warmup_s": 5})
        result = await measure(args.soak_rate, window, sim, worker, daphne, watchers, session_id, [], "soak")
        stop.set()
        await sampler
        result.pop("samples")
        processed = result["processed_per_s"]
        result["worker_cpu_us_per_message"] = result["worker_cores"] / processed * 1e6 if processed else float("nan")
        values = [v for _, v in rss]
        tenth = max(1, len(values) // 10)
        result["rss_series"] = rss
        result["rss_first_tenth_mb"] = statistics.fmean(values[:tenth])
        result["rss_last_tenth_mb"] = statistics.fmean(values[-tenth:])
        result["rss_max_mb"] = max(values)
        print(f"soak: RSS {result['rss_first_tenth_mb']:.1f} MB (first tenth) -> {result['rss_last_tenth_mb']:.1f} MB "
              f"(last tenth), max {result['rss_max_mb']:.1f} MB", flush=True)
        return result
    finally:
        await watchers.close()
        worker.stop()


def med(runs: list[dict], key: str) -> float:
    values = [r[key] for r in runs if r[key] is not None and r[key] == r[key]]
    return statistics.median(values) if values else float("nan")


def table(results: dict) -> str:
    lines = ["| rate sent/s | processed/s | stored rows/s | backlog end (msgs) | lag end s | p50 ms | p99 ms | "
             "worker cores | worker CPU µs/msg | x floor | worker RSS MB | Daphne cores | machine cores | "
             "decode floor msg/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for rate, runs in results.get("by_rate", {}).items():
        floor = results["floor"][rate]["messages_per_s"]
        lines.append(
            f"| {med(runs, 'sent_per_s'):,.0f} (asked {float(rate):,.0f}) | {med(runs, 'processed_per_s'):,.0f} | "
            f"{med(runs, 'stored_rows_per_s'):,.0f} | {med(runs, 'backlog_end'):,.0f} | {med(runs, 'lag_s_end'):.2f} | "
            f"{statistics.median(r['latency_ms']['p50'] for r in runs):.0f} | "
            f"{statistics.median(r['latency_ms']['p99'] for r in runs):.0f} | {med(runs, 'worker_cores'):.3f} | "
            f"{med(runs, 'worker_cpu_us_per_message'):.0f} | {med(runs, 'floor_ratio'):.1f} | "
            f"{med(runs, 'rss_mb_end'):.1f} | {med(runs, 'daphne_cores'):.2f} | {med(runs, 'machine_cores'):.2f} | "
            f"{floor:,.0f} |")
    quiet = results.get("quiet")
    if quiet:
        lines.append(f"\nQuiet rooms: RSS {quiet['rss_mb_0']:.1f} MB with 0, {quiet['rss_mb_1']:.1f} MB with 1, "
                     f"{quiet['rss_mb_all']:.1f} MB with {quiet['rooms'] + 1}: {quiet['per_room_mb']:.2f} MB a room "
                     f"({quiet['marginal_per_room_mb']:.2f} MB marginal); worker {quiet.get('cores_with_0', float('nan')):.3f} "
                     f"cores with none, {quiet['cores_with_all']:.3f} with all")
    st = results.get("stages")
    if st:
        lines.append("Flush steps in one process, µs a message (CPU / wall), batches of "
                     f"{st['per_batch']}: decode {st['decode']['cpu_us']:.0f} / {st['decode']['wall_us']:.0f}, "
                     f"store {st['store']['cpu_us']:.0f} / {st['store']['wall_us']:.0f}, "
                     f"push {st['push']['cpu_us']:.0f} / {st['push']['wall_us']:.0f}: "
                     f"{st['messages_per_cpu_s']:,.0f} messages per CPU second, "
                     f"{st['messages_per_wall_s']:,.0f} per wall second")
    soak = results.get("soak")
    if soak:
        lines.append(f"Soak at {soak['rate']:,.0f}/s for {soak['window_s']:.0f} s: processed "
                     f"{soak['processed_per_s']:,.0f}/s, backlog {soak['backlog_start']:,.0f} -> "
                     f"{soak['backlog_end']:,.0f}, p50 {soak['latency_ms']['p50']} p99 {soak['latency_ms']['p99']} ms, "
                     f"RSS {soak['rss_first_tenth_mb']:.1f} -> {soak['rss_last_tenth_mb']:.1f} MB "
                     f"(max {soak['rss_max_mb']:.1f}), worker {soak['worker_cores']:.3f} cores "
                     f"({soak['worker_cpu_us_per_message']:.0f} µs a message)")
    return "\n".join(lines)


async def async_main(args, env: h.BenchEnv, sim: Sim, daphne: h.Server, results: dict) -> None:
    from django.contrib.auth import get_user_model

    people = await asyncio.to_thread(h.create_users, WATCHERS, "watcher")
    tokens = [token for _, token in people]
    owner = await asyncio.to_thread(lambda: get_user_model().objects.create_user("owner", "owner@example.org", "x"))
    if args.stage_batches:
        results["stages"] = await asyncio.to_thread(stages, owner, batches=args.stage_batches, per_batch=500)
    if args.rooms:
        results["quiet"] = await asyncio.to_thread(quiet_rooms, args, env, sim, owner)
    by_rate: dict[str, list] = {}
    for index, (rate, run) in enumerate((rate, run) for rate in args.rates for run in range(args.runs)):
        result = await one_run(args, env, sim, daphne, owner, tokens, rate, str(7101 + index),
                               f"{rate:g}/s run {run + 1}")
        by_rate.setdefault(str(rate), []).append(result)
    results["by_rate"] = by_rate
    if args.soak_s:
        await asyncio.to_thread(sim.rate, BUSY_ID, 1)
        channel_id = (await asyncio.to_thread(add_channels, owner, [BUSY_ID]))[0]
        results["soak"] = await soak_phase(args, env, sim, daphne, owner, tokens, channel_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=lambda s: [float(v) for v in s.split(",") if v], default=[100, 1000, 5000, 20000],
                        help="messages a second the simulator sends (comma-separated)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each rate (the table shows medians)")
    parser.add_argument("--warmup-s", type=float, default=5)
    parser.add_argument("--window-s", type=float, default=20, help="measured seconds of each run")
    parser.add_argument("--drain-s", type=float, default=15, help="at most this long quiet after a run to catch up")
    parser.add_argument("--rooms", type=int, default=50, help="quiet rooms of the RSS-per-room phase (0: skip it)")
    parser.add_argument("--settle-s", type=float, default=10, help="seconds before each quiet-room RSS reading")
    parser.add_argument("--soak-s", type=float, default=180, help="soak length in seconds (0: no soak)")
    parser.add_argument("--soak-rate", type=float, default=1000)
    parser.add_argument("--quiet-wait", type=float, default=20,
                        help="wait up to this long for other processes to use < 0.3 cores before each run")
    parser.add_argument("--stage-batches", type=int, default=40,
                        help="batches of 500 messages timed step by step in this process (0: skip)")
    parser.add_argument("--profile", metavar="PY_SPY",
                        help="path of py-spy: record the worker during each window (raw stacks in /tmp/chorus-bench)")
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--db-name", default="ingest", help="scratch database chorus_bench_<this> (created and dropped)")
    parser.add_argument("--json", default=str(h.SCRATCH / "livefeed_ingest.json"))
    args = parser.parse_args()
    started = time.monotonic()
    h.raise_open_files()
    sim_port = h.free_port()
    env = h.BenchEnv(args.db_name, redis_db=args.redis_db, extra={
        "LIVEFEED_SIMULATOR_ROOT": f"http://127.0.0.1:{sim_port}", "LIVEFEED_SCAN_S": "0.5", "LIVEFEED_LEASE_S": "15",
        "LIVEFEED_RECONNECT_MAX_S": "2", "LOG_LEVEL": "WARNING"})
    results: dict = {"args": dict(vars(args)), "load_before": h.loadavg()}
    with env.created():
        h.django_setup()
        results["floor"] = args.floors = {str(rate): decode_floor(rate) for rate in args.rates}
        for rate, floor in results["floor"].items():
            print(f"decode floor at {float(rate):g}/s ({floor['messages_per_frame']} a frame): "
                  f"{floor['messages_per_s']:,.0f} messages/s", flush=True)
        sim = Sim(env, sim_port)
        daphne = h.Server.daphne(env, gc_log=False).start()
        try:
            asyncio.run(async_main(args, env, sim, daphne, results))
        finally:
            daphne.stop()
            sim.proc.stop()
    results["load_after"] = h.loadavg()
    h.report(results, table=table(results), json_path=args.json, started=started)


if __name__ == "__main__":
    main()
